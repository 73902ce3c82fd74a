//! alertrelay: one service between what raises alerts and the people who
//! must hear about them.
//!
//! The layout follows an alert: it comes in ([`ingest`]), is kept
//! ([`store`]), is decided about ([`route`]), goes out ([`deliver`],
//! [`channels`]), and can be asked about ([`web`]). [`startup`] wires them.

pub mod app;
pub mod auth;
pub mod channels;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod error;
pub mod ingest;
pub mod live;
pub mod model;
pub mod route;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod web;

//! alertrelay: one service between what raises alerts and the people who
//! must hear about them.
//!
//! The layout follows an alert: it comes in (`ingest`), is kept
//! ([`store`]), is decided about (`route`), goes out (`deliver`,
//! `channels`), and can be asked about (`chat`, `web`). [`startup`] wires
//! them. Each module sits in one layer and imports only from the layers
//! below; the table is in README.md ("How the code is laid out") and
//! `tests/layers.rs` holds the code to it.

pub mod app;
pub mod auth;
pub(crate) mod channels;
pub(crate) mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub(crate) mod deliver;
pub(crate) mod error;
pub(crate) mod ingest;
pub(crate) mod live;
pub mod model;
pub(crate) mod route;
pub mod startup;
pub mod store;
pub(crate) mod telemetry;
pub(crate) mod template;
pub(crate) mod web;

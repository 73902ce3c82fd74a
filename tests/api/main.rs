//! alertrelay tested from outside: real HTTP, real databases, fake clouds.

#[path = "../common/mod.rs"]
mod common;
mod fake_slack;
mod fake_telegram;
mod fake_wecom;
mod helpers;
mod smtp_server;
mod webhook_sink;

mod ack;
mod api;
mod chat_channels;
mod delivery;
mod digest;
mod email;
mod flapping;
mod grouping;
mod ingest;
mod migrations;
mod pacing;
mod proxy;
mod reload;
mod reminders;
mod silences;
mod subscriptions;
mod throttle;
mod webhook;

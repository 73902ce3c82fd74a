//! alertrelay tested from outside: real HTTP, real databases, fake clouds.

mod fake_telegram;
mod helpers;
mod webhook_sink;

mod api;
mod delivery;
mod ingest;
mod migrations;
mod proxy;
mod webhook;

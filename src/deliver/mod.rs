//! Getting notifications out: the outbox workers that send, retry and give
//! up, behind a [`Sink`] each channel implements.
//!
//! A notification is written to the outbox in the same transaction as the
//! alert change that caused it (decided by [`crate::route::planner`]). One
//! worker per channel ([`worker`]) takes due entries with a lease, sends
//! them with bounded concurrency ([`send`]), and records the result: sent,
//! retry at a time (exponential backoff with jitter, or the platform's
//! `retry_after`), or failed after the last attempt. Workers of different
//! channels share nothing, so a slow or failing channel never holds back
//! another. A crash loses nothing: an entry is only marked sent after the
//! channel accepted it, and a lease left by a dead process expires (SQLite
//! clears its leases at start).

pub mod backoff;
pub mod pacing;
mod queues;
mod send;
mod sink;
mod worker;

use queues::Bundle;
pub use sink::{DeliveryError, Sink};
pub use worker::Outbox;

#[cfg(test)]
mod tests;

//! What the outbox needs of a channel: a name, the destination limits it
//! keeps, and a send that says whether trying again can help.

use std::time::Duration;

use async_trait::async_trait;

use super::pacing::Pacer;
use crate::model::notification::{AlertGroup, BacklogSummary};

/// Where the outbox hands a notification: one per configured channel.
/// The worker decides retries, folding and pacing from what it returns.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The configured channel name (the outbox's `channel` column).
    fn name(&self) -> &str;

    /// The destination limits this sink keeps.
    fn pacer(&self) -> &Pacer;

    /// Sends `group` to `destination`, skipping the first `parts_done` parts
    /// of a split message (accepted by an earlier attempt).
    async fn send(
        &self,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> Result<(), DeliveryError>;

    /// Sends what piled up for `destination` as one message.
    async fn send_summary(
        &self,
        destination: &str,
        summary: &BacklogSummary,
    ) -> Result<(), DeliveryError>;
}

/// Why a send did not go through, classified where it happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: network trouble, 5xx, rate limits.
    #[error("{reason}")]
    Transient {
        /// What happened.
        reason: String,
        /// The platform said when to come back.
        retry_after: Option<Duration>,
        /// Parts of a split message already accepted (not to be sent again).
        parts_done: u32,
    },
    /// Retrying cannot help: bad token, unknown chat, rejected content.
    #[error("{reason}")]
    Permanent {
        /// What happened.
        reason: String,
        /// Parts of a split message already accepted.
        parts_done: u32,
    },
}

impl DeliveryError {
    /// A failure worth retrying, before any part was accepted.
    pub fn transient(reason: String, retry_after: Option<Duration>) -> Self {
        DeliveryError::Transient {
            reason,
            retry_after,
            parts_done: 0,
        }
    }

    /// A failure retrying cannot help, before any part was accepted.
    pub fn permanent(reason: String) -> Self {
        DeliveryError::Permanent {
            reason,
            parts_done: 0,
        }
    }

    /// Parts already accepted before the failure.
    pub fn parts_done(&self) -> u32 {
        match self {
            DeliveryError::Transient { parts_done, .. }
            | DeliveryError::Permanent { parts_done, .. } => *parts_done,
        }
    }
}

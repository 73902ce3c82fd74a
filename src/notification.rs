//! What one notification says: the alerts whose state changed, as stored in
//! the outbox and handed to a channel to render.

use serde::{Deserialize, Serialize};

use crate::alert::{AlertStatus, IncomingAlert};

/// The content of one notification: alerts of one incoming group that
/// entered the same state, plus a count of the group's other alerts that are
/// still firing (listed once, not again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    /// The state every listed alert entered.
    pub status: AlertStatus,
    /// The alerts, in the order received.
    pub alerts: Vec<IncomingAlert>,
    /// Other alerts of the same incoming group still firing, unchanged.
    #[serde(default)]
    pub others_firing: u32,
}

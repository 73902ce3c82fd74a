//! What a channel worker holds between the store and the platform: one
//! send in flight per destination, the claimed bundles waiting behind it,
//! and the tasks in flight.

use std::collections::{HashMap, VecDeque};

use tokio::task::JoinSet;

use crate::store::Notification;

/// One send at a time per destination, in claim (id) order: a chat must see
/// an alert's FIRING before its RESOLVED, so two messages to one destination
/// are never in flight at once.
#[derive(Default)]
pub(super) struct DestinationQueues {
    /// Destinations with a send in flight, and what is claimed behind it.
    busy: HashMap<String, VecDeque<Bundle>>,
}

/// Notifications that go out as one message: one, or the members of one
/// `group_wait` group (same destination and group key), first claimed first.
pub(super) type Bundle = Vec<Notification>;

/// Bundles a claim: entries of one `group_wait` group for one destination
/// join the first of them, in claim order.
pub(super) fn bundle(batch: Vec<Notification>) -> Vec<Bundle> {
    let mut out: Vec<Bundle> = Vec::new();
    for n in batch {
        let joins = n.group.group_key.as_ref().and_then(|key| {
            out.iter_mut().find(|b| {
                b[0].destination == n.destination && b[0].group.group_key.as_ref() == Some(key)
            })
        });
        match joins {
            Some(b) => b.push(n),
            None => out.push(vec![n]),
        }
    }
    out
}

impl DestinationQueues {
    /// Returns the bundle if it can be sent now, or keeps it until its
    /// destination is free (joining a waiting bundle of its group).
    pub(super) fn admit(&mut self, b: Bundle) -> Option<Bundle> {
        let destination = b[0].destination.clone();
        match self.busy.get_mut(&destination) {
            Some(waiting) => {
                let key = b[0].group.group_key.clone();
                match waiting
                    .iter_mut()
                    .find(|w| key.is_some() && w[0].group.group_key == key)
                {
                    Some(w) => w.extend(b),
                    None => waiting.push_back(b),
                }
                None
            }
            None => {
                self.busy.insert(destination, VecDeque::new());
                Some(b)
            }
        }
    }

    /// The send to `destination` finished: the next one for it, if any.
    pub(super) fn next(&mut self, destination: &str) -> Option<Bundle> {
        let waiting = self.busy.get_mut(destination)?;
        let next = waiting.pop_front();
        if next.is_none() {
            self.busy.remove(destination);
        }
        next
    }

    pub(super) fn is_busy(&self, destination: &str) -> bool {
        self.busy.contains_key(destination)
    }

    pub(super) fn busy_destinations(&self) -> Vec<String> {
        self.busy.keys().cloned().collect()
    }

    pub(super) fn clear_waiting(&mut self) {
        self.busy.clear();
    }
}

/// Sends in flight: the tasks, and which entry and destination each sends.
#[derive(Default)]
pub(super) struct Inflight {
    pub(super) set: JoinSet<()>,
    pub(super) sends: HashMap<tokio::task::Id, (Vec<i64>, String)>,
}

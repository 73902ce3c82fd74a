//! The send path of one bundle: wait for the destination's slot, gather a
//! `group_wait` group, fold a backlog into one summary, send within the
//! deadline, and record what the attempt leaves in the store.

use std::collections::HashSet;
use std::time::Duration;

use super::worker::{after, Outbox, FOLD_AFTER, FOLD_MAX, LEASE};
use super::{backoff, Bundle, DeliveryError, Sink};
use crate::model::notification::{AlertGroup, BacklogSummary};
use crate::store::{DestinationFilter, Notification};

impl Outbox {
    /// Waits for the destination's slot under its platform's limit; then,
    /// if [`FOLD_AFTER`] or more entries for it are due behind this one,
    /// claims them all and sends one summary instead.
    pub(super) async fn deliver(&self, channel: &dyn Sink, b: Bundle) {
        let pacer = channel.pacer();
        if !pacer.paces(&b[0].destination) {
            let batch = self.gather_group(channel, b).await;
            return self.deliver_batch(channel, batch).await;
        }
        pacer.until_ready(&b[0].destination).await;
        // A digest is a summary already: it goes as it is.
        if b[0].group.digest.is_some() {
            return self.deliver_batch(channel, b).await;
        }
        let batch = self.gather_group(channel, b).await;
        let now = self.clock.now();
        let backlog = match self
            .store
            .count_due(channel.name(), &batch[0].destination, now)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot count the backlog");
                0
            }
        };
        if backlog < FOLD_AFTER {
            return self.deliver_batch(channel, batch).await;
        }
        let folded = match self
            .store
            .claim_due(
                channel.name(),
                now,
                after(now, LEASE),
                FOLD_MAX,
                DestinationFilter::Only(&batch[0].destination),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot claim the backlog");
                return self.deliver_batch(channel, batch).await;
            }
        };
        // Digests in the backlog go on their own after the summary.
        let (digests, folded): (Vec<Notification>, Vec<Notification>) =
            folded.into_iter().partition(|n| n.group.digest.is_some());
        let mut batch = batch;
        batch.extend(folded);
        self.deliver_summary(channel, batch).await;
        for d in digests {
            pacer.until_ready(&d.destination).await;
            self.deliver_one(channel, d).await;
        }
    }

    /// `n` and, when its route has `group_wait`, the other pending
    /// notifications of its group for the same destination, due or not:
    /// the first of a group to fall due takes the rest along.
    async fn gather_group(&self, channel: &dyn Sink, mut b: Bundle) -> Bundle {
        let Some(key) = b[0].group.group_key.clone() else {
            return b;
        };
        let destination = b[0].destination.clone();
        let now = self.clock.now();
        let more = self
            .store
            .claim_due(
                channel.name(),
                now,
                after(now, LEASE),
                FOLD_MAX,
                DestinationFilter::Group {
                    destination: &destination,
                    group_key: &key,
                },
            )
            .await;
        match more {
            Ok(more) => {
                let have: HashSet<i64> = b.iter().map(|n| n.id).collect();
                b.extend(more.into_iter().filter(|m| !have.contains(&m.id)));
            }
            // Each goes out on its own when it falls due.
            Err(e) => {
                tracing::error!(channel = channel.name(), error = %e, "cannot gather the group")
            }
        }
        b
    }

    /// Sends one notification, or a group gathered by `group_wait` as one
    /// message listing all its alerts (each once, in its latest state);
    /// every entry ends as the message did.
    async fn deliver_batch(&self, channel: &dyn Sink, mut batch: Vec<Notification>) {
        if batch.len() <= 1 {
            if let Some(n) = batch.pop() {
                self.deliver_one(channel, n).await;
            }
            return;
        }
        let head = &batch[0];
        let mut group = head.group.clone();
        for m in &batch[1..] {
            for a in &m.group.alerts {
                match group
                    .alerts
                    .iter_mut()
                    .find(|x| x.fingerprint == a.fingerprint)
                {
                    Some(x) => *x = a.clone(),
                    None => group.alerts.push(a.clone()),
                }
            }
            group.others_firing = m.group.others_firing;
        }
        let (result, parts_done) = self
            .attempt(channel, &head.destination, &group, head.parts_done)
            .await;
        tracing::debug!(
            channel = channel.name(),
            gathered = batch.len(),
            alerts = group.alerts.len(),
            "group_wait: one message for the group"
        );
        for m in &batch {
            self.record(channel.name(), m, &result, parts_done).await;
        }
    }

    /// One summary for a destination's backlog; every folded entry ends as
    /// the summary did.
    async fn deliver_summary(&self, channel: &dyn Sink, batch: Vec<Notification>) {
        let name = channel.name();
        let destination = batch[0].destination.clone();
        let summary = BacklogSummary::fold(batch.iter().map(|n| &n.group));
        let result = match tokio::time::timeout(
            self.send_deadline(),
            channel.send_summary(&destination, &summary),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::transient(
                format!("no answer within {:?}", self.send_deadline()),
                None,
            )),
        };
        self.metrics.notifications_folded(name, batch.len());
        tracing::info!(
            channel = name,
            folded = batch.len(),
            alerts = summary.alerts.len(),
            ok = result.is_ok(),
            "backlog sent as one summary"
        );
        for n in &batch {
            // The summary's parts are not the entry's: keep its own progress.
            self.record(name, n, &result, n.parts_done).await;
        }
    }

    /// One attempt, and what it leaves in the store.
    async fn deliver_one(&self, channel: &dyn Sink, n: Notification) {
        let (result, parts_done) = self
            .attempt(channel, &n.destination, &n.group, n.parts_done)
            .await;
        self.record(channel.name(), &n, &result, parts_done).await;
    }

    /// One send of `group` within the deadline, resuming a split message
    /// after `parts_done` parts; the result and the parts now accepted.
    async fn attempt(
        &self,
        channel: &dyn Sink,
        destination: &str,
        group: &AlertGroup,
        parts_done: u32,
    ) -> (Result<(), DeliveryError>, u32) {
        let result = match tokio::time::timeout(
            self.send_deadline(),
            channel.send(destination, group, parts_done),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Transient {
                reason: format!("no answer within {:?}", self.send_deadline()),
                retry_after: None,
                parts_done,
            }),
        };
        let done = match &result {
            Err(e) => e.parts_done().max(parts_done),
            Ok(()) => parts_done,
        };
        (result, done)
    }

    /// What one attempt leaves in the store: sent, due again after a delay
    /// (the platform's retry_after wins over our backoff), or failed.
    async fn record(
        &self,
        name: &str,
        n: &Notification,
        result: &Result<(), DeliveryError>,
        parts_done: u32,
    ) {
        let now = self.clock.now();
        let outcome = match result {
            Ok(()) => {
                let latency = (now - n.created_at).to_std().unwrap_or_default();
                self.metrics.notification_sent(name, n.id, latency);
                self.store.mark_sent(n.id, now).await
            }
            Err(DeliveryError::Transient {
                reason,
                retry_after,
                ..
            }) if n.attempts < self.config.max_attempts => {
                let backoff =
                    backoff::delay(n.attempts, self.config.retry_initial, self.config.retry_max);
                // Coming back sooner than the platform asked only earns another 429.
                let wait = retry_after
                    .map(|r| r.max(backoff.min(r + Duration::from_secs(1))))
                    .unwrap_or(backoff);
                self.metrics
                    .notification_retry(name, n.id, n.attempts, wait, reason);
                self.store
                    .mark_retry(n.id, after(now, wait), reason, parts_done)
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                self.metrics
                    .notification_failed(name, n.id, n.attempts, &reason);
                self.store.mark_failed(n.id, &reason, parts_done).await
            }
        };
        if let Err(e) = outcome {
            // The lease will expire and the entry be tried again: at least once.
            tracing::error!(channel = name, notification = n.id, error = %e, "cannot record delivery result");
        }
    }
}

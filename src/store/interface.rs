//! The storage interface: what ingest, the outbox, the scheduler, the chat
//! and the API ask of a database, and the planner hook ingest calls inside
//! its transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::alert::{Ack, Event, IncomingAlert, StoredAlert, Transition};
use crate::model::flapping::FlappingConfig;
use crate::model::flapping::{FlapVerdict, StableDue};
use crate::model::silence::{NewSilence, Silence};

use super::error::StoreError;
use super::records::{
    AlertFilter, ChatRecord, Cursor, DestinationFilter, DigestSchedule, DueDigest, NewNotification,
    Notification, NotificationState, OutboxCount, Page, Reminder, SubscriptionPattern,
    ThrottleWindow, Timed,
};

/// The alerts of one incoming request (one webhook call).
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// Alerts in the order received.
    pub alerts: Vec<IncomingAlert>,
}

/// Decides which notifications a request's state changes cause. Implemented
/// by `route::planner::Planner`; the store calls it inside the ingest transaction so
/// notifications are committed together with the alerts.
pub trait NotificationPlanner: Send + Sync {
    /// `alerts` are one request's alerts with what receiving each meant.
    fn plan(&self, alerts: &[Decided<'_>]) -> Vec<NewNotification>;

    /// (channel, fingerprint) of the firing copies received again that a
    /// throttle window counts: the store adds one to the window's repeats
    /// if it is open.
    fn repeats(&self, _alerts: &[Decided<'_>]) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Flapping detection's settings; `None` (the default) when it is off,
    /// and then ingest loads no flapping state at all.
    fn flapping(&self) -> Option<FlappingConfig> {
        None
    }
}

/// One received alert and what receiving it meant. Borrowed: a storm of new
/// alerts is planned without copying each alert again.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    /// As received.
    pub alert: &'a IncomingAlert,
    /// What it means.
    pub transition: Transition,
    /// Start of the incident as it now stands (a resolve keeps its start).
    pub starts_at: DateTime<Utc>,
    /// End, when resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// The incident's acknowledgement, if any.
    pub ack: Option<Ack>,
    /// What flapping detection made of this change (`None`: nothing, an
    /// ordinary change).
    pub flap: Option<FlapVerdict>,
}

impl Decided<'_> {
    /// The alert as a channel shows it: received labels, stored times.
    pub fn shown(&self) -> IncomingAlert {
        let mut a = self.alert.clone();
        a.starts_at = self.starts_at;
        a.ends_at = self.ends_at;
        a.ack = self.ack.clone();
        a
    }
}

/// The storage interface. Every method is one short transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a batch of requests (group commit): one transaction for all,
    /// with the notifications the planner decides. Returns each request's
    /// notification count, in order.
    async fn ingest(
        &self,
        requests: Arc<[IngestRequest]>,
        planner: Arc<dyn NotificationPlanner>,
        now: DateTime<Utc>,
    ) -> Result<Vec<usize>, StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A page of alerts, most recently seen first.
    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<StoredAlert>, StoreError>;
    /// One alert.
    async fn get_alert(&self, fingerprint: &str) -> Result<Option<StoredAlert>, StoreError>;
    /// A page of events, newest first.
    async fn list_events(
        &self,
        filter: &AlertFilter,
        fingerprint: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Event>, StoreError>;
    /// Takes up to `limit` due notifications of a channel for sending, leasing
    /// them until `lease_until` so no other worker or replica takes them.
    async fn claim_due(
        &self,
        channel: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        filter: DestinationFilter<'_>,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Entries of `channel` for `destination` due now and not claimed: the
    /// backlog the outbox folds into a summary.
    async fn count_due(
        &self,
        channel: &str,
        destination: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    /// The channel accepted it.
    async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Try again at `next_at`.
    async fn mark_retry(
        &self,
        id: i64,
        next_at: DateTime<Utc>,
        error: &str,
        parts_done: u32,
    ) -> Result<(), StoreError>;
    /// Give up: kept as failed, visible, re-sendable.
    async fn mark_failed(&self, id: i64, error: &str, parts_done: u32) -> Result<(), StoreError>;
    /// Extends the leases of notifications still being sent.
    async fn renew(&self, ids: &[i64], until: DateTime<Utc>) -> Result<(), StoreError>;
    /// Returns leased notifications to the queue (shutdown before they finished).
    async fn release(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// Clears every lease: only for a database this process owns alone (SQLite) at start.
    async fn release_all_claims(&self) -> Result<(), StoreError>;
    /// Earliest time a pending notification of the channel becomes due.
    async fn next_due(&self, channel: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// A page of notifications, newest first.
    async fn list_notifications(
        &self,
        state: Option<NotificationState>,
        channel: Option<&str>,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Notification>, StoreError>;
    /// Puts a failed notification back in the queue; false if there is no failed one with that id.
    async fn resend(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Notifications per channel and state, for /metrics.
    async fn outbox_counts(&self) -> Result<Vec<OutboxCount>, StoreError>;
    /// Adds or updates contacts by name (the config's `contacts:` at start).
    async fn upsert_contacts(
        &self,
        contacts: &[crate::model::contacts::Contact],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The whole contact book, by name.
    async fn list_contacts(&self) -> Result<Vec<crate::model::contacts::Contact>, StoreError>;
    /// Acknowledges the current incident of a firing alert. False when no
    /// firing alert has this fingerprint.
    async fn ack_alert(&self, fingerprint: &str, ack: &Ack) -> Result<bool, StoreError>;
    /// Reminders due at `now`, leased until `lease_until`.
    async fn claim_due_reminders(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reminder>, StoreError>;
    /// Throttle windows closed at `now`, leased until `lease_until`.
    async fn claim_closed_windows(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ThrottleWindow>, StoreError>;
    /// Queues what the scheduler decided about due rows of `kind` (those
    /// messages set the next reminder or open the next window) and drops
    /// the rows with nothing more to do, in one transaction.
    async fn finish_timed(
        &self,
        kind: Timed,
        notifications: Vec<NewNotification>,
        dropped: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Every digest schedule.
    async fn digest_schedules(&self) -> Result<Vec<DigestSchedule>, StoreError>;
    /// Writes these schedules (new ones, or ones whose period changed)
    /// and drops those of routes no longer in the config, in one
    /// transaction.
    async fn schedule_digests(
        &self,
        upsert: &[DigestSchedule],
        drop: &[(String, String)],
    ) -> Result<(), StoreError>;
    /// Digests whose period has ended at `now`, leased until `lease_until`.
    async fn claim_due_digests(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueDigest>, StoreError>;
    /// Queues a digest's notifications and starts its next period
    /// (`next`: its start and end), or drops the schedule (`None`: the
    /// route is gone), in one transaction.
    async fn finish_digest(
        &self,
        channel: &str,
        scope: &str,
        notifications: Vec<NewNotification>,
        next: Option<(DateTime<Utc>, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Which of these alerts are flapping now.
    async fn flapping_among(
        &self,
        fingerprints: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError>;
    /// Flapping alerts whose stable time has come at `now`, leased until
    /// `lease_until` so one scheduler (of several replicas) takes each.
    async fn claim_stable(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<StableDue>, StoreError>;
    /// Ends the flapping of a claimed alert and queues its stable message,
    /// in one transaction — unless a change arrived since the claim (its
    /// stable time moved): then nothing is done and the answer is false.
    async fn finish_stable(
        &self,
        due: &StableDue,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Stores a silence; the answer carries its id.
    async fn create_silence(
        &self,
        s: &NewSilence,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError>;
    /// Silences, newest first.
    async fn list_silences(
        &self,
        cursor: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Silence>, StoreError>;
    /// Silences that hold now or will: what the planner's book holds.
    async fn live_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError>;
    /// Ends a silence now (DELETE). `None` when there is no such silence
    /// or it has already ended.
    async fn expire_silence(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError>;
    /// Silences that have ended and whose end is not yet handled, leased
    /// until `lease_until` so one scheduler (of several replicas) takes each.
    async fn claim_ended_silences(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Silence>, StoreError>;
    /// Queues what a silence's end notifies and marks the end handled, in
    /// one transaction.
    async fn finish_silence(
        &self,
        id: i64,
        notifications: Vec<NewNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Registers a Telegram chat with a channel (`/start`), or refreshes
    /// its usernames (the chat's, and the sender's). `true` when it was
    /// not registered before.
    async fn register_chat(
        &self,
        channel: &str,
        chat_id: i64,
        username: Option<&str>,
        registered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Forgets a registered chat and its subscriptions (`/stop`); whether
    /// it was registered.
    async fn unregister_chat(&self, channel: &str, chat_id: i64) -> Result<bool, StoreError>;
    /// Every registered chat of every channel, with its subscriptions in
    /// `/subscriptions` order: what the planner's subscriber book holds.
    async fn list_chats(&self) -> Result<Vec<ChatRecord>, StoreError>;
    /// Adds a subscription to a registered chat.
    async fn add_subscription(
        &self,
        channel: &str,
        chat_id: i64,
        pattern: &SubscriptionPattern,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Removes one subscription by its id, or all of the chat's with
    /// `None`; how many went.
    async fn remove_subscriptions(
        &self,
        channel: &str,
        chat_id: i64,
        id: Option<i64>,
    ) -> Result<u64, StoreError>;
    /// Takes or renews the lease on polling `channel`'s getUpdates until
    /// `until`, for `holder`; the offset to poll from when this process
    /// holds it, `None` while another holds it.
    async fn lease_updates(
        &self,
        channel: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;
    /// Records that updates below `offset` were handled (while `holder`
    /// holds the lease).
    async fn save_update_offset(
        &self,
        channel: &str,
        holder: &str,
        offset: i64,
    ) -> Result<(), StoreError>;
    /// Gives the lease up (clean stop), so the next process polls at once.
    async fn release_updates(&self, channel: &str, holder: &str) -> Result<(), StoreError>;
    /// How many ingest batches may be in flight at once (1: one writer).
    fn ingest_parallelism(&self) -> usize {
        1
    }
}

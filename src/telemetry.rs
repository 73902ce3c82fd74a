//! Logs and Prometheus metrics, from one place per event.
//!
//! Each method here both logs an event and counts it, with fixed label names
//! (`source`, `channel`, `outcome`), so the log and `/metrics` never disagree.

use std::path::Path;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    channel: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    source: String,
    status: String,
}

/// Every metric alertrelay exports.
pub struct Metrics {
    registry: Registry,
    alerts_received: Family<SourceLabels, Counter>,
    webhooks_rejected: Family<RejectLabels, Counter>,
    notifications: Family<OutcomeLabels, Counter>,
    delivery_latency: Family<ChannelLabels, Histogram>,
    outbox: Family<OutboxLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("alertrelay");
        let alerts_received = Family::<SourceLabels, Counter>::default();
        registry.register(
            "alerts_received",
            "Alerts received and stored, by source",
            alerts_received.clone(),
        );
        let webhooks_rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "webhooks_rejected",
            "Webhook requests refused, by source and HTTP status",
            webhooks_rejected.clone(),
        );
        let notifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notifications",
            "Delivery attempts by channel and outcome (sent, retry, failed)",
            notifications.clone(),
        );
        let delivery_latency = Family::<ChannelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
        });
        registry.register(
            "delivery_latency_seconds",
            "From storing a notification to the channel accepting it",
            delivery_latency.clone(),
        );
        let outbox = Family::<OutboxLabels, Gauge>::default();
        registry.register(
            "outbox_notifications",
            "Notifications not yet sent, by channel and state (pending, failed)",
            outbox.clone(),
        );
        Self {
            registry,
            alerts_received,
            webhooks_rejected,
            notifications,
            delivery_latency,
            outbox,
        }
    }

    /// Alerts from one webhook were committed.
    pub fn alerts_stored(&self, source: &str, count: usize, notifications: usize) {
        // Debug, not info: a storm is thousands of webhooks a second.
        tracing::debug!(source, alerts = count, notifications, "webhook stored");
        self.alerts_received
            .get_or_create(&SourceLabels {
                source: source.into(),
            })
            .inc_by(count as u64);
    }

    /// A webhook was refused.
    pub fn webhook_rejected(&self, source: &str, status: u16, reason: &str) {
        tracing::warn!(source, status, reason, "webhook refused");
        self.webhooks_rejected
            .get_or_create(&RejectLabels {
                source: source.into(),
                status: status.to_string(),
            })
            .inc();
    }

    /// A channel accepted a notification.
    pub fn notification_sent(&self, channel: &str, id: i64, latency: Duration) {
        tracing::info!(
            channel,
            notification = id,
            latency_ms = latency.as_millis() as u64,
            "notification sent"
        );
        self.notifications
            .get_or_create(&OutcomeLabels {
                channel: channel.into(),
                outcome: "sent".into(),
            })
            .inc();
        self.delivery_latency
            .get_or_create(&ChannelLabels {
                channel: channel.into(),
            })
            .observe(latency.as_secs_f64());
    }

    /// An attempt failed and will be retried.
    pub fn notification_retry(
        &self,
        channel: &str,
        id: i64,
        attempt: u32,
        after: Duration,
        error: &str,
    ) {
        tracing::warn!(
            channel,
            notification = id,
            attempt,
            retry_in_ms = after.as_millis() as u64,
            error,
            "delivery failed; will retry"
        );
        self.notifications
            .get_or_create(&OutcomeLabels {
                channel: channel.into(),
                outcome: "retry".into(),
            })
            .inc();
    }

    /// A notification is kept as failed.
    pub fn notification_failed(&self, channel: &str, id: i64, attempt: u32, error: &str) {
        tracing::error!(
            channel,
            notification = id,
            attempt,
            error,
            "delivery failed; kept as failed"
        );
        self.notifications
            .get_or_create(&OutcomeLabels {
                channel: channel.into(),
                outcome: "failed".into(),
            })
            .inc();
    }

    /// Notifications folded into one backlog summary (each also counts as
    /// sent or failed with the summary's outcome).
    pub fn notifications_folded(&self, channel: &str, n: usize) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                channel: channel.into(),
                outcome: "folded".into(),
            })
            .inc_by(n as u64);
    }

    /// Sets the outbox gauges from a fresh count (at scrape time). Channels
    /// with nothing pending read 0 rather than vanishing.
    pub fn set_outbox(&self, channels: &[String], counts: &[crate::store::OutboxCount]) {
        for channel in channels {
            for state in ["pending", "failed"] {
                let n = counts
                    .iter()
                    .filter(|c| &c.channel == channel && c.state.as_str() == state)
                    .map(|c| c.count)
                    .sum::<i64>();
                self.outbox
                    .get_or_create(&OutboxLabels {
                        channel: channel.clone(),
                        state: state.into(),
                    })
                    .set(n);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }
}

/// The log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log file {path}: {source}")]
pub struct LogFileError {
    path: String,
    source: std::io::Error,
}

/// Sets up logging: to `log_file` when given, else stderr; level from
/// `RUST_LOG` (default info). Returns a guard that flushes a file log on drop.
pub fn init_logging(
    log_file: Option<&Path>,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, LogFileError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogFileError {
                    path: path.display().to_string(),
                    source,
                })?;
            let (writer, guard) = tracing_appender::non_blocking(file);
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(writer)
                .try_init();
            Ok(Some(guard))
        }
        None => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            Ok(None)
        }
    }
}

//! `delivery:`: how the outbox retries.

use std::time::Duration;

use super::{yaml, Walker};

/// How the outbox retries.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Attempts before a notification is kept as failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_initial: Duration,
    /// Ceiling of the retry delay.
    pub retry_max: Duration,
    /// Sends in flight per channel.
    pub concurrency: usize,
    /// How long one send may take before it counts as failed (and is retried).
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            concurrency: 8,
            timeout: Duration::from_secs(30),
        }
    }
}

/// `delivery:` with every key optional; a rejected value keeps the default.
pub fn delivery_from_yaml(w: &mut Walker, n: &yaml::Node) -> DeliveryConfig {
    let mut cfg = DeliveryConfig::default();
    if let Some(mut m) = w.map(n, "delivery") {
        if let Some(v) = m.take("max_attempts") {
            if let Some(x) = w.integer(v, "delivery.max_attempts", 1, 100) {
                cfg.max_attempts = x as u32;
            }
        }
        if let Some(v) = m.take("retry_initial") {
            if let Some(d) = w.duration(v, "delivery.retry_initial") {
                cfg.retry_initial = d;
            }
        }
        if let Some(v) = m.take("retry_max") {
            if let Some(d) = w.duration(v, "delivery.retry_max") {
                cfg.retry_max = d;
            }
        }
        if let Some(v) = m.take("concurrency") {
            if let Some(x) = w.integer(v, "delivery.concurrency", 1, 256) {
                cfg.concurrency = x as usize;
            }
        }
        if let Some(v) = m.take("timeout") {
            if let Some(d) = w.duration(v, "delivery.timeout") {
                cfg.timeout = d;
            }
        }
        m.finish(w);
    }
    cfg
}

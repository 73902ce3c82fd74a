//! Pacing: each channel keeps to its platform's published limits, so
//! alertrelay is never the one that gets blocked.
//!
//! A channel names its limits as [`PaceRule`]s (Telegram: one message a
//! second per chat and twenty a minute per group; WeCom: twenty a minute per
//! robot; Slack: one a second per webhook). Before each send the outbox
//! waits here for the destination's next slot (GCRA, from `governor`), while
//! other destinations go on. What piles up behind a slow destination is
//! folded into one summary by the outbox, not queued for an hour.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// One limit of a platform for each destination `applies_to` accepts:
/// `burst` messages at once, then one per `interval`. A limit of N a
/// minute is kept in every window of a minute by burst + 60 s / interval
/// <= N (twenty a minute: a burst of 5, then one every 4 s).
#[derive(Debug, Clone, Copy)]
pub struct PaceRule {
    /// Messages that may go at once.
    pub burst: u32,
    /// Then one per this interval.
    pub interval: Duration,
    /// Which destinations the rule binds.
    pub applies_to: fn(&str) -> bool,
}

impl PaceRule {
    /// A rule binding every destination.
    pub fn every(burst: u32, interval: Duration) -> Self {
        Self {
            burst,
            interval,
            applies_to: |_| true,
        }
    }
}

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The live limits of one channel, per destination.
pub struct Pacer {
    rules: Vec<(PaceRule, Limiter)>,
}

impl Pacer {
    /// A pacer enforcing `rules`.
    pub fn new(rules: &[PaceRule]) -> Self {
        let rules = rules
            .iter()
            .filter_map(|r| {
                let burst = NonZeroU32::new(r.burst)?;
                let quota = Quota::with_period(r.interval)?.allow_burst(burst);
                Some((*r, RateLimiter::keyed(quota)))
            })
            .collect();
        Self { rules }
    }

    /// Whether any limit applies to `destination`.
    pub fn paces(&self, destination: &str) -> bool {
        self.rules.iter().any(|(r, _)| (r.applies_to)(destination))
    }

    /// Waits until every rule allows one more message to `destination`, and
    /// takes that slot.
    pub async fn until_ready(&self, destination: &str) {
        let key = destination.to_string();
        for (rule, limiter) in &self.rules {
            if !(rule.applies_to)(destination) {
                continue;
            }
            loop {
                match limiter.check_key(&key) {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_per_second_per_destination_others_unaffected() {
        let pacer = Pacer::new(&[PaceRule::every(1, Duration::from_secs(1))]);
        let start = std::time::Instant::now();
        pacer.until_ready("a").await;
        pacer.until_ready("b").await;
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "first sends go at once"
        );
        pacer.until_ready("a").await;
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "a's second message waited for its slot: {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn rules_bind_only_their_destinations() {
        let groups = PaceRule {
            burst: 5,
            interval: Duration::from_secs(4),
            applies_to: |d| d.starts_with('-'),
        };
        let pacer = Pacer::new(&[groups]);
        assert!(pacer.paces("-100123"));
        assert!(!pacer.paces("42"));
        assert!(!Pacer::new(&[]).paces("42"));
    }
}

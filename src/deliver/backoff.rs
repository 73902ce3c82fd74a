//! When to try a failed notification again.
//!
//! The schedule lives in the database (`next_attempt_at`), not in a sleeping
//! task, so it survives restarts and is shared by replicas; that is why this
//! is a function of the attempt number rather than an in-process retry loop
//! such as `backon` provides.

use std::time::Duration;

/// Delay before attempt `attempt + 1` after `attempt` failures: exponential
/// from `initial`, capped at `max`, with jitter in [d/2, d] so that many
/// notifications failing together do not retry together.
pub fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    half + Duration::from_nanos(fastrand::u64(
        0..=half.as_nanos().min(u128::from(u64::MAX)) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let i = Duration::from_secs(2);
        let m = Duration::from_secs(60);
        for _ in 0..100 {
            let d1 = delay(1, i, m);
            assert!(
                d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
                "{d1:?}"
            );
            let d3 = delay(3, i, m);
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let d20 = delay(20, i, m);
            assert!(d20 >= Duration::from_secs(30) && d20 <= m, "{d20:?}");
        }
        // Huge attempt numbers do not overflow.
        assert!(delay(u32::MAX, i, m) <= m);
    }
}

//! When to try a failed attempt again, and after how long.
//!
//! Exponential backoff with "equal jitter": the n-th retry waits between half and all of
//! `base × 2^(n-1)`, capped at `max_delay`. A provider's `retry-after` is honoured as given
//! (up to [`MAX_RETRY_AFTER`]): it knows better than our guess.

use std::time::Duration;

use crate::config::RetryConfig;

/// Longest `retry-after` honoured: a provider asking for more is retried after this long,
/// so a spoke never waits an hour on one retry.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The delay before retry number `retry` (1 for the first retry).
pub fn delay(config: &RetryConfig, retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after.min(MAX_RETRY_AFTER);
    }
    let exp = config
        .base_delay
        .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
        .min(config.max_delay);
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let config = RetryConfig {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for _ in 0..100 {
            let d1 = delay(&config, 1, None);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&d1));
            let d2 = delay(&config, 2, None);
            assert!((Duration::from_millis(100)..=Duration::from_millis(200)).contains(&d2));
            let d5 = delay(&config, 5, None);
            assert!((Duration::from_millis(150)..=Duration::from_millis(300)).contains(&d5));
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let config = RetryConfig::default();
        assert_eq!(
            delay(&config, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            delay(&config, 1, Some(Duration::from_secs(7200))),
            MAX_RETRY_AFTER
        );
    }
}

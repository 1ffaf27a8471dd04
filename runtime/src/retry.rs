//! A retry policy for callers who want one (`Adapter::invoke_with_retry`, `airlock invoke
//! --retry N`). `RETRYABLE` and `LIMIT` are retried with exponential backoff and full
//! jitter, waiting at least the Retry-After a `LIMIT` carried; `VALIDATION`, `PERMANENT`,
//! `AUTH` and `INTERNAL` never are. Attempts and total time are bounded. A retried create
//! reuses its idempotency key, so the host's records and the client token keep it to one
//! resource.

use std::time::Duration;

use crate::contract::{AdapterError, ErrorCode};

/// How to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default: 4.
    pub max_attempts: u32,
    /// The first backoff ceiling; it doubles each attempt. Default: 200 ms.
    pub base_delay: Duration,
    /// The highest backoff ceiling. Default: 10 s.
    pub max_delay: Duration,
    /// No retry starts after this much time in all. Default: 60 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Whether an error of this code is worth another attempt.
    pub fn retries(code: ErrorCode) -> bool {
        matches!(code, ErrorCode::Retryable | ErrorCode::Limit)
    }

    /// How long to wait before attempt `attempt + 1` (1-based `attempt` just failed):
    /// a uniformly random time up to the backoff ceiling ("full jitter"), and never less
    /// than the Retry-After the error carried.
    pub(crate) fn delay(&self, attempt: u32, error: &AdapterError, random: u64) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let jittered = Duration::from_nanos(random % (ceiling.as_nanos() as u64).max(1));
        jittered.max(retry_after(error).unwrap_or_default())
    }
}

/// The Retry-After in an error's `raw` (seconds, as a number or a string).
fn retry_after(error: &AdapterError) -> Option<Duration> {
    let value = error.raw.as_ref()?.get("retryAfter")?;
    let secs = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// A small xorshift generator for jitter; seeded per retry loop.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Jitter(hasher.finish() | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ErrorOrigin;

    fn error(code: ErrorCode, raw: Option<serde_json::Value>) -> AdapterError {
        AdapterError {
            error_code: code,
            message: "x".into(),
            raw,
            origin: ErrorOrigin::Adapter,
        }
    }

    #[test]
    fn only_retryable_and_limit_are_retried() {
        let retried: Vec<ErrorCode> = ErrorCode::ALL
            .into_iter()
            .filter(|c| RetryPolicy::retries(*c))
            .collect();
        assert_eq!(retried, vec![ErrorCode::Retryable, ErrorCode::Limit]);
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let policy = RetryPolicy::default();
        let e = error(ErrorCode::Retryable, None);
        let mut jitter = Jitter::new();
        for attempt in 1..=8 {
            let ceiling =
                Duration::from_millis(200 * (1 << (attempt - 1))).min(Duration::from_secs(10));
            for _ in 0..100 {
                assert!(policy.delay(attempt, &e, jitter.next()) < ceiling);
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let policy = RetryPolicy::default();
        let limited = error(
            ErrorCode::Limit,
            Some(serde_json::json!({ "retryAfter": "2" })),
        );
        assert!(policy.delay(1, &limited, 0) >= Duration::from_secs(2));
        let numeric = error(
            ErrorCode::Limit,
            Some(serde_json::json!({ "retryAfter": 3 })),
        );
        assert_eq!(policy.delay(1, &numeric, 0), Duration::from_secs(3));
    }
}

//! Per-adapter protection of the provider: a bound on concurrent calls, and a circuit
//! breaker that opens after `limits.breaker_failures` consecutive `RETRYABLE` or `AUTH`
//! failures and refuses calls at once (as `RETRYABLE`, with a Retry-After) for
//! `limits.breaker_cooldown_ms`. After the cool-down one call goes through; its outcome
//! closes the circuit or opens it again. This keeps retry storms off a struggling provider.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::contract::{AdapterError, ErrorCode};

/// The breaker's state for one adapter.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold,
            cooldown,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` while the circuit is open.
    pub(crate) fn admit(&self, adapter: &str) -> Result<(), AdapterError> {
        let mut state = self.lock();
        match state.open_until {
            Some(until) if Instant::now() < until => {
                let wait = until - Instant::now();
                let mut error = AdapterError::host(
                    ErrorCode::Retryable,
                    format!(
                        "circuit open for adapter {adapter:?} after {} consecutive RETRYABLE or AUTH failures; calls resume in {} ms",
                        self.threshold,
                        wait.as_millis()
                    ),
                );
                error.raw = Some(serde_json::json!({ "retryAfter": wait.as_secs().max(1) }));
                Err(error)
            }
            Some(_) => {
                // Half-open: let this call through; one more failure reopens at once.
                state.open_until = None;
                state.consecutive = self.threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Record a finished call's outcome.
    pub(crate) fn record(&self, code: Option<ErrorCode>) {
        let mut state = self.lock();
        if matches!(code, Some(ErrorCode::Retryable | ErrorCode::Auth)) {
            state.consecutive += 1;
            if state.consecutive >= self.threshold {
                state.open_until = Some(Instant::now() + self.cooldown);
                state.consecutive = 0;
                tracing::warn!(target: "airlock::breaker", cooldown_ms = self.cooldown.as_millis() as u64, "circuit opened");
            }
        } else {
            state.consecutive = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            breaker.admit("a").unwrap();
            breaker.record(Some(ErrorCode::Retryable));
        }
        breaker.record(Some(ErrorCode::Validation)); // a proper answer resets the count
        for _ in 0..3 {
            breaker.admit("a").unwrap();
            breaker.record(Some(ErrorCode::Auth));
        }
        let refused = breaker.admit("a").unwrap_err();
        assert_eq!(refused.error_code, ErrorCode::Retryable);
        assert!(refused.message.starts_with(
            "circuit open for adapter \"a\" after 3 consecutive RETRYABLE or AUTH failures"
        ));
        std::thread::sleep(Duration::from_millis(60));
        breaker.admit("a").expect("half-open lets one call through");
        breaker.record(Some(ErrorCode::Retryable));
        assert!(
            breaker.admit("a").is_err(),
            "one failure when half-open reopens it"
        );
    }
}

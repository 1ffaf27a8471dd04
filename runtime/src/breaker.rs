//! Per-adapter protection of the provider: a bound on concurrent calls, and a circuit
//! breaker that opens after `limits.breaker_failures` consecutive `RETRYABLE` or `AUTH`
//! failures and refuses calls at once (as `RETRYABLE`, with a Retry-After) for
//! `limits.breaker_cooldown_ms`. After the cool-down exactly one call, the probe, goes
//! through; every other call is refused as while open until the probe's outcome is known:
//! a success closes the circuit, a failure opens it for another full cool-down. This keeps
//! retry storms off a struggling provider.
//!
//! A probe that never reports (its caller dropped the call's future) must not leave the
//! breaker half-open for ever: [`Admission`] gives the probe back when it is dropped
//! without an outcome, and the next call becomes the probe.
//!
//! Through the `metrics` facade (a no-op unless the embedder installed a recorder) the
//! breakers count their state changes, `airlock_breaker_transitions_total{to}` (`open`,
//! `half_open`, `closed`), and keep `airlock_breaker_open`, the number of adapters whose
//! circuit is not closed.

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
    circuit: Circuit,
    /// Consecutive counted failures while closed.
    consecutive: u32,
    /// Bumped every time the circuit opens. An outcome recorded by a call admitted in an
    /// earlier generation (it started before the circuit opened) says nothing about the
    /// provider now, and is ignored.
    generation: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    #[default]
    Closed,
    /// Refusing calls until then; the first call after it becomes the probe.
    Open { until: Instant },
    /// One probe is running; everyone else is refused until it reports.
    HalfOpen,
}

/// Whether a call was admitted as an ordinary call or as the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ordinary,
    Probe,
}

/// A call let through by [`CircuitBreaker::admit`]. Report its outcome with
/// [`Admission::record`]; dropping it unreported (the call was cancelled) records nothing,
/// and a dropped probe hands the probe to the next call.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    breaker: &'a CircuitBreaker,
    role: Role,
    generation: u64,
    reported: bool,
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

    /// Let a call through, or refuse it (`RETRYABLE` with `raw.retryAfter`) while the
    /// circuit is open or a half-open probe is running.
    pub(crate) fn admit(&self, adapter: &str) -> Result<Admission<'_>, AdapterError> {
        let mut state = self.lock();
        let now = Instant::now();
        let role = match state.circuit {
            Circuit::Closed => Role::Ordinary,
            Circuit::Open { until } if now < until => {
                let wait = until - now;
                return Err(refusal(
                    format!(
                        "circuit open for adapter {adapter:?} after {} consecutive RETRYABLE or AUTH failures; calls resume in {} ms",
                        self.threshold,
                        wait.as_millis()
                    ),
                    wait,
                ));
            }
            Circuit::Open { .. } => {
                state.circuit = Circuit::HalfOpen;
                metrics::counter!("airlock_breaker_transitions_total", "to" => "half_open")
                    .increment(1);
                Role::Probe
            }
            Circuit::HalfOpen => {
                return Err(refusal(
                    format!(
                        "circuit half-open for adapter {adapter:?}: one probe call is testing the provider, and other calls are refused until it ends"
                    ),
                    Duration::from_secs(1),
                ));
            }
        };
        Ok(Admission {
            breaker: self,
            role,
            generation: state.generation,
            reported: false,
        })
    }

    fn open(&self, state: &mut State) {
        if state.circuit == Circuit::Closed {
            metrics::gauge!("airlock_breaker_open").increment(1.0);
        }
        metrics::counter!("airlock_breaker_transitions_total", "to" => "open").increment(1);
        state.circuit = Circuit::Open {
            until: Instant::now() + self.cooldown,
        };
        state.consecutive = 0;
        state.generation += 1;
        tracing::warn!(target: "airlock::breaker", cooldown_ms = self.cooldown.as_millis() as u64, "circuit opened");
    }
}

fn refusal(message: String, wait: Duration) -> AdapterError {
    let mut error = AdapterError::host(ErrorCode::Retryable, message);
    error.raw = Some(serde_json::json!({ "retryAfter": wait.as_secs().max(1) }));
    error
}

impl Admission<'_> {
    /// Record the finished call's outcome: its error code, or `None` for success.
    pub(crate) fn record(mut self, code: Option<ErrorCode>) {
        self.reported = true;
        let breaker = self.breaker;
        let mut state = breaker.lock();
        if self.generation != state.generation {
            return; // admitted before the circuit last opened
        }
        let failed = matches!(code, Some(ErrorCode::Retryable | ErrorCode::Auth));
        match (self.role, failed) {
            (Role::Probe, true) => breaker.open(&mut state),
            (Role::Probe, false) => {
                if state.circuit != Circuit::Closed {
                    metrics::gauge!("airlock_breaker_open").decrement(1.0);
                    metrics::counter!("airlock_breaker_transitions_total", "to" => "closed")
                        .increment(1);
                }
                state.circuit = Circuit::Closed;
                state.consecutive = 0;
            }
            (Role::Ordinary, true) if state.circuit == Circuit::Closed => {
                state.consecutive += 1;
                if state.consecutive >= breaker.threshold {
                    breaker.open(&mut state);
                }
            }
            (Role::Ordinary, false) if state.circuit == Circuit::Closed => state.consecutive = 0,
            (Role::Ordinary, _) => {}
        }
    }
}

impl Drop for CircuitBreaker {
    fn drop(&mut self) {
        // An adapter dropped while its circuit is open or half-open no longer counts.
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.circuit != Circuit::Closed {
            metrics::gauge!("airlock_breaker_open").decrement(1.0);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.reported || self.role != Role::Probe {
            return;
        }
        // The probe was cancelled before it could report: it tells nothing about the
        // provider, so the next call probes instead of the breaker staying half-open.
        let mut state = self.breaker.lock();
        if state.generation == self.generation && state.circuit == Circuit::HalfOpen {
            state.circuit = Circuit::Open {
                until: Instant::now(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_millis(50);

    /// A breaker with threshold 3, opened by three AUTH failures and past its cool-down.
    fn past_cooldown() -> CircuitBreaker {
        let breaker = CircuitBreaker::new(3, COOLDOWN);
        for _ in 0..3 {
            breaker.admit("a").unwrap().record(Some(ErrorCode::Auth));
        }
        assert!(breaker.admit("a").is_err());
        std::thread::sleep(COOLDOWN + Duration::from_millis(10));
        breaker
    }

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, COOLDOWN);
        for _ in 0..2 {
            breaker
                .admit("a")
                .unwrap()
                .record(Some(ErrorCode::Retryable));
        }
        // A proper answer resets the count.
        breaker
            .admit("a")
            .unwrap()
            .record(Some(ErrorCode::Validation));
        for _ in 0..3 {
            breaker.admit("a").unwrap().record(Some(ErrorCode::Auth));
        }
        let refused = breaker.admit("a").unwrap_err();
        assert_eq!(refused.error_code, ErrorCode::Retryable);
        assert!(refused.message.starts_with(
            "circuit open for adapter \"a\" after 3 consecutive RETRYABLE or AUTH failures; calls resume in "
        ), "{}", refused.message);
        assert_eq!(refused.raw, Some(serde_json::json!({ "retryAfter": 1 })));
        std::thread::sleep(COOLDOWN + Duration::from_millis(10));
        breaker
            .admit("a")
            .expect("half-open lets one call through")
            .record(Some(ErrorCode::Retryable));
        assert!(
            breaker.admit("a").is_err(),
            "one failure when half-open reopens it"
        );
    }

    #[test]
    fn half_open_admits_exactly_one_probe_until_it_reports() {
        let breaker = past_cooldown();
        let probe = breaker.admit("a").expect("the probe");
        for _ in 0..5 {
            let refused = breaker.admit("a").unwrap_err();
            assert_eq!(
                (refused.error_code, refused.message.as_str()),
                (
                    ErrorCode::Retryable,
                    "circuit half-open for adapter \"a\": one probe call is testing the provider, and other calls are refused until it ends"
                )
            );
            assert_eq!(refused.raw, Some(serde_json::json!({ "retryAfter": 1 })));
        }
        probe.record(None);
        // A successful probe closes the circuit: everyone goes through again, and it
        // takes the full threshold of failures to open it again.
        for _ in 0..2 {
            breaker.admit("a").unwrap().record(Some(ErrorCode::Auth));
        }
        breaker.admit("a").expect("still closed after two failures");
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let breaker = past_cooldown();
        breaker.admit("a").unwrap().record(Some(ErrorCode::Auth));
        let refused = breaker.admit("a").unwrap_err();
        assert!(
            refused
                .message
                .starts_with("circuit open for adapter \"a\""),
            "{}",
            refused.message
        );
        std::thread::sleep(COOLDOWN + Duration::from_millis(10));
        breaker
            .admit("a")
            .expect("the next probe after the cool-down");
    }

    #[test]
    fn a_dropped_probe_hands_the_probe_to_the_next_call() {
        let breaker = past_cooldown();
        let probe = breaker.admit("a").unwrap();
        assert!(breaker.admit("a").is_err());
        drop(probe); // cancelled before it reported
        let next = breaker.admit("a").expect("the next call is the probe");
        assert!(breaker.admit("a").is_err(), "and it is the only one");
        next.record(None);
        breaker.admit("a").expect("closed");
    }

    #[test]
    fn outcomes_of_calls_admitted_before_the_circuit_opened_are_ignored() {
        let breaker = CircuitBreaker::new(2, COOLDOWN);
        let early = breaker.admit("a").unwrap(); // in flight while the circuit opens
        for _ in 0..2 {
            breaker
                .admit("a")
                .unwrap()
                .record(Some(ErrorCode::Retryable));
        }
        std::thread::sleep(COOLDOWN + Duration::from_millis(10));
        let probe = breaker.admit("a").unwrap();
        early.record(None); // a stale success does not close the circuit
        assert!(breaker.admit("a").is_err(), "still half-open");
        probe.record(Some(ErrorCode::Retryable));
        assert!(
            breaker.admit("a").is_err(),
            "the probe's failure reopened it"
        );
    }

    /// The breaker's metrics: transitions counted by the state entered, and the gauge of
    /// breakers not closed back at zero when the circuit closes or the breaker is dropped.
    #[test]
    fn transitions_and_the_open_gauge_are_recorded() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // A snapshot resets counters and gauges: each check point takes one and sees the
        // changes since the previous.
        let snapshot = || snapshotter.snapshot().into_vec();
        type Taken = Vec<(
            metrics_util::CompositeKey,
            Option<metrics::Unit>,
            Option<metrics::SharedString>,
            DebugValue,
        )>;
        fn value<'a>(taken: &'a Taken, name: &str, to: Option<&str>) -> Option<&'a DebugValue> {
            taken
                .iter()
                .find(|(key, ..)| {
                    key.key().name() == name
                        && to.is_none_or(|to| {
                            key.key()
                                .labels()
                                .any(|l| l.key() == "to" && l.value() == to)
                        })
                })
                .map(|(.., value)| value)
        }
        let gauge = |value: f64| Some(DebugValue::Gauge(value.into()));
        metrics::with_local_recorder(&recorder, || {
            let breaker = past_cooldown();
            breaker.admit("a").unwrap().record(None);
            let taken = snapshot();
            for to in ["open", "half_open", "closed"] {
                assert_eq!(
                    value(&taken, "airlock_breaker_transitions_total", Some(to)),
                    Some(&DebugValue::Counter(1)),
                    "{to}"
                );
            }
            assert_eq!(
                value(&taken, "airlock_breaker_open", None),
                gauge(0.0).as_ref()
            );
            let breaker = past_cooldown();
            assert_eq!(
                value(&snapshot(), "airlock_breaker_open", None),
                gauge(1.0).as_ref()
            );
            drop(breaker);
            assert_eq!(
                value(&snapshot(), "airlock_breaker_open", None),
                gauge(-1.0).as_ref()
            );
        });
    }
}

//! Per-tenant call quotas: how many calls of a tenant's adapters may run at once
//! (`[quotas] concurrent_calls`) and how many it may start per second
//! (`[quotas] calls_per_second`), from the tenant's ceiling (`airlock_core::ceiling::Quotas`).
//!
//! The contract handlers call [`Quotas::admit`] before each adapter call and hold the
//! [`CallPermit`] until the call has finished; dropping the permit frees the concurrency
//! slot. A refusal is [`ApiError::quota_exceeded`]: 429 with `Retry-After: 1`, a message
//! naming the quota, its value and how to raise it.
//!
//! The rate is a GCRA (a token bucket kept as one instant, the "theoretical arrival time"):
//! a tenant may start `calls_per_second` calls in a burst, then one every
//! `1 / calls_per_second` s. Both quotas are read from the ceiling on every call, so a new
//! ceiling (`airlock tenant set-ceiling`) applies from the tenant's next request: a lower
//! concurrency refuses new calls until enough running ones finish (running calls are never
//! stopped), and a changed rate keeps the number of calls already started in the current
//! window, counted against the new value.
//!
//! The counts live in this process: **each node enforces them on its own**, so with N nodes
//! behind a load balancer a tenant may run up to N × its quota. The state is one small entry
//! per tenant that has called since the process started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use airlock_core::ceiling;

use crate::http::ApiError;

/// The window of `calls_per_second`.
const SECOND: Duration = Duration::from_secs(1);

/// The per-tenant call counts of this node. Cheap to clone: clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    tenants: Arc<RwLock<HashMap<String, Arc<Mutex<Usage>>>>>,
}

/// One tenant's use of its quotas.
#[derive(Debug, Default)]
struct Usage {
    /// Calls admitted and not yet finished (their permits are alive).
    running: u32,
    /// The GCRA's theoretical arrival time: the instant by which every call started so far
    /// would have been paid for at the tenant's rate. `None` before the first call.
    paid_until: Option<Instant>,
    /// The `calls_per_second` `paid_until` was computed with, to rescale it when the
    /// operator changes the quota.
    rate: u32,
}

/// A call admitted by [`Quotas::admit`]: it holds one of the tenant's `concurrent_calls`
/// slots until it is dropped. Hold it for as long as the adapter call runs.
#[derive(Debug)]
#[must_use = "the concurrency slot is freed when the permit is dropped; hold it across the call"]
pub struct CallPermit {
    usage: Arc<Mutex<Usage>>,
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let mut usage = lock(&self.usage);
        usage.running = usage.running.saturating_sub(1);
        drop(usage);
        crate::metrics::call_finished();
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// `concurrent_calls` calls are running.
    Concurrency { limit: u32 },
    /// `calls_per_second` calls were started in the last second; the next may start after
    /// `retry_after`.
    Rate { limit: u32, retry_after: Duration },
}

impl Refusal {
    /// The quota's name in the ceiling's `[quotas]`, also the metric's label.
    fn quota(&self) -> &'static str {
        match self {
            Refusal::Concurrency { .. } => "concurrent_calls",
            Refusal::Rate { .. } => "calls_per_second",
        }
    }

    fn into_api_error(self, tenant: &str) -> ApiError {
        let raise = format!(
            "the operator raises it in the tenant's ceiling with `airlock tenant set-ceiling {tenant} FILE` (docs/ceiling.md)"
        );
        ApiError::quota_exceeded(match self {
            Refusal::Concurrency { limit } => format!(
                "quota exceeded: tenant {tenant} already has {limit} calls running, its [quotas] concurrent_calls = {limit} (per node); retry when one has finished, or {raise}"
            ),
            Refusal::Rate { limit, retry_after } => format!(
                "quota exceeded: tenant {tenant} started more than its [quotas] calls_per_second = {limit} calls in the last second (per node); retry in {} ms, or {raise}",
                retry_after.as_millis().max(1)
            ),
        })
    }
}

fn lock(usage: &Mutex<Usage>) -> std::sync::MutexGuard<'_, Usage> {
    // The counts stay consistent at every step, so a panic elsewhere leaves them usable.
    usage
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Quotas {
    /// No calls counted yet.
    pub fn new() -> Quotas {
        Quotas::default()
    }

    /// Let one call of `tenant` start under `limits` (the tenant's ceiling's `[quotas]`, see
    /// `Caller::ceiling`), or refuse it with 429 `quota_exceeded` when the tenant already
    /// has `concurrent_calls` calls running on this node, or has started `calls_per_second`
    /// in the last second. A refused call counts against neither quota.
    pub fn admit(&self, tenant: &str, limits: &ceiling::Quotas) -> Result<CallPermit, ApiError> {
        self.admit_at(tenant, limits, Instant::now())
            .map_err(|refusal| {
                crate::metrics::record_quota_refusal(tenant, refusal.quota());
                refusal.into_api_error(tenant)
            })
    }

    /// [`Quotas::admit`] at `now` (the tests move the clock by hand).
    fn admit_at(
        &self,
        tenant: &str,
        limits: &ceiling::Quotas,
        now: Instant,
    ) -> Result<CallPermit, Refusal> {
        let usage = self.usage(tenant);
        let mut state = lock(&usage);
        if state.running >= limits.concurrent_calls {
            return Err(Refusal::Concurrency {
                limit: limits.concurrent_calls,
            });
        }
        // The ceiling refuses 0; should one get here anyway, it admits nothing.
        let rate = limits.calls_per_second;
        if rate == 0 {
            return Err(Refusal::Rate {
                limit: 0,
                retry_after: SECOND,
            });
        }
        let interval = SECOND / rate;
        // Time paid for beyond now: (calls started in the window) × interval, at most a
        // second. Under a changed rate the same number of calls costs old/new as much.
        let mut owed = state
            .paid_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        if state.rate != rate && state.rate != 0 && !owed.is_zero() {
            owed = (owed * state.rate / rate).min(SECOND);
        }
        let paid_until = now + owed + interval;
        if owed + interval > SECOND {
            return Err(Refusal::Rate {
                limit: rate,
                retry_after: owed + interval - SECOND,
            });
        }
        state.paid_until = Some(paid_until);
        state.rate = rate;
        state.running += 1;
        drop(state);
        crate::metrics::call_started();
        Ok(CallPermit { usage })
    }

    /// The tenant's entry, made on its first call.
    fn usage(&self, tenant: &str) -> Arc<Mutex<Usage>> {
        let tenants = self.tenants.read().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = tenants.get(tenant) {
            return usage.clone();
        }
        drop(tenants);
        let mut tenants = self.tenants.write().unwrap_or_else(|p| p.into_inner());
        tenants.entry(tenant.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrent_calls: u32, calls_per_second: u32) -> ceiling::Quotas {
        ceiling::Quotas {
            concurrent_calls,
            calls_per_second,
            ..ceiling::Quotas::default()
        }
    }

    #[test]
    fn concurrency_is_refused_past_the_quota_and_freed_on_drop() {
        let quotas = Quotas::new();
        let limits = limits(3, 1000);
        let now = Instant::now();
        let mut held: Vec<_> = (0..3)
            .map(|_| quotas.admit_at("acme", &limits, now).unwrap())
            .collect();
        assert_eq!(
            quotas.admit_at("acme", &limits, now).unwrap_err(),
            Refusal::Concurrency { limit: 3 }
        );
        drop(held.pop());
        let again = quotas
            .admit_at("acme", &limits, now)
            .expect("a slot was freed");
        assert!(quotas.admit_at("acme", &limits, now).is_err());
        drop(again);
        let _last = quotas.admit_at("acme", &limits, now).unwrap();
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn the_rate_is_refused_past_the_quota_in_a_second_and_allowed_again_after() {
        let quotas = Quotas::new();
        let limits = limits(1000, 5);
        let start = Instant::now();
        for _ in 0..5 {
            drop(quotas.admit_at("acme", &limits, start).unwrap());
        }
        let Err(Refusal::Rate { limit, retry_after }) = quotas.admit_at("acme", &limits, start)
        else {
            panic!("the sixth call in the same instant is refused")
        };
        assert_eq!(limit, 5);
        assert!(
            retry_after > Duration::ZERO && retry_after <= SECOND,
            "{retry_after:?}"
        );
        // A refused call is not counted: after the retry time, one more goes.
        drop(
            quotas
                .admit_at("acme", &limits, start + retry_after)
                .unwrap(),
        );
        assert!(
            quotas
                .admit_at("acme", &limits, start + retry_after)
                .is_err()
        );
        // A second later the whole burst is available again.
        let later = start + retry_after + SECOND;
        for _ in 0..5 {
            drop(quotas.admit_at("acme", &limits, later).unwrap());
        }
        assert!(quotas.admit_at("acme", &limits, later).is_err());
    }

    #[test]
    fn tenants_are_counted_apart() {
        let quotas = Quotas::new();
        let limits = limits(1, 1);
        let now = Instant::now();
        let _acme = quotas.admit_at("acme", &limits, now).unwrap();
        let _other = quotas
            .admit_at("globex", &limits, now)
            .expect("another tenant's calls do not count");
        assert!(quotas.admit_at("acme", &limits, now).is_err());
        assert!(quotas.admit_at("globex", &limits, now).is_err());
    }

    #[test]
    fn a_changed_ceiling_applies_to_the_next_call() {
        let quotas = Quotas::new();
        let now = Instant::now();
        // Concurrency: lowered below what runs, new calls wait; raised, they go.
        let first = quotas.admit_at("acme", &limits(2, 1000), now).unwrap();
        let _second = quotas.admit_at("acme", &limits(2, 1000), now).unwrap();
        assert_eq!(
            quotas.admit_at("acme", &limits(1, 1000), now).unwrap_err(),
            Refusal::Concurrency { limit: 1 }
        );
        drop(first);
        assert!(quotas.admit_at("acme", &limits(1, 1000), now).is_err());
        let _third = quotas.admit_at("acme", &limits(3, 1000), now).unwrap();

        // Rate: the calls started in the window count against the new value.
        let quotas = Quotas::new();
        for _ in 0..2 {
            drop(quotas.admit_at("acme", &limits(100, 2), now).unwrap());
        }
        assert!(quotas.admit_at("acme", &limits(100, 2), now).is_err());
        for _ in 0..2 {
            drop(
                quotas
                    .admit_at("acme", &limits(100, 4), now)
                    .expect("raised to 4: two more"),
            );
        }
        assert!(quotas.admit_at("acme", &limits(100, 4), now).is_err());
        // Lowered to 1 with 4 started: refused, and at most for a second.
        let Err(Refusal::Rate { retry_after, .. }) = quotas.admit_at("acme", &limits(100, 1), now)
        else {
            panic!("lowered below what was started")
        };
        assert!(retry_after <= SECOND, "{retry_after:?}");
        drop(
            quotas
                .admit_at("acme", &limits(100, 1), now + SECOND)
                .unwrap(),
        );
    }

    #[test]
    fn the_refusal_names_the_quota_its_value_and_how_to_raise_it() {
        let quotas = Quotas::new();
        let limits = limits(1, 100);
        let _running = quotas.admit("acme", &limits).unwrap();
        let error = quotas.admit("acme", &limits).unwrap_err();
        assert_eq!((error.status.as_u16(), error.code), (429, "quota_exceeded"));
        assert!(
            error.message.starts_with(
                "quota exceeded: tenant acme already has 1 calls running, its [quotas] concurrent_calls = 1 (per node)"
            ) && error
                .message
                .contains("`airlock tenant set-ceiling acme FILE`"),
            "{}",
            error.message
        );

        let quotas = Quotas::new();
        let limits = self::limits(10, 1);
        drop(quotas.admit("acme", &limits).unwrap());
        let error = quotas.admit("acme", &limits).unwrap_err();
        assert!(
            error.message.starts_with(
                "quota exceeded: tenant acme started more than its [quotas] calls_per_second = 1 calls in the last second (per node); retry in "
            ) && error.message.contains("airlock tenant set-ceiling acme FILE"),
            "{}",
            error.message
        );
    }

    /// With the real clock: many threads admitting at once never exceed the concurrency
    /// quota, and every permit comes back.
    #[test]
    fn concurrent_admissions_never_exceed_the_quota() {
        let quotas = Quotas::new();
        let limits = limits(4, u32::MAX);
        let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let running = Arc::new(std::sync::atomic::AtomicU32::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        if let Ok(permit) = quotas.admit("acme", &limits) {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = running.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(now, SeqCst);
                            std::thread::yield_now();
                            running.fetch_sub(1, SeqCst);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 4);
        assert_eq!(lock(&quotas.usage("acme")).running, 0);
    }
}

//! One call, in one direction, as five stages that each hand on to the next:
//!
//! 1. [`admit`]: the caller's input checked, the circuit breaker, the adapter's
//!    concurrency limit;
//! 2. [`dedupe`]: claims and records of keyed creates, destroy records;
//! 3. [`sandbox`]: a pool slot, a fresh store with its limits, the instance, the call;
//! 4. [`check`]: the contract, the leak guard, the provider failure's code, the receipt;
//! 5. [`record`]: what the outcome leaves in storage.
//!
//! A stage may end the call early with an invocation of its own (a refusal, a replayed
//! record); [`receipt`] builds those. Whatever the guest does, [`run`] returns an
//! [`Invocation`]; it never panics on guest behaviour and never leaves an instance behind.

mod admit;
mod check;
mod dedupe;
mod receipt;
mod record;
mod sandbox;

use std::time::Instant;

use serde_json::Value;

use crate::adapter::{AdapterInner, CallOptions};
use crate::operation::{Invocation, Operation};
use crate::storage::Scope;

/// Run `operation` for `scope` through the five stages.
pub(crate) async fn run(
    adapter: &AdapterInner,
    scope: &Scope,
    config: &Value,
    operation: Operation,
    options: CallOptions,
) -> Invocation {
    let started = Instant::now();
    let admitted = match admit::admit(adapter, config, &operation, started).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let invocation = match dedupe::dedupe(adapter, scope, config, &operation, started).await {
        dedupe::Dedupe::Answered(invocation) => invocation,
        dedupe::Dedupe::Run {
            claim,
            client_token,
        } => {
            let options = CallOptions {
                client_token,
                ..options
            };
            let work = async {
                match sandbox::run(adapter, scope, &admitted.config_text, &operation, options).await
                {
                    Ok(ran) => check::check(adapter, ran, &operation),
                    Err(refused) => refused,
                }
            };
            // A held claim's lease is renewed while the guest waits for an instance
            // and runs.
            let checked = match &claim {
                Some(held) => held.renewing(work).await,
                None => work.await,
            };
            record::record(adapter, scope, &operation, claim, checked).await
        }
    };
    admitted.finish(&invocation);
    invocation
}

/// A test hook: with `AIRLOCK_CRASH_POINT=<name>` in the environment, the process stops
/// dead at that point (until killed), so crash tests can SIGKILL it there. Compiled only
/// with the `crash-points` feature, which only the tests turn on: a shipped binary has no
/// way to be made to hang by its environment.
#[cfg(feature = "crash-points")]
fn crash_point(name: &str) {
    if std::env::var("AIRLOCK_CRASH_POINT").as_deref() == Ok(name) {
        eprintln!("airlock: reached crash point {name}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
fn crash_point(_name: &str) {}

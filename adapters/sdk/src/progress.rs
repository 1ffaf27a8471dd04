//! Live progress of the current call, for the caller's progress bar.

use crate::bindings::airlock::adapter::progress as wit;

/// Report `current` of `total` steps done. `current > total` is dropped by the host.
pub fn report(current: u64, total: u64, message: Option<&str>) {
    wit::report(current, total, message);
}

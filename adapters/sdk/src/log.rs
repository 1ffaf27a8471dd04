//! Structured logs, forwarded to the host's tracing and returned with the call's receipt.
//! Lines past the policy's length are cut; records past the per-call limit are dropped and
//! counted.

use crate::bindings::airlock::adapter::log as wit;

pub use wit::Level;

/// Log `message` at `level` with `fields` (key, value).
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit::log(level, message, &fields);
}

/// Log at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Log at `info`.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Log at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Log at `error`.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}

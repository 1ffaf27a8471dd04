//! The `log` capability: guest log records go to the host's `tracing` (target
//! `airlock::guest`, with the adapter's name) and back to the caller with the receipt.
//! Messages are cut at `limits.log_line_bytes`; past `limits.log_records` per call, records
//! are counted and dropped, so a log flood costs the host nothing.
//!
//! The leak guard runs here, as a record enters the host, before `tracing` or anything
//! else sees it: a secret a guest logs at `warn` must not reach the operator's stderr.

use serde::Serialize;

use crate::bindings::airlock::adapter::log::{Host, Level};
use crate::capabilities::secrets::guard::LeakGuard;

/// Most fields kept per record, and longest field key and value.
const MAX_FIELDS: usize = 16;
const MAX_FIELD_BYTES: usize = 256;

/// One guest log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message, cut to the policy's line length.
    pub message: String,
    /// Key-value fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    /// True if the message or fields were cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One call's log records.
pub(crate) struct LogSink {
    adapter: String,
    max_records: u32,
    max_line_bytes: usize,
    guard: LeakGuard,
    pub(crate) records: Vec<LogRecord>,
    pub(crate) dropped: u32,
    /// Secrets the guard replaced in kept records.
    pub(crate) redactions: u32,
}

impl LogSink {
    pub(crate) fn new(
        adapter: String,
        max_records: u32,
        max_line_bytes: u32,
        guard: LeakGuard,
    ) -> Self {
        LogSink {
            adapter,
            max_records,
            max_line_bytes: max_line_bytes as usize,
            guard,
            records: Vec::new(),
            dropped: 0,
            redactions: 0,
        }
    }
}

/// `text` with every granted secret redacted, cut to at most `max` bytes: the text, true
/// if it was cut, and the replacements made. Only the first `max` bytes and one needle
/// more are searched (a secret that reaches into the kept part lies whole within them), so
/// a guest's giant line costs the host the bound, not the line; and redacting before the
/// cut means no cut can leave the first half of a secret in the kept text.
pub(crate) fn redact_and_truncate(
    guard: &LeakGuard,
    text: String,
    max: usize,
) -> (String, bool, u32) {
    if guard.is_empty() {
        let (text, cut) = truncate(text, max);
        return (text, cut, 0);
    }
    let window = max.saturating_add(guard.max_needle_len().saturating_sub(1));
    let (mut text, cut_window) = truncate(text, window);
    let count = guard.redact(&mut text);
    let (text, cut) = truncate(text, max);
    (text, cut || cut_window, count)
}

/// `text` cut to at most `max` bytes on a character boundary; true if it was cut.
/// The cut copy is a fresh allocation: keeping the guest's original buffer (which can be as
/// large as its memory cap) alive behind a short message would let a guest make the host hold
/// many times its own memory limit.
pub(crate) fn truncate(text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

impl Host for LogSink {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if self.records.len() as u32 >= self.max_records {
            self.dropped = self.dropped.saturating_add(1);
            return Ok(());
        }
        let guard = &self.guard;
        let (message, mut truncated, mut redactions) =
            redact_and_truncate(guard, message, self.max_line_bytes);
        truncated |= fields.len() > MAX_FIELDS;
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| {
                let (k, cut_k, in_k) = redact_and_truncate(guard, k, MAX_FIELD_BYTES);
                let (v, cut_v, in_v) = redact_and_truncate(guard, v, MAX_FIELD_BYTES);
                truncated |= cut_k || cut_v;
                redactions += in_k + in_v;
                (k, v)
            })
            .collect();
        self.redactions = self.redactions.saturating_add(redactions);
        let adapter = self.adapter.as_str();
        let level = match level {
            Level::Trace => {
                tracing::trace!(target: "airlock::guest", adapter, ?fields, "{message}");
                "trace"
            }
            Level::Debug => {
                tracing::debug!(target: "airlock::guest", adapter, ?fields, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(target: "airlock::guest", adapter, ?fields, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(target: "airlock::guest", adapter, ?fields, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(target: "airlock::guest", adapter, ?fields, "{message}");
                "error"
            }
        };
        self.records.push(LogRecord {
            level,
            message,
            fields,
            truncated,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_floods_dropped() {
        let mut sink = LogSink::new("a".into(), 2, 5, LeakGuard::default());
        sink.log(Level::Info, "héllo world".into(), vec![])
            .await
            .unwrap();
        sink.log(Level::Warn, "ok".into(), vec![("k".into(), "v".into())])
            .await
            .unwrap();
        for _ in 0..1000 {
            sink.log(Level::Error, "flood".into(), vec![])
                .await
                .unwrap();
        }
        assert_eq!(sink.records.len(), 2);
        assert_eq!(sink.records[0].message, "héll");
        assert_eq!(
            sink.records[0].message.capacity(),
            5,
            "the cut copy does not keep the original buffer"
        );
        assert!(sink.records[0].truncated);
        assert_eq!(
            sink.records[1].fields,
            vec![("k".to_owned(), "v".to_owned())]
        );
        assert_eq!(sink.dropped, 1000);
    }

    #[tokio::test]
    async fn secrets_are_redacted_before_anything_sees_the_record() {
        let secret = "hunter2-is-not-a-good-password";
        let guard = LeakGuard::new([("leaky", secret)]);
        let mut sink = LogSink::new("a".into(), 10, 35, guard);
        // The cut at 35 bytes falls inside the secret: redacting first leaves none of it.
        let long = format!("{}{secret}", "x".repeat(30));
        sink.log(Level::Warn, long, vec![]).await.unwrap();
        let fields = vec![(secret.to_owned(), format!("v={secret}"))];
        sink.log(Level::Error, format!("the secret is {secret}"), fields)
            .await
            .unwrap();
        assert_eq!(sink.records[0].message, format!("{}[REDA", "x".repeat(30)));
        assert!(sink.records[0].truncated);
        assert_eq!(sink.records[1].message, "the secret is [REDACTED]");
        assert_eq!(
            sink.records[1].fields,
            vec![("[REDACTED]".to_owned(), "v=[REDACTED]".to_owned())]
        );
        assert!(!sink.records[1].truncated);
        assert_eq!(sink.redactions, 4);
    }
}

//! The `progress` capability: live progress reports of the current call, kept for the
//! receipt and, if the caller asked, streamed to it as they happen. A report with
//! `current > total`, or past `limits.progress_reports`, is dropped and counted.
//!
//! The leak guard runs on a report's message here, as it enters the host, so that the
//! live stream (`Adapter::invoke_with`) never carries a secret the receipt would not.

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::bindings::airlock::adapter::progress::Host;
use crate::capabilities::log::redact_and_truncate;
use crate::capabilities::secrets::guard::LeakGuard;

/// One progress report from a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressReport {
    /// Steps done.
    pub current: u64,
    /// Steps in all.
    pub total: u64,
    /// What is happening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One call's progress reports.
pub(crate) struct ProgressSink {
    max_reports: u32,
    max_message_bytes: usize,
    live: Option<UnboundedSender<ProgressReport>>,
    guard: LeakGuard,
    pub(crate) reports: Vec<ProgressReport>,
    pub(crate) dropped: u32,
    /// Secrets the guard replaced in kept messages.
    pub(crate) redactions: u32,
}

impl ProgressSink {
    pub(crate) fn new(
        max_reports: u32,
        max_message_bytes: u32,
        live: Option<UnboundedSender<ProgressReport>>,
        guard: LeakGuard,
    ) -> Self {
        ProgressSink {
            max_reports,
            max_message_bytes: max_message_bytes as usize,
            live,
            guard,
            reports: Vec::new(),
            dropped: 0,
            redactions: 0,
        }
    }
}

impl Host for ProgressSink {
    async fn report(
        &mut self,
        current: u64,
        total: u64,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        if current > total || self.reports.len() as u32 >= self.max_reports {
            self.dropped = self.dropped.saturating_add(1);
            return Ok(());
        }
        let message = message.map(|m| {
            let (message, _, redactions) =
                redact_and_truncate(&self.guard, m, self.max_message_bytes);
            self.redactions = self.redactions.saturating_add(redactions);
            message
        });
        let report = ProgressReport {
            current,
            total,
            message,
        };
        if let Some(live) = &self.live {
            // A caller that stopped listening does not stop the call.
            let _ = live.send(report.clone());
        }
        self.reports.push(report);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_stream_and_bad_ones_are_dropped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sink = ProgressSink::new(2, 100, Some(tx), LeakGuard::default());
        sink.report(1, 3, Some("one".into())).await.unwrap();
        sink.report(7, 3, None).await.unwrap();
        sink.report(2, 3, None).await.unwrap();
        sink.report(3, 3, None).await.unwrap();
        assert_eq!(sink.reports.len(), 2);
        assert_eq!(sink.dropped, 2);
        assert_eq!(rx.recv().await.unwrap().message.as_deref(), Some("one"));
        assert_eq!(rx.recv().await.unwrap().current, 2);
    }

    #[tokio::test]
    async fn the_live_stream_gets_messages_already_redacted() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let guard = LeakGuard::new([("leaky", "hunter2-is-not-a-good-password")]);
        let mut sink = ProgressSink::new(4, 100, Some(tx), guard);
        let hex = "68756e746572322d69732d6e6f742d612d676f6f642d70617373776f7264";
        sink.report(1, 2, Some(format!("hex {hex}"))).await.unwrap();
        assert_eq!(
            rx.recv().await.unwrap().message.as_deref(),
            Some("hex [REDACTED]")
        );
        assert_eq!(sink.reports[0].message.as_deref(), Some("hex [REDACTED]"));
        assert_eq!(sink.redactions, 1);
    }
}

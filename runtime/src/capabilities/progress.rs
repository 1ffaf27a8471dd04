//! The `progress` capability: live progress reports of the current call, kept for the
//! receipt and, if the caller asked, streamed to it as they happen. A report with
//! `current > total`, or past `limits.progress_reports`, is dropped and counted.

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::bindings::airlock::adapter::progress::Host;
use crate::capabilities::log::truncate;

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
    pub(crate) reports: Vec<ProgressReport>,
    pub(crate) dropped: u32,
}

impl ProgressSink {
    pub(crate) fn new(
        max_reports: u32,
        max_message_bytes: u32,
        live: Option<UnboundedSender<ProgressReport>>,
    ) -> Self {
        ProgressSink {
            max_reports,
            max_message_bytes: max_message_bytes as usize,
            live,
            reports: Vec::new(),
            dropped: 0,
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
        let message = message.map(|m| truncate(m, self.max_message_bytes).0);
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
        let mut sink = ProgressSink::new(2, 100, Some(tx));
        sink.report(1, 3, Some("one".into())).await.unwrap();
        sink.report(7, 3, None).await.unwrap();
        sink.report(2, 3, None).await.unwrap();
        sink.report(3, 3, None).await.unwrap();
        assert_eq!(sink.reports.len(), 2);
        assert_eq!(sink.dropped, 2);
        assert_eq!(rx.recv().await.unwrap().message.as_deref(), Some("one"));
        assert_eq!(rx.recv().await.unwrap().current, 2);
    }
}

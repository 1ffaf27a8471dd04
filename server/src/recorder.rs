//! The node's call recorder: a call's record, the status it saw and its events are written
//! after the call is answered, not before.
//!
//! A handler hands its finished call to [`Recorder::record`] (a bounded queue: when it is
//! full, the handler waits, so a database that falls behind slows the callers rather than
//! growing the queue without end). One task drains everything queued, up to [`BATCH`]
//! calls, and writes it in one transaction ([`ServiceStore::calls_finished`]): one commit
//! for many calls, where each call used to make several.
//!
//! What this node answered, this node reads back: [`Recorder::flush`] waits until
//! everything queued before it is committed, and `GET /v1/calls/{id}` and an event
//! stream's first read flush first. Another node sees a call once its batch is committed,
//! milliseconds later.
//!
//! A write that fails is logged (with how many calls it lost), and the recorder goes on
//! with the next batch: the calls happened, and their answers were given.

use std::sync::Arc;
use std::time::Duration;

use airlock::storage::service::{FinishedCall, ServiceStore};
use tokio::sync::{mpsc, oneshot};

/// Most calls one transaction writes.
pub const BATCH: usize = 512;

/// Most calls queued before a handler waits to queue its own.
pub const QUEUE: usize = 4 * BATCH;

enum Message {
    Call(Box<FinishedCall>),
    /// Answered once everything queued before it is committed (or failed).
    Flush(oneshot::Sender<()>),
}

/// A handle on the node's recorder; clones share it. The task ends once every handle is
/// dropped and the queue is drained.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
}

impl Recorder {
    /// Start the recorder on the current tokio runtime, writing to `store`.
    pub fn spawn(store: Arc<dyn ServiceStore>) -> Recorder {
        let (queue, received) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, received));
        Recorder { queue }
    }

    /// Queue a finished call; waits while the queue is full.
    pub async fn record(&self, call: FinishedCall) {
        if self
            .queue
            .send(Message::Call(Box::new(call)))
            .await
            .is_err()
        {
            tracing::warn!(target: "airlock::serve", "the call recorder has stopped; a call's record is lost");
        }
    }

    /// Wait until every call queued before now is committed (or its write failed).
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = committed.await;
        }
    }

    /// [`flush`](Self::flush), waiting at most `limit`; whether it finished.
    pub async fn flush_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.flush()).await.is_ok()
    }
}

/// The recorder's task: write what is queued, a batch at a time, until every sender is gone.
async fn write_batches(store: Arc<dyn ServiceStore>, mut received: mpsc::Receiver<Message>) {
    let mut batch: Vec<FinishedCall> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = received.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Call(call) => batch.push(*call),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH {
                next = received.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(error) = store.calls_finished(&batch).await
        {
            tracing::warn!(target: "airlock::serve", calls = batch.len(), %error,
                "cannot store finished calls' records and events");
        }
        batch.clear();
        // Every flush taken was queued after the calls just written.
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use airlock::storage::service::CallRecord;

    use super::*;

    fn call(id: usize) -> FinishedCall {
        FinishedCall {
            record: CallRecord {
                call_id: format!("call-{id}"),
                tenant: "acme".into(),
                adapter: "dns".into(),
                operation: "status".into(),
                receipt: "{}".into(),
                logs: "[]".into(),
                at_ms: 0,
            },
            window: Duration::from_secs(60),
            status: None,
            events: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_flush_waits_for_every_call_queued_before_it() {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = airlock::RuntimeConfig::with_data_dir(data_dir.path());
        config.pool_size = 1;
        let runtime = airlock::Runtime::new(config).unwrap();
        let store = runtime.service_store();
        let recorder = Recorder::spawn(store.clone());
        for id in 0..(BATCH + 10) {
            recorder.record(call(id)).await;
        }
        recorder.flush().await;
        for id in [0, BATCH - 1, BATCH + 9] {
            let found = store.call("acme", &format!("call-{id}")).await.unwrap();
            assert!(found.is_some(), "call-{id} is committed after the flush");
        }
        // Nothing queued: a flush answers at once.
        assert!(recorder.flush_within(Duration::from_secs(5)).await);
    }
}

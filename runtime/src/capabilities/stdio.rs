//! Guest stdout and stderr, captured in memory up to `limits.stdio_bytes` each. Past the
//! bound, writes still succeed for the guest (so a chatty guest is not turned into a
//! failing one) and the excess is counted and dropped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// A bounded in-memory pipe; clones share the buffer.
#[derive(Clone)]
pub(crate) struct BoundedPipe {
    capacity: usize,
    inner: Arc<Mutex<Captured>>,
}

impl BoundedPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedPipe {
            capacity,
            inner: Arc::default(),
        }
    }

    /// What was kept, as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    /// Bytes kept and bytes dropped.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let captured = self.lock();
        (captured.bytes.len() as u64, captured.dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut captured = self.lock();
        let room = self.capacity.saturating_sub(captured.bytes.len());
        let kept = room.min(buf.len());
        captured.bytes.extend_from_slice(&buf[..kept]);
        captured.dropped += (buf.len() - kept) as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn keeps_up_to_capacity_and_counts_the_rest() {
        let pipe = BoundedPipe::new(4);
        let mut writer = pipe.clone();
        writer.write_all(b"hello world").await.unwrap();
        assert_eq!(pipe.text(), "hell");
        assert_eq!(pipe.counts(), (4, 7));
    }
}

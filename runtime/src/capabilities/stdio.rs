//! Guest stdout and stderr, captured in memory up to `limits.stdio_bytes` each. Past the
//! bound, writes still succeed for the guest (so a chatty guest is not turned into a
//! failing one): the first half of the bound keeps the start of the output, the second
//! half its end (where a panic message lands), and what fell between is counted and
//! marked in the text. The bytes stay raw while the guest writes (a secret may arrive in
//! pieces); the leak guard runs when the host reads the text ([`BoundedPipe::redacted_text`]),
//! which is the only way out of the pipe.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::capabilities::secrets::guard::LeakGuard;

#[derive(Default)]
struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
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

    fn head_capacity(&self) -> usize {
        self.capacity / 2
    }

    /// What was kept, as text, with every granted secret redacted, and how many were.
    pub(crate) fn redacted_text(&self, guard: &LeakGuard) -> (String, u32) {
        let mut text = self.text();
        let count = guard.redact(&mut text);
        (text, count)
    }

    /// What was kept, as text (lossy), with a marker where output was dropped.
    fn text(&self) -> String {
        let captured = self.lock();
        let mut text = String::from_utf8_lossy(&captured.head).into_owned();
        if captured.dropped > 0 {
            text.push_str(&format!(
                "\n[airlock: {} bytes dropped here (limits.stdio_bytes)]\n",
                captured.dropped
            ));
        }
        let (a, b) = captured.tail.as_slices();
        text.push_str(&String::from_utf8_lossy(&[a, b].concat()));
        text
    }

    /// Bytes kept and bytes dropped.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let captured = self.lock();
        (
            (captured.head.len() + captured.tail.len()) as u64,
            captured.dropped,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BoundedPipe {
    /// Keep what fits of `buf`, count the rest; a write always succeeds for the guest.
    fn append(&self, buf: &[u8]) {
        let head_capacity = self.head_capacity();
        let tail_capacity = self.capacity - head_capacity;
        let mut captured = self.lock();
        let room = head_capacity.saturating_sub(captured.head.len());
        let (to_head, rest) = buf.split_at(room.min(buf.len()));
        captured.head.extend_from_slice(to_head);
        // The tail keeps the last bytes written; older ones fall out and are counted.
        let rest = &rest[rest.len().saturating_sub(tail_capacity)..];
        let skipped = (buf.len() - to_head.len() - rest.len()) as u64;
        let overflow = (captured.tail.len() + rest.len()).saturating_sub(tail_capacity);
        captured.tail.drain(..overflow);
        captured.tail.extend(rest);
        captured.dropped += skipped + overflow as u64;
    }
}

impl AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
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

/// The most a guest may write in one `write` call; what the host copies per call.
const WRITE_BUDGET: usize = 64 * 1024;

/// The WASIp2 stream a guest writes to, straight into the pipe. wasmtime-wasi's default
/// (`AsyncWriteStream`) runs a worker task per stream and logs every buffer it writes at
/// `debug` (`wasmtime_wasi::p2::write_stream: worker writing: b"…"`): a host with that
/// filter on would print guest stdout raw, secrets included, before the leak guard ran.
impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

/// Always ready: a write never waits.
#[wasmtime_wasi::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl StdoutStream for BoundedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn keeps_the_start_and_the_end_and_counts_what_fell_between() {
        let pipe = BoundedPipe::new(4);
        let mut writer = pipe.clone();
        writer.write_all(b"he").await.unwrap();
        assert_eq!(pipe.text(), "he");
        assert_eq!(pipe.counts(), (2, 0));
        writer.write_all(b"llo wor").await.unwrap();
        writer.write_all(b"ld").await.unwrap();
        assert_eq!(
            pipe.text(),
            "he\n[airlock: 7 bytes dropped here (limits.stdio_bytes)]\nld"
        );
        assert_eq!(pipe.counts(), (4, 7));
        // One write larger than the whole bound.
        let pipe = BoundedPipe::new(6);
        let mut writer = pipe.clone();
        writer.write_all(b"abcdefghijklmnop").await.unwrap();
        assert_eq!(pipe.counts(), (6, 10));
        assert!(pipe.text().starts_with("abc\n[airlock: 10 bytes dropped"));
        assert!(pipe.text().ends_with("]\nnop"));
    }

    #[tokio::test]
    async fn secrets_written_in_pieces_are_redacted_when_read() {
        let pipe = BoundedPipe::new(1024);
        let mut writer = pipe.clone();
        writer.write_all(b"stdout: hunter2-is-").await.unwrap();
        writer.write_all(b"not-a-good-password\n").await.unwrap();
        let guard = LeakGuard::new([("leaky", "hunter2-is-not-a-good-password")]);
        assert_eq!(
            pipe.redacted_text(&guard),
            ("stdout: [REDACTED]\n".to_owned(), 1)
        );
    }
}

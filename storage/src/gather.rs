//! A connection's socket with each flush's bytes held while the scheduler's turns bring more, so that the HTTP/2
//! frames of concurrent requests and watches leave in one write instead of one write each.
//!
//! Used on both HTTP/2 connections of a request's path, as HTTP/2 → **this** → TLS (when used) → TCP: the API
//! server's with HTTP/2 clients (the aggregator in kube-apiserver, which carries every user's requests and watches
//! over a few connections) and the storage's with etcd ([`crate::etcd`]).
//!
//! hyper runs an HTTP/2 connection as a task of its own, woken each time a stream queues a frame. A request or an
//! answer is two or three frames (headers, the message, the end of the stream) queued from other tasks than the
//! connection's, and on a multi-threaded runtime the connection task flushed them as they came: one `writev` each,
//! about 1.8 per create to etcd at 32 concurrent creates, each one a loopback send with the peer woken to read it.
//! A watch event goes to every watcher's stream from the watcher's own task, so with hundreds of watchers on one
//! connection the connection task wrote a few frames at a time, many times per event.
//!
//! Here a flush does not send at once: it returns, wakes the connection task again (which puts it behind the tasks
//! already waiting to run) and holds the bytes. At the next flush, which the HTTP/2 connection makes at the end of
//! every poll, the bytes go out if nothing was added since, and are held for one more turn if other tasks queued
//! frames meanwhile, at most [`MAX_DEFERRED_TURNS`] turns in a row and [`HELD_BYTES`]. On an idle runtime a turn
//! is the time of one poll, so a lone request waits for nothing; on a busy one the bytes wait while the
//! connection keeps receiving frames, as a batch fills. A read that would wait sends held bytes first, so a
//! protocol that flushes and then waits for the answer (a TLS handshake) never waits on bytes that were not sent.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::rt::{Read, ReadBufCursor, Write};

/// The most bytes held before a write goes out without waiting for a flush.
const HELD_BYTES: usize = 64 * 1024;

/// Writes of this many bytes or more are not held (nor copied): what is held goes out first, then they do. A
/// large answer (a list in 16 KiB DATA frames) goes to TLS as it would without this layer.
const PASS_THROUGH_BYTES: usize = 8 * 1024;

/// The most flushes in a row that hold their bytes (each one turn of the scheduler).
const MAX_DEFERRED_TURNS: u8 = 16;

/// `T` with its writes held by flushes while each turn adds to them (or until a read would wait).
pub struct Gathered<T> {
    inner: T,
    held: Vec<u8>,
    /// Flushes in a row that returned without sending `held`; 0 once it was sent.
    deferred_turns: u8,
    /// `held.len()` at the last of those flushes: more now means the turn since added bytes.
    held_at_deferral: usize,
}

impl<T> Gathered<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, held: Vec::new(), deferred_turns: 0, held_at_deferral: 0 }
    }

    /// Whether a flush now holds the bytes for another turn: the first flush since they were held does, and
    /// later ones do while each turn adds bytes, up to [`MAX_DEFERRED_TURNS`].
    fn defers(&self) -> bool {
        self.deferred_turns == 0
            || (self.held.len() > self.held_at_deferral && self.deferred_turns < MAX_DEFERRED_TURNS)
    }
}

impl<T: Write + Unpin> Gathered<T> {
    /// Writes out everything held. On `Pending` the bytes written so far are dropped from `held`.
    fn send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut sent = 0;
        while sent < self.held.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.held[sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.held.drain(..sent);
                    return Poll::Pending;
                }
            }
        }
        self.held.clear();
        self.deferred_turns = 0;
        self.held_at_deferral = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Write + Unpin> Read for Gathered<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.deferred_turns > 0 => match this.send_held(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
            },
            read => read,
        }
    }
}

impl<T: Write + Unpin> Write for Gathered<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len = bufs.iter().map(|b| b.len()).sum();
        if len >= PASS_THROUGH_BYTES {
            ready!(this.send_held(cx))?;
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.held.len() + len > HELD_BYTES {
            ready!(this.send_held(cx))?;
        }
        for buf in bufs {
            this.held.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        // Small slices are copied into one buffer, large ones passed on as they are.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.held.is_empty() {
            if this.defers() {
                this.deferred_turns += 1;
                this.held_at_deferral = this.held.len();
                cx.waker().wake_by_ref();
                return Poll::Ready(Ok(()));
            }
            ready!(this.send_held(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

    use std::future::poll_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    /// A socket that counts its writes.
    struct Counted {
        io: TokioIo<DuplexStream>,
        writes: usize,
    }

    impl Read for Counted {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl Write for Counted {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.writes += 1;
            Pin::new(&mut self.io).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn pair() -> (Gathered<Counted>, DuplexStream) {
        let (near, far) = duplex(1 << 20);
        (Gathered::new(Counted { io: TokioIo::new(near), writes: 0 }), far)
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `f` once with a waker that counts its wakes.
    fn poll_once<R>(f: impl FnOnce(&mut Context<'_>) -> Poll<R>) -> (Poll<R>, usize) {
        let counter = Arc::new(CountingWaker::default());
        let waker = counter.clone().into();
        let result = f(&mut Context::from_waker(&waker));
        (result, counter.0.load(Ordering::SeqCst))
    }

    fn available(far: &mut DuplexStream) -> Vec<u8> {
        let mut buf = vec![0; 1 << 16];
        let mut read = tokio::io::ReadBuf::new(&mut buf);
        match poll_once(|cx| Pin::new(&mut *far).poll_read(cx, &mut read)).0 {
            Poll::Ready(Ok(())) => read.filled().to_vec(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn bytes_are_held_while_each_turn_adds_more() {
        let (mut io, mut far) = pair();
        let mut io = Pin::new(&mut io);
        assert!(matches!(poll_once(|cx| io.as_mut().poll_write(cx, b"headers,")).0, Poll::Ready(Ok(8))));
        let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!(wakes, 1, "the first flush wakes the task to flush again");
        assert_eq!(io.inner.writes, 0, "nothing written yet");
        assert!(available(&mut far).is_empty());

        // Frames queued during that turn: held for one more.
        let slices = [IoSlice::new(b"message,"), IoSlice::new(b"end")];
        assert!(matches!(poll_once(|cx| io.as_mut().poll_write_vectored(cx, &slices)).0, Poll::Ready(Ok(11))));
        let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!((wakes, io.inner.writes), (1, 0), "a turn that added bytes is followed by another");

        // A turn that added nothing: everything leaves in one write.
        let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!((wakes, io.inner.writes), (0, 1));
        assert_eq!(available(&mut far), b"headers,message,end");

        // Nothing held: a flush goes straight through, no wake.
        let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!((wakes, io.inner.writes), (0, 1));
    }

    #[tokio::test]
    async fn bytes_are_held_for_at_most_the_turn_limit() {
        let (mut io, mut far) = pair();
        let mut io = Pin::new(&mut io);
        for turn in 0..MAX_DEFERRED_TURNS {
            assert!(matches!(poll_once(|cx| io.as_mut().poll_write(cx, b"x")).0, Poll::Ready(Ok(1))));
            let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
            assert!(matches!(flushed, Poll::Ready(Ok(()))));
            assert_eq!((wakes, io.inner.writes), (1, 0), "turn {turn}: held");
        }
        // Every turn added a byte, but the limit is reached: the next flush sends them all.
        assert!(matches!(poll_once(|cx| io.as_mut().poll_write(cx, b"x")).0, Poll::Ready(Ok(1))));
        let (flushed, wakes) = poll_once(|cx| io.as_mut().poll_flush(cx));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!((wakes, io.inner.writes), (0, 1));
        assert_eq!(available(&mut far), vec![b'x'; usize::from(MAX_DEFERRED_TURNS) + 1]);
    }

    #[tokio::test]
    async fn a_read_that_would_wait_sends_what_a_flush_held() {
        let (mut io, mut far) = pair();
        poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"hello")).await.unwrap();
        poll_fn(|cx| Pin::new(&mut io).poll_flush(cx)).await.unwrap();
        assert!(available(&mut far).is_empty());

        // The handshake's shape: flush, then wait for the answer, which comes only once the peer has the bytes.
        let answer = tokio::spawn(async move {
            let mut got = [0; 5];
            far.read_exact(&mut got).await.unwrap();
            far.write_all(b"world").await.unwrap();
            (got, far)
        });
        let mut buf = [0u8; 5];
        let mut read = 0;
        while read < 5 {
            let mut rb = hyper::rt::ReadBuf::new(&mut buf[read..]);
            let reading = poll_fn(|cx| Pin::new(&mut io).poll_read(cx, rb.unfilled()));
            tokio::time::timeout(Duration::from_secs(10), reading).await.expect("the held bytes were sent").unwrap();
            read += rb.filled().len();
        }
        assert_eq!(&buf, b"world");
        let (got, _far) = answer.await.unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(io.inner.writes, 1);
    }

    #[tokio::test]
    async fn unflushed_bytes_wait_for_a_flush_and_shutdown_sends_them() {
        let (mut io, mut far) = pair();
        poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"not flushed")).await.unwrap();
        // A read that would wait sends nothing that no flush asked for.
        let mut buf = [0u8; 4];
        let mut rb = hyper::rt::ReadBuf::new(&mut buf);
        assert!(poll_once(|cx| Pin::new(&mut io).poll_read(cx, rb.unfilled())).0.is_pending());
        assert!(available(&mut far).is_empty());
        poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await.unwrap();
        let mut all = Vec::new();
        far.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"not flushed");
    }

    #[tokio::test]
    async fn held_bytes_are_bounded_and_large_writes_pass_through() {
        let (mut io, mut far) = pair();
        let small = vec![1u8; 6 * 1024];
        for _ in 0..10 {
            poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &small)).await.unwrap();
        }
        assert_eq!(io.inner.writes, 0, "60 KiB held");
        // The next one would go over the bound: what is held leaves before it is taken.
        poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &small)).await.unwrap();
        assert_eq!((io.inner.writes, io.held.len()), (1, small.len()));
        // A large write is not held: the small one ahead of it goes first, then it, as they came.
        let large = vec![2u8; 16 * 1024];
        let slices = [IoSlice::new(&large[..9]), IoSlice::new(&large[9..])];
        let n = poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &slices)).await.unwrap();
        assert!(n > 0 && io.held.is_empty(), "{n} bytes written, {} held", io.held.len());
        poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await.unwrap();
        let mut all = Vec::new();
        far.read_to_end(&mut all).await.unwrap();
        let expected: Vec<u8> = [vec![1u8; 66 * 1024], large[..n].to_vec()].concat();
        assert_eq!(all, expected);
    }
}

//! `proxy-send-timeout`: how long the endpoint may refuse to take request bytes. The upstream
//! connection's writes are timed; when one cannot make progress for the route's send timeout
//! the request fails with [`SendStalled`] (504), as nginx's `proxy_send_timeout` bounds the
//! time between two successive writes. The timer is armed only while a write waits, so a
//! connection that keeps up costs nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The endpoint took no request data for the whole send timeout.
#[derive(Debug, thiserror::Error)]
#[error("the endpoint took no request data for {after:?}")]
pub struct SendStalled {
    /// The send timeout that expired.
    pub after: Duration,
}

impl SendStalled {
    /// The `SendStalled` anywhere in an error's source chain (also inside an `io::Error`,
    /// whose `source()` skips the error it wraps).
    pub fn in_chain<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e SendStalled> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(stalled) = e.downcast_ref::<SendStalled>() {
                return Some(stalled);
            }
            if let Some(stalled) = e
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<SendStalled>())
            {
                return Some(stalled);
            }
            current = e.source();
        }
        None
    }
}

/// The send timeout of one pooled connection, set for each request it carries.
#[derive(Debug, Clone, Default)]
pub struct SendTimeout(Arc<AtomicU64>);

impl SendTimeout {
    /// Sets the timeout for the connection's next writes.
    pub fn set(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.0.store(millis, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            millis => Some(Duration::from_millis(millis)),
        }
    }
}

/// A stream whose writes fail with [`SendStalled`] when they wait longer than its
/// [`SendTimeout`].
pub struct TimedWrites<S> {
    inner: S,
    timeout: SendTimeout,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedWrites<S> {
    /// Wraps `inner`; its writes are timed by `timeout` (none while it is zero).
    pub fn new(inner: S, timeout: SendTimeout) -> Self {
        TimedWrites {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After a write returned `Pending`: arms the timer, or fails when it has run out.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(after) = self.timeout.get() else {
            return Poll::Pending;
        };
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    SendStalled { after },
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.waited(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.waited(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.waited(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

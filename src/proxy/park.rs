//! Parking idle HTTP/1 keep-alive connections.
//!
//! hyper gives every HTTP/1 connection an 8 KiB read and an 8 KiB write buffer and keeps them
//! for the connection's life, so thousands of idle keep-alive connections would hold tens of
//! MiB doing nothing. Once a connection has been idle for a while, the listener shuts hyper's
//! connection down without closing the socket ([`Resumable`] skips the shutdown), keeps only
//! the socket and waits for it to become readable ([`wait`]); then a fresh hyper connection
//! serves the next request on the same socket, starting with any bytes hyper had read but not
//! used.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use prometheus::{IntCounter, IntGauge};

use super::activity::ConnActivity;
use crate::metrics::{ConnectionMetrics, GaugeGuard};

/// A client stream that can be told apart from hyper's connection state: it first replays bytes
/// already read from it (the preface check's, or those hyper had read but not used when it was
/// parked), records whether writes are blocked, and ignores hyper's shutdown while the listener
/// is parking the connection.
pub struct Resumable<I> {
    replay: Bytes,
    inner: I,
    activity: Arc<ConnActivity>,
}

impl<I> Resumable<I> {
    /// Wraps a client stream from which `read` was already read.
    pub fn new(read: Bytes, inner: I, activity: Arc<ConnActivity>) -> Self {
        Resumable {
            replay: read,
            inner,
            activity,
        }
    }

    /// Puts back bytes the previous HTTP connection had read but not used.
    pub fn rewind(&mut self, unread: Bytes) {
        debug_assert!(self.replay.is_empty());
        self.replay = unread;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Resumable<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            if this.replay.is_empty() {
                // An emptied `Bytes` still holds its allocation.
                this.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Resumable<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.set_write_blocked(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.set_write_blocked(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.activity.set_write_blocked(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A client stream that can say when it has bytes to read without reading them.
pub trait ReadReady {
    /// Ready when a read would not wait (data, end of stream or an error).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

/// A parked TLS connection waits on its TCP socket: hyper reads until the TLS layer has no
/// plaintext left before it goes idle, so what wakes it is a new record.
impl<S: ReadReady> ReadReady for tokio_rustls::server::TlsStream<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }
}

/// Why a parked connection stopped waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The client sent something (or closed): serve it.
    Readable,
    /// The keep-alive timeout passed or the proxy is shutting down: close.
    Close,
}

/// Waits, holding nothing but the socket, until the client sends again, `keepalive` has
/// passed since the connection's last request, or `cancel` fires.
pub async fn wait<I: ReadReady>(
    io: &mut Resumable<I>,
    activity: &ConnActivity,
    keepalive: Duration,
    cancel: &CancellationToken,
) -> Wake {
    let idle = activity.idle_for().unwrap_or_default();
    let inner = &mut io.inner;
    tokio::select! {
        _ = poll_fn(move |cx| inner.poll_read_ready(cx)) => Wake::Readable,
        _ = tokio::time::sleep(keepalive.saturating_sub(idle)) => Wake::Close,
        _ = cancel.cancelled() => Wake::Close,
    }
}

/// How many connections are parked right now, and how many times one was (the metrics
/// `weir_client_connections_parked` and `weir_client_connections_parks_total`).
#[derive(Debug)]
pub struct ParkedCount {
    now: IntGauge,
    total: IntCounter,
}

impl ParkedCount {
    /// Counts into the connection metrics.
    pub fn new(metrics: &ConnectionMetrics) -> Self {
        ParkedCount {
            now: metrics.parked.clone(),
            total: metrics.parks.clone(),
        }
    }

    /// Counts one more parked connection until the guard is dropped.
    pub fn count(&self) -> GaugeGuard {
        self.total.inc();
        GaugeGuard::new(self.now.clone())
    }

    /// The number of parked connections.
    pub fn now(&self) -> usize {
        usize::try_from(self.now.get()).unwrap_or(0)
    }

    /// How many times a connection was parked since the start.
    pub fn total(&self) -> u64 {
        self.total.get()
    }
}

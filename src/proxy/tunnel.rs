//! The byte tunnel between a client and an endpoint after an upgrade (WebSocket and the like).
//!
//! Bytes are copied both ways as they arrive. A direction holds no buffer while it is idle: a
//! read lands in a buffer on the stack and is written on at once; only what the other side
//! cannot take right away is kept on the heap until it drains. So an open, quiet tunnel costs
//! its two sockets and little else.
//!
//! When one side stops sending (end of stream), the other side's write half is shut down, which
//! tells it so; the tunnel then gives the remaining direction [`HALF_CLOSE_LINGER`] to finish.
//! When no byte moves either way for the idle timeout, both sides are closed.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a tunnel stays open in one direction after the other direction has ended.
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Size of the stack buffer one read fills.
const READ_CHUNK: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides finished sending.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// One side finished sending and the other did not within [`HALF_CLOSE_LINGER`].
    HalfClosedTimeout,
}

/// The bytes each direction carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// From the client to the endpoint.
    pub upstream: u64,
    /// From the endpoint to the client.
    pub downstream: u64,
}

/// One direction of the tunnel: what was read and not yet written, and how far it got.
#[derive(Default)]
struct Direction {
    /// Bytes read but not yet accepted by the writer (empty, with no allocation, when idle).
    pending: Vec<u8>,
    written: usize,
    needs_flush: bool,
    read_done: bool,
    done: bool,
    bytes: u64,
}

impl Direction {
    /// Moves bytes from `reader` to `writer` until the reader has nothing more for now.
    /// Returns `Ready(Ok)` once this direction has ended and the writer is shut down, and
    /// sets `*moved` when any byte was read.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        moved: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.written < self.pending.len() {
                let n = ready!(
                    writer
                        .as_mut()
                        .poll_write(cx, &self.pending[self.written..])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            // Uninitialised: the reader writes what it returns, and nothing else is read.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            match reader.as_mut().poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.needs_flush {
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.needs_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
            let data = buf.filled();
            if data.is_empty() {
                self.read_done = true;
                continue;
            }
            *moved = true;
            self.bytes += data.len() as u64;
            self.needs_flush = true;
            // Written straight from the stack when the writer takes it all; kept otherwise.
            let taken = match writer.as_mut().poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => 0,
            };
            if taken < data.len() {
                self.pending = data[taken..].to_vec();
            }
        }
    }
}

/// A tunnel between `client` and `upstream`, as a future that resolves when it ends.
pub struct Tunnel<C, U> {
    client: C,
    upstream: U,
    to_upstream: Direction,
    to_client: Direction,
    idle_timeout: Duration,
    last_activity: Instant,
    half_closed_at: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<C, U> Tunnel<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// A tunnel closed after `idle_timeout` without a byte moving either way.
    pub fn new(client: C, upstream: U, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Tunnel {
            client,
            upstream,
            to_upstream: Direction::default(),
            to_client: Direction::default(),
            idle_timeout,
            last_activity: now,
            half_closed_at: None,
            timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    fn transferred(&self) -> Transferred {
        Transferred {
            upstream: self.to_upstream.bytes,
            downstream: self.to_client.bytes,
        }
    }

    /// When the tunnel gives up: idle timeout from the last byte, or the linger after a
    /// half-close, whichever comes first.
    fn deadline(&self) -> (Instant, TunnelEnd) {
        let idle = (
            self.last_activity + self.idle_timeout,
            TunnelEnd::IdleTimeout,
        );
        match self.half_closed_at {
            Some(at) if at + HALF_CLOSE_LINGER < idle.0 => {
                (at + HALF_CLOSE_LINGER, TunnelEnd::HalfClosedTimeout)
            }
            _ => idle,
        }
    }
}

impl<C, U> Future for Tunnel<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = (io::Result<TunnelEnd>, Transferred);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut moved = false;
        let up = this.to_upstream.poll_copy(
            cx,
            Pin::new(&mut this.client),
            Pin::new(&mut this.upstream),
            &mut moved,
        );
        let down = this.to_client.poll_copy(
            cx,
            Pin::new(&mut this.upstream),
            Pin::new(&mut this.client),
            &mut moved,
        );
        if let Poll::Ready(Err(error)) = up {
            return Poll::Ready((Err(error), this.transferred()));
        }
        if let Poll::Ready(Err(error)) = down {
            return Poll::Ready((Err(error), this.transferred()));
        }
        if up.is_ready() && down.is_ready() {
            return Poll::Ready((Ok(TunnelEnd::Closed), this.transferred()));
        }
        let now = Instant::now();
        if moved {
            this.last_activity = now;
        }
        if (up.is_ready() || down.is_ready()) && this.half_closed_at.is_none() {
            this.half_closed_at = Some(now);
        }
        let (deadline, end) = this.deadline();
        if deadline <= now {
            return Poll::Ready((Ok(end), this.transferred()));
        }
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // The deadline moved on only if bytes moved, which re-polls; so it is due.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn copies_both_ways_and_ends_when_both_sides_close() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let tunnel = tokio::spawn(Tunnel::new(client, upstream, Duration::from_secs(60)));

        // More than the duplex capacity, so writes are partial and bytes wait on the heap.
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client_peer.write_all(&sent).await.unwrap();
            client_peer.shutdown().await.unwrap();
            client_peer
        });
        let mut received = Vec::new();
        upstream_peer.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, big,
            "client bytes arrive whole and in order, then EOF"
        );

        upstream_peer.write_all(b"bye").await.unwrap();
        upstream_peer.shutdown().await.unwrap();
        let mut client_peer = writer.await.unwrap();
        let mut back = Vec::new();
        client_peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"bye");

        let (end, transferred) = tunnel.await.unwrap();
        assert_eq!(end.unwrap(), TunnelEnd::Closed);
        assert_eq!(
            transferred,
            Transferred {
                upstream: 100_000,
                downstream: 3
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closes_after_the_idle_timeout_but_not_while_bytes_move() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let started = Instant::now();
        let tunnel = tokio::spawn(Tunnel::new(client, upstream, Duration::from_secs(10)));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client_peer.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            upstream_peer.read_exact(&mut byte).await.unwrap();
        }
        let (end, _) = tunnel.await.unwrap();
        assert_eq!(end.unwrap(), TunnelEnd::IdleTimeout);
        let lasted = started.elapsed();
        assert!(
            lasted >= Duration::from_secs(40) && lasted < Duration::from_secs(41),
            "closed 10 s after the last byte at 30 s, not before: {lasted:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_closed_tunnel_lingers_then_closes() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, _upstream_peer) = duplex(64);
        let tunnel = tokio::spawn(Tunnel::new(client, upstream, Duration::from_secs(3600)));
        let started = Instant::now();
        client_peer.shutdown().await.unwrap();
        let (end, _) = tunnel.await.unwrap();
        assert_eq!(end.unwrap(), TunnelEnd::HalfClosedTimeout);
        assert!(started.elapsed() <= HALF_CLOSE_LINGER + Duration::from_millis(10));
    }
}

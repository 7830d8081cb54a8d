//! The response body weir sends to clients, and the per-connection activity it reports.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::idle::{BoxError, IdleBody, Side};
use super::upstream::Lease;

/// What a client connection is doing: how many responses are still being sent, and when the
/// last one finished. The listener closes connections that stay idle too long.
#[derive(Debug, Default)]
pub struct ConnActivity {
    in_flight: AtomicUsize,
    last_done_ms: AtomicU64,
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    process_start().elapsed().as_millis() as u64
}

impl ConnActivity {
    /// Activity of a connection that was just accepted (idle since now).
    pub fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(now_ms()),
        })
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// How long the connection has had nothing in flight, or `None` while something is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.last_done_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }
}

/// Marks one request in flight on its connection; dropping it marks the request done.
#[derive(Debug)]
pub struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done_ms.store(now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Kind {
    Full(Option<Bytes>),
    /// The endpoint's body, and its connection until the body has been read to the end.
    Upstream(IdleBody<Incoming>, Option<Lease>),
}

/// A response body: either bytes weir made itself, or an endpoint's body streamed through.
/// It holds the request's [`InFlight`] mark until the body has been sent or dropped.
pub struct ProxyBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
}

impl ProxyBody {
    /// A body of fixed bytes (synthetic responses).
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes.into())),
            _in_flight: None,
        }
    }

    /// An endpoint's response body, streamed as it arrives; cut off when the endpoint sends
    /// nothing for `read_timeout`. The connection goes back to the pool when the body ends.
    pub fn upstream(body: Incoming, read_timeout: Duration, lease: Lease) -> Self {
        let body = IdleBody::new(body, Side::Upstream, read_timeout);
        let lease = if body.is_end_stream() {
            // hyper never polls a body that is already at its end.
            lease.release();
            None
        } else {
            Some(lease)
        };
        ProxyBody {
            kind: Kind::Upstream(body, lease),
            _in_flight: None,
        }
    }

    /// Attaches the request's in-flight mark, released when the body is finished or dropped.
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Upstream(body, lease) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    Poll::Ready(Some(Err(_))) | Poll::Pending => false,
                };
                if let Some(lease) = lease.take_if(|_| ended) {
                    lease.release();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Upstream(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body, _) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guards_track_idleness() {
        let activity = ConnActivity::new();
        assert!(activity.idle_for().is_some());
        let a = activity.start();
        let b = activity.start();
        assert_eq!(activity.idle_for(), None);
        drop(a);
        assert_eq!(activity.idle_for(), None);
        drop(b);
        assert!(
            activity
                .idle_for()
                .is_some_and(|d| d < Duration::from_secs(1))
        );
    }

    #[test]
    fn full_body_reports_exact_size() {
        let body = ProxyBody::full("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert!(ProxyBody::full("").is_end_stream());
    }
}

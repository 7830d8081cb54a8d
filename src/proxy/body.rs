//! The response body weir sends to clients.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::activity::InFlight;
use super::exchange::Exchange;
use super::idle::{BoxError, IdleBody, Side};
use super::upstream::Lease;
use crate::model::ResponseRate;
use crate::state::ConnectionSlot;

enum Kind {
    Full(Option<Bytes>),
    /// The endpoint's body, and its connection until the body has been read to the end.
    Upstream(IdleBody<Incoming>, Option<Lease>),
}

/// A response body: either bytes weir made itself, or an endpoint's body streamed through.
/// It holds the request's [`InFlight`] mark until the body has been sent or dropped, and the
/// request's [`Exchange`] record, which reports the request when the body is dropped.
pub struct ProxyBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
    exchange: Option<Box<Exchange>>,
    /// `limit-connections` and `limit-rate`, on the routes that set them.
    shaping: Option<Box<Shaping>>,
}

/// What a response holds for its route's limits.
struct Shaping {
    /// Its request's place among the client's requests in progress, given back when the
    /// body is finished or dropped.
    _slot: Option<ConnectionSlot>,
    /// The pace of `limit-rate`.
    pace: Option<Pace>,
}

/// Sends a body no faster than a [`ResponseRate`] once its first bytes are out: after each
/// frame that puts it ahead of schedule, the next poll waits until it is back on schedule.
struct Pace {
    rate: ResponseRate,
    sent: u64,
    /// When the first paced byte went out.
    since: Option<Instant>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Pace {
    /// Counts `len` bytes just sent.
    fn sent(&mut self, len: usize) {
        self.sent = self.sent.saturating_add(len as u64);
        let Some(paced) = self.sent.checked_sub(self.rate.after).filter(|p| *p > 0) else {
            return;
        };
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let due = since + Duration::from_secs_f64(paced as f64 / self.rate.bytes_per_second as f64);
        if due > now {
            self.wait = Some(Box::pin(tokio::time::sleep_until(due.into())));
        }
    }
}

impl ProxyBody {
    /// A body of fixed bytes (synthetic responses).
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes.into())),
            _in_flight: None,
            exchange: None,
            shaping: None,
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
            exchange: None,
            shaping: None,
        }
    }

    /// Attaches the request's in-flight mark, released when the body is finished or dropped.
    #[inline]
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }

    /// Holds `slot` (`limit-connections`) until the body is finished or dropped, and sends an
    /// endpoint's body at `rate` (`limit-rate`).
    pub(super) fn shape(&mut self, slot: Option<ConnectionSlot>, rate: Option<ResponseRate>) {
        let pace = rate.map(|rate| Pace {
            rate,
            sent: 0,
            since: None,
            wait: None,
        });
        self.shaping = Some(Box::new(Shaping { _slot: slot, pace }));
    }

    /// Attaches the request's record: it counts the body's bytes and reports the request when
    /// the body is finished or dropped.
    pub(super) fn with_exchange(mut self, exchange: Box<Exchange>) -> Self {
        self.exchange = Some(exchange);
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
        let this = &mut *self;
        let mut pace = this.shaping.as_mut().and_then(|s| s.pace.as_mut());
        if let Some(wait) = pace.as_mut().and_then(|p| p.wait.as_mut()) {
            std::task::ready!(wait.as_mut().poll(cx));
            if let Some(pace) = pace.as_mut() {
                pace.wait = None;
            }
        }
        let polled = match &mut this.kind {
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
                    if let Some(exchange) = &mut this.exchange {
                        exchange.upstream_finished();
                    }
                }
                polled
            }
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            if let Some(exchange) = &mut this.exchange {
                exchange.sent(data.len());
            }
            if let Some(pace) = pace {
                pace.sent(data.len());
            }
        }
        polled
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
    fn full_body_reports_exact_size() {
        let body = ProxyBody::full("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert!(ProxyBody::full("").is_end_stream());
    }
}

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
    /// The same, on a route with `limit-connections` or `limit-rate` (boxed: every response
    /// would otherwise carry its room).
    Shaped(Box<Shaped>),
}

/// A response body: either bytes weir made itself, or an endpoint's body streamed through.
/// It holds the request's [`InFlight`] mark until the body has been sent or dropped, and the
/// request's [`Exchange`] record, which reports the request when the body is dropped.
pub struct ProxyBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
    exchange: Option<Box<Exchange>>,
}

/// An endpoint's body on a route with limits.
struct Shaped {
    body: IdleBody<Incoming>,
    lease: Option<Lease>,
    /// Its request's place among the client's requests in progress, given back when the
    /// body is finished or dropped.
    _slot: Option<ConnectionSlot>,
    /// The pace of `limit-rate`.
    pace: Option<Pace>,
    /// A gRPC call's deadline (`grpc-timeout`): when it passes, the call ends with
    /// `DEADLINE_EXCEEDED` in its trailers and the endpoint's stream is dropped.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The deadline passed: the body has ended.
    expired: bool,
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
        }
    }

    /// Attaches the request's in-flight mark, released when the body is finished or dropped.
    #[inline]
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self._in_flight = Some(in_flight);
        self
    }

    /// Holds `slot` (`limit-connections`) until the body is finished or dropped, sends an
    /// endpoint's body at `rate` (`limit-rate`), and ends a gRPC call at its `deadline`. A
    /// body weir made itself is left as it is.
    pub(super) fn shape(
        &mut self,
        slot: Option<ConnectionSlot>,
        rate: Option<ResponseRate>,
        deadline: Option<Instant>,
    ) {
        if let Kind::Upstream(..) = self.kind {
            let Kind::Upstream(body, lease) = std::mem::replace(&mut self.kind, Kind::Full(None))
            else {
                unreachable!("matched above")
            };
            let pace = rate.map(|rate| Pace {
                rate,
                sent: 0,
                since: None,
                wait: None,
            });
            self.kind = Kind::Shaped(Box::new(Shaped {
                body,
                lease,
                _slot: slot,
                pace,
                deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at.into()))),
                expired: false,
            }));
        }
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
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Upstream(body, lease) => poll_upstream(body, lease, &mut this.exchange, cx),
            Kind::Shaped(shaped) => {
                if shaped.expired {
                    return Poll::Ready(None);
                }
                if let Some(deadline) = &mut shaped.deadline
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    shaped.expired = true;
                    shaped.lease = None;
                    let trailers = super::grpc::trailers(
                        super::grpc::code::DEADLINE_EXCEEDED,
                        "the call's deadline (grpc-timeout) passed",
                    );
                    if let Some(exchange) = &mut this.exchange {
                        exchange.trailers(&trailers);
                    }
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                if let Some(pace) = &mut shaped.pace
                    && let Some(wait) = &mut pace.wait
                {
                    std::task::ready!(wait.as_mut().poll(cx));
                    pace.wait = None;
                }
                let polled =
                    poll_upstream(&mut shaped.body, &mut shaped.lease, &mut this.exchange, cx);
                if let (Poll::Ready(Some(Ok(frame))), Some(pace)) = (&polled, &mut shaped.pace)
                    && let Some(data) = frame.data_ref()
                {
                    pace.sent(data.len());
                }
                polled
            }
        };
        match (&polled, &mut this.exchange) {
            (Poll::Ready(Some(Ok(frame))), Some(exchange)) => {
                if let Some(data) = frame.data_ref() {
                    exchange.sent(data.len());
                } else if let Some(trailers) = frame.trailers_ref() {
                    exchange.trailers(trailers);
                }
            }
            (Poll::Ready(None), Some(exchange)) => exchange.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Upstream(body, _) => body.is_end_stream(),
            Kind::Shaped(shaped) => shaped.expired || shaped.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body, _) => body.size_hint(),
            Kind::Shaped(shaped) => shaped.body.size_hint(),
        }
    }
}

/// Polls an endpoint's body; at its end the connection goes back to the pool.
#[inline]
fn poll_upstream(
    body: &mut IdleBody<Incoming>,
    lease: &mut Option<Lease>,
    exchange: &mut Option<Box<Exchange>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let polled = Pin::new(&mut *body).poll_frame(cx);
    let ended = match &polled {
        Poll::Ready(None) => true,
        Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
        Poll::Ready(Some(Err(_))) | Poll::Pending => false,
    };
    if let Some(lease) = lease.take_if(|_| ended) {
        lease.release();
        if let Some(exchange) = exchange {
            exchange.upstream_finished();
        }
    }
    polled
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

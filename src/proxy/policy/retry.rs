//! `proxy-next-upstream`, `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`: when a
//! request that failed on one endpoint goes on to another (phase 14), with nginx's rules:
//!
//! - only for the conditions listed: `error` (connecting, sending the request or reading the
//!   response head failed), `timeout` (one of them timed out), `invalid_header` (the response
//!   head did not parse), `http_5xx`/`http_403`/`http_404`/`http_429` (the response head had
//!   that status); never once anything was sent to the client (weir decides on the response
//!   head, before relaying it);
//! - a failed connect sent nothing: every request goes on after one. Once a request was sent, a
//!   POST, LOCK or PATCH goes on only with `non_idempotent`, and an upgrade (WebSocket) never;
//! - weir streams request bodies and keeps a copy of at most [`REPLAY_LIMIT`] bytes while it
//!   does: a request whose body was larger, or not read to its end, is never sent again;
//! - tries count every attempt, the first one included (0: as many as there are endpoints);
//!   the next attempt goes to an endpoint not tried yet; none starts after
//!   `proxy-next-upstream-timeout` has passed since the first one (or a gRPC call's deadline);
//! - when no attempt is left, the client gets the last one's answer: its response for an
//!   `http_*` condition, else 502 (error) or 504 (timeout).
//!
//! A request to a backend with one endpoint, or on a route with retries off or one try, makes
//! no [`Retries`] at all; otherwise an idempotent request's head is copied before it is sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::super::Proxy;
use super::super::idle::{IdleTimeout, Side};
use super::super::upstream::{ClientBodyBroken, Lease, Outgoing, UpstreamError, head_of};
use super::body_limit::BodyTooLarge;
use crate::model::{Retry, RetryOn, Route};
use crate::state::{Balancer, Picked, next_untried};

/// The most of a request body weir keeps to send it again (64 KiB): a request whose body is
/// larger is never retried once it was sent.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// What an attempt gives: the endpoint's response head, or why there is none.
pub(in crate::proxy) type Sent = Result<(Response<Incoming>, Lease), UpstreamError>;

/// A copy of a request body, made while the body streams to the first endpoint: complete once
/// the body ended within [`REPLAY_LIMIT`] bytes and without trailers.
#[derive(Debug)]
pub struct BodyCopy(Mutex<Copied>);

#[derive(Debug)]
enum Copied {
    Filling(BytesMut),
    Complete(Bytes),
    /// Too large, with trailers, or failed: never sent again.
    Spoiled,
}

impl BodyCopy {
    fn new() -> Arc<BodyCopy> {
        Arc::new(BodyCopy(Mutex::new(Copied::Filling(BytesMut::new()))))
    }

    /// Notes what a poll of the client's body gave; `ended`: the body has no more frames.
    pub(in crate::proxy) fn note<E>(
        &self,
        polled: &Poll<Option<Result<Frame<Bytes>, E>>>,
        ended: bool,
    ) {
        let mut copied = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Copied::Filling(buf) = &mut *copied else {
            return;
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) if buf.len() + data.len() <= REPLAY_LIMIT => {
                    buf.extend_from_slice(data);
                }
                _ => {
                    *copied = Copied::Spoiled;
                    return;
                }
            },
            Poll::Ready(Some(Err(_))) => {
                *copied = Copied::Spoiled;
                return;
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        if ended {
            *copied = Copied::Complete(std::mem::take(buf).freeze());
        }
    }

    /// The whole body, when it was copied to its end.
    fn whole(&self) -> Option<Bytes> {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Copied::Complete(bytes) => Some(bytes.clone()),
            Copied::Filling(_) | Copied::Spoiled => None,
        }
    }
}

/// What is kept of a request's body for another attempt.
#[derive(Debug)]
enum Replay {
    /// Nothing can be sent again (not kept yet, or the request may not be resent).
    Nothing,
    /// The body being copied as it streams.
    Copying(Arc<BodyCopy>),
    /// The whole body (empty: the request has none).
    Whole(Bytes),
}

/// The attempts of one request: the endpoints it tried and what it needs to be sent again.
#[derive(Debug)]
pub(in crate::proxy) struct Retries<'a> {
    retry: &'a Retry,
    endpoints: &'a [SocketAddr],
    /// The backend's balancer, which picks the next endpoint (`None`: the next untried one in
    /// order).
    balancer: Option<&'a Balancer>,
    first: SocketAddr,
    /// The endpoints tried after the first one.
    more: Vec<SocketAddr>,
    started: Instant,
    /// A gRPC call's deadline: no attempt starts after it.
    deadline: Option<Instant>,
    /// The request may be sent again once it was sent: not an upgrade, and idempotent or
    /// `non_idempotent` is on.
    resend: bool,
    head: Option<Request<()>>,
    body: Replay,
}

/// A request going on to another endpoint.
pub(in crate::proxy) struct Retried {
    /// The endpoint of the next attempt.
    pub next: SocketAddr,
    /// The request, again.
    pub req: Request<Outgoing>,
    /// The condition: `proxy-next-upstream`'s token.
    pub condition: RetryOn,
}

/// nginx's non-idempotent methods: POST, LOCK, PATCH (every other method goes on after it
/// was sent).
fn is_non_idempotent(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PATCH || method.as_str() == "LOCK"
}

/// The condition of a failed attempt and whether the request was sent; `None` when no
/// condition covers it (the client's fault, or weir's settings).
fn condition(error: &UpstreamError) -> Option<(RetryOn, bool)> {
    Some(match error {
        UpstreamError::Connect { .. }
        | UpstreamError::TlsHandshake { .. }
        | UpstreamError::TlsVerify { .. } => (RetryOn::ERROR, false),
        UpstreamError::ConnectTimeout { .. } => (RetryOn::TIMEOUT, false),
        UpstreamError::SendTimeout { .. } | UpstreamError::ResponseTimeout { .. } => {
            (RetryOn::TIMEOUT, true)
        }
        UpstreamError::Request { source, .. }
            if IdleTimeout::in_chain(source, Side::Client)
                || BodyTooLarge::in_chain(source)
                || ClientBodyBroken::in_chain(source) =>
        {
            return None;
        }
        UpstreamError::Request { source, .. } if source.is_parse() => {
            (RetryOn::INVALID_HEADER, true)
        }
        UpstreamError::Request { .. } => (RetryOn::ERROR, true),
        UpstreamError::ClientBody { .. } | UpstreamError::TlsSettings { .. } => return None,
    })
}

impl<'a> Retries<'a> {
    /// The attempts of a request first sent to `first`; `None` when it can never go on (one
    /// endpoint, retries off, one try): such a request pays nothing more.
    pub fn start(
        retry: &'a Retry,
        (endpoints, balancer): (&'a [SocketAddr], Option<&'a Balancer>),
        first: SocketAddr,
        (method, upgrade): (&Method, bool),
        deadline: Option<Instant>,
    ) -> Option<Box<Retries<'a>>> {
        if !retry.possible(endpoints.len()) {
            return None;
        }
        let resend =
            !upgrade && (!is_non_idempotent(method) || retry.on.contains(RetryOn::NON_IDEMPOTENT));
        Some(Box::new(Retries {
            retry,
            endpoints,
            balancer,
            first,
            more: Vec::new(),
            started: Instant::now(),
            deadline,
            resend,
            head: None,
            body: Replay::Nothing,
        }))
    }

    /// Before the first send: keeps a copy of the head, and returns where the body is to be
    /// copied as it streams, when the request may be sent again. A body declared larger than
    /// [`REPLAY_LIMIT`] is not copied (the request will not be sent again).
    pub fn keep(&mut self, req: &Request<Outgoing>) -> Option<Arc<BodyCopy>> {
        if !self.resend || self.head.is_some() {
            return None;
        }
        let copy = match req.body() {
            Outgoing::Copy(bytes) => {
                self.body = Replay::Whole(bytes.clone());
                None
            }
            Outgoing::Client(body) if body.is_end_stream() => {
                self.body = Replay::Whole(Bytes::new());
                None
            }
            Outgoing::Client(body) if body.size_hint().lower() > REPLAY_LIMIT as u64 => {
                self.resend = false;
                return None;
            }
            Outgoing::Client(_) => {
                let copy = BodyCopy::new();
                self.body = Replay::Copying(copy.clone());
                Some(copy)
            }
        };
        self.head = Some(head_of(req));
        copy
    }

    /// After a failed connect (nothing was sent): the endpoint to try next, if any.
    pub fn after_connect(&mut self, error: &UpstreamError) -> Option<(SocketAddr, RetryOn)> {
        let (condition, sent) = condition(error)?;
        self.next(condition, sent).map(|next| (next, condition))
    }

    /// After an attempt that got a connection: the next attempt, if `sent` (the attempt's
    /// answer) is not the one to relay.
    pub fn after_send(&mut self, sent: &Sent) -> Option<Retried> {
        let (condition, was_sent) = match sent {
            Ok((response, _)) => (RetryOn::of_status(response.status())?, true),
            Err(error) => condition(error)?,
        };
        if !self.retry.on.contains(condition) {
            return None;
        }
        let body = self.whole_body().filter(|_| self.head.is_some())?;
        let next = self.next(condition, was_sent)?;
        let head = self.head.as_ref()?;
        Some(Retried {
            next,
            req: head_of(head).map(|()| Outgoing::Copy(body)),
            condition,
        })
    }

    /// The whole body, when it can be sent again.
    fn whole_body(&mut self) -> Option<Bytes> {
        let whole = match &self.body {
            Replay::Nothing => return None,
            Replay::Whole(bytes) => return Some(bytes.clone()),
            Replay::Copying(copy) => copy.whole()?,
        };
        self.body = Replay::Whole(whole.clone());
        Some(whole)
    }

    /// The next endpoint for a request that failed on `condition`, when the rules let it go
    /// on (see the module documentation).
    fn next(&mut self, condition: RetryOn, sent: bool) -> Option<SocketAddr> {
        let retry = self.retry;
        if !retry.on.contains(condition) || (sent && !self.resend) {
            return None;
        }
        let attempts = 1 + self.more.len();
        if retry.tries != 0 && attempts >= retry.tries as usize {
            return None;
        }
        let now = Instant::now();
        if retry.timeout.is_some_and(|t| now >= self.started + t)
            || self.deadline.is_some_and(|d| now >= d)
        {
            return None;
        }
        let mut tried = Vec::with_capacity(attempts);
        tried.push(self.first);
        tried.extend_from_slice(&self.more);
        let next = match self.balancer {
            Some(balancer) => {
                let last = Picked::endpoint(*tried.last()?);
                balancer.another(&tried, &last)?.addr
            }
            None => next_untried(self.endpoints, &tried)?,
        };
        self.more.push(next);
        Some(next)
    }
}

impl Proxy {
    /// Logs and counts a request of `route` going on from endpoint `from` to `next` for
    /// `condition`: the failed attempt got a response with a status, or an error (counted as
    /// well).
    pub(in crate::proxy) fn note_retry(
        &self,
        route: &Route,
        (from, next): (SocketAddr, SocketAddr),
        condition: RetryOn,
        failed: Result<StatusCode, &UpstreamError>,
    ) {
        let service = &route.backend.service;
        let reason = condition.token();
        match failed {
            Err(error) => {
                self.count_upstream_error(&route.backend, error);
                warn!(ingress = %route.ingress, %service, endpoint = %from, %next, reason, %error, "upstream attempt failed; trying another endpoint");
            }
            Ok(status) => {
                debug!(ingress = %route.ingress, %service, endpoint = %from, %next, reason, status = status.as_u16(), "upstream answered a status that is retried; trying another endpoint");
            }
        }
        self.metrics
            .connections
            .upstream_retries
            .with_label_values(&[
                &route.ingress.namespace,
                &route.ingress.name,
                &service.name,
                reason,
            ])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect()
    }

    type Polled = Poll<Option<Result<Frame<Bytes>, ()>>>;

    fn copy_of(frames: &[Polled], ended_last: bool) -> Option<Bytes> {
        let copy = BodyCopy::new();
        for (i, polled) in frames.iter().enumerate() {
            copy.note(polled, ended_last && i == frames.len() - 1);
        }
        copy.whole()
    }

    fn data(bytes: &'static [u8]) -> Polled {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(bytes)))))
    }

    #[test]
    fn a_body_copy_is_whole_only_when_it_ended_within_the_limit() {
        assert_eq!(
            copy_of(&[data(b"ab"), Poll::Pending, data(b"cd")], true).as_deref(),
            Some(&b"abcd"[..])
        );
        assert_eq!(
            copy_of(&[data(b"ab"), Poll::Ready(None)], true).as_deref(),
            Some(&b"ab"[..])
        );
        assert_eq!(copy_of(&[data(b"ab")], false), None, "not read to its end");
        assert_eq!(
            copy_of(&[data(b"ab"), Poll::Ready(Some(Err(())))], true),
            None
        );
        let trailers = Poll::Ready(Some(Ok(Frame::trailers(http::HeaderMap::new()))));
        assert_eq!(copy_of(&[data(b"ab"), trailers], true), None);
        static BIG: [u8; REPLAY_LIMIT] = [b'x'; REPLAY_LIMIT];
        assert_eq!(
            copy_of(&[data(&BIG)], true).map(|b| b.len()),
            Some(REPLAY_LIMIT)
        );
        assert_eq!(
            copy_of(&[data(&BIG), data(b"y")], true),
            None,
            "one byte over"
        );
    }

    fn retries<'a>(
        retry: &'a Retry,
        endpoints: &'a [SocketAddr],
        method: &Method,
    ) -> Option<Box<Retries<'a>>> {
        Retries::start(
            retry,
            (endpoints, None),
            endpoints[0],
            (method, false),
            None,
        )
    }

    fn refused(addr: SocketAddr) -> UpstreamError {
        UpstreamError::Connect {
            addr,
            source: std::io::ErrorKind::ConnectionRefused.into(),
        }
    }

    #[test]
    fn tries_count_every_attempt_and_each_goes_to_a_new_endpoint() {
        let e = addrs(5);
        let default = Retry::default();
        assert!(
            retries(&default, &e[..1], &Method::GET).is_none(),
            "one endpoint"
        );
        let mut r = retries(&default, &e, &Method::GET).unwrap();
        let next = |r: &mut Retries<'_>| r.after_connect(&refused(e[0])).map(|(a, _)| a);
        assert_eq!(next(&mut r), Some(e[1]));
        assert_eq!(next(&mut r), Some(e[2]));
        assert_eq!(next(&mut r), None, "3 tries");
        let unlimited = Retry {
            tries: 0,
            ..default
        };
        let mut r = retries(&unlimited, &e[..3], &Method::POST).unwrap();
        assert_eq!(next(&mut r), Some(e[1]), "a failed connect sent nothing");
        assert_eq!(next(&mut r), Some(e[2]));
        assert_eq!(next(&mut r), None, "bounded by the endpoints");
        let only_5xx = Retry {
            on: RetryOn::HTTP_502,
            ..default
        };
        let mut r = retries(&only_5xx, &e, &Method::GET).unwrap();
        assert_eq!(next(&mut r), None, "error is not listed");
        let timeout = Retry {
            timeout: Some(std::time::Duration::ZERO),
            ..default
        };
        let mut r = retries(&timeout, &e, &Method::GET).unwrap();
        assert_eq!(next(&mut r), None, "proxy-next-upstream-timeout passed");
    }

    #[test]
    fn conditions_of_errors() {
        let addr = addrs(1)[0];
        let after = std::time::Duration::from_secs(1);
        assert_eq!(condition(&refused(addr)), Some((RetryOn::ERROR, false)));
        assert_eq!(
            condition(&UpstreamError::ConnectTimeout { addr, after }),
            Some((RetryOn::TIMEOUT, false))
        );
        assert_eq!(
            condition(&UpstreamError::ResponseTimeout { addr, after }),
            Some((RetryOn::TIMEOUT, true))
        );
        assert_eq!(
            condition(&UpstreamError::TlsSettings {
                addr,
                why: "no".into()
            }),
            None
        );
        for (method, non_idempotent) in [
            ("GET", false),
            ("PUT", false),
            ("DELETE", false),
            ("PROPFIND", false),
            ("POST", true),
            ("PATCH", true),
            ("LOCK", true),
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(is_non_idempotent(&method), non_idempotent, "{method}");
        }
    }
}

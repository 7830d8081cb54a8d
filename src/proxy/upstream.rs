//! Connections to endpoints, pooled per [`Target`] (endpoint, protocol, TLS client): idle
//! HTTP/1.1 connections, and shared HTTP/2 connections that carry many requests at once.
//!
//! A request first gets a connection (a pooled one, else a new one — TCP, then TLS for
//! `HTTPS`/`GRPCS`, then the HTTP handshake — within the connect timeout) and only then is
//! sent, so a failed connect leaves the request untouched and the caller may try another
//! endpoint. The balancer picks the endpoint of every request before its connection, so
//! requests multiplexed on one client connection still spread over all endpoints. After a
//! response an HTTP/1.1 connection goes back to the pool as soon as its body has been read to
//! the end; an HTTP/2 one frees the request's stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::activity::{ConnActivity, InFlight, now_ms};
use super::idle::{BoxError, IdleBody, IdleTimeout, Side};
use super::policy::body_limit;
use super::policy::mirror::Tee;
use super::policy::retry::BodyCopy;
use super::policy::send_timeout::{SendStalled, SendTimeout, TimedWrites};
use crate::model::{Protocol, Timeouts};
use crate::tls::UpstreamTlsClient;

/// Why a request could not get a response from an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed (refused, unreachable, reset).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TLS handshake with the endpoint failed on its certificate: not signed by the CA,
    /// not for the name, expired (`proxy-ssl-verify: on`).
    #[error("TLS to {addr}: the endpoint's certificate does not verify: {source}")]
    TlsVerify {
        /// The endpoint.
        addr: SocketAddr,
        /// What rustls said.
        source: std::io::Error,
    },
    /// The TLS handshake with the endpoint failed otherwise (no common version, a plain-HTTP
    /// endpoint, a client certificate it refused).
    #[error("TLS handshake with {addr} failed: {source}")]
    TlsHandshake {
        /// The endpoint.
        addr: SocketAddr,
        /// What rustls said.
        source: std::io::Error,
    },
    /// The route's TLS settings towards its endpoints could not be set up (the reason).
    #[error("the TLS settings towards {addr} cannot be used: {why}")]
    TlsSettings {
        /// The endpoint.
        addr: SocketAddr,
        /// Why.
        why: Arc<str>,
    },
    /// The client's request body failed while it went to an HTTP/2 endpoint (too large, or
    /// the client paused too long): the client's fault, not the endpoint's.
    #[error("the request body to {addr} failed: {failure:?}")]
    ClientBody {
        /// The endpoint.
        addr: SocketAddr,
        /// Why.
        failure: BodyFailure,
    },
    /// The TCP connect did not finish in time.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The endpoint took no request data for the send timeout.
    #[error("{addr} took no request data for {after:?}")]
    SendTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The send timeout.
        after: Duration,
    },
    /// The endpoint did not send response headers in time.
    #[error("{addr} sent no response headers within {after:?}")]
    ResponseTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The response timeout.
        after: Duration,
    },
    /// The connection failed while sending the request or reading the response head.
    #[error("request to {addr} failed: {source}")]
    Request {
        /// The endpoint.
        addr: SocketAddr,
        /// hyper's error.
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// The `reason` label of `weir_upstream_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                "connect_refused"
            }
            UpstreamError::Connect { .. } => "connect_error",
            UpstreamError::ConnectTimeout { .. } => "connect_timeout",
            UpstreamError::TlsVerify { .. } => "tls_verify",
            UpstreamError::TlsHandshake { .. } => "tls_handshake",
            UpstreamError::TlsSettings { .. } => "tls_settings",
            UpstreamError::ClientBody { .. } => "client_body",
            UpstreamError::SendTimeout { .. } => "send_timeout",
            UpstreamError::ResponseTimeout { .. } => "response_timeout",
            UpstreamError::Request { .. } => "request_failed",
        }
    }

    /// True for the errors answered with 504.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. }
                | UpstreamError::SendTimeout { .. }
                | UpstreamError::ResponseTimeout { .. }
        )
    }
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// How long an idle pooled connection is kept.
    pub keepalive_timeout: Duration,
    /// Most idle connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// How long a client may pause while sending its request body.
    pub client_body_timeout: Duration,
}

/// What a request to an endpoint carries: the client's body, streamed, or the copy of it kept
/// for another attempt (see [`retry`](super::policy::retry)).
pub enum Outgoing {
    /// The client's body.
    Client(Incoming),
    /// A copy of the whole body, sent again.
    Copy(Bytes),
}

/// The body sent to an endpoint: the client's body, streamed, cut off when the client goes
/// quiet, with a signal when it ends (the response timeout starts then, so slow uploads are not
/// cut off); or a body from memory: the copy of one sent before, or none.
pub struct RequestBody {
    inner: Option<IdleBody<Incoming>>,
    /// A body sent from memory (a copy), when `inner` is `None`.
    copied: Option<Bytes>,
    /// Where the client's body is copied, for another attempt.
    copy: Option<Arc<BodyCopy>>,
    done: Option<oneshot::Sender<()>>,
    /// Keeps the client connection busy while the body is still being read from it.
    reading: Option<InFlight>,
    /// Where the bytes of the body are counted (for metrics and the access log).
    counted: Option<Arc<AtomicU64>>,
    /// The body's bytes against `proxy-body-size`.
    limit: Option<body_limit::Counter>,
    /// Where a failure of the client's body is noted, for HTTP/2 endpoints: hyper sends an
    /// HTTP/2 body from a task of its own and reports only a reset stream, not why.
    failure: Option<Arc<AtomicU8>>,
    /// A mirror copy (`mirror-target`) that takes the body's bytes as they pass.
    tee: Option<Box<Tee>>,
}

/// Why the client's request body failed (see [`RequestBody`]'s `failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// It grew past `proxy-body-size`.
    TooLarge = 1,
    /// The client paused longer than the client body timeout.
    ClientTimeout = 2,
    /// Reading it from the client failed: a malformed chunked encoding, or the client went
    /// away before its end ([`ClientBodyBroken`]).
    Broken = 3,
}

impl BodyFailure {
    fn noted(failure: &AtomicU8) -> Option<BodyFailure> {
        match failure.load(Ordering::Relaxed) {
            1 => Some(BodyFailure::TooLarge),
            2 => Some(BodyFailure::ClientTimeout),
            3 => Some(BodyFailure::Broken),
            _ => None,
        }
    }
}

/// Reading the request body from the client failed (a malformed chunked encoding: a bad or
/// overflowing chunk size, a chunk line without CR; or the connection ended before the body
/// did): the client's fault, answered 400, not counted against the endpoint.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body is malformed or was cut off: {0}")]
pub struct ClientBodyBroken(#[source] BoxError);

impl ClientBodyBroken {
    /// Whether `error` or one of its sources is a [`ClientBodyBroken`].
    pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> bool {
        super::in_chain::<ClientBodyBroken>(error).next().is_some()
    }
}

impl RequestBody {
    /// Wraps a client body, counting its bytes into `counted` and failing with
    /// [`BodyTooLarge`](body_limit::BodyTooLarge) past `limit`. The receiver fires once the body has been sent
    /// completely; it is `None` when there is no body at all.
    fn new(
        inner: Incoming,
        idle_timeout: Duration,
        client: &Arc<ConnActivity>,
        counted: Option<Arc<AtomicU64>>,
        limit: Option<u64>,
        failure: Option<Arc<AtomicU8>>,
        tee: Option<Box<Tee>>,
    ) -> (Self, Option<oneshot::Receiver<()>>) {
        let (done, sent, reading) = if inner.is_end_stream() {
            (None, None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx), Some(client.start()))
        };
        let inner = Some(IdleBody::new(inner, Side::Client, idle_timeout));
        let body = RequestBody {
            inner,
            copied: None,
            copy: None,
            done,
            reading,
            counted,
            limit: limit.map(body_limit::Counter::new),
            failure,
            tee,
        };
        (body, sent)
    }

    /// A body sent from memory: `bytes` (empty: no body).
    fn copied(bytes: Bytes) -> Self {
        RequestBody {
            inner: None,
            copied: (!bytes.is_empty()).then_some(bytes),
            copy: None,
            done: None,
            reading: None,
            counted: None,
            limit: None,
            failure: None,
            tee: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.copied.take().map(|bytes| Ok(Frame::data(bytes))));
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            if let Some(counted) = &this.counted {
                counted.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            if let Some(Err(too_large)) = this.limit.as_mut().map(|l| l.add(data.len())) {
                this.inner = None;
                if let Some(failure) = &this.failure {
                    failure.store(BodyFailure::TooLarge as u8, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Err(Box::new(too_large))));
            }
            if let Some(tee) = &mut this.tee {
                tee.data(data);
            }
        }
        let polled = match polled {
            Poll::Ready(Some(Err(error))) => {
                let (failure, error) = if IdleTimeout::in_chain(error.as_ref(), Side::Client) {
                    (BodyFailure::ClientTimeout, error)
                } else {
                    let broken: BoxError = Box::new(ClientBodyBroken(error));
                    (BodyFailure::Broken, broken)
                };
                if let Some(noted) = &this.failure {
                    noted.store(failure as u8, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(error)))
            }
            polled => polled,
        };
        let ended = matches!(polled, Poll::Ready(None)) || inner.is_end_stream();
        if let Some(copy) = &this.copy {
            copy.note(&polled, ended);
        }
        if let Some(tee) = this.tee.take_if(|_| ended) {
            tee.end();
        }
        if let Some(done) = this.done.take_if(|_| ended) {
            let _ = done.send(());
            this.reading = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.copied.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(
            || SizeHint::with_exact(self.copied.as_ref().map_or(0, |b| b.len() as u64)),
            |b| b.size_hint(),
        )
    }
}

/// Turns a request prepared for HTTP/1.1 into one for an HTTP/2 endpoint: the `Host` becomes
/// the `:authority` (else the endpoint's address), the scheme is the connection's, and a gRPC
/// request says that it accepts trailers (`TE` is hop-by-hop, so the client's was removed).
fn to_http2(req: &mut Request<RequestBody>, target: &Target) {
    if req.version() != http::Version::HTTP_2 {
        // Slices of the client connection's read buffer, which the pooled connection's HPACK
        // table would otherwise keep alive.
        super::headers::own_values(req.headers_mut());
    }
    let host = req.headers_mut().remove(http::header::HOST);
    let authority = host
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| {
            http::uri::Authority::try_from(target.addr.to_string())
                .expect("a socket address is an authority")
        });
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(if target.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = http::Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    *req.version_mut() = http::Version::HTTP_2;
    if target.protocol.is_grpc() {
        req.headers_mut()
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// A copy of a request's head (method, URI, version, headers), to send it again.
pub(super) fn head_of<B>(req: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// How many requests at most share one HTTP/2 connection to an endpoint before another one is
/// opened (an endpoint's own `SETTINGS_MAX_CONCURRENT_STREAMS`, when lower, holds requests back
/// inside the connection until a stream ends).
const MAX_STREAMS_PER_CONNECTION: usize = 100;

/// Where a request goes: one endpoint, and how it is spoken to. Connections are pooled by it:
/// a connection serves only requests for the same endpoint, protocol and TLS client.
#[derive(Clone)]
pub struct Target {
    /// The endpoint.
    pub addr: SocketAddr,
    /// The protocol (`backend-protocol`).
    pub protocol: Protocol,
    /// The TLS client, for the protocols over TLS.
    pub tls: Option<Arc<UpstreamTlsClient>>,
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
            && self.protocol == other.protocol
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Target {}

impl std::hash::Hash for Target {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.protocol.hash(state);
        self.tls.as_ref().map(Arc::as_ptr).hash(state);
    }
}

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    send_timeout: SendTimeout,
    since: Instant,
}

/// An HTTP/2 connection, shared by up to [`MAX_STREAMS_PER_CONNECTION`] requests.
struct Shared {
    sender: http2::SendRequest<RequestBody>,
    send_timeout: SendTimeout,
    streams: Arc<Streams>,
}

/// The requests on an HTTP/2 connection.
#[derive(Default)]
struct Streams {
    /// How many are in progress.
    open: AtomicUsize,
    /// When the last one ended ([`now_ms`]).
    last_ended_ms: AtomicU64,
}

impl Shared {
    fn new(sender: http2::SendRequest<RequestBody>, send_timeout: SendTimeout) -> Self {
        Shared {
            sender,
            send_timeout,
            streams: Arc::default(),
        }
    }

    fn open(&self) -> usize {
        self.streams.open.load(Ordering::Relaxed)
    }

    /// A place for one more request.
    fn stream(&self) -> Sender {
        self.streams.open.fetch_add(1, Ordering::Relaxed);
        Sender::Http2 {
            sender: self.sender.clone(),
            _stream: Stream(self.streams.clone()),
        }
    }

    /// Worth keeping: open, and in use or used within `keepalive`.
    fn keep(&self, keepalive: Duration) -> bool {
        let ended = self.streams.last_ended_ms.load(Ordering::Relaxed);
        !self.sender.is_closed()
            && (self.open() > 0 || now_ms().saturating_sub(ended) < keepalive.as_millis() as u64)
    }
}

/// A request's place on a shared HTTP/2 connection, given back when dropped.
struct Stream(Arc<Streams>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.last_ended_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// The sending half of a connection.
enum Sender {
    Http1(http1::SendRequest<RequestBody>),
    Http2 {
        sender: http2::SendRequest<RequestBody>,
        /// Held for as long as the request and its response last.
        _stream: Stream,
    },
}

type TrySend = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

impl Sender {
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::Http1(sender) => sender.ready().await,
            Sender::Http2 { sender, .. } => sender.ready().await,
        }
    }

    /// Sends `req`; the response future does not borrow the sender.
    fn try_send(
        &mut self,
        req: Request<RequestBody>,
    ) -> impl std::future::Future<Output = TrySend> + use<> {
        use futures_util::future::Either;
        match self {
            Sender::Http1(sender) => Either::Left(sender.try_send_request(req)),
            Sender::Http2 { sender, .. } => Either::Right(sender.try_send_request(req)),
        }
    }
}

/// A connection to one endpoint, ready for one request.
pub struct UpstreamConn {
    target: Target,
    sender: Sender,
    send_timeout: SendTimeout,
    reused: bool,
}

/// How one request is sent.
#[derive(Debug)]
pub struct SendOptions<'a> {
    /// The method is idempotent: a request without a body may be sent again when a pooled
    /// connection turns out dead.
    pub idempotent: bool,
    /// The route's send and read timeouts.
    pub timeouts: &'a Timeouts,
    /// The route's `proxy-body-size` (`None`: unlimited).
    pub max_body_size: Option<u64>,
    /// Where the request body's bytes are counted.
    pub body_bytes: Option<Arc<AtomicU64>>,
    /// When a gRPC call's `grpc-timeout` runs out: the wait for the response head ends then
    /// at the latest (and never after the read timeout).
    pub deadline: Option<Instant>,
    /// A mirror copy waiting for the request body (`mirror-target`).
    pub tee: Option<Box<Tee>>,
    /// Where the client's body is copied while it streams, for another attempt.
    pub body_copy: Option<Arc<BodyCopy>>,
}

/// The connection a response came on, lent to that response: [`Lease::release`] puts an
/// HTTP/1.1 connection back into the pool once the body has been read to the end; dropped
/// before that, the connection is closed (hyper cannot reuse it with a body half read). An
/// HTTP/2 connection stays shared; the lease holds the request's stream on it.
pub struct Lease {
    pool: Arc<Pool>,
    target: Target,
    sender: Sender,
    send_timeout: SendTimeout,
}

impl Lease {
    /// Returns the connection to the pool. Its next request waits until hyper has finished
    /// with this response, which has normally happened already.
    pub fn release(self) {
        if let Sender::Http1(sender) = self.sender {
            self.pool.put(self.target, sender, self.send_timeout);
        }
    }
}

/// After an attempt on `addr` failed with `error`: the request to send again on a new
/// connection, or why there is no response. The request goes again when hyper never sent it
/// (a pooled connection found closed; `reused`), or when it may be replayed (`replay`, the
/// copy of its head, with `again_body`, its body from memory) and the failure is not a response
/// that did not parse.
fn again_or_error(
    mut error: TrySendError<Request<RequestBody>>,
    reused: bool,
    replay: Option<Request<()>>,
    again_body: Option<&Bytes>,
    failure: Option<&AtomicU8>,
    addr: SocketAddr,
) -> Result<Request<RequestBody>, UpstreamError> {
    let again = match error.take_message() {
        Some(unsent) if reused => Some(unsent),
        _ if error.error().is_parse() => None,
        _ => replay.and_then(|head| {
            let body = again_body?.clone();
            Some(head.map(|()| RequestBody::copied(body)))
        }),
    };
    if let Some(again) = again {
        debug!(%addr, error = %error.error(), "pooled connection was closed; sending on a new one");
        return Ok(again);
    }
    if let Some(failure) = failure.and_then(BodyFailure::noted) {
        return Err(UpstreamError::ClientBody { addr, failure });
    }
    let source = error.into_error();
    if let Some(stalled) = SendStalled::in_chain(&source) {
        return Err(UpstreamError::SendTimeout {
            addr,
            after: stalled.after,
        });
    }
    Err(UpstreamError::Request { addr, source })
}

/// Spawns hyper's HTTP/2 background work (one task per request body) on the pool's tracked
/// tasks.
#[derive(Clone)]
struct Tracked(TaskTracker);

impl<F> hyper::rt::Executor<F> for Tracked
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Connections to endpoints, shared by all requests: idle HTTP/1.1 connections, and HTTP/2
/// connections in use.
pub struct Pool {
    config: UpstreamConfig,
    idle: Mutex<FastMap<Target, Vec<Idle>>>,
    shared: Mutex<FastMap<Target, Vec<Shared>>>,
    /// One HTTP/2 connect at a time per target: requests that find no connection with room
    /// wait for the one being opened instead of each opening their own.
    gates: Mutex<FastMap<Target, Arc<tokio::sync::Mutex<()>>>>,
    tasks: TaskTracker,
}

impl Pool {
    /// An empty pool. Connection tasks are spawned on `tasks`.
    pub fn new(config: UpstreamConfig, tasks: TaskTracker) -> Self {
        Pool {
            config,
            idle: Mutex::new(HashMap::default()),
            shared: Mutex::new(HashMap::default()),
            gates: Mutex::new(HashMap::default()),
            tasks,
        }
    }

    /// A pooled connection to `target` (an idle HTTP/1.1 one, or an HTTP/2 one with room for
    /// another stream), or a new one opened (and its TLS handshake done) within
    /// `connect_timeout`.
    pub async fn connection(
        &self,
        target: &Target,
        connect_timeout: Duration,
    ) -> Result<UpstreamConn, UpstreamError> {
        let pooled = |(sender, send_timeout)| UpstreamConn {
            target: target.clone(),
            sender,
            send_timeout,
            reused: true,
        };
        if !target.protocol.is_http2() {
            if let Some(idle) = self.checkout(target) {
                return Ok(pooled((Sender::Http1(idle.sender), idle.send_timeout)));
            }
            return self.connect(target, connect_timeout).await;
        }
        if let Some(shared) = self.checkout_shared(target) {
            return Ok(pooled(shared));
        }
        self.connect_shared(target, connect_timeout).await
    }

    /// A new HTTP/2 connection to `target`, or the one another request is opening (boxed,
    /// like [`Pool::connect`]).
    fn connect_shared<'a>(
        &'a self,
        target: &'a Target,
        connect_timeout: Duration,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<UpstreamConn, UpstreamError>> + Send + 'a>>
    {
        Box::pin(async move {
            let gate = {
                let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
                gates.entry(target.clone()).or_default().clone()
            };
            let started = Instant::now();
            let _turn = tokio::time::timeout(connect_timeout, gate.lock())
                .await
                .map_err(|_| UpstreamError::ConnectTimeout {
                    addr: target.addr,
                    after: connect_timeout,
                })?;
            if let Some((sender, send_timeout)) = self.checkout_shared(target) {
                return Ok(UpstreamConn {
                    target: target.clone(),
                    sender,
                    send_timeout,
                    reused: true,
                });
            }
            let left = connect_timeout.saturating_sub(started.elapsed());
            self.connect(target, left).await
        })
    }

    fn checkout(&self, target: &Target) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(target)?;
        while let Some(conn) = conns.pop() {
            // Not ready yet is fine: `send` waits until the previous response is finished.
            if conn.since.elapsed() < self.config.keepalive_timeout && !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// The least busy open HTTP/2 connection to `target` with room for another stream.
    fn checkout_shared(&self, target: &Target) -> Option<(Sender, SendTimeout)> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let conns = shared.get_mut(target)?;
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns
            .iter()
            .min_by_key(|c| c.open())
            .filter(|c| c.open() < MAX_STREAMS_PER_CONNECTION)?;
        Some((conn.stream(), conn.send_timeout.clone()))
    }

    /// Opens a connection to `target` within `timeout`. Boxed: opening one (TCP, TLS, the
    /// HTTP handshake) is a large future, and every request's future would otherwise carry
    /// its room and be copied with it, although most requests find a pooled connection.
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        timeout: Duration,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<UpstreamConn, UpstreamError>> + Send + 'a>>
    {
        Box::pin(async move {
            let addr = target.addr;
            let (sender, send_timeout) = tokio::time::timeout(timeout, self.open(target))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout {
                addr,
                after: timeout,
            })??;
            Ok(UpstreamConn {
                target: target.clone(),
                sender,
                send_timeout,
                reused: false,
            })
        })
    }

    /// Opens a connection to `target`: TCP, TLS for the protocols over TLS, then the HTTP
    /// handshake; an HTTP/2 connection is shared from now on.
    async fn open(&self, target: &Target) -> Result<(Sender, SendTimeout), UpstreamError> {
        let addr = target.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let send_timeout = SendTimeout::default();
        let stream = TimedWrites::new(stream, send_timeout.clone());
        let sender = match &target.tls {
            None => self.handshake(stream, target).await?,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream =
                    connector
                        .connect(tls.name.clone(), stream)
                        .await
                        .map_err(|source| {
                            if crate::tls::is_certificate_error(&source) {
                                UpstreamError::TlsVerify { addr, source }
                            } else {
                                UpstreamError::TlsHandshake { addr, source }
                            }
                        })?;
                self.handshake(stream, target).await?
            }
        };
        let sender = match sender {
            Sender::Http2 { sender, .. } => {
                let shared = Shared::new(sender, send_timeout.clone());
                let stream = shared.stream();
                let mut all = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                all.entry(target.clone()).or_default().push(shared);
                stream
            }
            http1 => http1,
        };
        Ok((sender, send_timeout))
    }

    /// The HTTP handshake of `target`'s protocol on `io`; the connection is driven by a
    /// tracked task.
    async fn handshake<I>(&self, io: I, target: &Target) -> Result<Sender, UpstreamError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let addr = target.addr;
        let failed = |source| UpstreamError::Request { addr, source };
        if target.protocol.is_http2() {
            let (sender, conn) = http2::Builder::new(Tracked(self.tasks.clone()))
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(10))
                .handshake(TokioIo::new(io))
                .await
                .map_err(failed)?;
            self.tasks.spawn(async move {
                if let Err(error) = conn.await {
                    debug!(%addr, %error, "upstream HTTP/2 connection ended with an error");
                }
            });
            // Its first stream is counted once the connection is shared.
            return Ok(Sender::Http2 {
                sender,
                _stream: Stream(Arc::default()),
            });
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(failed)?;
        self.tasks.spawn(async move {
            // An accepted upgrade ends this task and hands the socket to the tunnel.
            if let Err(error) = conn.with_upgrades().await {
                debug!(%addr, %error, "upstream connection ended with an error");
            }
        });
        Ok(Sender::Http1(sender))
    }

    /// Sends `req` on `conn` and waits for the response head, which must start within the
    /// read timeout after the request body was sent; each write to the endpoint must make
    /// progress within the send timeout. The connection comes back as the response's
    /// [`Lease`].
    ///
    /// A pooled connection can turn out to be dead: closed before the request was written (the
    /// request comes back unsent and goes out on a new connection), or closed by the endpoint
    /// just as the request was written — the keep-alive race. In that case a request whose
    /// method is idempotent and whose body is in memory (none, or a copy sent again) is sent
    /// once more on a new connection.
    ///
    /// `client` is the activity of the connection the request came on: it stays busy until
    /// the request body has been read.
    ///
    /// A plain function returning an `async move` block, as the proxy's `forward` is: an
    /// `async fn` would keep the connection, the request and the options twice in every
    /// request's future.
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` is what this avoids
    pub fn send<'a>(
        self: &'a Arc<Self>,
        mut conn: UpstreamConn,
        req: Request<Outgoing>,
        client: &'a Arc<ConnActivity>,
        options: SendOptions<'a>,
    ) -> impl Future<Output = Result<(Response<Incoming>, Lease), UpstreamError>> + Send + 'a {
        async move {
            let addr = conn.target.addr;
            let failure = conn.target.protocol.is_http2().then(Arc::default);
            let (parts, body) = req.into_parts();
            // What the keep-alive race may send again: a body from memory, or none.
            let (body, mut body_sent, again_body) = match body {
                Outgoing::Client(body) => {
                    let (mut body, sent) = RequestBody::new(
                        body,
                        self.config.client_body_timeout,
                        client,
                        options.body_bytes,
                        options.max_body_size,
                        failure.clone(),
                        options.tee,
                    );
                    body.copy = options.body_copy;
                    let again = sent.is_none().then(Bytes::new);
                    (body, sent, again)
                }
                Outgoing::Copy(bytes) => (RequestBody::copied(bytes.clone()), None, Some(bytes)),
            };
            let replayable = options.idempotent && again_body.is_some();
            let mut req = Request::from_parts(parts, body);
            if conn.target.protocol.is_http2() {
                to_http2(&mut req, &conn.target);
            }
            let after = options.deadline.map_or(options.timeouts.read, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(options.timeouts.read)
            });
            loop {
                if conn.reused && conn.sender.ready().await.is_err() {
                    debug!(%addr, "pooled connection was closed; connecting again");
                    conn = self.connect(&conn.target, options.timeouts.connect).await?;
                }
                conn.send_timeout.set(options.timeouts.send);
                // In a block of its own: what an attempt holds (the replay copy, hyper's future,
                // its error) is gone before the wait for a new connection below, so that this
                // future, which every request carries, keeps room for one of the two only.
                let again = {
                    let replay = (conn.reused && replayable).then(|| head_of(&req));
                    let response = conn.sender.try_send(req);
                    tokio::pin!(response);
                    // The response timeout runs from the end of the request body.
                    let result = loop {
                        let Some(sent) = body_sent.as_mut() else {
                            break tokio::time::timeout(after, &mut response)
                                .await
                                .map_err(|_| UpstreamError::ResponseTimeout { addr, after })?;
                        };
                        tokio::select! {
                            biased;
                            result = &mut response => break result,
                            _ = sent => body_sent = None,
                        }
                    };
                    match result {
                        Ok(response) => {
                            let lease = Lease {
                                pool: self.clone(),
                                target: conn.target,
                                sender: conn.sender,
                                send_timeout: conn.send_timeout,
                            };
                            return Ok((response, lease));
                        }
                        Err(error) => {
                            let again = again_body.as_ref();
                            again_or_error(
                                error,
                                conn.reused,
                                replay,
                                again,
                                failure.as_deref(),
                                addr,
                            )?
                        }
                    }
                };
                req = again;
                conn = self.connect(&conn.target, options.timeouts.connect).await?;
            }
        }
    }

    fn put(
        &self,
        target: Target,
        sender: http1::SendRequest<RequestBody>,
        send_timeout: SendTimeout,
    ) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(target).or_default();
        if conns.len() < self.config.max_idle_per_endpoint {
            conns.push(Idle {
                sender,
                send_timeout,
                since: Instant::now(),
            });
        }
    }

    /// Drops expired and closed idle connections periodically until `cancel` fires, then all.
    pub async fn reap_idle(&self, cancel: CancellationToken) {
        let period = (self.config.keepalive_timeout / 2).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|_, conns| {
                conns.retain(|c| {
                    c.since.elapsed() < self.config.keepalive_timeout && !c.sender.is_closed()
                });
                !conns.is_empty()
            });
            drop(idle);
            // An HTTP/2 connection without streams is closed once its endpoint closes it or
            // it has been unused for the keep-alive timeout (hyper closes it when the last
            // sender is dropped).
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.retain(|_, conns| {
                conns.retain(|c| c.keep(self.config.keepalive_timeout));
                !conns.is_empty()
            });
            drop(shared);
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

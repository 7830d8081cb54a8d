//! Connections to endpoints: a keep-alive pool of HTTP/1.1 connections per endpoint address.
//!
//! A request first gets a connection (an idle pooled one, else a new one within the connect
//! timeout) and only then is sent, so a failed connect leaves the request untouched and the
//! caller may try another endpoint. After a response the connection goes back to the pool as
//! soon as its body has been read to the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::activity::{ConnActivity, InFlight};
use super::idle::{BoxError, IdleBody, Side};
use super::policy::body_limit;
use super::policy::send_timeout::{SendStalled, SendTimeout, TimedWrites};
use crate::model::Timeouts;

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

/// The body sent to an endpoint: the client's body, streamed, cut off when the client goes
/// quiet, with a signal when it ends (the response timeout starts then, so slow uploads are not
/// cut off). A replayed request has an empty body.
pub struct RequestBody {
    inner: Option<IdleBody<Incoming>>,
    done: Option<oneshot::Sender<()>>,
    /// Keeps the client connection busy while the body is still being read from it.
    reading: Option<InFlight>,
    /// Where the bytes of the body are counted (for metrics and the access log).
    counted: Option<Arc<AtomicU64>>,
    /// The body's bytes against `proxy-body-size`.
    limit: Option<body_limit::Counter>,
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
            done,
            reading,
            counted,
            limit: limit.map(body_limit::Counter::new),
        };
        (body, sent)
    }

    fn empty() -> Self {
        RequestBody {
            inner: None,
            done: None,
            reading: None,
            counted: None,
            limit: None,
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
            return Poll::Ready(None);
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
                return Poll::Ready(Some(Err(Box::new(too_large))));
            }
        }
        let ended = matches!(polled, Poll::Ready(None)) || inner.is_end_stream();
        if let Some(done) = this.done.take_if(|_| ended) {
            let _ = done.send(());
            this.reading = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// A copy of a request's head (method, URI, version, headers), to send it again.
fn head_of(req: &Request<RequestBody>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

struct Idle {
    sender: SendRequest<RequestBody>,
    send_timeout: SendTimeout,
    since: Instant,
}

/// A connection to one endpoint, ready for one request.
pub struct UpstreamConn {
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    send_timeout: SendTimeout,
    reused: bool,
}

/// How one request is sent.
#[derive(Debug, Clone)]
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
}

/// The connection a response came on, lent to that response: [`Lease::release`] puts it back
/// into the pool once the body has been read to the end; dropped before that, the connection
/// is closed (hyper cannot reuse it with a body half read).
pub struct Lease {
    pool: Arc<Pool>,
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    send_timeout: SendTimeout,
}

impl Lease {
    /// Returns the connection to the pool. Its next request waits until hyper has finished
    /// with this response, which has normally happened already.
    pub fn release(self) {
        self.pool.put(self.addr, self.sender, self.send_timeout);
    }
}

/// Keep-alive connections to endpoints, shared by all requests.
pub struct Pool {
    config: UpstreamConfig,
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>>,
    tasks: TaskTracker,
}

impl Pool {
    /// An empty pool. Connection tasks are spawned on `tasks`.
    pub fn new(config: UpstreamConfig, tasks: TaskTracker) -> Self {
        Pool {
            config,
            idle: Mutex::new(HashMap::default()),
            tasks,
        }
    }

    /// An idle pooled connection to `addr`, or a new one opened within `connect_timeout`.
    pub async fn connection(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<UpstreamConn, UpstreamError> {
        if let Some(idle) = self.checkout(addr) {
            return Ok(UpstreamConn {
                addr,
                sender: idle.sender,
                send_timeout: idle.send_timeout,
                reused: true,
            });
        }
        self.connect(addr, connect_timeout).await
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(&addr)?;
        while let Some(conn) = conns.pop() {
            // Not ready yet is fine: `send` waits until the previous response is finished.
            if conn.since.elapsed() < self.config.keepalive_timeout && !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<UpstreamConn, UpstreamError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    addr,
                    after: timeout,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let send_timeout = SendTimeout::default();
        let stream = TimedWrites::new(stream, send_timeout.clone());
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        self.tasks.spawn(async move {
            // An accepted upgrade ends this task and hands the socket to the tunnel.
            if let Err(error) = conn.with_upgrades().await {
                debug!(%addr, %error, "upstream connection ended with an error");
            }
        });
        Ok(UpstreamConn {
            addr,
            sender,
            send_timeout,
            reused: false,
        })
    }

    /// Sends `req` on `conn` and waits for the response head, which must start within the
    /// read timeout after the request body was sent; each write to the endpoint must make
    /// progress within the send timeout. The connection comes back as the response's
    /// [`Lease`].
    ///
    /// A pooled connection can turn out to be dead: closed before the request was written (the
    /// request comes back unsent and goes out on a new connection), or closed by the endpoint
    /// just as the request was written — the keep-alive race. In that case a request without a
    /// body whose method is idempotent is sent once more on a new connection.
    ///
    /// `client` is the activity of the connection the request came on: it stays busy until
    /// the request body has been read.
    pub async fn send(
        self: &Arc<Self>,
        mut conn: UpstreamConn,
        req: Request<Incoming>,
        client: &Arc<ConnActivity>,
        options: SendOptions<'_>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let addr = conn.addr;
        let (parts, body) = req.into_parts();
        let (body, mut body_sent) = RequestBody::new(
            body,
            self.config.client_body_timeout,
            client,
            options.body_bytes,
            options.max_body_size,
        );
        let replayable = options.idempotent && body_sent.is_none();
        let mut req = Request::from_parts(parts, body);
        loop {
            if conn.reused && conn.sender.ready().await.is_err() {
                debug!(%addr, "pooled connection was closed; connecting again");
                conn = self.connect(addr, options.timeouts.connect).await?;
            }
            conn.send_timeout.set(options.timeouts.send);
            let replay = (conn.reused && replayable).then(|| head_of(&req));
            let response = conn.sender.try_send_request(req);
            tokio::pin!(response);
            // The response timeout runs from the end of the request body.
            let mut early = None;
            if let Some(sent) = body_sent.as_mut() {
                tokio::select! {
                    biased;
                    result = &mut response => early = Some(result),
                    _ = sent => body_sent = None,
                }
            }
            let after = options.timeouts.read;
            let result = match early {
                Some(result) => result,
                None => tokio::time::timeout(after, &mut response)
                    .await
                    .map_err(|_| UpstreamError::ResponseTimeout { addr, after })?,
            };
            let mut error = match result {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.clone(),
                        addr,
                        sender: conn.sender,
                        send_timeout: conn.send_timeout,
                    };
                    return Ok((response, lease));
                }
                Err(error) => error,
            };
            let again = match error.take_message() {
                Some(unsent) if conn.reused => Some(unsent),
                _ if error.error().is_parse() => None,
                _ => replay.map(|head| head.map(|()| RequestBody::empty())),
            };
            match again {
                Some(again) => {
                    debug!(%addr, error = %error.error(), "pooled connection was closed; sending on a new one");
                    req = again;
                    conn = self.connect(addr, options.timeouts.connect).await?;
                }
                None => {
                    let source = error.into_error();
                    if let Some(stalled) = SendStalled::in_chain(&source) {
                        return Err(UpstreamError::SendTimeout {
                            addr,
                            after: stalled.after,
                        });
                    }
                    return Err(UpstreamError::Request { addr, source });
                }
            }
        }
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<RequestBody>, send_timeout: SendTimeout) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr).or_default();
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
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

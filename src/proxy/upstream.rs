//! Connections to endpoints: a keep-alive pool of HTTP/1.1 connections per endpoint address.
//!
//! A request first gets a connection (an idle pooled one, else a new one within the connect
//! timeout) and only then is sent, so a failed connect leaves the request untouched and the
//! caller may try another endpoint. After a response the connection goes back to the pool as
//! soon as its body has been read to the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
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
    /// True for the errors answered with 504.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. }
        )
    }
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time from the end of the request body to the response head.
    pub response_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub keepalive_timeout: Duration,
    /// Most idle connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
}

/// The body sent to an endpoint: the client's body, streamed, with a signal when it ends
/// (the response timeout starts then, so slow uploads are not cut off).
pub struct RequestBody {
    inner: Incoming,
    done: Option<oneshot::Sender<()>>,
}

impl RequestBody {
    /// Wraps a client body. The receiver fires once the body has been sent completely; it is
    /// `None` when the body is already complete (no body at all).
    pub fn new(inner: Incoming) -> (Self, Option<oneshot::Receiver<()>>) {
        if inner.is_end_stream() {
            return (RequestBody { inner, done: None }, None);
        }
        let (tx, rx) = oneshot::channel();
        (
            RequestBody {
                inner,
                done: Some(tx),
            },
            Some(rx),
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream();
        if let Some(done) = self.done.take_if(|_| ended) {
            let _ = done.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// A connection to one endpoint, ready for one request.
pub struct UpstreamConn {
    addr: SocketAddr,
    sender: SendRequest<RequestBody>,
    reused: bool,
}

/// Keep-alive connections to endpoints, shared by all requests.
pub struct Pool {
    config: UpstreamConfig,
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    tasks: TaskTracker,
}

impl Pool {
    /// An empty pool. Connection tasks are spawned on `tasks`.
    pub fn new(config: UpstreamConfig, tasks: TaskTracker) -> Self {
        Pool {
            config,
            idle: Mutex::new(HashMap::new()),
            tasks,
        }
    }

    /// An idle pooled connection to `addr`, or a new one.
    pub async fn connection(&self, addr: SocketAddr) -> Result<UpstreamConn, UpstreamError> {
        if let Some(sender) = self.checkout(addr) {
            return Ok(UpstreamConn {
                addr,
                sender,
                reused: true,
            });
        }
        self.connect(addr).await
    }

    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(&addr)?;
        while let Some(conn) = conns.pop() {
            if conn.since.elapsed() < self.config.keepalive_timeout && conn.sender.is_ready() {
                return Some(conn.sender);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<UpstreamConn, UpstreamError> {
        let timeout = self.config.connect_timeout;
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
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        self.tasks.spawn(async move {
            if let Err(error) = conn.await {
                debug!(%addr, %error, "upstream connection ended with an error");
            }
        });
        Ok(UpstreamConn {
            addr,
            sender,
            reused: false,
        })
    }

    /// Sends `req` on `conn` and waits for the response head. A pooled connection that turns
    /// out to be closed before the request was written is replaced by a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut conn: UpstreamConn,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let addr = conn.addr;
        let (parts, body) = req.into_parts();
        let (body, mut body_sent) = RequestBody::new(body);
        let mut req = Request::from_parts(parts, body);
        loop {
            let response = conn.sender.try_send_request(req);
            tokio::pin!(response);
            // The response timeout runs from the end of the request body.
            if let Some(sent) = body_sent.take() {
                tokio::select! {
                    biased;
                    result = &mut response => return self.finish(conn, result, addr),
                    _ = sent => {}
                }
            }
            let after = self.config.response_timeout;
            let result = match tokio::time::timeout(after, &mut response).await {
                Ok(result) => result,
                Err(_) => return Err(UpstreamError::ResponseTimeout { addr, after }),
            };
            match result {
                Err(mut err) if conn.reused => match err.take_message() {
                    Some(unsent) => {
                        debug!(%addr, "pooled connection was closed; reconnecting");
                        req = unsent;
                        conn = self.connect(addr).await?;
                    }
                    None => return self.finish(conn, Err(err), addr),
                },
                result => return self.finish(conn, result, addr),
            }
        }
    }

    fn finish(
        self: &Arc<Self>,
        conn: UpstreamConn,
        result: Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>>,
        addr: SocketAddr,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match result {
            Ok(response) => {
                self.release_when_idle(conn);
                Ok(response)
            }
            Err(err) => Err(UpstreamError::Request {
                addr,
                source: err.into_error(),
            }),
        }
    }

    /// Returns the connection to the pool once the response body has been read to the end.
    fn release_when_idle(self: &Arc<Self>, mut conn: UpstreamConn) {
        let pool = self.clone();
        self.tasks.spawn(async move {
            if conn.sender.ready().await.is_ok() {
                pool.put(conn.addr, conn.sender);
            }
        });
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<RequestBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.entry(addr).or_default();
        if conns.len() < self.config.max_idle_per_endpoint {
            conns.push(Idle {
                sender,
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

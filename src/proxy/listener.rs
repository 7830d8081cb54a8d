//! Accepting client connections and serving HTTP/1.1 or HTTP/2 on them: in cleartext (HTTP/2
//! with prior knowledge) or over TLS (HTTP/2 by ALPN).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, debug_span};

use super::Proxy;
use super::activity::ConnActivity;
use super::body::ProxyBody;
use super::client_cert::TlsListener;
use super::headers::{self, ClientInfo};
use super::overload::{self, AcceptBackoff, Open};
use super::park::{self, ReadReady, Resumable, Wake};
use super::passthrough::Handshake;
use super::preface::{self, Detected};
use super::proxy_protocol;
use crate::metrics::GaugeGuard;
use crate::model::connection::ConnectionLimits;
use crate::tls::ServerConfigs;

/// How a listener's connections start: plain (HTTP/2 told from HTTP/1 by the preface) or TLS
/// (told by ALPN).
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(Arc<TlsListener>),
}

impl Transport {
    /// `http` or `https`.
    fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls(_) => "https",
        }
    }
}

/// The span a connection's work runs in (its address and scheme). At `debug` only: at `info`
/// the registry would keep every span's fields formatted (about 0.35 KiB per connection, kept
/// for as many connections as were ever open at once) and enter and leave it on every poll.
fn conn_span(peer: SocketAddr, scheme: &str) -> Span {
    debug_span!("conn", %peer, scheme)
}

impl Proxy {
    /// Accepts plain HTTP connections on `listener` until `cancel` fires; each connection is
    /// served on tracked tasks of its own and shut down gracefully on cancel.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        self.accept_loop(listener, Transport::Plain, cancel).await
    }

    /// Accepts TLS connections on `listener` until `cancel` fires, with the configurations of
    /// `tls` (certificates, ALPN, and client certificates for the hosts that ask for them);
    /// otherwise like [`Proxy::serve_http`]. With `ssl_passthrough`, connections for hosts
    /// with `ssl-passthrough` go to their backend unterminated (`passthrough.rs`).
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<ServerConfigs>,
        cancel: CancellationToken,
    ) {
        let tls = Arc::new(TlsListener::new(tls));
        self.accept_loop(listener, Transport::Tls(tls), cancel)
            .await
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        transport: Transport,
        cancel: CancellationToken,
    ) {
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let scheme = transport.scheme();
        let connections = &self.metrics.connections;
        let active = connections.active.with_label_values(&[scheme]);
        let accepted = connections.accepted.with_label_values(&[scheme]);
        let mut backoff = AcceptBackoff::default();
        loop {
            // At --max-connections, accepting pauses: new connections wait in the kernel's
            // backlog until one closes.
            if !self.limits.has_room() {
                let pauses = &connections.accept_pauses;
                pauses.with_label_values(&["max_connections"]).inc();
                debug!(
                    listener = scheme,
                    "--max-connections reached; accepting paused"
                );
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.limits.room() => {}
                }
            }
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        backoff.succeeded();
                        accepted
                    }
                    Err(error) if overload::is_resource_error(&error) => {
                        // Out of file descriptors or memory: back off instead of spinning;
                        // established connections are served meanwhile.
                        let pauses = &connections.accept_pauses;
                        pauses.with_label_values(&["resources"]).inc();
                        let wait = backoff.failed(&error, scheme);
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(wait) => continue,
                        }
                    }
                    Err(error) => {
                        // About that one connection (reset before it was accepted); a short
                        // wait all the same, so that an error that persists cannot spin.
                        debug!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                },
            };
            let permit = match self.limits.admit() {
                Ok(permit) => permit,
                // Another listener took the last place since the look: this connection waits.
                Err(later) => tokio::select! {
                    _ = cancel.cancelled() => break,
                    permit = later.wait() => Some(permit),
                },
            };
            accepted.inc();
            let accepted = Accepted {
                stream,
                peer,
                local_port,
                open: Open::new(GaugeGuard::new(active.clone()), permit),
            };
            let connection =
                self.clone()
                    .start_connection(accepted, transport.clone(), cancel.clone());
            self.tasks.spawn(connection);
        }
    }

    /// Finds out the protocol (preface or TLS handshake + ALPN), then serves the connection.
    /// A connection that has not got that far yet must not hold up a shutdown.
    ///
    /// A task's future is as large as its largest state and lives as long as the connection,
    /// so the task holds boxes only: finding out the protocol (a timer, a TLS handshake) in a
    /// box freed once it is known, serving in one sized for the protocol found. Both run in
    /// the connection's span; a parked HTTP/1 connection lets go of it (see `serve_http1`).
    fn start_connection(
        self: Arc<Self>,
        accepted: Accepted,
        transport: Transport,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let span = conn_span(accepted.peer, transport.scheme());
        let negotiate = self.negotiate(accepted, transport, cancel.clone());
        let negotiate = Box::pin(negotiate.instrument(span));
        async move {
            let serving = tokio::select! {
                serving = negotiate => serving,
                _ = cancel.cancelled() => return,
            };
            if let Some(serving) = serving {
                serving.await;
            }
        }
    }

    /// The preface or the TLS handshake, then the serving future for the protocol it gave.
    async fn negotiate(
        self: Arc<Self>,
        accepted: Accepted,
        transport: Transport,
        cancel: CancellationToken,
    ) -> Option<Serving> {
        let Accepted {
            mut stream,
            mut peer,
            local_port,
            mut open,
        } = accepted;
        let _ = stream.set_nodelay(true);
        let connection = self.state.connection();
        let rules = connection.client_address.clone();
        let proxied = rules.proxy_protocol;
        let (mut port, mut scheme) = (local_port, transport.scheme());
        if proxied {
            // Boxed: its buffer would otherwise be part of every connection's first future.
            match Box::pin(proxy_protocol::accept(&rules, &mut stream, peer)).await {
                Ok(None) => {}
                Ok(Some((client, destination_port))) => {
                    (peer, port) = (client, destination_port);
                    // As ingress-nginx: a balancer that accepted on 443 terminated TLS.
                    if destination_port == 443 {
                        scheme = "https";
                    }
                }
                Err(error) => {
                    debug!(%error, "PROXY protocol header refused; closing");
                    (self.metrics.connections.proxy_protocol_errors)
                        .with_label_values(&[error.reason()])
                        .inc();
                    return None;
                }
            }
        }
        match self.limits.enter(peer.ip()) {
            Some(slot) => open.slot = slot,
            None => {
                debug!(%peer, "--max-connections-per-client reached; closing");
                let refused = &self.metrics.connections.refused;
                refused.with_label_values(&["per_client"]).inc();
                return None;
            }
        }
        let mut conn = ClientInfo::new(peer, port, scheme, rules, proxied);
        // Held by the connection, and by a tunnel it turns into (the caps count both).
        conn.open = Some(Arc::new(open));
        match transport {
            Transport::Plain => {
                let timeout = self.config.client_header_timeout;
                let detected = tokio::time::timeout(timeout, preface::detect(stream)).await;
                let Ok(Some(Detected {
                    http2,
                    read,
                    stream,
                })) = detected
                else {
                    return None;
                };
                Some(self.serve(read, stream, http2, conn, connection.limits, cancel))
            }
            Transport::Tls(tls) => {
                let timeout = self.config.tls_handshake_timeout;
                let metrics = &self.metrics.connections;
                // Boxed: inline, the handshake's future (rustls' state) made this future
                // 8.8 KiB instead of 560 B, for plain connections too, and it was copied whole
                // on each move while a connection started.
                let handshake = Box::pin(self.tls_handshake(&tls, stream));
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(Handshake::Passthrough(tcp))) => {
                        let passing = self.clone().pass_through(tcp);
                        Some(Box::pin(
                            async move {
                                let _client = conn;
                                passing.await
                            }
                            .in_current_span(),
                        ))
                    }
                    Ok(Ok(Handshake::Terminated(stream, client_cert))) => {
                        let mut conn = conn;
                        conn.client_cert = client_cert;
                        let session = stream.get_ref().1;
                        let alpn = session.alpn_protocol();
                        let version = session.protocol_version().and_then(|v| v.as_str());
                        let alpn_label =
                            alpn.map_or("", |p| std::str::from_utf8(p).unwrap_or("other"));
                        metrics
                            .tls_handshakes
                            .with_label_values(&[version.unwrap_or("unknown"), alpn_label])
                            .inc();
                        let http2 = alpn == Some(b"h2");
                        let limits = connection.limits;
                        Some(self.serve(Bytes::new(), stream, http2, conn, limits, cancel))
                    }
                    Ok(Err(error)) => {
                        debug!(%error, "TLS handshake failed");
                        let is_tls = error
                            .get_ref()
                            .is_some_and(|inner| inner.is::<rustls::Error>());
                        let reason = if is_tls { "protocol" } else { "io" };
                        metrics
                            .tls_handshake_errors
                            .with_label_values(&[reason])
                            .inc();
                        None
                    }
                    Err(_) => {
                        debug!("TLS handshake timed out");
                        metrics
                            .tls_handshake_errors
                            .with_label_values(&["timeout"])
                            .inc();
                        None
                    }
                }
            }
        }
    }

    fn serve<I>(
        self: Arc<Self>,
        read: Bytes,
        stream: I,
        http2: bool,
        conn: ClientInfo,
        limits: ConnectionLimits,
        cancel: CancellationToken,
    ) -> Serving
    where
        I: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
    {
        let activity = ConnActivity::new();
        let io = Resumable::new(read, stream, activity.clone());
        let client = Client {
            activity,
            conn: Arc::new(conn),
            limits,
            cancel,
        };
        if http2 {
            Box::pin(self.serve_http2(io, client).in_current_span())
        } else {
            Box::pin(self.serve_http1(io, client, Span::current()))
        }
    }

    /// The HTTP service of one client connection (`http2`: its responses go out over HTTP/2).
    fn service(
        self: &Arc<Self>,
        client: &Client,
        http2: bool,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future: Send + 'static,
    >
    + Clone
    + Send
    + Sync
    + Unpin
    + 'static
    + use<> {
        let (proxy, conn, activity) = (self.clone(), client.conn.clone(), client.activity.clone());
        let max_requests = client.limits.keepalive_requests;
        service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let conn = conn.clone();
            let activity = activity.clone();
            let in_flight = activity.start();
            // `--keepalive-requests`: this one is the connection's last.
            let last = max_requests > 0 && activity.count_request() >= max_requests;
            if last && http2 {
                // The drive loop sends GOAWAY now: this stream is served, no new one starts.
                activity.retire();
            }
            // Costs nothing unless debug logging is on for weir.
            let span = debug_span!("request", method = %req.method(), path = req.uri().path());
            async move {
                let response = proxy.serve_request(&conn, &activity, req).await;
                let mut response = response.map(|body| body.with_in_flight(in_flight));
                if http2 {
                    headers::own_values(response.headers_mut());
                }
                if last && !http2 {
                    close_after(&mut response);
                }
                Ok::<_, Infallible>(response)
            }
            .instrument(span)
        })
    }

    async fn serve_http2<I>(self: Arc<Self>, io: Resumable<I>, client: Client)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.service(&client, true);
        let config = &self.config;
        let mut builder = http2::Builder::new(TrackedExecutor(self.tasks.clone()));
        builder
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_header_list_size(config.max_request_header_size as u32)
            .max_concurrent_streams(client.limits.http2_max_concurrent_streams);
        let mut connection = Box::pin(builder.serve_connection(TokioIo::new(io), service));
        let idle = IdleLimits {
            keepalive: config.keepalive_timeout,
            park_after: None,
        };
        drive(
            connection.as_mut(),
            |c| c.graceful_shutdown(),
            &client.activity,
            idle,
            &client.cancel,
        )
        .await;
    }

    /// Serves HTTP/1 in `span` until the connection ends or has been idle for
    /// `--keepalive-park-after`; then drops hyper's connection (its buffers), the span and
    /// this task's state, and parks the socket on a task of its own ([`Proxy::park_http1`]).
    // Not an `async fn`: it and `park_http1` call each other, and the compiler cannot check
    // that an `async fn`'s future is `Send` through that cycle; a named return type breaks it.
    #[allow(clippy::manual_async_fn)]
    fn serve_http1<I>(
        self: Arc<Self>,
        io: Resumable<I>,
        client: Client,
        span: Span,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
    {
        async move {
            let service = self.service(&client, false);
            let serving = self.serve_http1_until_parked(io, service, &client);
            if let Some(io) = Box::pin(serving.instrument(span)).await {
                let proxy = self.clone();
                self.tasks.spawn(proxy.park_http1(io, client));
            }
        }
    }

    /// Holds an idle HTTP/1 connection with nothing but its socket and what the next request
    /// needs ([`park::wait`]), allocated afresh when the connection parks; serves it again
    /// (in a new span) when the client sends, or closes it.
    async fn park_http1<I>(self: Arc<Self>, mut io: Resumable<I>, client: Client)
    where
        I: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
    {
        let parked = self.parked.count();
        debug!(peer = %client.conn.peer, "parked idle connection");
        let keepalive = self.config.keepalive_timeout;
        if park::wait(&mut io, &client.activity, keepalive, &client.cancel).await == Wake::Close {
            debug!(peer = %client.conn.peer, "closing parked connection");
            let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
            return;
        }
        drop(parked);
        let span = conn_span(client.conn.peer, client.conn.scheme);
        let serving: Serving = Box::pin(self.serve_http1(io, client, span));
        serving.await
    }

    /// Serves HTTP/1 requests until the connection ends (`None`) or has been idle long enough
    /// to park, with nothing read of a next request: then gives back the socket.
    async fn serve_http1_until_parked<I, S>(
        &self,
        mut io: Resumable<I>,
        mut service: S,
        client: &Client,
    ) -> Option<Resumable<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = ProxyBody> + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let config = &self.config;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_header_timeout)
            .max_header_size(config.max_request_header_size)
            .max_headers(config.max_headers);
        let idle = IdleLimits {
            keepalive: config.keepalive_timeout,
            park_after: Some(config.keepalive_park_after),
        };
        loop {
            // Boxed, so that the drive loop's state stays small. An accepted upgrade ends it
            // and hands the socket to the tunnel.
            let mut connection = Box::pin(
                builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            let ended = drive(
                connection.as_mut(),
                |c| c.graceful_shutdown(),
                &client.activity,
                idle,
                &client.cancel,
            );
            if ended.await == Ended::Closed {
                return None;
            }
            let parts = Pin::into_inner(connection).into_parts()?;
            client.activity.set_parking(false);
            (io, service) = (parts.io.into_inner(), parts.service);
            if parts.read_buf.is_empty() {
                return Some(io);
            }
            // The start of the next request was already read: serve it right away (a park
            // that ends at once).
            drop(self.parked.count());
            io.rewind(parts.read_buf);
        }
    }
}

/// Ends an HTTP/1 connection after `response`, its last (`--keepalive-requests`), with
/// `Connection: close` (hyper closes the connection after it) — not on a `101`, whose
/// connection becomes the tunnel. (An HTTP/2 connection is retired when its last stream
/// starts: its drive loop sends GOAWAY and lets the streams in flight finish.)
fn close_after(response: &mut Response<ProxyBody>) {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let close = http::HeaderValue::from_static("close");
        response
            .headers_mut()
            .insert(http::header::CONNECTION, close);
    }
}

/// What a client connection keeps for as long as it is open, whichever task serves it (an
/// HTTP/1 connection moves to a task of its own when it parks).
struct Client {
    activity: Arc<ConnActivity>,
    /// The client, and the connection's place under the caps (`ClientInfo::open`).
    conn: Arc<ClientInfo>,
    /// How many requests it may carry (from the table it was accepted under).
    limits: ConnectionLimits,
    /// Fires when the proxy shuts down.
    cancel: CancellationToken,
}

/// A connection just accepted, before its task starts.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    /// The port of the listener it came in on.
    local_port: u16,
    /// Counts the connection as open (`weir_client_connections_active`, the caps).
    open: Open,
}

/// A connection being served, whatever its stream and protocol.
type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long closing a parked connection may take (a TLS close_notify on a full socket).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Runs the tasks hyper spawns (HTTP/2 streams) on the proxy's task tracker, in the span of the
/// connection, so that shutdown waits for them too.
#[derive(Clone)]
struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future.in_current_span());
    }
}

/// When an idle client connection is closed, and (HTTP/1) when it is parked.
#[derive(Debug, Clone, Copy)]
struct IdleLimits {
    keepalive: Duration,
    park_after: Option<Duration>,
}

/// How [`drive`] left a connection.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Finished, failed or shut down: the socket is done with.
    Closed,
    /// Shut down while idle without closing the socket, to be parked.
    Parked,
}

/// Runs a connection until it ends. Shuts it down gracefully when it has been idle for
/// `keepalive` or when `cancel` fires; with `park_after`, shuts it down for parking once it has
/// been idle that long after finishing a request, and nothing is left to write.
async fn drive<C>(
    mut connection: Pin<&mut C>,
    graceful_shutdown: fn(Pin<&mut C>),
    activity: &ConnActivity,
    limits: IdleLimits,
    cancel: &CancellationToken,
) -> Ended
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let IdleLimits {
        keepalive,
        park_after,
    } = limits;
    // Parking needs a finished request since this connection started: one that never got a
    // request whole stays under hyper's header timeout.
    let completed_at_start = activity.completed();
    let busy_check = park_after.map_or(keepalive, |p| p.min(keepalive));
    let mut check_in = busy_check;
    let mut shutdown = None;
    // Served its last request (`--keepalive-requests`): shut down gracefully, while the idle
    // timer still runs.
    let mut retired = false;
    loop {
        let sleep = tokio::time::sleep(check_in);
        let cancelled = cancel.cancelled();
        tokio::pin!(sleep, cancelled);
        // The connection is polled on every wake-up of the task, which a request causes
        // several times; the timer and the token are polled once, to register the task, and
        // then only looked at (a poll of each costs more than the look, and they rarely fire).
        // The task's waker stays the same, so their registrations stay valid.
        let mut registered = false;
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(result));
            }
            if shutdown.is_some() {
                return Poll::Pending;
            }
            if !retired && activity.retiring() {
                return Poll::Ready(Event::Retire);
            }
            let (cancelled, timer) = if registered {
                (cancel.is_cancelled(), sleep.is_elapsed())
            } else {
                registered = true;
                let cancelled = cancelled.as_mut().poll(cx).is_ready();
                (cancelled, sleep.as_mut().poll(cx).is_ready())
            };
            if cancelled {
                Poll::Ready(Event::Cancelled)
            } else if timer {
                Poll::Ready(Event::Check)
            } else {
                Poll::Pending
            }
        })
        .await;
        match event {
            Event::Ended(result) => {
                if let Err(error) = result {
                    debug!(%error, "client connection ended with an error");
                    return Ended::Closed;
                }
                return shutdown.unwrap_or(Ended::Closed);
            }
            Event::Cancelled => {
                graceful_shutdown(connection.as_mut());
                shutdown = Some(Ended::Closed);
            }
            Event::Retire => {
                graceful_shutdown(connection.as_mut());
                retired = true;
            }
            Event::Check => {
                let Some(idle) = activity.idle_for() else {
                    check_in = busy_check;
                    continue;
                };
                if idle >= keepalive && retired {
                    // Told to go away and idle since: the client did not close it.
                    return Ended::Closed;
                }
                if idle >= keepalive {
                    debug!("closing idle connection");
                    graceful_shutdown(connection.as_mut());
                    shutdown = Some(Ended::Closed);
                    continue;
                }
                let served = activity.completed() != completed_at_start;
                check_in = keepalive - idle;
                if let Some(park_after) = park_after.filter(|_| served) {
                    if idle < park_after {
                        check_in = park_after - idle;
                    } else if activity.write_blocked() {
                        check_in = park_after.min(check_in);
                    } else {
                        activity.set_parking(true);
                        graceful_shutdown(connection.as_mut());
                        shutdown = Some(Ended::Parked);
                    }
                }
            }
        }
    }
}

/// What woke [`drive`].
enum Event {
    /// The connection ended (its result).
    Ended(Result<(), hyper::Error>),
    /// `cancel` fired.
    Cancelled,
    /// The connection served its last request (`--keepalive-requests`, HTTP/2).
    Retire,
    /// The idle timer ran out.
    Check,
}

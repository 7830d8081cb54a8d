//! Accepting client connections and serving HTTP/1.1 or HTTP/2 on them: in cleartext (HTTP/2
//! with prior knowledge) or over TLS (HTTP/2 by ALPN).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use super::Proxy;
use super::body::ConnActivity;
use super::headers::ClientInfo;
use super::preface::{self, Detected};

/// How a listener's connections start: plain (HTTP/2 told from HTTP/1 by the preface) or TLS
/// (told by ALPN).
#[derive(Clone)]
enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

impl Proxy {
    /// Accepts plain HTTP connections on `listener` until `cancel` fires; each connection is
    /// served on its own tracked task and shut down gracefully on cancel.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        self.accept_loop(listener, Transport::Plain, cancel).await
    }

    /// Accepts TLS connections on `listener` until `cancel` fires, with the certificates and
    /// ALPN of `tls`; otherwise like [`Proxy::serve_http`].
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        cancel: CancellationToken,
    ) {
        self.accept_loop(listener, Transport::Tls(TlsAcceptor::from(tls)), cancel)
            .await
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        transport: Transport,
        cancel: CancellationToken,
    ) {
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let scheme = match transport {
            Transport::Plain => "http",
            Transport::Tls(_) => "https",
        };
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let proxy = self.clone();
            let (cancel, transport) = (cancel.clone(), transport.clone());
            let span = info_span!("conn", %peer, scheme);
            self.tasks.spawn(
                async move {
                    let trusted = &proxy.config.trust_forwarded_from;
                    let conn = ClientInfo::new(peer, local_port, scheme, trusted);
                    proxy
                        .start_connection(stream, transport, conn, cancel)
                        .await
                }
                .instrument(span),
            );
        }
    }

    /// Finds out the protocol (preface or TLS handshake + ALPN), then serves the connection.
    /// A connection that has not got that far yet must not hold up a shutdown.
    async fn start_connection(
        self: Arc<Self>,
        stream: TcpStream,
        transport: Transport,
        conn: ClientInfo,
        cancel: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        match transport {
            Transport::Plain => {
                let detect = tokio::time::timeout(
                    self.config.client_header_timeout,
                    preface::detect(stream),
                );
                let detected = tokio::select! {
                    detected = detect => detected,
                    _ = cancel.cancelled() => return,
                };
                if let Ok(Some(Detected { http2, stream })) = detected {
                    // Boxed here and below: a task's future is as large as its largest state,
                    // and every connection would pay for the TLS and HTTP/2 ones.
                    Box::pin(self.serve_connection(stream, http2, conn, cancel)).await;
                }
            }
            Transport::Tls(acceptor) => {
                let handshake = tokio::time::timeout(
                    self.config.tls_handshake_timeout,
                    Box::pin(acceptor.accept(stream)),
                );
                let handshake = tokio::select! {
                    handshake = handshake => handshake,
                    _ = cancel.cancelled() => return,
                };
                match handshake {
                    Ok(Ok(stream)) => {
                        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        Box::pin(self.serve_connection(stream, http2, conn, cancel)).await;
                    }
                    Ok(Err(error)) => debug!(%error, "TLS handshake failed"),
                    Err(_) => debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve_connection<I>(
        self: Arc<Self>,
        stream: I,
        http2: bool,
        conn: ClientInfo,
        cancel: CancellationToken,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = ConnActivity::new();
        let proxy = self.clone();
        let conn_activity = activity.clone();
        let conn = Arc::new(conn);
        let service = service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let conn = conn.clone();
            let activity = conn_activity.clone();
            let in_flight = activity.start();
            async move {
                let response = proxy.serve_request(&conn, &activity, req).await;
                Ok::<_, Infallible>(response.map(|body| body.with_in_flight(in_flight)))
            }
        });
        let io = TokioIo::new(stream);
        let config = &self.config;
        if http2 {
            let mut builder = http2::Builder::new(TrackedExecutor(self.tasks.clone()));
            builder
                .timer(TokioTimer::new())
                .enable_connect_protocol()
                .max_header_list_size(config.max_request_header_size as u32)
                .max_concurrent_streams(256);
            let connection = builder.serve_connection(io, service);
            Box::pin(drive(
                connection,
                |c| c.graceful_shutdown(),
                &activity,
                config.keepalive_timeout,
                &cancel,
            ))
            .await;
        } else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(config.client_header_timeout)
                .max_header_size(config.max_request_header_size)
                .max_headers(config.max_headers);
            // An accepted upgrade ends this future and hands the socket to the tunnel.
            let connection = builder.serve_connection(io, service).with_upgrades();
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &activity,
                config.keepalive_timeout,
                &cancel,
            )
            .await;
        }
    }
}

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

/// Runs a connection to its end; shuts it down gracefully when it has been idle for
/// `keepalive` or when `cancel` fires.
async fn drive<C>(
    connection: C,
    graceful_shutdown: fn(Pin<&mut C>),
    activity: &ConnActivity,
    keepalive: Duration,
    cancel: &CancellationToken,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(connection);
    let mut check_in = keepalive;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    debug!(%error, "client connection ended with an error");
                }
                return;
            }
            _ = cancel.cancelled(), if !shutting_down => {
                graceful_shutdown(connection.as_mut());
                shutting_down = true;
            }
            _ = tokio::time::sleep(check_in), if !shutting_down => {
                match activity.idle_for() {
                    Some(idle) if idle >= keepalive => {
                        debug!("closing idle connection");
                        graceful_shutdown(connection.as_mut());
                        shutting_down = true;
                    }
                    Some(idle) => check_in = keepalive - idle,
                    None => check_in = keepalive,
                }
            }
        }
    }
}

//! Accepting client connections and serving HTTP/1.1 or HTTP/2 (prior knowledge) on them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::Proxy;
use super::body::ConnActivity;
use super::preface::{self, Detected};
use super::service::ConnInfo;

impl Proxy {
    /// Accepts connections on `listener` until `cancel` fires; each connection is served on its
    /// own tracked task and shut down gracefully on cancel.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
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
            let conn = ConnInfo {
                peer,
                local_port,
                scheme: "http",
            };
            let proxy = self.clone();
            let cancel = cancel.clone();
            let span = info_span!("conn", %peer);
            self.tasks.spawn(
                async move { proxy.serve_connection(stream, conn, cancel).await }.instrument(span),
            );
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        conn: ConnInfo,
        cancel: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let detect =
            tokio::time::timeout(self.config.client_header_timeout, preface::detect(stream));
        // A connection that has sent nothing yet must not hold up a shutdown.
        let detected = tokio::select! {
            detected = detect => detected,
            _ = cancel.cancelled() => return,
        };
        let Ok(Some(Detected { http2, stream })) = detected else {
            return;
        };
        let activity = ConnActivity::new();
        let proxy = self.clone();
        let conn_activity = activity.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let proxy = proxy.clone();
            let in_flight = conn_activity.start();
            async move {
                let response = proxy.serve_request(&conn, req).await;
                Ok::<_, Infallible>(response.map(|body| body.with_in_flight(in_flight)))
            }
        });
        let io = TokioIo::new(stream);
        let config = &self.config;
        if http2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(config.max_request_header_size as u32)
                .max_concurrent_streams(256);
            let connection = builder.serve_connection(io, service);
            drive(
                connection,
                |c| c.graceful_shutdown(),
                &activity,
                config.keepalive_timeout,
                &cancel,
            )
            .await;
        } else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(config.client_header_timeout)
                .max_header_size(config.max_request_header_size)
                .max_headers(config.max_headers);
            let connection = builder.serve_connection(io, service);
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

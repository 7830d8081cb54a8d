//! The admin listener: `/healthz` (the process is alive), `/readyz` (a table is published
//! and the process is not shutting down) and `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::metrics;
use crate::state::State;

/// Serves the admin endpoints on `listener` until `cancel` fires.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<State>,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = &mut conn => if let Err(error) = result { debug!(%error, "admin connection failed") },
                _ = cancel.cancelled() => {}
            }
        });
    }
}

async fn answer(state: &Arc<State>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            // Thousands of routes make megabytes of text: not on a worker that serves traffic.
            let state = state.clone();
            let encode = move || {
                state.count_table();
                state.metrics().encode()
            };
            let Ok(text) = tokio::task::spawn_blocking(encode).await else {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(b"metrics failed\n")));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return response;
            };
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            return response;
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

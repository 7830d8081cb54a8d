//! A tiny HTTP backend for trying weir out: answers every request with one line saying who
//! answered and what it received, and echoes every message of a WebSocket back.
//!
//! ```text
//! cargo run --release --example echo -- 127.0.0.1:9000
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("echo backend listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(addr, req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn answer(
    addr: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = websocket_key(&req) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                echo_websocket(TokioIo::new(upgraded)).await;
            }
        });
        let accept = derive_accept_key(key.as_bytes());
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .expect("a valid 101");
        return Ok(response);
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let line = format!(
        "hello from the echo backend on {addr}: {} {} (Host: {host}, X-Forwarded-For: {})\n",
        req.method(),
        req.uri(),
        req.headers()
            .get("x-forwarded-for")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-"),
    );
    // Read (and discard) the request body so keep-alive connections stay usable.
    let _ = req.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from(line))))
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request.
fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get("upgrade")?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let key = req.headers().get("sec-websocket-key")?.to_str().ok()?;
    Some(key.to_owned())
}

/// Sends every text and binary message back until the client closes.
async fn echo_websocket(io: TokioIo<hyper::upgrade::Upgraded>) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

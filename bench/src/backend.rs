//! The benchmark backend: as little work per request as hyper allows, so that the proxy in
//! front of it is what gets measured.
//!
//! - any path: `200` with a 13-byte body (`hello, world\n`);
//! - a path starting with `/1k`: `200` with a 1024-byte body;
//! - a WebSocket upgrade on any path: every text or binary message is echoed back.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The tiny body.
const TINY: &[u8] = b"hello, world\n";
/// The 1 KiB body.
static KIB: [u8; 1024] = [b'x'; 1024];

/// Arguments of `backend`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19000")]
    listen: SocketAddr,
}

/// Accepts connections forever.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(4096)?;
    eprintln!("weir-bench backend listening on http://{}", args.listen);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .with_upgrades()
                .await;
        });
    }
}

/// Answers one request.
async fn answer(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = websocket_key(&req) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                echo(TokioIo::new(upgraded)).await;
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                derive_accept_key(key.as_bytes()),
            )
            .body(Full::new(Bytes::new()))
            .expect("a valid 101");
        return Ok(response);
    }
    let body = if req.uri().path().starts_with("/1k") {
        Bytes::from_static(&KIB)
    } else {
        Bytes::from_static(TINY)
    };
    // Drain a request body, if any, so the connection stays usable.
    if !req.body().is_end_stream() {
        let _ = req.into_body().collect().await;
    }
    let response = Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(body))
        .expect("a valid 200");
    Ok(response)
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request.
fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)?
        .to_str()
        .ok()?;
    Some(key.to_owned())
}

/// Sends every text and binary message back until the client closes.
async fn echo(io: TokioIo<hyper::upgrade::Upgraded>) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

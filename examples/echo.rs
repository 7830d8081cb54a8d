//! A tiny HTTP backend for trying weir out: answers every request with one line saying who
//! answered and what it received.
//!
//! ```text
//! cargo run --release --example echo -- 127.0.0.1:9000
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
                .await;
        });
    }
}

async fn answer(
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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

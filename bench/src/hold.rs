//! Opens many idle connections through a proxy and holds them, for memory measurements.
//!
//! Every HTTP connection carries one request (so the proxy has parsed a request and pooled an
//! upstream connection, as in real traffic) and then stays idle; every WebSocket echoes one
//! message (so the tunnel is fully established) and then stays idle. HTTP connections are
//! plain TCP (`http`), HTTP/1.1 over TLS (`tls`, ALPN http/1.1, a full handshake each) or
//! HTTP/2 over TLS (`h2`, ALPN h2, one stream each, then the connection idles). When all are open the
//! ready file is written; on SIGTERM or SIGINT each connection is used once more to count how
//! many the proxy kept open, and the result is printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::tls_client_config;
use crate::util::{connect, read_response, stop_signal, write_get};
use crate::wsload::open;

/// What kind of connection to hold.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP/1.1 keep-alive connections, one request each.
    Http,
    /// WebSockets, one echoed message each.
    Ws,
    /// HTTP/1.1 keep-alive connections over TLS (ALPN http/1.1), one request each.
    Tls,
    /// HTTP/2 connections over TLS (ALPN h2), one request (stream) each.
    H2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Ws => "ws",
            Kind::Tls => "tls",
            Kind::H2 => "h2",
        }
    }
}

/// Arguments of `hold`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to connect to.
    #[arg(long)]
    addr: SocketAddr,
    /// `Host` of the requests.
    #[arg(long, default_value = "bench.local")]
    host: String,
    /// Path of the requests.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP keep-alive connections or WebSockets.
    #[arg(long, value_enum)]
    kind: Kind,
    /// How many connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// How many connections are being opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Written (with `{"opened", "failed"}`) once every connection is open.
    #[arg(long)]
    ready_file: PathBuf,
}

/// One held connection.
enum Held {
    Http(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
    Tls(Box<TlsStream<TcpStream>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// What opening a connection needs besides the arguments: the TLS connectors.
struct Opener {
    h1: TlsConnector,
    h2: TlsConnector,
    name: ServerName<'static>,
}

/// Opens, holds until a signal, checks and reports.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let opener = Opener {
        h1: TlsConnector::from(Arc::new(tls_client_config(&[b"http/1.1"])?)),
        h2: TlsConnector::from(Arc::new(tls_client_config(&[b"h2"])?)),
        name: ServerName::try_from(args.host.clone())?,
    };
    let opened: Vec<anyhow::Result<Held>> = stream::iter(0..args.connections)
        .map(|_| open_one(&args, &opener))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut held = Vec::with_capacity(opened.len());
    let mut failed = 0usize;
    let mut first_error = None;
    for result in opened {
        match result {
            Ok(connection) => held.push(connection),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let ready = json!({"opened": held.len(), "failed": failed, "first_error": first_error});
    tokio::fs::write(&args.ready_file, format!("{ready}\n")).await?;
    stop_signal().await;
    let alive: usize = stream::iter(held)
        .map(|connection| still_open(connection, &args))
        .buffer_unordered(args.concurrency.max(1))
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let out = json!({
        "kind": args.kind.name(),
        "requested": args.connections,
        "opened": args.connections - failed,
        "failed": failed,
        "alive_at_end": alive,
        "first_error": first_error,
    });
    println!("{out}");
    Ok(())
}

/// Opens one connection and uses it once.
async fn open_one(args: &Args, opener: &Opener) -> anyhow::Result<Held> {
    let attempt = async {
        match args.kind {
            Kind::Http => {
                let mut stream = connect(args.addr).await?;
                write_get(&mut stream, &args.host, &args.path, false).await?;
                let status = read_response(&mut stream, &mut Vec::new()).await?;
                anyhow::ensure!(status == 200, "status {status}");
                Ok(Held::Http(stream))
            }
            Kind::Ws => {
                let mut ws = open(args.addr, &args.host, &args.path).await?;
                echo_once(&mut ws).await?;
                Ok(Held::Ws(Box::new(ws)))
            }
            Kind::Tls => {
                let tcp = connect(args.addr).await?;
                let mut stream = opener
                    .h1
                    .connect(opener.name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                write_get(&mut stream, &args.host, &args.path, false).await?;
                let status = read_response(&mut stream, &mut Vec::new()).await?;
                anyhow::ensure!(status == 200, "status {status}");
                Ok(Held::Tls(Box::new(stream)))
            }
            Kind::H2 => {
                let tcp = connect(args.addr).await?;
                let stream = opener
                    .h2
                    .connect(opener.name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                anyhow::ensure!(
                    alpn.as_deref() == Some(b"h2"),
                    "ALPN did not select h2: {alpn:?}"
                );
                let (mut sender, connection) =
                    http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                h2_get(&mut sender, args).await?;
                Ok(Held::H2(sender))
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
}

/// One `GET` on an HTTP/2 connection, its body read to the end; fails unless 200.
async fn h2_get(sender: &mut http2::SendRequest<Empty<Bytes>>, args: &Args) -> anyhow::Result<()> {
    sender.ready().await?;
    let request = Request::get(format!("https://{}{}", args.host, args.path))
        .header(header::USER_AGENT, "weir-bench")
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    anyhow::ensure!(status == 200, "status {status}");
    Ok(())
}

/// Sends one message and waits for its echo.
async fn echo_once(ws: &mut WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    ws.send(Message::Binary(Bytes::from_static(b"ping")))
        .await?;
    match ws.next().await {
        Some(Ok(Message::Binary(echo))) if &echo[..] == b"ping" => Ok(()),
        other => anyhow::bail!("no echo: {other:?}"),
    }
}

/// Whether the connection still works: one more request or echo.
async fn still_open(connection: Held, args: &Args) -> bool {
    let check = async {
        match connection {
            Held::Http(mut stream) => {
                write_get(&mut stream, &args.host, &args.path, true).await?;
                let status = read_response(&mut stream, &mut Vec::new()).await?;
                anyhow::ensure!(status == 200, "status {status}");
                Ok(())
            }
            Held::Tls(mut stream) => {
                write_get(&mut stream, &args.host, &args.path, true).await?;
                let status = read_response(&mut stream, &mut Vec::new()).await?;
                anyhow::ensure!(status == 200, "status {status}");
                Ok(())
            }
            Held::H2(mut sender) => h2_get(&mut sender, args).await,
            Held::Ws(mut ws) => {
                echo_once(&mut ws).await?;
                // Spelled out: with futures-sink's `alloc` (which hyper's http2 brings in), the
                // Box is a Sink too and `ws.close(…)` would resolve to SinkExt::close.
                let _ = WebSocketStream::close(&mut ws, None).await;
                Ok(())
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), check).await,
        Ok(Ok(()))
    )
}

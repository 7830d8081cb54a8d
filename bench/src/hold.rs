//! Opens many idle connections through a proxy and holds them, for memory measurements.
//!
//! Every HTTP connection carries one request (so the proxy has parsed a request and pooled an
//! upstream connection, as in real traffic) and then stays idle; every WebSocket echoes one
//! message (so the tunnel is fully established) and then stays idle. When all are open the
//! ready file is written; on SIGTERM or SIGINT each connection is used once more to count how
//! many the proxy kept open, and the result is printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::util::{connect, read_response, stop_signal, write_get};
use crate::wsload::open;

/// What kind of connection to hold.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP/1.1 keep-alive connections, one request each.
    Http,
    /// WebSockets, one echoed message each.
    Ws,
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
}

/// Opens, holds until a signal, checks and reports.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let opened: Vec<anyhow::Result<Held>> = stream::iter(0..args.connections)
        .map(|_| open_one(&args))
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
        "kind": match args.kind { Kind::Http => "http", Kind::Ws => "ws" },
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
async fn open_one(args: &Args) -> anyhow::Result<Held> {
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
        }
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
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

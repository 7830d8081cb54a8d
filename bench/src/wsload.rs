//! Closed-loop WebSocket echo load: every connection sends a message, waits for its echo and
//! sends the next, for the whole run.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::stats::{Samples, round3};
use crate::util::{connect, merge, parse_secs};

/// Arguments of `ws-load`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to connect to.
    #[arg(long)]
    addr: SocketAddr,
    /// `Host` of the upgrade request.
    #[arg(long, default_value = "bench.local")]
    host: String,
    /// Path of the upgrade request.
    #[arg(long, default_value = "/ws")]
    path: String,
    /// Concurrent WebSockets.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    warmup: Duration,
    /// Bytes per message (binary).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// Opens a WebSocket through `addr` with the given `Host`.
pub async fn open(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    request
        .headers_mut()
        .insert(http::header::HOST, HeaderValue::from_str(host)?);
    let stream = connect(addr).await?;
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .context("WebSocket handshake")?;
    anyhow::ensure!(response.status() == 101, "status {}", response.status());
    Ok(ws)
}

/// What one connection did in the measured window.
#[derive(Default)]
struct Outcome {
    samples: Samples,
    error: Option<String>,
}

/// Runs the load and prints `{"connections", "messages", "msgs_per_s", "p50_ms", "p99_ms", …}`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut sockets = Vec::with_capacity(args.connections);
    let mut connect_errors = 0usize;
    let mut first_error = None;
    for _ in 0..args.connections {
        match open(args.addr, &args.host, &args.path).await {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                connect_errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let payload = Bytes::from(vec![b'w'; args.size]);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(drive(ws, payload.clone(), measure_from, end)))
        .collect();
    let mut samples = Samples::default();
    let mut errors = 0usize;
    for task in tasks {
        let outcome = task.await?;
        samples.merge(outcome.samples);
        if let Some(e) = outcome.error {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let messages = samples.len();
    let mut out = json!({
        "connections": args.connections,
        "connect_errors": connect_errors,
        "errors": errors,
        "messages": messages,
        "msgs_per_s": round3(messages as f64 / args.duration.as_secs_f64()),
        "first_error": first_error,
    });
    merge(&mut out, samples.summary_ms());
    println!("{out}");
    Ok(())
}

/// Echo round trips on one WebSocket until `end`; samples only after `measure_from`.
async fn drive(
    mut ws: WebSocketStream<TcpStream>,
    payload: Bytes,
    measure_from: Instant,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
            outcome.error = Some(format!("send: {e}"));
            return outcome;
        }
        match ws.next().await {
            Some(Ok(Message::Binary(echo))) if echo.len() == payload.len() => {}
            Some(Ok(other)) => {
                outcome.error = Some(format!("unexpected message: {other:?}"));
                return outcome;
            }
            Some(Err(e)) => {
                outcome.error = Some(format!("receive: {e}"));
                return outcome;
            }
            None => {
                outcome.error = Some("closed by the peer".to_owned());
                return outcome;
            }
        }
        let done = Instant::now();
        if sent >= measure_from && done <= end {
            outcome.samples.push(done - sent);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    outcome
}

//! HTTP/1.1 keep-alive load at a fixed request rate.
//!
//! Connection `i` of `C` sends its `k`-th request at `start + (k·C + i) / rate`, so the rate
//! holds whatever the latency (as long as the server keeps up). Outcomes are counted by kind:
//!
//! - `ok`: a 2xx response;
//! - `non_2xx`: any other status (the client saw an error page);
//! - `io_errors`: the request was sent and no complete response came back (reset, closed);
//! - `connect_errors`: a new connection could not be opened;
//! - `reconnects`: the server had closed an idle connection before the request was written
//!   (not an error: the request goes out on a new connection).
//!
//! `errors` = `non_2xx` + `io_errors` + `connect_errors`: what a client would have seen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::{Samples, round3};
use crate::util::{connect, merge, parse_secs, stop_signal};

/// How long a request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `rate`.
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
    /// Requests per second (all connections together).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_secs)]
    duration: Option<Duration>,
}

/// Counts of one connection.
#[derive(Default)]
struct Counts {
    ok: u64,
    non_2xx: BTreeMap<u16, u64>,
    io_errors: u64,
    connect_errors: u64,
    reconnects: u64,
    late: u64,
    samples: Samples,
    first_error: Option<String>,
}

/// Runs until the requests are sent, the duration is over or a signal arrives; prints the counts.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let connections = args.connections.max(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let per_conn = args.requests.map(|n| {
            // Requests k·C + i < n belong to connection i.
            let (c, i) = (connections as u64, i as u64);
            if n > i { (n - i).div_ceil(c) } else { 0 }
        });
        let job = Job {
            addr: args.addr,
            host: HeaderValue::from_str(&args.host)?,
            path: args.path.clone(),
            index: i,
            connections,
            rate: args.rate,
            start,
            end: args.duration.map(|d| start + d),
            requests: per_conn,
        };
        tasks.push(tokio::spawn(job.drive(stop_rx.clone())));
    }
    let signal = tokio::spawn(async move {
        stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut total = Counts::default();
    for task in tasks {
        let counts = task.await?;
        total.ok += counts.ok;
        for (status, n) in counts.non_2xx {
            *total.non_2xx.entry(status).or_default() += n;
        }
        total.io_errors += counts.io_errors;
        total.connect_errors += counts.connect_errors;
        total.reconnects += counts.reconnects;
        total.late += counts.late;
        total.samples.merge(counts.samples);
        if total.first_error.is_none() {
            total.first_error = counts.first_error;
        }
    }
    signal.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let non_2xx: u64 = total.non_2xx.values().sum();
    let requests = total.ok + non_2xx + total.io_errors;
    let mut out = json!({
        "target_rps": args.rate,
        "requests": requests,
        "ok": total.ok,
        "non_2xx": non_2xx,
        "statuses": total.non_2xx.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "io_errors": total.io_errors,
        "connect_errors": total.connect_errors,
        "errors": non_2xx + total.io_errors + total.connect_errors,
        "reconnects": total.reconnects,
        "late": total.late,
        "elapsed_s": round3(elapsed),
        "achieved_rps": round3(requests as f64 / elapsed),
        "first_error": total.first_error,
    });
    merge(&mut out, total.samples.summary_ms());
    println!("{out}");
    Ok(())
}

/// The schedule of one connection.
struct Job {
    addr: SocketAddr,
    host: HeaderValue,
    path: String,
    index: usize,
    connections: usize,
    rate: f64,
    start: Instant,
    end: Option<Instant>,
    requests: Option<u64>,
}

impl Job {
    /// Sends this connection's requests on schedule.
    async fn drive(self, mut stop: watch::Receiver<bool>) -> Counts {
        let mut counts = Counts::default();
        let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
        let mut k: u64 = 0;
        loop {
            if self.requests.is_some_and(|n| k >= n) {
                break;
            }
            let slot = (k as f64 * self.connections as f64 + self.index as f64) / self.rate;
            let due = self.start + Duration::from_secs_f64(slot);
            if self.end.is_some_and(|end| due >= end) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            if Instant::now() > due + Duration::from_millis(10) {
                counts.late += 1;
            }
            k += 1;
            self.one(&mut sender, &mut counts).await;
        }
        counts
    }

    /// One request, on the current connection or on a new one.
    async fn one(&self, sender: &mut Option<SendRequest<Empty<Bytes>>>, counts: &mut Counts) {
        let mut request = self.request();
        // At most a few attempts to find a connection the request can be written on.
        for _ in 0..3 {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                if sender.take().is_some() {
                    counts.reconnects += 1;
                }
                match self.handshake().await {
                    Ok(s) => *sender = Some(s),
                    Err(e) => {
                        counts.connect_errors += 1;
                        counts.first_error.get_or_insert(format!("connect: {e:#}"));
                        return;
                    }
                }
            }
            let s = sender.as_mut().expect("a connection");
            if s.ready().await.is_err() {
                *sender = None;
                counts.reconnects += 1;
                continue;
            }
            let sent = Instant::now();
            let exchange = async {
                let response = s.try_send_request(request).await?;
                let status = response.status();
                Ok::<_, hyper::client::conn::TrySendError<Request<Empty<Bytes>>>>((
                    status,
                    response.into_body().collect().await,
                ))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Err(_) => {
                    counts.io_errors += 1;
                    counts
                        .first_error
                        .get_or_insert("request timed out".to_owned());
                    *sender = None;
                    return;
                }
                Ok(Ok((status, body))) => {
                    match body {
                        Ok(_) if status.is_success() => {
                            counts.ok += 1;
                            counts.samples.push(sent.elapsed());
                        }
                        Ok(_) => *counts.non_2xx.entry(status.as_u16()).or_default() += 1,
                        Err(e) => {
                            counts.io_errors += 1;
                            counts.first_error.get_or_insert(format!("body: {e}"));
                            *sender = None;
                        }
                    }
                    return;
                }
                Ok(Err(mut e)) => {
                    *sender = None;
                    match e.take_message() {
                        // Never written: the connection had been closed. Try a new one.
                        Some(unsent) => {
                            counts.reconnects += 1;
                            request = unsent;
                        }
                        None => {
                            counts.io_errors += 1;
                            counts
                                .first_error
                                .get_or_insert(format!("request: {}", e.error()));
                            return;
                        }
                    }
                }
            }
        }
        counts.connect_errors += 1;
        counts
            .first_error
            .get_or_insert("no usable connection after 3 attempts".to_owned());
    }

    /// The request to send.
    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::get(self.path.as_str())
            .body(Empty::new())
            .expect("a valid request");
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        request
    }

    /// A new HTTP/1.1 connection.
    async fn handshake(&self) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
        let stream = tokio::time::timeout(Duration::from_secs(5), connect(self.addr))
            .await
            .map_err(|_| anyhow::anyhow!("connect timed out"))??;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

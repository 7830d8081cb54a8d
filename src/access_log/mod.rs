//! The access log: one line per request, written by a thread of its own.
//!
//! The request path only moves an [`Entry`] into a bounded channel; formatting and writing
//! happen on the writer thread, which wakes up at most every [`BATCH_INTERVAL`] and writes
//! what has queued up meanwhile in one go. (Woken for every line, it cost a context switch per
//! request: 40% of the throughput of a proxy on one core.) When the writer falls behind (a
//! blocked stdout), lines are dropped and counted (`weir_access_log_dropped_total`) rather than
//! slowing requests down.

mod format;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode, Uri, Version};
use prometheus::IntCounter;

use crate::model::{Canary, Route};

pub use format::LogFormat;

/// How many entries may wait for the writer before new ones are dropped: room for
/// [`BATCH_INTERVAL`] at 800,000 requests per second.
const QUEUE: usize = 16 * 1024;

/// The writer sleeps this long after each batch, so a busy proxy wakes it ~50 times a second
/// rather than once per request; lines reach the log at most this late.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// One request, as the access log reports it.
#[derive(Debug)]
pub struct Entry {
    /// When the request head arrived.
    pub time: SystemTime,
    /// The client's address (the TCP peer).
    pub client: SocketAddr,
    /// Method, target (path and query) and protocol version.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The protocol version of the client's request.
    pub version: Version,
    /// The Host header or `:authority`, as sent.
    pub host: Option<HeaderValue>,
    /// The status sent (499: the client went away before weir had its response; 101 for an
    /// upgrade, also one answered 200 over HTTP/2).
    pub status: StatusCode,
    /// Request line, headers and body, in bytes.
    pub bytes_in: u64,
    /// Status line, headers and body, in bytes.
    pub bytes_out: u64,
    /// The response body, in bytes.
    pub body_bytes_out: u64,
    /// From the request head to the last byte of the response (or the end of the tunnel).
    pub duration: Duration,
    /// The endpoint that answered, if any (the last one tried).
    pub upstream: Option<SocketAddr>,
    /// The endpoints tried before `upstream` (`proxy-next-upstream`), logged before it as
    /// nginx's `$upstream_addr` lists them: `a, b`.
    pub upstream_tried: Vec<SocketAddr>,
    /// The status the endpoint answered with.
    pub upstream_status: Option<StatusCode>,
    /// From choosing the endpoint to the end of its response.
    pub upstream_time: Option<Duration>,
    /// The route that served it (its Ingress and Service).
    pub route: Option<Arc<Route>>,
    /// The route's canary, when it served the request (ingress-nginx's
    /// `$proxy_alternative_upstream_name`).
    pub canary: Option<Arc<Canary>>,
    /// The request's X-Request-ID (as sent upstream).
    pub request_id: Option<HeaderValue>,
    /// The User-Agent header.
    pub user_agent: Option<HeaderValue>,
    /// The Referer header.
    pub referer: Option<HeaderValue>,
}

/// The sending side of the access log. Cloning it is cheap; the writer thread ends when every
/// clone is gone.
#[derive(Clone)]
pub struct AccessLog {
    queue: SyncSender<Message>,
    dropped: IntCounter,
}

/// What the writer thread receives.
enum Message {
    Line(Box<Entry>),
    /// Write out everything queued before this, then answer.
    Flush(mpsc::Sender<()>),
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Starts the writer thread, writing `format` lines to `out`. Dropped lines are counted in
    /// `dropped`.
    pub fn start(
        format: LogFormat,
        out: Box<dyn Write + Send>,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let (queue, entries) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_entries(entries, format, out))?;
        Ok(AccessLog { queue, dropped })
    }

    /// Queues one line; drops it (and counts that) when the writer is behind.
    pub fn log(&self, entry: Entry) {
        match self.queue.try_send(Message::Line(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits (up to `limit`) until every line queued so far is written: for the last lines
    /// before the process exits. False when that took too long.
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, written) = mpsc::channel();
        let deadline = std::time::Instant::now() + limit;
        let mut flush = Message::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if std::time::Instant::now() < deadline => {
                    flush = again;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

/// The writer thread: waits for a line, formats everything queued, writes and flushes it,
/// sleeps [`BATCH_INTERVAL`], and ends when every sender is gone.
fn write_entries(entries: Receiver<Message>, format: LogFormat, mut out: Box<dyn Write + Send>) {
    let mut formatter = format::Formatter::new(format);
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = entries.recv() {
        let woken = std::time::Instant::now();
        for message in std::iter::once(first).chain(entries.try_iter()) {
            match message {
                Message::Line(entry) => {
                    formatter.write(&mut buf, &entry);
                    if buf.len() >= 64 * 1024 {
                        write_out(&mut out, &mut buf);
                    }
                }
                Message::Flush(done) => {
                    write_out(&mut out, &mut buf);
                    let _ = done.send(());
                }
            }
        }
        write_out(&mut out, &mut buf);
        std::thread::sleep(BATCH_INTERVAL.saturating_sub(woken.elapsed()));
    }
}

/// Writes and flushes `buf`, then empties it. Should the output fail, the lines are lost:
/// the writer keeps draining so that requests never wait for it.
fn write_out(out: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>) {
    let _ = out.write_all(buf).and_then(|()| out.flush());
    buf.clear();
}

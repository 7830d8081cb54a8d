//! The access log: one line per request, written by a thread of its own.
//!
//! The request path only moves an [`Entry`] into a bounded channel; formatting and writing
//! happen on the writer thread, which writes in batches and flushes whenever it has caught
//! up. When the writer falls behind (a blocked stdout), lines are dropped and counted
//! (`weir_access_log_dropped_total`) rather than slowing requests down.

mod format;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode, Uri, Version};
use prometheus::IntCounter;

use crate::model::Route;

pub use format::LogFormat;

/// How many entries may wait for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

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
    /// The status sent (499: the client went away before the response head).
    pub status: StatusCode,
    /// Request line, headers and body, in bytes.
    pub bytes_in: u64,
    /// Status line, headers and body, in bytes.
    pub bytes_out: u64,
    /// The response body, in bytes.
    pub body_bytes_out: u64,
    /// From the request head to the last byte of the response (or the end of the tunnel).
    pub duration: Duration,
    /// The endpoint that answered, if any.
    pub upstream: Option<SocketAddr>,
    /// The status the endpoint answered with.
    pub upstream_status: Option<StatusCode>,
    /// From choosing the endpoint to the end of its response.
    pub upstream_time: Option<Duration>,
    /// The route that served it (its Ingress and Service).
    pub route: Option<Arc<Route>>,
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
    queue: SyncSender<Entry>,
    dropped: IntCounter,
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
        match self.queue.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread: formats what is queued, writes it in one go, flushes when the queue is
/// empty, and ends when every sender is gone.
fn write_entries(entries: Receiver<Entry>, format: LogFormat, mut out: Box<dyn Write + Send>) {
    let mut formatter = format::Formatter::new(format);
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Ok(first) = entries.recv() {
        formatter.write(&mut buf, &first);
        while buf.len() < 60 * 1024 {
            match entries.try_recv() {
                Ok(entry) => formatter.write(&mut buf, &entry),
                Err(_) => break,
            }
        }
        if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
            // Nowhere to write: keep draining so senders never block.
        }
        buf.clear();
    }
}

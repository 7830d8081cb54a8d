//! Protection against more connections than weir can serve:
//! - `--max-connections`: open client connections (plain, TLS and passed-through) are capped;
//!   at the cap, accepting pauses, so new connections wait in the kernel's backlog rather than
//!   take the file descriptors that established connections need for their endpoints.
//! - `--max-connections-per-client`: one client address cannot hold more; a connection over
//!   it is closed as soon as it is accepted (after its PROXY protocol header, which names the
//!   address). The table of addresses holds only those with open connections, so it is never
//!   larger than the connections themselves.
//! - When accepting fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), the listener
//!   backs off (10 ms doubling to 1 s) instead of spinning, and says so at most once per
//!   [`LOG_EVERY`].

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::metrics::GaugeGuard;
use crate::model::access::canonical;
use crate::state::{ConnectionCounter, ConnectionSlot};

/// The longest a listener waits after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// At most one warning per this long about failing accepts.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connection caps shared by the listeners.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// `--max-connections`: a permit per open client connection.
    total: Option<Arc<Semaphore>>,
    /// `--max-connections-per-client` (its addresses are bounded by the connections).
    per_client: Option<Arc<ConnectionCounter>>,
}

impl ConnectionLimits {
    /// Caps of `total` open connections and `per_client` per client address (0: no cap).
    pub fn new(total: usize, per_client: usize) -> Self {
        ConnectionLimits {
            total: (total > 0).then(|| Arc::new(Semaphore::new(total))),
            per_client: (per_client > 0).then(|| {
                let cap = u32::try_from(per_client).unwrap_or(u32::MAX);
                Arc::new(ConnectionCounter::bounded(cap, usize::MAX))
            }),
        }
    }

    /// Whether another connection fits under `--max-connections` now. A listener looks before
    /// it accepts and waits for [`ConnectionLimits::room`] when there is none; it takes its
    /// place only once it has a connection, so that listeners idle in `accept` hold none.
    pub fn has_room(&self) -> bool {
        self.total
            .as_ref()
            .is_none_or(|t| t.available_permits() > 0)
    }

    /// Waits until another connection fits under `--max-connections`.
    pub async fn room(&self) {
        if let Some(total) = &self.total {
            let place = total.acquire().await;
            drop(place.expect("the connection semaphore is never closed"));
        }
    }

    /// A place for a connection just accepted: at once when there is room (`Ok`), else `Err`
    /// with a future that waits for one (when another listener took the last place between
    /// the look and the accept).
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, AdmitLater> {
        let Some(total) = &self.total else {
            return Ok(None);
        };
        match total.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(AdmitLater(total.clone())),
        }
    }

    /// Counts a connection from `ip` against its address's cap: `None` when it is over.
    pub fn enter(&self, ip: IpAddr) -> Option<Option<ConnectionSlot>> {
        match &self.per_client {
            None => Some(None),
            Some(per_client) => per_client.acquire(canonical(ip)).map(Some),
        }
    }
}

/// Waits for a place under `--max-connections`.
#[derive(Debug)]
pub struct AdmitLater(Arc<Semaphore>);

impl AdmitLater {
    /// The permit, once a connection closed.
    pub async fn wait(self) -> OwnedSemaphorePermit {
        self.0
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }
}

/// What an open client connection holds for as long as it is open: its count in
/// `weir_client_connections_active`, its place under `--max-connections` and under its
/// address's cap.
#[derive(Debug)]
pub struct Open {
    _gauge: GaugeGuard,
    _permit: Option<OwnedSemaphorePermit>,
    /// Set once the client's address is known (after a PROXY protocol header).
    pub(super) slot: Option<ConnectionSlot>,
}

impl Open {
    /// A connection counted in `gauge`, holding `permit`.
    pub fn new(gauge: GaugeGuard, permit: Option<OwnedSemaphorePermit>) -> Self {
        Open {
            _gauge: gauge,
            _permit: permit,
            slot: None,
        }
    }
}

/// Whether a failed accept is for want of file descriptors or memory (wait before the next),
/// rather than about the one connection (an aborted handshake: accept the next at once).
pub fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A listener's back-off after failed accepts.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
    last_warned: Option<Instant>,
    /// Failures since the last warning.
    unreported: u64,
}

impl AcceptBackoff {
    /// Records a failed accept for want of resources; returns how long to wait before the
    /// next. Warns at most once per [`LOG_EVERY`], with the count of failures since.
    pub fn failed(&mut self, error: &io::Error, listener: &str) -> Duration {
        let delay = self
            .delay
            .map_or(FIRST_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
        self.delay = Some(delay);
        self.unreported += 1;
        let now = Instant::now();
        if self.last_warned.is_none_or(|at| now - at >= LOG_EVERY) {
            warn!(
                %error,
                listener,
                failures = self.unreported,
                backoff = ?delay,
                "accepting connections fails for want of resources (file descriptors or \
                 memory); established connections are still served"
            );
            self.last_warned = Some(now);
            self.unreported = 0;
        }
        delay
    }

    /// Records a successful accept: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.delay = None;
    }
}

/// The default `--max-connections`: half the process's open-files limit (the other half is
/// for the endpoint connections the client connections need, and everything else); `None`
/// when the limit is unlimited or cannot be read.
pub fn default_max_connections() -> Option<usize> {
    let limits = procfs::process::Process::myself().ok()?.limits().ok()?;
    match limits.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(files) => Some((files / 2).max(64) as usize),
        procfs::process::LimitValue::Unlimited => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_leaves_nothing_behind() {
        let limits = ConnectionLimits::new(0, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = limits.enter(a).unwrap();
        let second = limits.enter(mapped).unwrap();
        assert!(limits.enter(a).is_none(), "a third from the same address");
        assert!(limits.enter("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        let third = limits.enter(a).unwrap();
        drop((second, third));
        let per_client = limits.per_client.as_ref().unwrap();
        let entries = per_client.addresses();
        assert_eq!(
            entries, 0,
            "no state is kept for addresses without connections"
        );
    }

    #[tokio::test]
    async fn at_the_cap_a_place_is_waited_for() {
        let limits = ConnectionLimits::new(1, 0);
        assert!(limits.has_room());
        let held = limits.admit().ok().unwrap();
        assert!(!limits.has_room());
        let room = tokio::spawn({
            let total = limits.total.clone().unwrap();
            async move {
                ConnectionLimits {
                    total: Some(total),
                    per_client: None,
                }
                .room()
                .await
            }
        });
        let Err(later) = limits.admit() else {
            panic!("a second place while the first is held")
        };
        let waiting = tokio::spawn(later.wait());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(!room.is_finished());
        drop(held);
        let _permit = waiting.await.unwrap();
        room.await.unwrap();
        assert!(ConnectionLimits::new(0, 0).admit().unwrap().is_none());
    }

    #[test]
    fn the_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let error = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(is_resource_error(&error));
        assert!(!is_resource_error(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        let waits: Vec<Duration> = (0..9).map(|_| backoff.failed(&error, "http")).collect();
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(backoff.unreported, 8, "warned once, on the first");
        backoff.succeeded();
        assert_eq!(backoff.failed(&error, "http"), FIRST_BACKOFF);
    }
}

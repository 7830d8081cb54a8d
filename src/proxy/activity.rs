//! What a client connection is doing: requests in flight, when the last one finished, and the
//! state the listener needs to close or park the connection when it goes idle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Shared by the task serving a connection (or holding it parked), its requests and its socket
/// wrapper.
#[derive(Debug)]
pub struct ConnActivity {
    in_flight: AtomicUsize,
    /// When the last request finished, in ms since the process started.
    last_done_ms: AtomicU64,
    /// How many requests have finished on the connection.
    completed: AtomicU64,
    /// The last write to the client could not be taken by the socket.
    write_blocked: AtomicBool,
    /// The listener is taking the socket back from an idle HTTP/1 connection.
    parking: AtomicBool,
    /// How many requests have started on the connection.
    requests: AtomicU64,
    /// The connection served its last request (`--keepalive-requests`): an HTTP/2 connection
    /// is to be shut down gracefully.
    retiring: AtomicBool,
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

pub(super) fn now_ms() -> u64 {
    process_start().elapsed().as_millis() as u64
}

impl ConnActivity {
    /// Activity of a connection that was just accepted (idle since now).
    pub fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(now_ms()),
            completed: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            retiring: AtomicBool::new(false),
        })
    }

    /// Counts something (a request, its body, a tunnel) as in flight until the returned guard
    /// is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// How long the connection has had nothing in flight, or `None` while something is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.last_done_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(now_ms().saturating_sub(since)))
    }

    /// How many guards have been dropped so far: changes whenever something finishes.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Records whether the last write to the client had to wait for the socket.
    pub fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::Relaxed);
    }

    /// Whether bytes may still wait in the HTTP server's write buffer.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
    }

    /// Marks that the listener is taking the socket back (`true`) or has got it (`false`).
    pub fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Release);
    }

    /// Counts a request that started on the connection; returns how many have, this one
    /// included.
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks that the connection has served its last request.
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Release);
    }

    /// Whether the connection has served its last request.
    pub fn retiring(&self) -> bool {
        self.retiring.load(Ordering::Acquire)
    }

    /// Whether the listener is taking the socket back: its shutdown must then be skipped.
    pub fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }
}

/// Marks one thing in flight on its connection; dropping it marks it done.
#[derive(Debug)]
pub struct InFlight(Arc<ConnActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done_ms.store(now_ms(), Ordering::Release);
        self.0.completed.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guards_track_idleness() {
        let activity = ConnActivity::new();
        assert!(activity.idle_for().is_some());
        let a = activity.start();
        let b = activity.start();
        assert_eq!(activity.idle_for(), None);
        drop(a);
        assert_eq!(activity.idle_for(), None);
        assert_eq!(activity.completed(), 1);
        drop(b);
        assert_eq!(activity.completed(), 2);
        assert!(
            activity
                .idle_for()
                .is_some_and(|d| d < Duration::from_secs(1))
        );
    }
}

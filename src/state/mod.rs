//! The one thing the control plane and the data plane share: the current [`Snapshot`].
//!
//! The controller publishes a new immutable snapshot — routes and certificates together, in one
//! swap; the proxy loads it once per request (and the TLS resolver once per handshake) and keeps
//! the `Arc`s it needs, so requests already running finish on the snapshot they started with
//! while new ones see the new one. Nothing is locked on the request path.
//!
//! The state also holds the process's [`Metrics`]: each published table comes with the
//! runtime state of its routes ([`Runtimes`]: request-metric handles, balancers), prepared by
//! `publish` and carried over from the previous table where routes did not change.

mod balancer;
mod connections;
mod limiter;
mod runtime;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::model::RouteTable;
use crate::model::connection::Connection;
use crate::tls::CertStore;
pub use balancer::{
    Attempt, Balancer, FAILURE_PENALTY, Picked, RoundRobin, next_untried, stable_hash,
};
pub use connections::{ConnectionCounter, ConnectionSlot};
pub use limiter::{Limiter, MAX_CLIENTS};
pub use runtime::{CanaryRuntime, RouteRuntime, Runtimes, UpstreamTlsSetting};

/// An immutable view of everything the data plane serves.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every publish; 0 is the empty table served before the first.
    pub generation: u64,
    /// The routes.
    pub table: Arc<RouteTable>,
    /// The certificates, by SNI.
    pub certs: Arc<CertStore>,
    /// The runtime state of each route of `table` (metrics, balancers).
    pub runtime: Runtimes,
}

/// The current snapshot plus the readiness flags the admin endpoints report.
#[derive(Debug)]
pub struct State {
    current: ArcSwap<Snapshot>,
    published: AtomicBool,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

impl State {
    /// A state serving the empty table (every request 404) and `certs`, not yet ready, with
    /// metrics of its own.
    pub fn new(certs: Arc<CertStore>) -> Self {
        State::with_metrics(certs, Arc::new(Metrics::default()))
    }

    /// Like [`State::new`], counting into `metrics`.
    pub fn with_metrics(certs: Arc<CertStore>, metrics: Arc<Metrics>) -> Self {
        State {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                table: Arc::new(RouteTable::empty()),
                certs,
                runtime: Runtimes::default(),
            }),
            published: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            metrics,
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The snapshot to use for one request or handshake.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new table and certificates atomically and returns its generation. There is
    /// one publisher (the rebuild loop); concurrent publishers could store their snapshots out
    /// of generation order. Prepares the runtime state of the table's routes first (a few
    /// milliseconds for 10,000 routes: call it off the async workers).
    pub fn publish(&self, table: RouteTable, certs: Arc<CertStore>) -> u64 {
        let previous = self.current.load_full();
        // The previous table keeps its routes alive while the new one is prepared, so a route
        // at the same address is the same route.
        let mut stats = self.metrics.requests.index(&table);
        let runtime = Runtimes::prepare(&table, &mut stats, &previous.runtime);
        stats.finish();
        let generation = previous.generation + 1;
        drop(previous);
        // The replaced snapshot is freed here, after the swap (a thread of its own to free it
        // made the next build contend with it in the allocator: twice as slow).
        self.current.store(Arc::new(Snapshot {
            generation,
            table: Arc::new(table),
            certs,
            runtime,
        }));
        self.metrics.control.generation.set(generation as i64);
        self.published.store(true, Ordering::Release);
        generation
    }

    /// Ready: a table has been published and the process is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.published.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Sets the gauges of what the served table holds (`weir_table_routes`, …), for a scrape of
    /// the metrics.
    pub fn count_table(&self) {
        let served = self.snapshot();
        (self.metrics.control).count_table(served.generation, &served.table);
    }

    /// What a client connection takes from the served table when it is accepted (read once
    /// per connection, without taking a reference to the snapshot).
    pub fn connection(&self) -> Arc<Connection> {
        self.current.load().table.connection().clone()
    }

    /// Marks the process as shutting down (`/readyz` turns unready).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_swaps_and_counts_generations() {
        let certs = Arc::new(CertStore::new(crate::tls::self_signed_default().unwrap()));
        let state = State::new(certs.clone());
        assert!(!state.is_ready());
        let before = state.snapshot();
        assert_eq!(before.generation, 0);
        assert_eq!(state.publish(RouteTable::empty(), certs.clone()), 1);
        assert_eq!(state.publish(RouteTable::empty(), certs), 2);
        assert!(state.is_ready());
        assert_eq!(before.generation, 0, "a loaded snapshot never changes");
        assert_eq!(state.snapshot().generation, 2);
        state.start_draining();
        assert!(!state.is_ready());
    }
}

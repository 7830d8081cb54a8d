//! Control-plane metrics: table rebuilds, what the table holds, Diagnostics, leadership,
//! watches and certificate expiry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::model::RouteTable;

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

/// The control plane's metrics. Handles are cheap to clone; the controller and the sources
/// update them, `/metrics` reads them.
#[derive(Clone)]
pub struct ControlMetrics {
    /// `weir_table_rebuilds_total{result}`: `success` or `failure`.
    pub rebuilds: IntCounterVec,
    /// `weir_table_rebuild_duration_seconds`: from the input to the published table.
    pub rebuild_duration: Histogram,
    /// `weir_table_last_rebuild_success_timestamp_seconds`.
    pub last_success: Gauge,
    /// `weir_table_last_rebuild_successful`: 1 when the last rebuild published a table.
    pub last_successful: IntGauge,
    /// `weir_table_generation`: the generation the data plane serves.
    pub generation: IntGauge,
    /// `weir_table_routes`: (host, path) rules in the table.
    pub routes: IntGauge,
    /// `weir_table_backends`: distinct Service ports the table routes to.
    pub backends: IntGauge,
    /// `weir_table_backends_without_endpoints`: those with no ready endpoint (answered 503).
    pub backends_without_endpoints: IntGauge,
    /// `weir_table_ingresses`: Ingresses of weir's class.
    pub ingresses: IntGauge,
    /// `weir_diagnostics{reason}`: current Diagnostics by reason.
    pub diagnostics: Arc<GaugeSet>,
    /// `weir_leader`: 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// `weir_watch_restarts_total{resource}`: watch streams that failed and were restarted.
    pub watch_restarts: IntCounterVec,
    /// `weir_events_total{result}`: Events written for Diagnostics, `published` or `failed`.
    pub events: IntCounterVec,
    /// `weir_events_waiting`: Diagnostics not yet written as Events (their turn under the
    /// Events rate limit has not come, or writing failed and is retried).
    pub events_waiting: IntGauge,
    /// `weir_ssl_certificate_expire_time_seconds{namespace,secret,host}`.
    pub certificate_expiry: Arc<GaugeSet>,
    /// The generation of the table `routes`, `backends` and `backends_without_endpoints`
    /// were last counted from.
    counted: Arc<Mutex<Option<u64>>>,
}

impl ControlMetrics {
    pub(super) fn new(registry: &super::Registrar) -> prometheus::Result<Self> {
        let metrics = ControlMetrics {
            rebuilds: IntCounterVec::new(
                Opts::new(
                    "weir_table_rebuilds_total",
                    "Routing table rebuilds, by result.",
                ),
                &["result"],
            )?,
            rebuild_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "weir_table_rebuild_duration_seconds",
                    "Time to build and publish a routing table.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            last_success: Gauge::new(
                "weir_table_last_rebuild_success_timestamp_seconds",
                "When the last routing table was published (Unix time).",
            )?,
            last_successful: IntGauge::new(
                "weir_table_last_rebuild_successful",
                "1 when the last rebuild published its table, 0 when it failed.",
            )?,
            generation: IntGauge::new(
                "weir_table_generation",
                "Generation of the routing table being served.",
            )?,
            routes: IntGauge::new(
                "weir_table_routes",
                "(host, path) rules in the routing table.",
            )?,
            backends: IntGauge::new(
                "weir_table_backends",
                "Distinct Service ports (as Ingresses name them) the routing table sends requests to.",
            )?,
            backends_without_endpoints: IntGauge::new(
                "weir_table_backends_without_endpoints",
                "Backends with no ready endpoint: their requests are answered 503.",
            )?,
            ingresses: IntGauge::new("weir_table_ingresses", "Ingresses of weir's class.")?,
            diagnostics: GaugeSet::new(GaugeVec::new(
                Opts::new(
                    "weir_diagnostics",
                    "Problems found in the input (also reported as Events), by reason.",
                ),
                &["reason"],
            )?),
            leader: IntGauge::new(
                "weir_leader",
                "1 while this replica is the leader (writes Ingress status and Events).",
            )?,
            watch_restarts: IntCounterVec::new(
                Opts::new(
                    "weir_watch_restarts_total",
                    "Kubernetes watch streams that failed and were restarted, by resource.",
                ),
                &["resource"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "weir_events_total",
                    "Events written for Diagnostics (by the leader), by result.",
                ),
                &["result"],
            )?,
            events_waiting: IntGauge::new(
                "weir_events_waiting",
                "Diagnostics waiting to be written as Events: for their turn under the Events rate limit, or for a retry.",
            )?,
            certificate_expiry: GaugeSet::new(GaugeVec::new(
                Opts::new(
                    "weir_ssl_certificate_expire_time_seconds",
                    "When each served certificate expires (Unix time), by TLS host and Secret.",
                ),
                &["namespace", "secret", "host"],
            )?),
            counted: Arc::default(),
        };
        let m = metrics.clone();
        registry.register_all([
            Box::new(m.rebuilds) as Box<dyn Collector>,
            Box::new(m.rebuild_duration),
            Box::new(m.last_success),
            Box::new(m.last_successful),
            Box::new(m.generation),
            Box::new(m.routes),
            Box::new(m.backends),
            Box::new(m.backends_without_endpoints),
            Box::new(m.ingresses),
            Box::new(m.diagnostics.family.clone()),
            Box::new(m.leader),
            Box::new(m.watch_restarts),
            Box::new(m.events),
            Box::new(m.events_waiting),
            Box::new(m.certificate_expiry.family.clone()),
        ])?;
        Ok(metrics)
    }

    /// Sets `weir_table_routes`, `weir_table_backends` and
    /// `weir_table_backends_without_endpoints` to what `table` (of `generation`) holds, unless
    /// they were counted from that generation or a later one already. Called when the metrics are read, not
    /// when a table is published: counting walks every route (milliseconds with 10,000
    /// Ingresses), which a change need not wait for or compete with.
    pub fn count_table(&self, generation: u64, table: &RouteTable) {
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        // A scrape that waited behind one of a newer table does not count an older one.
        if counted.is_some_and(|done| done >= generation) {
            return;
        }
        let mut backends: HashSet<_, foldhash::fast::RandomState> = HashSet::default();
        let mut without_endpoints = 0;
        let mut last = std::ptr::null();
        for entry in table.entries() {
            let backend = &entry.route.backend;
            // Routes of one Service port share their backend: neighbours often have the same.
            if std::ptr::eq(Arc::as_ptr(backend), last) {
                continue;
            }
            last = Arc::as_ptr(backend);
            if backends.insert(last) && backend.endpoints.is_empty() {
                without_endpoints += 1;
            }
        }
        self.routes.set(gauge(table.route_count()));
        self.backends.set(gauge(backends.len()));
        self.backends_without_endpoints
            .set(gauge(without_endpoints));
        *counted = Some(generation);
    }
}

/// `n` as a gauge's value.
pub(crate) fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A gauge family whose series are replaced as a whole on every table: the new values are set
/// first and then the series that are gone removed, so a scrape never finds it empty midway.
pub struct GaugeSet {
    family: GaugeVec,
    current: Mutex<HashSet<Vec<String>>>,
}

impl GaugeSet {
    fn new(family: GaugeVec) -> Arc<Self> {
        Arc::new(GaugeSet {
            family,
            current: Mutex::new(HashSet::new()),
        })
    }

    /// Makes `values` (label values, value) the family's only series.
    pub fn replace(&self, values: impl IntoIterator<Item = (Vec<String>, f64)>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashSet::new();
        for (labels, value) in values {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.family.with_label_values(&refs).set(value);
            next.insert(labels);
        }
        for gone in current.difference(&next) {
            let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self.family.remove_label_values(&refs);
        }
        *current = next;
    }
}

//! Request metrics, by route and by method and status.
//!
//! The route labels (namespace, Ingress, Service, and with the flags the rule's host and path)
//! are resolved once per table: [`RequestMetrics::index`] maps each route of a new table to its
//! [`RouteStats`], reusing the one of the previous table for the same labels, so a request
//! finds its counters with one pointer-keyed lookup. Within a route, the series of a method and
//! status are created on first use and then found by a short scan, without locks.
//!
//! Every label comes from the configuration or from a closed set (methods outside the standard
//! ones are `OTHER`, statuses are three digits), so the number of series is bounded whatever
//! clients send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, StatusCode};
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::model::{Canary, Route, RouteTable};

/// Buckets of the duration histograms, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the size histograms, in bytes (64 B to 16 MiB, ×4).
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Which optional labels the request metrics carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLabels {
    /// A `host` label: the rule's host as written (`*.example.com` for a wildcard rule, `""`
    /// for rules without a host and default backends).
    pub per_host: bool,
    /// A `path` label: the rule's path (`""` for default backends).
    pub per_path: bool,
    /// `status` is the class (`2xx`) instead of the code.
    pub status_classes: bool,
}

/// What one finished request reports.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The status sent to the client.
    pub status: StatusCode,
    /// From the request head to the end of the response body.
    pub duration: Duration,
    /// From choosing the endpoint to its response head (`None`: no endpoint answered).
    pub upstream_header: Option<Duration>,
    /// From choosing the endpoint to the end of its response body.
    pub upstream_response: Option<Duration>,
    /// Request line, headers and body, in bytes.
    pub request_size: u64,
    /// Status line, headers and body, in bytes.
    pub response_size: u64,
}

/// The metric families of requests.
struct Families {
    label_names: Vec<&'static str>,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_header: HistogramVec,
    upstream_response: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    grpc: IntCounterVec,
}

/// The labels of `weir_grpc_requests_total`.
const GRPC_LABELS: [&str; 4] = ["namespace", "ingress", "service", "grpc_status"];

impl Families {
    fn new(labels: RequestLabels) -> prometheus::Result<Self> {
        let mut label_names = vec!["namespace", "ingress", "service", "method", "status"];
        if labels.per_host {
            label_names.push("host");
        }
        if labels.per_path {
            label_names.push("path");
        }
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &label_names,
            )
        };
        Ok(Families {
            requests: IntCounterVec::new(
                Opts::new(
                    "weir_requests_total",
                    "Requests answered, by route, method and status.",
                ),
                &label_names,
            )?,
            duration: histogram(
                "weir_request_duration_seconds",
                "Time from the request head to the last byte of the response (for upgrades: until the tunnel closed).",
                DURATION_BUCKETS,
            )?,
            upstream_header: histogram(
                "weir_upstream_header_duration_seconds",
                "Time from choosing an endpoint (connect included) to its response head.",
                DURATION_BUCKETS,
            )?,
            upstream_response: histogram(
                "weir_upstream_response_duration_seconds",
                "Time from choosing an endpoint (connect included) to the end of its response body.",
                DURATION_BUCKETS,
            )?,
            request_size: histogram(
                "weir_request_size_bytes",
                "Request size: request line, headers (as HTTP/1.1) and body.",
                SIZE_BUCKETS,
            )?,
            response_size: histogram(
                "weir_response_size_bytes",
                "Response size: status line, headers (as HTTP/1.1) and body.",
                SIZE_BUCKETS,
            )?,
            grpc: IntCounterVec::new(
                Opts::new(
                    "weir_grpc_requests_total",
                    "gRPC calls answered, by route and final grpc-status (from the trailers, else derived from the HTTP status).",
                ),
                &GRPC_LABELS,
            )?,
            label_names,
        })
    }

    fn register(&self, registry: &super::Registrar) -> prometheus::Result<()> {
        let histograms = self
            .histograms()
            .map(|h| Box::new(h.clone()) as Box<dyn Collector>);
        let counters = [
            Box::new(self.requests.clone()) as Box<dyn Collector>,
            Box::new(self.grpc.clone()),
        ];
        registry.register_all(histograms.into_iter().chain(counters))
    }

    fn histograms(&self) -> [&HistogramVec; 5] {
        [
            &self.duration,
            &self.upstream_header,
            &self.upstream_response,
            &self.request_size,
            &self.response_size,
        ]
    }
}

/// The labels of a route's series (without method and status).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    /// The Ingress's namespace (`""` for requests that matched no route).
    pub namespace: String,
    /// The Ingress's name.
    pub ingress: String,
    /// The Service's name.
    pub service: String,
    /// The rule host, with `--metrics-per-host` (else `""`).
    pub host: String,
    /// The rule path, with `--metrics-per-path` (else `""`).
    pub path: String,
}

impl RouteLabels {
    fn of(values: &[&str; 5]) -> Self {
        let [namespace, ingress, service, host, path] = values.map(str::to_owned);
        RouteLabels {
            namespace,
            ingress,
            service,
            host,
            path,
        }
    }

    fn is(&self, values: &[&str; 5]) -> bool {
        [
            self.namespace.as_str(),
            self.ingress.as_str(),
            self.service.as_str(),
            self.host.as_str(),
            self.path.as_str(),
        ] == *values
    }
}

/// The series of one method and status of a route.
struct Cell {
    values: Vec<String>,
    requests: IntCounter,
    duration: Histogram,
    upstream_header: Histogram,
    upstream_response: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

impl Cell {
    fn registered(families: &Families, values: Vec<String>) -> Self {
        let v: Vec<&str> = values.iter().map(String::as_str).collect();
        Cell {
            requests: families.requests.with_label_values(&v),
            duration: families.duration.with_label_values(&v),
            upstream_header: families.upstream_header.with_label_values(&v),
            upstream_response: families.upstream_response.with_label_values(&v),
            request_size: families.request_size.with_label_values(&v),
            response_size: families.response_size.with_label_values(&v),
            values,
        }
    }

    /// Series that are not exported: for the last requests of a route that left the table.
    fn detached() -> Self {
        let histogram = || {
            Histogram::with_opts(HistogramOpts::new("detached", "detached"))
                .expect("a valid histogram")
        };
        Cell {
            values: Vec::new(),
            requests: IntCounter::new("detached", "detached").expect("a valid counter"),
            duration: histogram(),
            upstream_header: histogram(),
            upstream_response: histogram(),
            request_size: histogram(),
            response_size: histogram(),
        }
    }

    fn observe(&self, o: &Observation<'_>) {
        self.requests.inc();
        self.duration.observe(o.duration.as_secs_f64());
        if let Some(header) = o.upstream_header {
            self.upstream_header.observe(header.as_secs_f64());
        }
        if let Some(response) = o.upstream_response {
            self.upstream_response.observe(response.as_secs_f64());
        }
        self.request_size.observe(o.request_size as f64);
        self.response_size.observe(o.response_size as f64);
    }

    fn unregister(&self, families: &Families) {
        let v: Vec<&str> = self.values.iter().map(String::as_str).collect();
        let _ = families.requests.remove_label_values(&v);
        for histogram in families.histograms() {
            let _ = histogram.remove_label_values(&v);
        }
    }
}

/// The request series of one route (one label set): what a request reports into.
pub struct RouteStats {
    labels: RouteLabels,
    families: Arc<Families>,
    status_classes: bool,
    /// Read on every request; replaced (copy and push) when a method/status is first seen.
    cells: ArcSwap<Vec<(u32, Arc<Cell>)>>,
    /// Held while adding a cell or retiring; true once the route left the table.
    retired: Mutex<bool>,
    /// The last index (its generation) that gave these stats to a route.
    indexed: AtomicU64,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl RouteStats {
    fn new(labels: RouteLabels, families: Arc<Families>, status_classes: bool) -> Self {
        RouteStats {
            labels,
            families,
            status_classes,
            cells: ArcSwap::from_pointee(Vec::new()),
            retired: Mutex::new(false),
            indexed: AtomicU64::new(0),
        }
    }

    /// The route's labels.
    pub fn labels(&self) -> &RouteLabels {
        &self.labels
    }

    /// Counts one finished request.
    pub fn observe(&self, o: &Observation<'_>) {
        let (method_index, method) = method_label(o.method);
        let key = (method_index << 16) | u32::from(self.status_key(o.status));
        if let Some((_, cell)) = self.cells.load().iter().find(|(k, _)| *k == key) {
            cell.observe(o);
            return;
        }
        self.add_cell(key, method, o.status).observe(o);
    }

    /// Counts one finished gRPC call with its final status (`"0"` to `"16"`).
    pub fn observe_grpc(&self, grpc_status: &str) {
        let labels = &self.labels;
        if *self.retired.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        self.families
            .grpc
            .with_label_values(&[
                &labels.namespace,
                &labels.ingress,
                &labels.service,
                grpc_status,
            ])
            .inc();
    }

    /// The code, or its class (1 to 9) with `--metrics-status-classes` and for codes without a
    /// standard meaning (any three digits an endpoint may send: they must not multiply the
    /// series). 499, "client closed request", is weir's own.
    fn status_key(&self, status: StatusCode) -> u16 {
        let code = status.as_u16();
        let known = status.canonical_reason().is_some() || code == 499;
        if self.status_classes || !known {
            code / 100
        } else {
            code
        }
    }

    #[cold]
    fn add_cell(&self, key: u32, method: &str, status: StatusCode) -> Arc<Cell> {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, cell)) = self.cells.load().iter().find(|(k, _)| *k == key) {
            return cell.clone();
        }
        if *retired {
            return Arc::new(Cell::detached());
        }
        let status = match self.status_key(status) {
            class @ 1..=9 => format!("{class}xx"),
            code => code.to_string(),
        };
        let labels = &self.labels;
        let mut values = vec![
            labels.namespace.clone(),
            labels.ingress.clone(),
            labels.service.clone(),
            method.to_owned(),
            status,
        ];
        if self.families.label_names.contains(&"host") {
            values.push(labels.host.clone());
        }
        if self.families.label_names.contains(&"path") {
            values.push(labels.path.clone());
        }
        let cell = Arc::new(Cell::registered(&self.families, values));
        let mut cells = Vec::clone(&self.cells.load());
        cells.push((key, cell.clone()));
        self.cells.store(Arc::new(cells));
        cell
    }

    /// Removes the route's series from the registry: its route left the table. Requests still
    /// running on it count into series that are no longer exported.
    fn retire(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        *retired = true;
        for (_, cell) in self.cells.swap(Arc::new(Vec::new())).iter() {
            cell.unregister(&self.families);
        }
        let labels = &self.labels;
        for code in 0..=16 {
            let code = code.to_string();
            let _ = self.families.grpc.remove_label_values(&[
                &labels.namespace,
                &labels.ingress,
                &labels.service,
                &code,
            ]);
        }
    }
}

/// The method label: the standard methods by name, any other as `OTHER`, and its index.
fn method_label(method: &Method) -> (u32, &'static str) {
    match *method {
        Method::GET => (0, "GET"),
        Method::POST => (1, "POST"),
        Method::HEAD => (2, "HEAD"),
        Method::PUT => (3, "PUT"),
        Method::DELETE => (4, "DELETE"),
        Method::PATCH => (5, "PATCH"),
        Method::OPTIONS => (6, "OPTIONS"),
        Method::CONNECT => (7, "CONNECT"),
        Method::TRACE => (8, "TRACE"),
        _ => (9, "OTHER"),
    }
}

/// The maps of the index: foldhash, since the keys come from the configuration.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Route stats by a hash of their label values; the rare label sets whose hash another one
/// already has go to `collided`.
#[derive(Default)]
struct LabelSets {
    by_hash: FastMap<u64, Arc<RouteStats>>,
    collided: Vec<Arc<RouteStats>>,
    /// The generation of the last index (its mark on the stats it gave out).
    generation: u64,
}

impl LabelSets {
    fn find(&self, key: u64, values: &[&str; 5]) -> Option<&Arc<RouteStats>> {
        match self.by_hash.get(&key) {
            Some(stats) if stats.labels.is(values) => Some(stats),
            Some(_) => self.collided.iter().find(|s| s.labels.is(values)),
            None => None,
        }
    }

    fn insert(&mut self, key: u64, stats: Arc<RouteStats>) {
        match self.by_hash.entry(key) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(stats);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push(stats),
        }
    }

    /// Keeps the label sets of index `generation` and retires the others.
    fn retain(&mut self, generation: u64) {
        let keep = |stats: &Arc<RouteStats>| {
            let kept = stats.indexed.load(Ordering::Relaxed) == generation;
            if !kept {
                stats.retire();
            }
            kept
        };
        self.by_hash.retain(|_, stats| keep(stats));
        self.collided.retain(keep);
    }
}

/// A hash of label values (namespace, ingress, service, host, path).
fn label_hash(values: &[&str; 5]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0x77656972).build_hasher();
    for value in values {
        hasher.write(value.as_bytes());
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// The namespace, Ingress and Service labels of the requests `route`'s main backend serves.
fn labels(route: &Route) -> [&str; 3] {
    [
        route.ingress.namespace.as_str(),
        route.ingress_name(),
        route.backend.service.name.as_str(),
    ]
}

/// The namespace, Ingress and Service labels of the requests a canary serves.
fn canary_labels(canary: &Canary) -> [&str; 3] {
    [
        canary.ingress.namespace.as_str(),
        canary.ingress.name.as_str(),
        canary.backend.service.name.as_str(),
    ]
}

/// Gives the routes of one table their [`RouteStats`] as the table is published
/// ([`RequestMetrics::index`]): the stats of a label set already known are kept, and
/// [`RouteIndex::finish`] removes the series of the label sets no route was given.
pub struct RouteIndex<'t> {
    /// `None` when request metrics are off.
    live: Option<(&'t RequestMetrics, MutexGuard<'t, LabelSets>)>,
    /// This index's mark on the stats it gives out.
    generation: u64,
    /// With a `host` or `path` label: each route's rule host and path (by the route's
    /// address; empty for a route reached from several rules).
    sites: Option<FastMap<usize, (String, &'t str)>>,
}

impl<'t> RouteIndex<'t> {
    /// An index that gives no route stats (request metrics off).
    pub fn off() -> RouteIndex<'static> {
        RouteIndex {
            live: None,
            generation: 0,
            sites: None,
        }
    }

    /// The stats of `route`, a route of the indexed table; `kept` are the stats it had in the
    /// previous table, if it was there (the same `Arc`). Without a `host` or `path` label the
    /// labels depend on the route alone, so they are kept without being looked at.
    pub fn route(
        &mut self,
        route: &Arc<Route>,
        kept: Option<&Arc<RouteStats>>,
    ) -> Option<Arc<RouteStats>> {
        if let (Some(kept), None, Some(_)) = (kept, &self.sites, &self.live) {
            kept.indexed.store(self.generation, Ordering::Relaxed);
            return Some(kept.clone());
        }
        let (host, path) = self.site(route);
        self.resolve(labels(route), &host, path)
    }

    /// The stats of the requests the canary of `route` serves (labelled with the canary
    /// Ingress and Service).
    pub fn canary(&mut self, route: &Arc<Route>, canary: &Canary) -> Option<Arc<RouteStats>> {
        let (host, path) = self.site(route);
        self.resolve(canary_labels(canary), &host, path)
    }

    /// Removes the series of the label sets that no route of the table has. Without it
    /// (a publish that failed half-way), they stay until the next index finishes.
    pub fn finish(self) {
        if let Some((_, mut live)) = self.live {
            live.retain(self.generation);
        }
    }

    fn site(&self, route: &Arc<Route>) -> (String, &'t str) {
        self.sites
            .as_ref()
            .and_then(|sites| sites.get(&(Arc::as_ptr(route) as usize)))
            .map_or((String::new(), ""), |(host, path)| (host.clone(), *path))
    }

    fn resolve(
        &mut self,
        [namespace, ingress, service]: [&str; 3],
        host: &str,
        path: &str,
    ) -> Option<Arc<RouteStats>> {
        let (metrics, live) = self.live.as_mut()?;
        let values = [namespace, ingress, service, host, path];
        let key = label_hash(&values);
        let stats = match live.find(key, &values) {
            Some(stats) => stats.clone(),
            None => {
                let stats = Arc::new(RouteStats::new(
                    RouteLabels::of(&values),
                    metrics.families.clone(),
                    metrics.labels.status_classes,
                ));
                live.insert(key, stats.clone());
                stats
            }
        };
        stats.indexed.store(self.generation, Ordering::Relaxed);
        Some(stats)
    }
}

/// The request metrics: their families, and the stats of the routes of the current table.
pub struct RequestMetrics {
    families: Arc<Families>,
    labels: RequestLabels,
    enabled: bool,
    live: Mutex<LabelSets>,
    unrouted: Arc<RouteStats>,
}

impl RequestMetrics {
    /// Request metrics with `labels`, registered in `registry`; when not `enabled`, nothing is
    /// counted and [`RequestMetrics::index`] gives empty indexes.
    pub(super) fn new(
        labels: RequestLabels,
        enabled: bool,
        registry: &super::Registrar,
    ) -> prometheus::Result<Self> {
        let families = Arc::new(Families::new(labels)?);
        families.register(registry)?;
        let unrouted = RouteLabels {
            namespace: String::new(),
            ingress: String::new(),
            service: String::new(),
            host: String::new(),
            path: String::new(),
        };
        Ok(RequestMetrics {
            unrouted: Arc::new(RouteStats::new(
                unrouted,
                families.clone(),
                labels.status_classes,
            )),
            families,
            labels,
            enabled,
            live: Mutex::new(LabelSets::default()),
        })
    }

    /// Whether requests are counted at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The stats of requests that matched no route or were refused before routing (all route
    /// labels empty).
    pub fn unrouted(&self) -> &Arc<RouteStats> {
        &self.unrouted
    }

    /// Starts giving the routes of `table` their stats (label sets already known keep
    /// theirs): call [`RouteIndex::route`] for each route, then [`RouteIndex::finish`]. Once
    /// per published table; one index at a time (it holds the label sets).
    ///
    /// Label sets are found by a hash of their values, so a rebuild allocates only for label
    /// sets it has not seen before.
    pub fn index<'t>(&'t self, table: &'t RouteTable) -> RouteIndex<'t> {
        if !self.enabled {
            return RouteIndex::off();
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.generation += 1;
        let generation = live.generation;
        let sites = (self.labels.per_host || self.labels.per_path).then(|| {
            // The rule host and path of each route; a route reached from several rules (an
            // Ingress's defaultBackend serving each of its hosts) has neither, so that its
            // labels do not depend on which rule comes first.
            let mut sites: FastMap<usize, (String, &str)> = FastMap::default();
            for entry in table.entries() {
                let host = if self.labels.per_host {
                    entry.host.to_string()
                } else {
                    String::new()
                };
                let path = if self.labels.per_path { entry.path } else { "" };
                sites
                    .entry(Arc::as_ptr(entry.route) as usize)
                    .and_modify(|(h, p)| {
                        if *h != host || *p != path {
                            (*h, *p) = (String::new(), "");
                        }
                    })
                    .or_insert((host, path));
            }
            sites
        });
        RouteIndex {
            live: Some((self, live)),
            generation,
            sites,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, MetricsConfig};
    use crate::model::{HostMatch, PathRule, test_route};
    use crate::model::{RouteTableBuilder, TableEntry};

    /// A route of Ingress `ns/name` to Service `ns/svc`.
    fn route(name: &str) -> Arc<Route> {
        test_route("ns", name, "svc", "80")
    }

    fn table(ingresses: &[&str]) -> RouteTable {
        let mut builder = RouteTableBuilder::new();
        for name in ingresses {
            let route = route(name);
            for path in ["/a", "/b"] {
                let host = HostMatch::from_rule_host(&format!("{name}.example"));
                builder
                    .insert(&host, &PathRule::prefix(path), route.clone())
                    .unwrap();
            }
        }
        builder.build()
    }

    fn observe(stats: &RouteStats, status: u16) {
        stats.observe(&Observation {
            method: &Method::GET,
            status: StatusCode::from_u16(status).unwrap(),
            duration: Duration::from_millis(3),
            upstream_header: None,
            upstream_response: None,
            request_size: 100,
            response_size: 200,
        });
    }

    /// The stats of each route of `table` (by address), indexed as a publish does: `kept`
    /// gives the stats a route had in the previous table.
    fn index(
        metrics: &Metrics,
        table: &RouteTable,
        kept: impl Fn(&Arc<Route>) -> Option<Arc<RouteStats>>,
    ) -> FastMap<usize, Arc<RouteStats>> {
        let mut index = metrics.requests.index(table);
        let mut by_route = FastMap::default();
        for entry in table.entries() {
            if let Some(stats) = index.route(entry.route, kept(entry.route).as_ref()) {
                by_route.insert(Arc::as_ptr(entry.route) as usize, stats);
            }
        }
        index.finish();
        by_route
    }

    fn stats_of<'a>(
        index: &'a FastMap<usize, Arc<RouteStats>>,
        table: &RouteTable,
        ingress: &str,
    ) -> &'a Arc<RouteStats> {
        let entry: TableEntry<'_> = table
            .entries()
            .find(|e| e.route.ingress.name == ingress)
            .unwrap();
        &index[&(Arc::as_ptr(entry.route) as usize)]
    }

    #[test]
    fn label_sets_survive_rebuilds_and_leave_with_their_routes() {
        let metrics = Metrics::new(MetricsConfig::default());
        let first = table(&["a", "b"]);
        let index = index(&metrics, &first, |_| None);
        assert_eq!(index.len(), 2, "one entry per route, shared by its paths");
        observe(stats_of(&index, &first, "a"), 200);
        observe(stats_of(&index, &first, "b"), 200);
        observe(stats_of(&index, &first, "b"), 503);

        // A new table with equal labels keeps counting into the same series.
        let second = table(&["a"]);
        let next = super::tests::index(&metrics, &second, |_| None);
        assert!(Arc::ptr_eq(
            stats_of(&index, &first, "a"),
            stats_of(&next, &second, "a")
        ));
        observe(stats_of(&next, &second, "a"), 200);
        let text = metrics.encode();
        assert!(text.contains(
            "weir_requests_total{ingress=\"a\",method=\"GET\",namespace=\"ns\",service=\"svc\",status=\"200\"} 2"
        ), "{text}");
        // Ingress b left the table: its series are gone, and a late request on its old stats
        // does not bring them back.
        assert!(!text.contains("ingress=\"b\""), "{text}");
        observe(stats_of(&index, &first, "b"), 404);
        assert!(!metrics.encode().contains("ingress=\"b\""));

        // The same routes again (the model kept them): they keep their stats without their
        // labels being looked at, and keep counting.
        let again = super::tests::index(&metrics, &second, |route| {
            next.get(&(Arc::as_ptr(route) as usize)).cloned()
        });
        assert!(Arc::ptr_eq(
            stats_of(&next, &second, "a"),
            stats_of(&again, &second, "a")
        ));
        observe(stats_of(&again, &second, "a"), 200);
        assert!(metrics.encode().contains(
            "weir_requests_total{ingress=\"a\",method=\"GET\",namespace=\"ns\",service=\"svc\",status=\"200\"} 3"
        ));
    }

    #[test]
    fn off_means_empty_indexes_and_no_series() {
        let config = MetricsConfig {
            requests: false,
            ..MetricsConfig::default()
        };
        let metrics = Metrics::new(config);
        assert!(index(&metrics, &table(&["a"]), |_| None).is_empty());
        assert!(!metrics.requests.enabled());
        assert!(!metrics.encode().contains("weir_requests_total{"));
    }

    #[test]
    fn codes_without_a_meaning_count_as_their_class() {
        let metrics = Metrics::new(MetricsConfig::default());
        let stats = metrics.requests.unrouted();
        for code in [200, 299, 298, 499, 599, 404] {
            observe(stats, code);
        }
        let text = metrics.encode();
        let series = |status: &str| {
            text.lines()
                .filter(|l| l.starts_with("weir_requests_total{"))
                .find(|l| l.contains(&format!("status=\"{status}\"")))
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        assert_eq!(series("200").as_deref(), Some("1"));
        assert_eq!(series("2xx").as_deref(), Some("2"), "{text}");
        assert_eq!(series("499").as_deref(), Some("1"));
        assert_eq!(series("5xx").as_deref(), Some("1"));
        assert_eq!(series("404").as_deref(), Some("1"));
    }

    #[test]
    fn a_route_reached_from_several_hosts_has_no_host_label() {
        let config = MetricsConfig {
            labels: RequestLabels {
                per_host: true,
                per_path: true,
                status_classes: false,
            },
            ..MetricsConfig::default()
        };
        let metrics = Metrics::new(config);
        let shared = route("site");
        let mut builder = RouteTableBuilder::new();
        for host in ["a.example", "b.example", "c.example"] {
            let host = HostMatch::from_rule_host(host);
            builder.set_host_fallback(&host, shared.clone()).unwrap();
        }
        let table = builder.build();
        let index = index(&metrics, &table, |_| None);
        let labels = index[&(Arc::as_ptr(&shared) as usize)].labels();
        assert_eq!((labels.host.as_str(), labels.path.as_str()), ("", ""));
    }

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()).1,
            "OTHER"
        );
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()).0, 9);
        assert_eq!(method_label(&Method::PATCH).1, "PATCH");
    }
}

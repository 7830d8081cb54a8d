//! The Prometheus registry and every metric weir exports on `/metrics`.
//!
//! - [`requests`]: per route, method and status; label handles resolved once per table.
//! - [`connections`]: client connections, tunnels, TLS handshakes, upstream failures.
//! - [`control`]: rebuilds, table contents, Diagnostics, leadership, watches, certificates.
//! - [`compat`]: the ingress-nginx names (`--metrics-compat ingress-nginx`), made at scrape time.
//!
//! One [`Metrics`] per process (tests make one per proxy), shared through
//! [`crate::state::State`].

pub mod compat;
pub mod connections;
pub mod control;
pub mod requests;

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

pub use compat::ControllerLabels;
pub use connections::{ConnectionMetrics, GaugeGuard};
pub use control::ControlMetrics;
pub use requests::{
    Observation, RequestLabels, RequestMetrics, RouteIndex, RouteLabels, RouteStats,
};

/// What the metrics look like (see the flags `--metrics-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Optional labels of the request metrics.
    pub labels: RequestLabels,
    /// Count requests at all (`--request-metrics`).
    pub requests: bool,
    /// Also export the ingress-nginx names, with these controller labels.
    pub ingress_nginx: Option<ControllerLabels>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            labels: RequestLabels::default(),
            requests: true,
            ingress_nginx: None,
        }
    }
}

/// The registry and the metric handles.
pub struct Metrics {
    registry: Registry,
    /// Per-request metrics.
    pub requests: RequestMetrics,
    /// Connection-level data-plane metrics.
    pub connections: ConnectionMetrics,
    /// Control-plane metrics.
    pub control: ControlMetrics,
    ingress_nginx: Option<ControllerLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(MetricsConfig::default())
    }
}

impl Metrics {
    /// A registry with every weir metric (and the process's CPU, memory and file descriptors).
    pub fn new(config: MetricsConfig) -> Self {
        let registry = Registry::new();
        let requests = RequestMetrics::new(config.labels, config.requests, &registry)
            .expect("request metric definitions are valid");
        let connections =
            ConnectionMetrics::new(&registry).expect("connection metric definitions are valid");
        let control = ControlMetrics::new(&registry).expect("control metric definitions are valid");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "weir_build_info",
                "Always 1; the labels say which weir this is.",
            ),
            &["version"],
        )
        .expect("a valid gauge");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("registered once");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        Metrics {
            registry,
            requests,
            connections,
            control,
            ingress_nginx: config.ingress_nginx,
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut families = self.registry.gather();
        if let Some(controller) = &self.ingress_nginx {
            compat::add_ingress_nginx_copies(&mut families, controller);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut text)
            .expect("writing to a Vec does not fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Registers each of `collectors` in `registry`.
fn register_all(
    registry: &Registry,
    collectors: impl IntoIterator<Item = Box<dyn prometheus::core::Collector>>,
) -> prometheus::Result<()> {
    collectors
        .into_iter()
        .try_for_each(|collector| registry.register(collector))
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

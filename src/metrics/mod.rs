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

use std::cell::RefCell;

use prometheus::core::Collector;
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
    names: Vec<String>,
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
        let registry = Registrar::default();
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
            .register_all([Box::new(build_info) as Box<dyn Collector>])
            .expect("registered once");
        #[cfg(target_os = "linux")]
        registry
            .register_all([
                Box::new(prometheus::process_collector::ProcessCollector::for_self())
                    as Box<dyn Collector>,
            ])
            .expect("registered once");
        Metrics {
            names: registry.names.into_inner(),
            registry: registry.registry,
            requests,
            connections,
            control,
            ingress_nginx: config.ingress_nginx,
        }
    }

    /// The name of every metric family weir exports (ingress-nginx's copies not included).
    pub fn names(&self) -> &[String] {
        &self.names
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

/// A registry being filled, noting the names of the families registered.
#[derive(Default)]
struct Registrar {
    registry: Registry,
    names: RefCell<Vec<String>>,
}

impl Registrar {
    /// Registers each of `collectors`.
    fn register_all(
        &self,
        collectors: impl IntoIterator<Item = Box<dyn Collector>>,
    ) -> prometheus::Result<()> {
        collectors.into_iter().try_for_each(|collector| {
            let names = collector.desc().into_iter().map(|d| d.fq_name.clone());
            self.names.borrow_mut().extend(names);
            self.registry.register(collector)
        })
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names a dashboard or rules file uses: words starting `weir_`, `process_` or
    /// `nginx_ingress_controller_`, not part of a recording rule's name (`level:metric:ops`),
    /// without the `_bucket`/`_sum`/`_count` of histogram series.
    fn used_names(text: &str) -> Vec<String> {
        let mut names = Vec::new();
        let bytes = text.as_bytes();
        let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
        let mut i = 0;
        while i < bytes.len() {
            let starts = ["weir_", "process_", "nginx_ingress_controller_"]
                .iter()
                .any(|p| text[i..].starts_with(p));
            let after_name = i > 0 && (is_name(bytes[i - 1]) || bytes[i - 1] == b':');
            if starts && !after_name {
                let end = (i..bytes.len())
                    .find(|&j| !is_name(bytes[j]))
                    .unwrap_or(bytes.len());
                let recorded = bytes.get(end) == Some(&b':');
                if !recorded {
                    let name = &text[i..end];
                    let name = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name);
                    names.push(name.to_owned());
                }
                i = end;
            } else {
                i += 1;
            }
        }
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn the_dashboard_and_the_rules_use_only_metrics_weir_exports() {
        let metrics = Metrics::default();
        for (file, text) in [
            (
                "grafana-dashboard.json",
                include_str!("../../deploy/monitoring/grafana-dashboard.json"),
            ),
            (
                "prometheus-rules.yaml",
                include_str!("../../deploy/monitoring/prometheus-rules.yaml"),
            ),
        ] {
            let used = used_names(text);
            assert!(used.len() > 10, "{file}: {used:?}");
            for name in used {
                assert!(
                    metrics.names().contains(&name),
                    "deploy/monitoring/{file} uses {name}, which weir does not export"
                );
            }
        }
    }

    #[test]
    fn used_names_skip_recording_rules_and_histogram_suffixes() {
        let text = "rate(weir_requests_total[5m]) ingress:weir_requests:rate5m \
                    weir_request_duration_seconds_bucket process_open_fds";
        assert_eq!(
            used_names(text),
            [
                "process_open_fds",
                "weir_request_duration_seconds",
                "weir_requests_total"
            ]
        );
    }
}

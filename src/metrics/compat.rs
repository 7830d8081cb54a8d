//! `--metrics-compat ingress-nginx`: weir's request and certificate metrics exported a second
//! time under the names and labels of ingress-nginx, so that existing dashboards and alerts
//! keep working. The copies are made when `/metrics` is scraped, from the same series, so
//! requests pay nothing for them.

use prometheus::proto::{LabelPair, MetricFamily};

/// Label renames: (weir's label, ingress-nginx's label).
type LabelRenames = &'static [(&'static str, &'static str)];

/// weir's name → ingress-nginx's name, and the labels renamed on the way.
const RENAMES: &[(&str, &str, LabelRenames)] = &[
    (
        "weir_requests_total",
        "nginx_ingress_controller_requests",
        &[],
    ),
    (
        "weir_request_duration_seconds",
        "nginx_ingress_controller_request_duration_seconds",
        &[],
    ),
    (
        "weir_upstream_header_duration_seconds",
        "nginx_ingress_controller_header_duration_seconds",
        &[],
    ),
    (
        "weir_upstream_response_duration_seconds",
        "nginx_ingress_controller_response_duration_seconds",
        &[],
    ),
    (
        "weir_request_size_bytes",
        "nginx_ingress_controller_request_size",
        &[],
    ),
    (
        "weir_response_size_bytes",
        "nginx_ingress_controller_response_size",
        &[],
    ),
    (
        "weir_ssl_certificate_expire_time_seconds",
        "nginx_ingress_controller_ssl_expire_time_seconds",
        &[("secret", "secret_name")],
    ),
    (
        "weir_table_last_rebuild_successful",
        "nginx_ingress_controller_config_last_reload_successful",
        &[],
    ),
    (
        "weir_table_last_rebuild_success_timestamp_seconds",
        "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
        &[],
    ),
];

/// The labels ingress-nginx puts on every series of its controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerLabels {
    /// `controller_class`: the IngressClass controller value (`weir.dev/ingress-controller`).
    pub class: String,
    /// `controller_namespace`: the namespace weir runs in.
    pub namespace: String,
    /// `controller_pod`: the pod's name.
    pub pod: String,
}

/// Appends to `families` the ingress-nginx copies of the families it has a name for.
pub fn add_ingress_nginx_copies(families: &mut Vec<MetricFamily>, controller: &ControllerLabels) {
    let constant = [
        ("controller_class", &controller.class),
        ("controller_namespace", &controller.namespace),
        ("controller_pod", &controller.pod),
    ];
    let mut copies = Vec::new();
    for family in families.iter() {
        let Some((_, name, label_renames)) =
            RENAMES.iter().find(|(weir, _, _)| *weir == family.name())
        else {
            continue;
        };
        let mut copy = family.clone();
        copy.set_name((*name).to_owned());
        for metric in copy.mut_metric() {
            let mut labels = metric.take_label();
            for label in &mut labels {
                if let Some((_, to)) = label_renames.iter().find(|(from, _)| *from == label.name())
                {
                    label.set_name((*to).to_owned());
                }
            }
            labels.extend(constant.iter().map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).clone());
                pair
            }));
            labels.sort_by(|a, b| a.name().cmp(b.name()));
            metric.set_label(labels);
        }
        copies.push(copy);
    }
    families.extend(copies);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_documents_every_name() {
        let readme = include_str!("../../README.md");
        for (weir, nginx, _) in RENAMES {
            let row = format!("| `{weir}` | `{nginx}` |");
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
    }
}

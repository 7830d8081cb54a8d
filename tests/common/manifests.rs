//! Manifests directories for the `weir` binary: YAML for Services and Ingresses, written
//! atomically.

use std::net::SocketAddr;
use std::path::Path;

/// A Service `name` (port `http` 80) with core/v1 Endpoints: one subset per backend address.
pub fn service_yaml(name: &str, endpoints: &[SocketAddr]) -> String {
    let subsets: String = endpoints
        .iter()
        .map(|a| {
            format!(
                "  - addresses: [{{ip: \"{}\"}}]\n    ports: [{{name: http, port: {}}}]\n",
                a.ip(),
                a.port()
            )
        })
        .collect();
    let subsets = if subsets.is_empty() {
        "[]\n".to_owned()
    } else {
        format!("\n{subsets}")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: default}}\nsubsets: {subsets}"
    )
}

/// An Ingress of class weir routing `host` + Prefix `path` to `service` port `http`.
pub fn ingress_yaml(name: &str, host: &str, path: &str, service: &str) -> String {
    ingress_yaml_with(name, host, path, service, &[])
}

/// Like [`ingress_yaml`], with `annotations`.
pub fn ingress_yaml_with(
    name: &str,
    host: &str,
    path: &str,
    service: &str,
    annotations: &[(&str, &str)],
) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("{k}: {}, ", serde_json::to_string(v).unwrap()))
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\n\
         metadata: {{name: {name}, namespace: default, annotations: {{{annotations}}}}}\n\
         spec:\n  ingressClassName: weir\n  rules:\n  - host: {host}\n    http:\n      paths:\n\
         \x20     - path: {path}\n        pathType: Prefix\n        backend:\n          service:\n\
         \x20           name: {service}\n            port: {{name: http}}\n"
    )
}

pub fn write(dir: &Path, file: &str, contents: &str) {
    // Write then rename, as editors do, so weir never reads a half-written file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

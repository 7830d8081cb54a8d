//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz; see `fuzz/README.md`).
//!
//! Each function feeds arbitrary bytes to one parser of outside input and checks what must
//! hold whatever the input (a panic is a finding). They are thin wrappers that reach parsers
//! the crate does not otherwise make public; nothing else should call them, and they are not
//! part of weir's API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{self, BuildConfig, Input, Users};
use crate::proxy::client_hello::{ClientHelloReader, Parsed};
use crate::proxy::proxy_protocol;

/// A PROXY protocol (v1 or v2) header: a header found is never longer than the bytes, and
/// a cut-off beginning of it is never read as a complete header.
pub fn proxy_protocol_header(data: &[u8]) {
    if let Ok(Some((_, length))) = proxy_protocol::parse(data) {
        assert!(
            length > 0 && length <= data.len(),
            "{length} of {}",
            data.len()
        );
        for cut in [length - 1, length / 2] {
            let early = proxy_protocol::parse(&data[..cut]);
            assert!(
                !matches!(early, Ok(Some(_))),
                "complete after {cut} of {length}"
            );
        }
    }
}

/// A TLS ClientHello read as the bytes arrive (in pieces whose sizes the first byte picks):
/// the answer, once there is one, stays, and is the answer of reading every byte at once.
pub fn client_hello(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut reader = ClientHelloReader::new();
    let mut answer = Parsed::Incomplete;
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        let now = reader.read(&data[..end]);
        if answer != Parsed::Incomplete {
            assert_eq!(now, answer, "a decided answer changed");
        }
        answer = now;
    }
    if let Parsed::Complete(Some(name)) = &answer {
        assert!(!name.is_empty() && !name.ends_with('.'), "{name:?}");
        assert_eq!(name, &name.to_ascii_lowercase());
    }
    let whole = ClientHelloReader::new().read(data);
    assert_eq!(whole, answer, "in pieces and at once");
}

/// A manifest file's text, as YAML and as JSON: parsed or reported, and an error always
/// says what is wrong.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["fuzz.yaml", "fuzz.json"] {
        if let Err(errors) = crate::source::manifests::parse_text(Path::new(name), text) {
            assert!(!errors.is_empty());
        }
    }
}

/// Annotations on an Ingress (`key=value` lines; a key without a prefix gets
/// `nginx.ingress.kubernetes.io/`), built into a table: never a panic, and the same input
/// builds the same table twice.
pub fn annotations_build(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut annotations = BTreeMap::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let key = if key.contains('/') {
            key.to_owned()
        } else {
            format!("nginx.ingress.kubernetes.io/{key}")
        };
        annotations.insert(key, value.to_owned());
    }
    let backend = |port: i32| IngressBackend {
        service: Some(IngressServiceBackend {
            name: "web".to_owned(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        resource: None,
    };
    let path = |path: &str, path_type: &str| HTTPIngressPath {
        path: Some(path.to_owned()),
        path_type: path_type.to_owned(),
        backend: backend(80),
    };
    let ingress = Ingress {
        metadata: ObjectMeta {
            namespace: Some("apps".to_owned()),
            name: Some("fuzz".to_owned()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some("weir".to_owned()),
            default_backend: Some(backend(80)),
            rules: Some(vec![IngressRule {
                host: Some("fuzz.example.com".to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![
                        path("/", "Prefix"),
                        path("/api/(.*)", "ImplementationSpecific"),
                        path("/exact", "Exact"),
                    ],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: ObjectMeta {
            namespace: Some("apps".to_owned()),
            name: Some("web".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let input = Input {
        ingresses: vec![Arc::new(ingress)],
        services: vec![Arc::new(service)],
        ..Input::default()
    };
    let config = BuildConfig {
        ssl_passthrough: true,
        ..BuildConfig::default()
    };
    let built = model::build(&input, &config);
    let again = model::build(&input, &config);
    assert_eq!(built.table, again.table);
    assert_eq!(built.diagnostics, again.diagnostics);
    for path in ["/", "/api/x", "/exact"] {
        let _ = built.table.lookup("fuzz.example.com", path);
    }
}

/// A Host header and a request path: normalising either again changes nothing, a host
/// holds only what a host may, and a path's routing form is itself normalised.
pub fn host_and_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, path) = text.split_once('\n').unwrap_or((text, text));
    if let Some(normalized) = model::normalize_host(host) {
        assert_eq!(
            model::normalize_host(&normalized).as_deref(),
            Some(normalized.as_ref())
        );
        assert!(
            !normalized.contains(['/', '?', '#', '@', '%', '\\', ' ']),
            "{normalized:?}"
        );
    }
    if let Ok(normalized) = model::normalize_path(path) {
        assert!(normalized.starts_with('/') && !normalized.contains("//"));
        assert_eq!(
            model::normalize_path(&normalized).ok().as_deref(),
            Some(normalized.as_ref())
        );
        if let Ok(routing) = model::routing_path(&normalized) {
            assert_eq!(
                model::normalize_path(&routing).ok().as_deref(),
                Some(routing.as_ref())
            );
        }
    }
}

/// An htpasswd file: parsed or refused, and a file that parsed has a user; checking a
/// password of a listed user never panics (skipped where the hashes could be costly).
pub fn htpasswd(data: &[u8]) {
    if let Ok((users, _skipped)) = Users::from_htpasswd(data) {
        assert!(!users.is_empty());
        let costly = data.windows(2).any(|w| w == b"$2") || data.windows(6).any(|w| w == b"rounds");
        if !costly {
            let text = String::from_utf8_lossy(data);
            if let Some(user) = text.lines().find_map(|l| l.trim().split_once(':')) {
                let _ = users.verify(user.0, b"password");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry point runs on a few inputs (the fuzz targets build only with cargo-fuzz).
    #[test]
    fn entry_points_take_any_bytes() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
            b"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
            b"use-regex=true\nrewrite-target=/$1\nweir.dev/canary=true\nlimit-rps=x",
            b"alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n",
        ];
        for data in inputs {
            proxy_protocol_header(data);
            client_hello(data);
            manifests(data);
            annotations_build(data);
            host_and_path(data);
            htpasswd(data);
        }
    }
}

//! Which Services and Secrets some Ingress references: changes to anything else cannot affect
//! the routing table and trigger no rebuild.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::runtime::reflector::Store;

use super::watch::Change;

/// The (namespace, name) pairs of Services and Secrets referenced by any Ingress (of any class:
/// a superset is safe).
#[derive(Debug, Default)]
pub struct References {
    services: HashSet<(String, String)>,
    secrets: HashSet<(String, String)>,
}

impl References {
    /// The references of `ingresses`.
    pub fn of(ingresses: &[Arc<Ingress>]) -> Self {
        let mut refs = References::default();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            let Some(spec) = &ingress.spec else { continue };
            let rule_backends = spec
                .rules
                .iter()
                .flatten()
                .filter_map(|r| r.http.as_ref())
                .flat_map(|http| http.paths.iter().map(|p| &p.backend));
            for backend in spec.default_backend.iter().chain(rule_backends) {
                if let Some(service) = service_name(backend) {
                    refs.services
                        .insert((namespace.clone(), service.to_owned()));
                }
            }
            for tls in spec.tls.iter().flatten() {
                if let Some(secret) = &tls.secret_name {
                    refs.secrets.insert((namespace.clone(), secret.clone()));
                }
            }
        }
        refs
    }

    /// Whether `change` can affect the table; an Ingress change also recomputes the references
    /// from `ingresses`.
    pub fn update_and_check(&mut self, change: &Change, ingresses: &Store<Ingress>) -> bool {
        match change {
            Change::Always => true,
            Change::Ingress => {
                *self = References::of(&ingresses.state());
                true
            }
            Change::Service { namespace, name } => {
                self.services.contains(&(namespace.clone(), name.clone()))
            }
            Change::Secret { namespace, name } => {
                self.secrets.contains(&(namespace.clone(), name.clone()))
            }
        }
    }
}

fn service_name(backend: &IngressBackend) -> Option<&str> {
    backend.service.as_ref().map(|s| s.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::IngressSpec;

    fn ingress(json: serde_json::Value) -> Arc<Ingress> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn collects_services_and_tls_secrets_of_every_ingress() {
        let a = ingress(serde_json::json!({
            "metadata": {"name": "a", "namespace": "apps"},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "tls": [{"hosts": ["a.com"], "secretName": "a-cert"}],
                "rules": [{"host": "a.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/r", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}
                ]}}]
            }
        }));
        let empty = Arc::new(Ingress {
            spec: Some(IngressSpec::default()),
            ..Default::default()
        });
        let refs = References::of(&[a, empty]);
        let has = |set: &HashSet<(String, String)>, ns: &str, name: &str| {
            set.contains(&(ns.to_owned(), name.to_owned()))
        };
        assert!(has(&refs.services, "apps", "web"));
        assert!(has(&refs.services, "apps", "fallback"));
        assert!(!has(&refs.services, "default", "web"));
        assert!(has(&refs.secrets, "apps", "a-cert"));
        assert_eq!(refs.services.len(), 2);
    }
}

//! Which Services and Secrets some Ingress references, and what each Ingress looked like:
//! changes to anything else, and Ingress updates that touch only the status (weir's own status
//! writes among them), cannot affect the routing table and trigger no rebuild.

use std::collections::{HashMap, HashSet};
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
    fingerprints: HashMap<(String, String), u64>,
    /// A Secret that always matters (`--default-ssl-certificate`).
    pinned_secret: Option<(String, String)>,
}

impl References {
    /// The references of `ingresses`.
    pub fn of(ingresses: &[Arc<Ingress>]) -> Self {
        let mut refs = References::default();
        for ingress in ingresses {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            if let Some(fingerprint) = super::watch::ingress_fingerprint(ingress) {
                let name = ingress.metadata.name.clone().unwrap_or_default();
                refs.fingerprints
                    .insert((namespace.clone(), name), fingerprint);
            }
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

    /// Also counts `secret` (namespace, name) as referenced, whatever the Ingresses say.
    pub fn pin_secret(mut self, secret: Option<(String, String)>) -> Self {
        self.pinned_secret = secret;
        self
    }

    /// Whether `change` can affect the table; an Ingress change also recomputes the references
    /// from `ingresses`.
    pub fn update_and_check(&mut self, change: &Change, ingresses: &Store<Ingress>) -> bool {
        match change {
            Change::Always => true,
            Change::Ingress { key, fingerprint } => {
                if fingerprint.is_some() && self.fingerprints.get(key) == fingerprint.as_ref() {
                    return false;
                }
                let pinned = self.pinned_secret.take();
                *self = References::of(&ingresses.state()).pin_secret(pinned);
                true
            }
            Change::Service { namespace, name } => {
                self.services.contains(&(namespace.clone(), name.clone()))
            }
            Change::Secret { namespace, name } => {
                let key = (namespace.clone(), name.clone());
                self.secrets.contains(&key) || self.pinned_secret.as_ref() == Some(&key)
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

    #[test]
    fn status_only_updates_do_not_count_but_spec_and_annotation_changes_do() {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<Ingress>();
        let v1 = ingress(serde_json::json!({
            "metadata": {"name": "a", "namespace": "apps", "generation": 1},
            "spec": {"rules": [{"host": "a.com"}]}
        }));
        writer.apply_watcher_event(&Event::Apply((*v1).clone()));
        let mut refs = References::of(&store.state());
        let change = |i: &Ingress| Change::Ingress {
            key: ("apps".into(), "a".into()),
            fingerprint: super::super::watch::ingress_fingerprint(i),
        };

        let mut status_only = (*v1).clone();
        status_only.status = serde_json::from_value(
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}),
        )
        .unwrap();
        writer.apply_watcher_event(&Event::Apply(status_only.clone()));
        assert!(!refs.update_and_check(&change(&status_only), &store));

        let mut annotated = status_only.clone();
        annotated.metadata.annotations =
            Some([("kubernetes.io/ingress.class".to_owned(), "weir".to_owned())].into());
        writer.apply_watcher_event(&Event::Apply(annotated.clone()));
        assert!(refs.update_and_check(&change(&annotated), &store));

        let mut respec = annotated.clone();
        respec.metadata.generation = Some(2);
        writer.apply_watcher_event(&Event::Apply(respec.clone()));
        assert!(refs.update_and_check(&change(&respec), &store));
        assert!(
            !refs.update_and_check(&change(&respec), &store),
            "the same object again"
        );

        let deleted = Change::Ingress {
            key: ("apps".into(), "a".into()),
            fingerprint: None,
        };
        assert!(refs.update_and_check(&deleted, &store));
    }
}

//! Which Services, Secrets and ConfigMaps some Ingress references ([`model::references`]: the
//! same function the model's tests hold the build to), and what each Ingress looked like:
//! changes to anything else, and Ingress updates that touch only the status (weir's own status
//! writes among them), cannot affect the routing table and trigger no rebuild.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::reflector::Store;

use super::watch::Change;
use crate::model::{self, ObjectRef};

/// Objects that matter whatever the Ingresses say: the flags name them.
#[derive(Debug, Clone, Default)]
pub struct Pinned {
    /// `--default-ssl-certificate`.
    pub secret: Option<(String, String)>,
    /// `--configmap`.
    pub config_map: Option<(String, String)>,
    /// `--default-backend-service`.
    pub service: Option<(String, String)>,
}

/// The (namespace, name) pairs of Services, Secrets and ConfigMaps referenced by any Ingress
/// (of any class: a superset is safe), or pinned.
#[derive(Debug, Default)]
pub struct References {
    services: HashSet<(String, String)>,
    secrets: HashSet<(String, String)>,
    config_maps: HashSet<(String, String)>,
    fingerprints: HashMap<(String, String), u64>,
    pinned: Pinned,
}

fn key(object: ObjectRef) -> (String, String) {
    (object.namespace, object.name)
}

impl References {
    /// The references of `ingresses`.
    pub fn of(ingresses: &[Arc<Ingress>]) -> Self {
        let mut refs = References::default();
        for ingress in ingresses {
            if let Some(fingerprint) = super::watch::ingress_fingerprint(ingress) {
                let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
                let name = ingress.metadata.name.clone().unwrap_or_default();
                refs.fingerprints.insert((namespace, name), fingerprint);
            }
            let found = model::references(ingress);
            refs.services.extend(found.services.into_iter().map(key));
            refs.secrets.extend(found.secrets.into_iter().map(key));
            refs.config_maps
                .extend(found.config_maps.into_iter().map(key));
        }
        refs
    }

    /// Also counts the `pinned` objects as referenced, whatever the Ingresses say.
    pub fn pin(mut self, pinned: Pinned) -> Self {
        self.pinned = pinned;
        self
    }

    /// Whether `change` can affect the table; an Ingress change also recomputes the references
    /// from `ingresses`.
    pub fn update_and_check(&mut self, change: &Change, ingresses: &Store<Ingress>) -> bool {
        let is = |pinned: &Option<(String, String)>, namespace: &str, name: &str| {
            pinned
                .as_ref()
                .is_some_and(|(ns, n)| ns == namespace && n == name)
        };
        match change {
            Change::Always => true,
            Change::Ingress { key, fingerprint } => {
                if fingerprint.is_some() && self.fingerprints.get(key) == fingerprint.as_ref() {
                    return false;
                }
                let pinned = std::mem::take(&mut self.pinned);
                *self = References::of(&ingresses.state()).pin(pinned);
                true
            }
            Change::Service { namespace, name } => {
                self.services.contains(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.service, namespace, name)
            }
            Change::Secret { namespace, name } => {
                self.secrets.contains(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.secret, namespace, name)
            }
            Change::ConfigMap { namespace, name } => {
                self.config_maps
                    .contains(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.config_map, namespace, name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::IngressSpec;

    fn ingress(json: serde_json::Value) -> Arc<Ingress> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn referenced_and_pinned_objects_matter_others_do_not() {
        let a = ingress(serde_json::json!({
            "metadata": {"name": "a", "namespace": "apps"},
            "spec": {
                "tls": [{"hosts": ["a.com"], "secretName": "a-cert"}],
                "rules": [{"host": "a.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
                ]}}]
            }
        }));
        let empty = Arc::new(Ingress {
            spec: Some(IngressSpec::default()),
            ..Default::default()
        });
        let pair = |ns: &str, name: &str| Some((ns.to_owned(), name.to_owned()));
        let mut refs = References::of(&[a, empty]).pin(Pinned {
            secret: pair("ingress", "default-cert"),
            config_map: pair("ingress", "weir"),
            service: pair("ingress", "default-backend"),
        });
        let (store, _writer) = kube::runtime::reflector::store::<Ingress>();
        let mut matters = |change: Change| refs.update_and_check(&change, &store);
        let service = |ns: &str, name: &str| Change::Service {
            namespace: ns.into(),
            name: name.into(),
        };
        let secret = |ns: &str, name: &str| Change::Secret {
            namespace: ns.into(),
            name: name.into(),
        };
        let config_map = |ns: &str, name: &str| Change::ConfigMap {
            namespace: ns.into(),
            name: name.into(),
        };
        assert!(matters(service("apps", "web")));
        assert!(!matters(service("default", "web")));
        assert!(matters(service("ingress", "default-backend")));
        assert!(matters(secret("apps", "a-cert")));
        assert!(matters(secret("ingress", "default-cert")));
        assert!(!matters(secret("apps", "other")));
        assert!(matters(config_map("ingress", "weir")));
        assert!(!matters(config_map("ingress", "other")));
        assert!(matters(Change::Always));
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

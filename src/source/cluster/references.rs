//! Which Services, Secrets and ConfigMaps some Ingress references ([`model::references`]: the
//! same function the model's tests hold the build to), and what each Ingress looked like:
//! changes to anything else, and Ingress updates that touch only the status (weir's own status
//! writes among them), cannot affect the routing table and trigger no rebuild. Also what weir
//! fetches for its own Ingresses ([`model::fetched`]): the Secrets and ConfigMaps their
//! annotations name and their TLS Secrets.
//!
//! Kept per Ingress, so that a change to one Ingress costs that Ingress's references, not
//! every Ingress's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};

use super::watch::Change;
use crate::model::{self, BuildConfig, ObjectRef};

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

/// How many Ingresses reference each (namespace, name).
type Counts = HashMap<(String, String), usize, foldhash::fast::RandomState>;

/// The (namespace, name) pairs of Services, Secrets and ConfigMaps referenced by any Ingress
/// (of any class: a superset is safe), or pinned; and what weir's Ingresses need fetched.
#[derive(Debug)]
pub struct References {
    services: Counts,
    secrets: Counts,
    config_maps: Counts,
    named_secrets: Counts,
    named_config_maps: Counts,
    tls_secrets: Counts,
    /// Each Ingress's fingerprint and what it added to the counts, by (namespace, name).
    ingresses: HashMap<(String, String), Counted, foldhash::fast::RandomState>,
    pinned: Pinned,
    /// Which Ingresses are weir's, and which namespaces' objects a build may read.
    config: BuildConfig,
}

/// What one Ingress added to the counts.
#[derive(Debug)]
struct Counted {
    fingerprint: Option<u64>,
    references: model::References,
    /// `None` when it is not one of weir's.
    fetched: Option<model::Fetched>,
}

fn key(object: &ObjectRef) -> (String, String) {
    (object.namespace.clone(), object.name.clone())
}

fn count(counts: &mut Counts, objects: &[ObjectRef], up: bool) {
    for object in objects {
        if up {
            *counts.entry(key(object)).or_default() += 1;
        } else if let Some(n) = counts.get_mut(&key(object)) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key(object));
            }
        }
    }
}

impl References {
    /// The references of `ingresses`, weir's among them by `config`'s class and
    /// `ingress_classes`, with `pinned` objects counted as referenced whatever the Ingresses
    /// say.
    pub fn of(
        ingresses: &[Arc<Ingress>],
        ingress_classes: &[Arc<IngressClass>],
        config: &BuildConfig,
        pinned: Pinned,
    ) -> Self {
        let mut refs = References {
            services: Counts::default(),
            secrets: Counts::default(),
            config_maps: Counts::default(),
            named_secrets: Counts::default(),
            named_config_maps: Counts::default(),
            tls_secrets: Counts::default(),
            ingresses: HashMap::default(),
            pinned,
            config: config.clone(),
        };
        let ours = model::class_filter(ingress_classes, config);
        for ingress in ingresses {
            let is_ours = ours(ingress);
            refs.add(ingress, is_ours);
        }
        refs
    }

    fn add(&mut self, ingress: &Ingress, ours: bool) {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let name = ingress.metadata.name.clone().unwrap_or_default();
        let references = model::references(ingress);
        let fetched = ours.then(|| model::fetched(ingress, &references, &self.config));
        let counted = Counted {
            fingerprint: super::watch::ingress_fingerprint(ingress),
            references,
            fetched,
        };
        self.count(&counted, true);
        if let Some(replaced) = self.ingresses.insert((namespace, name), counted) {
            self.count(&replaced, false); // two objects with one key: the later one counts
        }
    }

    fn count(&mut self, counted: &Counted, up: bool) {
        let refs = &counted.references;
        count(&mut self.services, &refs.services, up);
        count(&mut self.secrets, &refs.secrets, up);
        count(&mut self.config_maps, &refs.config_maps, up);
        if let Some(fetched) = &counted.fetched {
            count(&mut self.named_secrets, &fetched.named_secrets, up);
            count(&mut self.named_config_maps, &fetched.named_config_maps, up);
            count(&mut self.tls_secrets, &fetched.tls_secrets, up);
        }
    }

    /// Whether `change` can affect the table; an Ingress change also updates that Ingress's
    /// references from `ingresses`, and a relist or an IngressClass change every Ingress's.
    pub fn update_and_check(
        &mut self,
        change: &Change,
        ingresses: &Store<Ingress>,
        classes: &Store<IngressClass>,
    ) -> bool {
        let is = |pinned: &Option<(String, String)>, namespace: &str, name: &str| {
            pinned
                .as_ref()
                .is_some_and(|(ns, n)| ns == namespace && n == name)
        };
        match change {
            Change::Always => {
                let pinned = std::mem::take(&mut self.pinned);
                *self = References::of(&ingresses.state(), &classes.state(), &self.config, pinned);
                true
            }
            Change::Ingress { key, fingerprint } => {
                let known = self.ingresses.get(key).and_then(|c| c.fingerprint);
                if fingerprint.is_some() && known == *fingerprint {
                    return false;
                }
                if let Some(gone) = self.ingresses.remove(key) {
                    self.count(&gone, false);
                }
                let (namespace, name) = key;
                if let Some(ingress) =
                    ingresses.get(&reflector::ObjectRef::new(name).within(namespace))
                {
                    let ours = model::class_filter(&classes.state(), &self.config)(&ingress);
                    self.add(&ingress, ours);
                }
                true
            }
            Change::Service { namespace, name } => {
                self.services
                    .contains_key(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.service, namespace, name)
            }
            Change::Secret { namespace, name } => {
                self.secrets
                    .contains_key(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.secret, namespace, name)
            }
            Change::ConfigMap { namespace, name } => {
                self.config_maps
                    .contains_key(&(namespace.clone(), name.clone()))
                    || is(&self.pinned.config_map, namespace, name)
            }
        }
    }

    /// The Secrets the annotations of weir's Ingresses name and a build may read.
    pub fn named_secrets(&self) -> impl Iterator<Item = &(String, String)> {
        self.named_secrets.keys()
    }

    /// The ConfigMaps the annotations of weir's Ingresses name and a build may read.
    pub fn named_config_maps(&self) -> impl Iterator<Item = &(String, String)> {
        self.named_config_maps.keys()
    }

    /// The TLS Secrets of weir's Ingresses.
    pub fn tls_secrets(&self) -> BTreeSet<(String, String)> {
        self.tls_secrets.keys().cloned().collect()
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
        let pinned = Pinned {
            secret: pair("ingress", "default-cert"),
            config_map: pair("ingress", "weir"),
            service: pair("ingress", "default-backend"),
        };
        let mut refs = References::of(&[a, empty], &[], &BuildConfig::default(), pinned);
        let (store, _writer) = kube::runtime::reflector::store::<Ingress>();
        let (classes, _writer) = kube::runtime::reflector::store::<IngressClass>();
        let mut matters = |change: Change| refs.update_and_check(&change, &store, &classes);
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
        let (classes, _writer) = kube::runtime::reflector::store::<IngressClass>();
        let config = BuildConfig::default();
        let mut refs = References::of(&store.state(), &[], &config, Pinned::default());
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
        assert!(!refs.update_and_check(&change(&status_only), &store, &classes));

        let mut annotated = status_only.clone();
        annotated.metadata.annotations =
            Some([("kubernetes.io/ingress.class".to_owned(), "weir".to_owned())].into());
        writer.apply_watcher_event(&Event::Apply(annotated.clone()));
        assert!(refs.update_and_check(&change(&annotated), &store, &classes));

        let mut respec = annotated.clone();
        respec.metadata.generation = Some(2);
        writer.apply_watcher_event(&Event::Apply(respec.clone()));
        assert!(refs.update_and_check(&change(&respec), &store, &classes));
        assert!(
            !refs.update_and_check(&change(&respec), &store, &classes),
            "the same object again"
        );

        let deleted = Change::Ingress {
            key: ("apps".into(), "a".into()),
            fingerprint: None,
        };
        assert!(refs.update_and_check(&deleted, &store, &classes));
    }

    /// The objects of each count, as sets.
    fn sets(refs: &References) -> Vec<BTreeSet<(String, String)>> {
        [
            &refs.services,
            &refs.secrets,
            &refs.config_maps,
            &refs.named_secrets,
            &refs.named_config_maps,
            &refs.tls_secrets,
        ]
        .iter()
        .map(|counts| counts.keys().cloned().collect())
        .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Kept up to date one Ingress change at a time, the references are those computed
        /// afresh from the store (edits: Ingress, Service, TLS Secret, auth Secret, class;
        /// Service 3 deletes the Ingress).
        #[test]
        fn kept_up_to_date_they_equal_references_computed_afresh(
            edits in proptest::collection::vec(
                (0..5usize, 0..4u8, 0..3u8, 0..3u8, proptest::bool::ANY),
                1..40,
            )
        ) {
            use kube::runtime::watcher::Event;
            let (store, mut writer) = kube::runtime::reflector::store::<Ingress>();
            let (classes, _writer) = kube::runtime::reflector::store::<IngressClass>();
            let config = BuildConfig::default();
            let mut refs = References::of(&[], &[], &config, Pinned::default());
            for (i, service, tls, auth, ours) in edits {
                let mut annotations = serde_json::Map::new();
                if auth > 0 {
                    annotations.insert(
                        "nginx.ingress.kubernetes.io/auth-secret".into(),
                        format!("auth-{auth}").into(),
                    );
                }
                let tls: Vec<_> = (tls > 0)
                    .then(|| serde_json::json!({"hosts": ["a.com"], "secretName": format!("tls-{tls}")}))
                    .into_iter()
                    .collect();
                let object: Ingress = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("i{i}"), "namespace": "apps", "annotations": annotations},
                    "spec": {
                        "ingressClassName": if ours { "weir" } else { "other" },
                        "tls": tls,
                        "rules": [{"host": "a.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": format!("s{service}"), "port": {"number": 80}}}}]}}]
                    }
                }))
                .unwrap();
                let deleted = service == 3;
                writer.apply_watcher_event(&if deleted {
                    Event::Delete(object.clone())
                } else {
                    Event::Apply(object.clone())
                });
                let change = <Ingress as super::super::watch::Watched>::change(&object, deleted);
                refs.update_and_check(&change, &store, &classes);
                let fresh = References::of(&store.state(), &[], &config, Pinned::default());
                proptest::prop_assert_eq!(sets(&refs), sets(&fresh));
            }
        }
    }
}

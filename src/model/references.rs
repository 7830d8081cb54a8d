//! What an Ingress references: the objects whose changes can change what it serves. The
//! cluster source's rebuild filter uses this to ignore changes to everything else, and the
//! model's tests check that nothing else can change a build.

#[cfg(test)]
use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::BuildConfig;
use super::annotations;
use super::classes::Classes;
use super::diagnostic::{ObjectKind, ObjectRef};
use super::objects;

/// The objects one Ingress references, each kind sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Services of its backends (their endpoints come with them).
    pub services: Vec<ObjectRef>,
    /// Secrets: TLS certificates of `spec.tls`, the users of `auth-secret`, the CA bundle of
    /// `auth-tls-secret`, the endpoints' CA and client certificate of `proxy-ssl-secret` (in
    /// any namespace: whether the build may read it is its business).
    pub secrets: Vec<ObjectRef>,
    /// The Secrets among `secrets` that annotations name (`auth-secret`, `auth-tls-secret`,
    /// `proxy-ssl-secret`):
    /// read whatever their
    /// type, where a cluster source reads only TLS Secrets for `spec.tls`.
    pub annotation_secrets: Vec<ObjectRef>,
    /// ConfigMaps named by annotations (`auth-proxy-set-headers`), in any namespace like
    /// `annotation_secrets`.
    pub config_maps: Vec<ObjectRef>,
}

/// What a cluster source fetches for one of weir's Ingresses beside the objects it watches
/// whole: the Secrets and ConfigMaps its annotations name that a build may read (another
/// namespace's only with `allow_cross_namespace`), and the TLS Secrets of its `spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Secrets its annotations name.
    pub named_secrets: Vec<ObjectRef>,
    /// ConfigMaps its annotations name.
    pub named_config_maps: Vec<ObjectRef>,
    /// The Secrets of its `spec.tls`, in its namespace.
    pub tls_secrets: Vec<ObjectRef>,
}

/// What a cluster source fetches for `ingress` (one of weir's), whose references are `refs`.
pub fn fetched(ingress: &Ingress, refs: &References, config: &BuildConfig) -> Fetched {
    let namespace = objects::namespace(&ingress.metadata);
    let readable = |objects: &[ObjectRef]| {
        (objects.iter())
            .filter(|o| config.allow_cross_namespace || o.namespace == namespace)
            .cloned()
            .collect()
    };
    let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
    Fetched {
        named_secrets: readable(&refs.annotation_secrets),
        named_config_maps: readable(&refs.config_maps),
        tls_secrets: (tls.into_iter().flatten())
            .filter_map(|t| t.secret_name.as_deref().filter(|s| !s.is_empty()))
            .map(|name| ObjectRef::new(ObjectKind::Secret, namespace, name))
            .collect(),
    }
}

/// The Secrets that the annotations of weir's Ingresses (of `config`'s class) name and that a
/// build may read: [`Fetched::named_secrets`] of each. (The cluster source counts them per
/// Ingress; these whole-input forms state what the counts add up to, for tests.)
#[cfg(test)]
fn named_secrets(
    ingresses: &[Arc<Ingress>],
    ingress_classes: &[Arc<IngressClass>],
    config: &BuildConfig,
) -> BTreeSet<ObjectRef> {
    all_fetched(ingresses, ingress_classes, config, |f| f.named_secrets)
}

/// The ConfigMaps that the annotations of weir's Ingresses name and that a build may read,
/// like [`named_secrets`].
#[cfg(test)]
fn named_config_maps(
    ingresses: &[Arc<Ingress>],
    ingress_classes: &[Arc<IngressClass>],
    config: &BuildConfig,
) -> BTreeSet<ObjectRef> {
    all_fetched(ingresses, ingress_classes, config, |f| f.named_config_maps)
}

/// The TLS Secrets (`spec.tls`) of weir's Ingresses (of `config`'s class): the only ones whose
/// keys a cluster source keeps.
#[cfg(test)]
fn tls_secrets(
    ingresses: &[Arc<Ingress>],
    ingress_classes: &[Arc<IngressClass>],
    config: &BuildConfig,
) -> BTreeSet<ObjectRef> {
    all_fetched(ingresses, ingress_classes, config, |f| f.tls_secrets)
}

/// The objects `pick` takes from what is fetched for each of weir's Ingresses.
#[cfg(test)]
fn all_fetched(
    ingresses: &[Arc<Ingress>],
    ingress_classes: &[Arc<IngressClass>],
    config: &BuildConfig,
    pick: fn(Fetched) -> Vec<ObjectRef>,
) -> BTreeSet<ObjectRef> {
    ours(ingresses, ingress_classes, config)
        .flat_map(|ingress| pick(fetched(ingress, &references(ingress), config)))
        .collect()
}

/// The Ingresses of `config`'s class among `ingresses`.
pub(crate) fn ours<'a>(
    ingresses: &'a [Arc<Ingress>],
    ingress_classes: &'a [Arc<IngressClass>],
    config: &'a BuildConfig,
) -> impl Iterator<Item = &'a Arc<Ingress>> {
    let classes = Classes::new(ingress_classes, &config.classes);
    ingresses
        .iter()
        .filter(move |ingress| classes.is_ours(ingress))
}

/// Whether an Ingress is of `config`'s class, given the cluster's `ingress_classes`.
pub fn class_filter<'a>(
    ingress_classes: &'a [Arc<IngressClass>],
    config: &'a BuildConfig,
) -> impl Fn(&Ingress) -> bool + 'a {
    let classes = Classes::new(ingress_classes, &config.classes);
    move |ingress| classes.is_ours(ingress)
}

/// What `ingress` references, in its own namespace. The Ingress's class is not looked at:
/// callers that filter changes use a superset on purpose.
pub fn references(ingress: &Ingress) -> References {
    let namespace = objects::namespace(&ingress.metadata);
    let mut refs = References::default();
    let Some(spec) = &ingress.spec else {
        return refs;
    };
    let rule_backends = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|http| http.paths.iter().map(|p| &p.backend));
    for backend in spec.default_backend.iter().chain(rule_backends) {
        if let Some(service) = &backend.service {
            refs.services.push(ObjectRef::new(
                ObjectKind::Service,
                namespace,
                &service.name,
            ));
        }
    }
    for tls in spec.tls.iter().flatten() {
        if let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
            refs.secrets
                .push(ObjectRef::new(ObjectKind::Secret, namespace, secret));
        }
    }
    let annotations = ingress.metadata.annotations.as_ref();
    let named = |name: &str, kind: ObjectKind| {
        annotations::value(annotations, name)
            .and_then(|value| annotations::object_ref(kind, namespace, value))
    };
    for name in ["auth-secret", "auth-tls-secret", "proxy-ssl-secret"] {
        if let Some(secret) = named(name, ObjectKind::Secret) {
            refs.secrets.push(secret.clone());
            refs.annotation_secrets.push(secret);
        }
    }
    refs.config_maps
        .extend(named("auth-proxy-set-headers", ObjectKind::ConfigMap));
    // The error backend of `custom-http-errors`.
    refs.services
        .extend(named("default-backend", ObjectKind::Service));
    for list in [
        &mut refs.services,
        &mut refs.secrets,
        &mut refs.annotation_secrets,
        &mut refs.config_maps,
    ] {
        list.sort();
        list.dedup();
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_services_tls_and_auth_secrets() {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "apps", "annotations": {
                "weir.dev/auth-secret": "auth/users",
                "nginx.ingress.kubernetes.io/auth-secret": "ignored-behind-weir-s-key",
                "nginx.ingress.kubernetes.io/auth-proxy-set-headers": "auth-headers",
                "nginx.ingress.kubernetes.io/proxy-ssl-secret": "backend-ca",
                "nginx.ingress.kubernetes.io/default-backend": "errors"
            }},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "tls": [{"hosts": ["a.com"], "secretName": "a-cert"}, {"hosts": ["b.com"]}],
                "rules": [{"host": "a.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/x", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 81}}}},
                    {"path": "/r", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "b"}}}
                ]}}]
            }
        }))
        .unwrap();
        let refs = references(&ingress);
        let names = |list: &[ObjectRef]| {
            list.iter()
                .map(|o| format!("{}/{}", o.namespace, o.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&refs.services),
            ["apps/errors", "apps/fallback", "apps/web"]
        );
        assert_eq!(
            names(&refs.secrets),
            ["apps/a-cert", "apps/backend-ca", "auth/users"]
        );
        assert_eq!(
            names(&refs.annotation_secrets),
            ["apps/backend-ca", "auth/users"]
        );
        assert_eq!(names(&refs.config_maps), ["apps/auth-headers"]);
        assert_eq!(references(&Ingress::default()), References::default());
    }

    #[test]
    fn named_objects_are_those_of_weir_s_ingresses_in_their_namespace() {
        let ingress = |name: &str, class: &str, object: &str| -> Arc<Ingress> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "apps", "annotations": {
                        "nginx.ingress.kubernetes.io/auth-secret": object,
                        "nginx.ingress.kubernetes.io/auth-proxy-set-headers": object
                    }},
                    "spec": {"ingressClassName": class}
                }))
                .unwrap(),
            )
        };
        let ingresses = [
            ingress("mine", "weir", "users"),
            ingress("theirs", "nginx", "their-users"),
            ingress("borrowing", "weir", "other/users"),
        ];
        let names = |config: &BuildConfig| {
            let secrets = named_secrets(&ingresses, &[], config);
            let config_maps = named_config_maps(&ingresses, &[], config);
            let kinds = |objects: &BTreeSet<ObjectRef>, kind| {
                objects.iter().all(|o: &ObjectRef| o.kind == kind)
            };
            assert!(kinds(&secrets, ObjectKind::Secret));
            assert!(kinds(&config_maps, ObjectKind::ConfigMap));
            let names = |objects: BTreeSet<ObjectRef>| {
                objects
                    .into_iter()
                    .map(|o| format!("{}/{}", o.namespace, o.name))
                    .collect::<Vec<_>>()
            };
            let secrets = names(secrets);
            assert_eq!(secrets, names(config_maps));
            secrets
        };
        assert_eq!(names(&BuildConfig::default()), ["apps/users"]);
        let cross = BuildConfig {
            allow_cross_namespace: true,
            ..BuildConfig::default()
        };
        assert_eq!(names(&cross), ["apps/users", "other/users"]);
    }

    #[test]
    fn tls_secrets_are_those_of_weir_s_ingresses() {
        let ingress = |name: &str, class: &str, secret: &str| -> Arc<Ingress> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "apps"},
                    "spec": {"ingressClassName": class, "tls": [{"hosts": ["a"], "secretName": secret}, {"hosts": ["b"]}]}
                }))
                .unwrap(),
            )
        };
        let ingresses = [
            ingress("mine", "weir", "mine-tls"),
            ingress("theirs", "nginx", "their-tls"),
        ];
        let names: Vec<String> = tls_secrets(&ingresses, &[], &BuildConfig::default())
            .into_iter()
            .map(|o| format!("{}/{}", o.namespace, o.name))
            .collect();
        assert_eq!(names, ["apps/mine-tls"]);
    }
}

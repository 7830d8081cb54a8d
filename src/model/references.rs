//! What an Ingress references: the objects whose changes can change what it serves. The
//! cluster source's rebuild filter uses this to ignore changes to everything else, and the
//! model's tests check that nothing else can change a build.

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations;
use super::diagnostic::{ObjectKind, ObjectRef};
use super::objects;

/// The objects one Ingress references, each kind sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Services of its backends (their endpoints come with them).
    pub services: Vec<ObjectRef>,
    /// Secrets: TLS certificates of `spec.tls`, the users of `auth-secret` (in any namespace:
    /// whether the build may read it is its business).
    pub secrets: Vec<ObjectRef>,
    /// The Secrets among `secrets` that annotations name (`auth-secret`): read whatever their
    /// type, where a cluster source reads only TLS Secrets for `spec.tls`.
    pub annotation_secrets: Vec<ObjectRef>,
    /// ConfigMaps named by annotations (none yet).
    pub config_maps: Vec<ObjectRef>,
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
    if let Some(secret) = annotations::value(annotations, "auth-secret")
        .and_then(|value| annotations::auth_secret_ref(namespace, value))
    {
        refs.secrets.push(secret.clone());
        refs.annotation_secrets.push(secret);
    }
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
                "nginx.ingress.kubernetes.io/auth-secret": "ignored-behind-weir-s-key"
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
        assert_eq!(names(&refs.services), ["apps/fallback", "apps/web"]);
        assert_eq!(names(&refs.secrets), ["apps/a-cert", "auth/users"]);
        assert_eq!(names(&refs.annotation_secrets), ["auth/users"]);
        assert!(refs.config_maps.is_empty());
        assert_eq!(references(&Ingress::default()), References::default());
    }
}

//! `custom-http-errors` and `default-backend`: which error responses of a route go to an error
//! backend, and which Service that is (resolved by the build, see
//! [`ErrorPages`](crate::model::ErrorPages)).
//!
//! - `custom-http-errors`: status codes from 400 to 599, comma-separated; without it, the
//!   controller ConfigMap's key of the same name applies. An invalid list is a tuning knob's
//!   fault: reported, and the ConfigMap's list is used.
//! - `default-backend`: a Service in the Ingress's namespace (its first TCP port), the error
//!   backend of the Ingress's routes instead of the controller's default backend
//!   (`--default-backend-service`); it also serves the routes' requests while their Service
//!   has no ready endpoints. A value that is not a Service name, or names another namespace
//!   without `--allow-cross-namespace-resources`: reported, and the controller's default
//!   backend is used. A Service that does not exist is reported by the build.

use super::{Key, OnInvalid, Reader, object_ref};
use crate::model::diagnostic::{ObjectKind, ObjectRef};
use crate::model::error_pages;
use crate::model::policy::Defaults;

pub(super) const KEYS: &[Key] = &[
    Key::route("custom-http-errors", OnInvalid::Default),
    Key::route("default-backend", OnInvalid::Default),
];

/// The error pages of an Ingress as its annotations and the ConfigMap ask for them, before the
/// build resolves the Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorPagesSpec {
    /// The statuses that go to the error backend (the annotation's, else the ConfigMap's).
    pub codes: Vec<u16>,
    /// `default-backend`: the Ingress's own error backend.
    pub service: Option<ObjectRef>,
}

/// Reads the two annotations, with the ConfigMap's `custom-http-errors` in `defaults`.
pub(super) fn parse(r: &mut Reader<'_>, defaults: &Defaults) -> ErrorPagesSpec {
    let codes = match r.get("custom-http-errors") {
        None => defaults.custom_http_errors.clone(),
        Some(found) => error_pages::parse_codes(found.value, 400).unwrap_or_else(|| {
            let fallback = "the controller ConfigMap's list (if any)";
            r.invalid(found, error_pages::CODES, fallback);
            defaults.custom_http_errors.clone()
        }),
    };
    let service = r.get("default-backend").and_then(|found| {
        let namespace = &r.object().namespace;
        match object_ref(ObjectKind::Service, namespace, found.value) {
            Some(service)
                if service.namespace == *namespace || r.context().allow_cross_namespace =>
            {
                Some(service)
            }
            Some(_) => {
                let accepted = "it names a Service in another namespace, which weir reads only \
                                with --allow-cross-namespace-resources";
                r.invalid(found, accepted, "the controller's default backend");
                None
            }
            None => {
                let accepted = "it must name a Service of the Ingress's namespace";
                r.invalid(found, accepted, "the controller's default backend");
                None
            }
        }
    });
    ErrorPagesSpec { codes, service }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with};
    use super::*;
    use crate::model::Reason;

    #[test]
    fn codes_and_service_from_either_prefix_with_the_configmap_as_fallback() {
        let defaults = Defaults {
            custom_http_errors: vec![502],
            ..Defaults::default()
        };
        for [codes_key, service_key] in [0, 1].map(|i| {
            [
                both("custom-http-errors")[i].clone(),
                both("default-backend")[i].clone(),
            ]
        }) {
            // (annotations, codes, the Service, how many Diagnostics)
            type Row<'a> = (&'a [(&'a str, &'a str)], &'a [u16], Option<&'a str>, usize);
            let table: &[Row<'_>] = &[
                (&[], &[502], None, 0),
                (&[(&codes_key, "404,503")], &[404, 503], None, 0),
                (&[(&codes_key, "404, 503, 404")], &[404, 503], None, 0),
                (&[(&codes_key, "302")], &[502], None, 1),
                (&[(&codes_key, "oops")], &[502], None, 1),
                (&[(&service_key, "errors")], &[502], Some("d/errors"), 0),
                (&[(&service_key, " errors ")], &[502], Some("d/errors"), 0),
                (&[(&service_key, "other/errors")], &[502], None, 1),
                (&[(&service_key, "Not A Name")], &[502], None, 1),
            ];
            for (pairs, codes, service, reported) in table {
                let (parsed, diagnostics) = parse_with(pairs, &defaults);
                let spec = &parsed.error_pages;
                assert_eq!(spec.codes, *codes, "{pairs:?}");
                assert_eq!(
                    spec.service
                        .as_ref()
                        .map(|s| format!("{}/{}", s.namespace, s.name))
                        .as_deref(),
                    *service,
                    "{pairs:?}"
                );
                assert_eq!(diagnostics.len(), *reported, "{pairs:?}: {diagnostics:#?}");
                assert!(
                    diagnostics
                        .iter()
                        .all(|d| d.reason == Reason::InvalidAnnotationValue)
                );
                assert!(parsed.policy.refused.is_none(), "never fails closed");
            }
        }
        assert_eq!(parse_pairs(&[]).0.error_pages, ErrorPagesSpec::default());
    }
}

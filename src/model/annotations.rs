//! The annotation registry: which Ingress annotations weir reads, and what it says about the
//! ones it does not.
//!
//! weir's own annotations live under `weir.dev/`; ingress-nginx annotations
//! (`nginx.ingress.kubernetes.io/`) are read with ingress-nginx's meaning where weir supports
//! the feature. Every other annotation under those two prefixes is reported, never silently
//! half-applied. Annotations under other prefixes belong to other tools and are ignored.
//!
//! To add an annotation: list its key in [`KNOWN`], add a typed field to
//! [`IngressAnnotations`] and parse it in [`parse`] (reporting a bad value as
//! `InvalidAnnotationValue`).

use std::collections::BTreeMap;

use super::diagnostic::{Diagnostic, ObjectRef, Reason};

/// The prefix of weir's own annotations.
pub(crate) const WEIR_PREFIX: &str = "weir.dev/";
/// The prefix of ingress-nginx annotations.
pub(crate) const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Every annotation key weir implements (full keys, with their prefix). Empty for now.
pub(crate) const KNOWN: &[&str] = &[];

/// The typed values of the known annotations on one Ingress. weir implements none yet; fields
/// such as `ssl_redirect: Option<bool>` or `proxy_read_timeout: Option<Duration>` go here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IngressAnnotations {}

/// Reads the annotations of `object` (an Ingress of weir's class) into their typed form and
/// reports the ones under `weir.dev/` or `nginx.ingress.kubernetes.io/` that weir does not
/// implement.
pub(crate) fn parse(
    object: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    for key in annotations.into_iter().flat_map(|a| a.keys()) {
        if KNOWN.contains(&key.as_str()) {
            continue;
        }
        if key.starts_with(WEIR_PREFIX) {
            diagnostics.push(Diagnostic::new(
                object.clone(),
                Reason::UnknownAnnotation,
                format!(
                    "weir does not know annotation {key:?}; it is ignored (check its spelling)"
                ),
            ));
        } else if let Some(name) = key.strip_prefix(NGINX_PREFIX) {
            let message = if is_snippet(name) {
                format!(
                    "annotation {key:?} is ignored: snippets are not supported by design, \
                     weir never interprets configuration text from annotations"
                )
            } else {
                format!("weir does not implement annotation {key:?} yet and ignores it")
            };
            diagnostics.push(Diagnostic::new(
                object.clone(),
                Reason::UnsupportedAnnotation,
                message,
            ));
        }
    }
    IngressAnnotations::default()
}

/// Whether an ingress-nginx annotation name (without prefix) carries raw configuration text:
/// `server-snippet`, `configuration-snippet`, `stream-snippet`, `auth-snippet`, …
fn is_snippet(name: &str) -> bool {
    name == "snippet" || name.ends_with("-snippet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::diagnostic::ObjectKind;

    #[test]
    fn reports_unknown_and_unsupported_annotations() {
        let object = ObjectRef::new(ObjectKind::Ingress, "d", "i");
        let annotations: BTreeMap<String, String> = [
            ("weir.dev/nope", "1"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("nginx.ingress.kubernetes.io/server-snippet", "return 200;"),
            ("nginx.ingress.kubernetes.io/configuration-snippet", "x"),
            ("nginx.ingress.kubernetes.io/snippet", "x"),
            ("kubernetes.io/ingress.class", "weir"),
            ("example.com/other", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut diagnostics = Vec::new();
        parse(&object, Some(&annotations), &mut diagnostics);
        let got: Vec<(Reason, bool)> = diagnostics
            .iter()
            .map(|d| (d.reason, d.message.contains("snippets are not supported")))
            .collect();
        // BTreeMap order: nginx keys (configuration-snippet, rewrite-target, server-snippet,
        // snippet), then weir.dev.
        assert_eq!(
            got,
            [
                (Reason::UnsupportedAnnotation, true),
                (Reason::UnsupportedAnnotation, false),
                (Reason::UnsupportedAnnotation, true),
                (Reason::UnsupportedAnnotation, true),
                (Reason::UnknownAnnotation, false),
            ]
        );
        assert!(diagnostics[1].message.contains("rewrite-target"));
        assert!(diagnostics[4].message.contains("weir.dev/nope"));

        let mut none = Vec::new();
        parse(&object, None, &mut none);
        assert!(none.is_empty());
    }
}

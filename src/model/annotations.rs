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
use std::time::Duration;

use super::diagnostic::{Diagnostic, ObjectRef, Reason};

/// The prefix of weir's own annotations.
pub(crate) const WEIR_PREFIX: &str = "weir.dev/";
/// The prefix of ingress-nginx annotations.
pub(crate) const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Every annotation key weir implements (full keys, with their prefix).
pub(crate) const KNOWN: &[&str] = &[
    "weir.dev/ssl-redirect",
    "nginx.ingress.kubernetes.io/ssl-redirect",
    "weir.dev/force-ssl-redirect",
    "nginx.ingress.kubernetes.io/force-ssl-redirect",
    "weir.dev/proxy-read-timeout",
    "nginx.ingress.kubernetes.io/proxy-read-timeout",
];

/// The longest `proxy-read-timeout` accepted, in seconds (7 days).
pub(crate) const MAX_READ_TIMEOUT_SECS: u64 = 7 * 24 * 60 * 60;

/// The typed values of the known annotations on one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IngressAnnotations {
    /// `ssl-redirect`: redirect plain HTTP to HTTPS on hosts with TLS (default true).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect plain HTTP to HTTPS even without TLS (default false).
    pub force_ssl_redirect: bool,
    /// `proxy-read-timeout`: how long the endpoint may stay silent, and an upgraded connection
    /// idle, in whole seconds (`None`: the data plane's defaults).
    pub proxy_read_timeout: Option<Duration>,
}

impl Default for IngressAnnotations {
    fn default() -> Self {
        IngressAnnotations {
            ssl_redirect: true,
            force_ssl_redirect: false,
            proxy_read_timeout: None,
        }
    }
}

/// The value of annotation `name` under weir's prefix, else under ingress-nginx's, with its
/// full key.
fn lookup<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    name: &str,
) -> Option<(String, &'a str)> {
    let annotations = annotations?;
    [WEIR_PREFIX, NGINX_PREFIX].iter().find_map(|prefix| {
        let key = format!("{prefix}{name}");
        annotations.get(&key).map(|value| (key, value.as_str()))
    })
}

/// A boolean annotation: `true` or `false` (any case, surrounding spaces allowed); anything
/// else is reported and `default` used.
fn boolean(
    object: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    name: &str,
    default: bool,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let Some((key, value)) = lookup(annotations, name) else {
        return default;
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            diagnostics.push(Diagnostic::new(
                object.clone(),
                Reason::InvalidAnnotationValue,
                format!("annotation {key:?} must be \"true\" or \"false\", not {value:?}; {default} is used"),
            ));
            default
        }
    }
}

/// A timeout annotation in whole seconds, as ingress-nginx writes them (`"3600"`, surrounding
/// spaces allowed), from 1 to `max_secs`; anything else is reported and `None` used.
fn seconds(
    object: &ObjectRef,
    annotations: Option<&BTreeMap<String, String>>,
    name: &str,
    max_secs: u64,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    let (key, value) = lookup(annotations, name)?;
    match value.trim().parse::<u64>() {
        Ok(secs) if (1..=max_secs).contains(&secs) => Some(Duration::from_secs(secs)),
        _ => {
            diagnostics.push(Diagnostic::new(
                object.clone(),
                Reason::InvalidAnnotationValue,
                format!(
                    "annotation {key:?} must be a whole number of seconds from 1 to {max_secs} \
                     (without a unit, e.g. \"3600\"), not {value:?}; it is ignored and the \
                     default timeouts are used"
                ),
            ));
            None
        }
    }
}

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
    let defaults = IngressAnnotations::default();
    IngressAnnotations {
        ssl_redirect: boolean(
            object,
            annotations,
            "ssl-redirect",
            defaults.ssl_redirect,
            diagnostics,
        ),
        force_ssl_redirect: boolean(
            object,
            annotations,
            "force-ssl-redirect",
            defaults.force_ssl_redirect,
            diagnostics,
        ),
        proxy_read_timeout: seconds(
            object,
            annotations,
            "proxy-read-timeout",
            MAX_READ_TIMEOUT_SECS,
            diagnostics,
        ),
    }
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
        assert_eq!(
            parse(&object, None, &mut none),
            IngressAnnotations::default()
        );
        assert!(none.is_empty());
    }

    /// Parses annotations given as `(key, value)` pairs.
    fn parse_pairs(
        object: &ObjectRef,
        pairs: &[(&str, &str)],
    ) -> (IngressAnnotations, Vec<Diagnostic>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut diagnostics = Vec::new();
        let parsed = parse(object, Some(&map), &mut diagnostics);
        (parsed, diagnostics)
    }

    #[test]
    fn reads_redirect_annotations_weir_first_then_nginx() {
        let object = ObjectRef::new(ObjectKind::Ingress, "d", "i");
        let read = |pairs: &[(&str, &str)]| {
            let (parsed, diagnostics) = parse_pairs(&object, pairs);
            (
                parsed.ssl_redirect,
                parsed.force_ssl_redirect,
                diagnostics.len(),
            )
        };
        assert_eq!(read(&[]), (true, false, 0));
        assert_eq!(
            read(&[("nginx.ingress.kubernetes.io/ssl-redirect", "false")]),
            (false, false, 0)
        );
        assert_eq!(
            read(&[("weir.dev/ssl-redirect", " FALSE ")]),
            (false, false, 0)
        );
        assert_eq!(
            read(&[
                ("weir.dev/ssl-redirect", "true"),
                ("nginx.ingress.kubernetes.io/ssl-redirect", "false")
            ]),
            (true, false, 0),
            "weir's own annotation wins"
        );
        assert_eq!(
            read(&[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")]),
            (true, true, 0)
        );
        assert_eq!(
            read(&[("weir.dev/force-ssl-redirect", "yes")]),
            (true, false, 1),
            "bad value: reported, default used"
        );
    }

    #[test]
    fn reads_proxy_read_timeout_weir_first_then_nginx() {
        let object = ObjectRef::new(ObjectKind::Ingress, "d", "i");
        let read = |pairs: &[(&str, &str)]| {
            let (parsed, diagnostics) = parse_pairs(&object, pairs);
            (parsed.proxy_read_timeout, diagnostics)
        };
        let secs = |s| Some(Duration::from_secs(s));
        const WEIR: &str = "weir.dev/proxy-read-timeout";
        const NGINX: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";

        assert_eq!(read(&[]), (None, vec![]));
        assert_eq!(read(&[(NGINX, "3600")]), (secs(3600), vec![]));
        assert_eq!(read(&[(WEIR, " 120 ")]), (secs(120), vec![]));
        assert_eq!(read(&[(WEIR, "1")]), (secs(1), vec![]));
        assert_eq!(read(&[(WEIR, "604800")]), (secs(604_800), vec![]));
        assert_eq!(
            read(&[(WEIR, "30"), (NGINX, "3600")]),
            (secs(30), vec![]),
            "weir's own annotation wins"
        );

        for bad in [
            "abc",
            "",
            "0",
            "-5",
            "604801",
            "99999999999999999999999",
            "60s",
            "1.5",
        ] {
            for key in [WEIR, NGINX] {
                let (timeout, diagnostics) = read(&[(key, bad)]);
                assert_eq!(timeout, None, "{key}: {bad:?}");
                let reasons: Vec<Reason> = diagnostics.iter().map(|d| d.reason).collect();
                assert_eq!(reasons, [Reason::InvalidAnnotationValue], "{key}: {bad:?}");
                let message = &diagnostics[0].message;
                assert!(message.contains(key), "{message}");
                assert!(message.contains(&format!("{bad:?}")), "{message}");
                assert!(message.contains("whole number of seconds"), "{message}");
            }
        }

        // weir's own annotation wins even when it is invalid: reported, not replaced.
        let (timeout, diagnostics) = read(&[(WEIR, "0"), (NGINX, "3600")]);
        assert_eq!(timeout, None);
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains(WEIR));
    }
}

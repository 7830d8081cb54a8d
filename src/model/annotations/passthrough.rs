//! `ssl-passthrough`: the TLS connections of the Ingress's hosts go, unterminated, to the
//! backend of the host's path `/` (see [`Passthrough`](crate::model::Passthrough)), as
//! ingress-nginx's TCP proxy sends them. Host scope: the oldest Ingress that names a host
//! decides whether it passes through (the build checks that).
//!
//! Only with `--enable-ssl-passthrough`, as in ingress-nginx. Without the flag ingress-nginx
//! ignores the annotation and serves the host's TLS itself, forwarding the requests in clear
//! text to a port that expects TLS; weir instead fails closed: the Ingress's routes answer 503
//! and a Diagnostic names the flag, so that nobody mistakes weir's terminated TLS for the
//! backend's. An invalid value fails closed too (it decides where TLS goes and whose
//! certificate clients see); an empty one asks for nothing.
//!
//! Everything else about HTTP (access control, rate limits, client certificates, headers)
//! cannot apply to connections weir does not open; the access-control annotations of a
//! passthrough Ingress are reported, since they then guard its plain-HTTP requests only.

use super::{Found, Key, OnInvalid, Reader, values};
use crate::model::Reason;

pub(super) const KEYS: &[Key] = &[Key::host("ssl-passthrough", OnInvalid::Refuse)];

/// The annotations that restrict who gets in; on a passthrough host they guard plain-HTTP
/// requests only.
const ACCESS: &[&str] = &[
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "auth-type",
    "auth-url",
    "auth-tls-secret",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
];

/// Whether the Ingress's hosts pass their TLS connections through: `ssl-passthrough` is true
/// and weir runs with `--enable-ssl-passthrough` (else refused and reported).
pub(super) fn parse(r: &mut Reader<'_>) -> bool {
    let Some(found) = r.get("ssl-passthrough") else {
        return false;
    };
    if found.trimmed().is_empty() {
        return false;
    }
    let Some(asked) = values::boolean(found.value) else {
        r.refuse(found, values::BOOLEAN);
        return false;
    };
    if !asked {
        return false;
    }
    if !r.context().ssl_passthrough {
        let why = format!(
            "annotation {:?} asks for TLS passthrough, which weir does only when started with \
             --enable-ssl-passthrough; weir does not serve the hosts' TLS itself in its place",
            found.key
        );
        r.refuse_because(Reason::UnsupportedAnnotation, &why);
        return false;
    }
    report_access(r, found);
    true
}

/// Reports the access-control annotations of a passthrough Ingress: they cannot guard the TLS
/// connections, which weir never opens.
fn report_access(r: &mut Reader<'_>, passthrough: Found<'_>) {
    let keys: Vec<&str> = ACCESS
        .iter()
        .filter_map(|name| r.get(name))
        .map(|found| found.key)
        .collect();
    if keys.is_empty() {
        return;
    }
    let message = format!(
        "annotation(s) {keys:?} do not apply to the TLS connections of this Ingress's hosts: \
         {:?} sends them to the backend unopened (as in ingress-nginx), so they guard its \
         plain-HTTP requests only",
        passthrough.key
    );
    r.report(Reason::UnsupportedAnnotation, message);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with_flags};
    use crate::model::Reason;

    /// Parses with `--enable-ssl-passthrough`.
    fn enabled(
        pairs: &[(&str, &str)],
    ) -> (
        super::super::IngressAnnotations,
        Vec<crate::model::Diagnostic>,
    ) {
        parse_with_flags(pairs, true)
    }

    #[test]
    fn both_prefixes_ask_for_passthrough_with_the_flag() {
        for key in both("ssl-passthrough") {
            for value in ["true", "True", "1", " t "] {
                let (parsed, diagnostics) = enabled(&[(&key, value)]);
                assert!(parsed.host.passthrough, "{key}: {value:?}");
                assert!(!parsed.host.is_empty());
                assert!(parsed.policy.refused.is_none(), "{key}: {value:?}");
                assert!(diagnostics.is_empty(), "{diagnostics:#?}");
            }
            for value in ["false", "0", "", "  "] {
                let (parsed, diagnostics) = enabled(&[(&key, value)]);
                assert!(!parsed.host.passthrough, "{key}: {value:?}");
                assert!(parsed.policy.refused.is_none());
                assert!(diagnostics.is_empty(), "{diagnostics:#?}");
            }
        }
        let [weir, nginx] = both("ssl-passthrough");
        let (parsed, _) = enabled(&[(&weir, "false"), (&nginx, "true")]);
        assert!(!parsed.host.passthrough, "weir's own annotation wins");
        assert!(!parse_pairs(&[]).0.host.passthrough);
    }

    #[test]
    fn an_invalid_value_fails_closed() {
        for key in both("ssl-passthrough") {
            for value in ["yes", "on", "passthrough"] {
                let (parsed, diagnostics) = enabled(&[(&key, value)]);
                assert!(!parsed.host.passthrough);
                let refused = parsed.policy.refused.as_deref().unwrap();
                assert!(refused.contains("ssl-passthrough"), "{refused}");
                assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
                assert_eq!(diagnostics[0].reason, Reason::InvalidAnnotationValue);
                assert!(diagnostics[0].message.contains("answer 503"));
            }
        }
    }

    #[test]
    fn without_the_flag_the_ingress_fails_closed_and_names_the_flag() {
        for key in both("ssl-passthrough") {
            let (parsed, diagnostics) = parse_pairs(&[(&key, "true")]);
            assert!(
                !parsed.host.passthrough,
                "never passed through without the flag"
            );
            assert!(
                parsed.policy.refused.is_some(),
                "not served terminated instead"
            );
            assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
            let message = &diagnostics[0].message;
            assert_eq!(diagnostics[0].reason, Reason::UnsupportedAnnotation);
            assert!(message.contains("--enable-ssl-passthrough"), "{message}");
            assert!(message.contains(&format!("{key:?}")), "{message}");
            assert!(message.contains("fail closed"), "{message}");
            // Asking for nothing needs no flag.
            let (parsed, diagnostics) = parse_pairs(&[(&key, "false")]);
            assert!(parsed.policy.refused.is_none() && diagnostics.is_empty());
        }
    }

    #[test]
    fn access_annotations_are_reported_as_guarding_plain_http_only() {
        let [_, passthrough] = both("ssl-passthrough");
        let [_, allow] = both("whitelist-source-range");
        let [_, timeout] = both("proxy-read-timeout");
        let (parsed, diagnostics) = enabled(&[
            (&passthrough, "true"),
            (&allow, "10.0.0.0/8"),
            (&timeout, "30"),
        ]);
        assert!(parsed.host.passthrough);
        assert!(
            parsed.policy.access.is_some(),
            "still applied to plain HTTP"
        );
        assert!(parsed.policy.refused.is_none());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert_eq!(diagnostics[0].reason, Reason::UnsupportedAnnotation);
        assert!(diagnostics[0].message.contains("whitelist-source-range"));
        assert!(!diagnostics[0].message.contains("proxy-read-timeout"));
        assert!(diagnostics[0].message.contains("plain-HTTP requests only"));
    }
}

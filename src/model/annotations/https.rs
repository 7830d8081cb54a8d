//! `ssl-redirect`, `force-ssl-redirect`, `preserve-trailing-slash`: plain HTTP → HTTPS.

use super::{Key, OnInvalid, Reader};
use crate::model::policy::Defaults;

pub(super) const KEYS: &[Key] = &[
    Key::route("ssl-redirect", OnInvalid::Default),
    Key::route("force-ssl-redirect", OnInvalid::Default),
    Key::route("preserve-trailing-slash", OnInvalid::Default),
];

/// The HTTPS redirect annotations of one Ingress; the build combines them with each host's
/// TLS into the route's [`HttpsPolicy`](crate::model::HttpsPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpsAnnotations {
    /// `ssl-redirect`: redirect on hosts with TLS (default: the ConfigMap's, else true).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect on every host (default: the ConfigMap's, else false).
    pub force_ssl_redirect: bool,
    /// `preserve-trailing-slash`: keep a trailing `/` in the redirect (default false: one is
    /// removed, as ingress-nginx does).
    pub preserve_trailing_slash: bool,
}

pub(super) fn parse(r: &mut Reader<'_>, defaults: &Defaults) -> HttpsAnnotations {
    HttpsAnnotations {
        ssl_redirect: r.flag("ssl-redirect", defaults.ssl_redirect),
        force_ssl_redirect: r.flag("force-ssl-redirect", defaults.force_ssl_redirect),
        preserve_trailing_slash: r
            .flag("preserve-trailing-slash", defaults.preserve_trailing_slash),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with};
    use crate::model::Reason;
    use crate::model::policy::Defaults;

    #[test]
    fn reads_redirect_annotations_weir_first_then_nginx() {
        let read = |pairs: &[(&str, &str)]| {
            let (parsed, diagnostics) = parse_pairs(pairs);
            let h = parsed.https;
            (h.ssl_redirect, h.force_ssl_redirect, diagnostics.len())
        };
        assert_eq!(read(&[]), (true, false, 0));
        let [weir, nginx] = both("ssl-redirect");
        assert_eq!(read(&[(&nginx, "false")]), (false, false, 0));
        assert_eq!(read(&[(&weir, " FALSE ")]), (false, false, 0));
        assert_eq!(read(&[(&weir, "0")]), (false, false, 0));
        assert_eq!(
            read(&[(&weir, "true"), (&nginx, "false")]),
            (true, false, 0),
            "weir's own annotation wins"
        );
        let [weir, nginx] = both("force-ssl-redirect");
        assert_eq!(read(&[(&nginx, "true")]), (true, true, 0));
        assert_eq!(
            read(&[(&weir, "yes")]),
            (true, false, 1),
            "bad value: reported, default used"
        );
        let (_, diagnostics) = parse_pairs(&[(&weir, "yes")]);
        assert_eq!(diagnostics[0].reason, Reason::InvalidAnnotationValue);
        assert!(diagnostics[0].message.contains("\"yes\""));
        assert!(diagnostics[0].message.contains("false is used"));
    }

    #[test]
    fn the_configmap_sets_the_defaults() {
        let defaults = Defaults {
            ssl_redirect: false,
            force_ssl_redirect: true,
            ..Defaults::default()
        };
        let (parsed, _) = parse_with(&[], &defaults);
        assert!(!parsed.https.ssl_redirect && parsed.https.force_ssl_redirect);
        let [_, nginx] = both("force-ssl-redirect");
        let (parsed, _) = parse_with(&[(&nginx, "false")], &defaults);
        assert!(!parsed.https.force_ssl_redirect, "the annotation wins");
        let [_, nginx] = both("preserve-trailing-slash");
        assert!(
            parse_pairs(&[(&nginx, "true")])
                .0
                .https
                .preserve_trailing_slash
        );
    }
}

//! Host-scope annotations: `server-alias`, `from-to-www-redirect`, `app-root`. They apply to
//! every host an Ingress names; when several Ingresses name a host, the oldest one that sets
//! an annotation decides it for that host (as ingress-nginx does).

use http::HeaderValue;

use super::values;
use super::{Key, OnInvalid, Reader};
use crate::model::HostMatch;
use crate::model::client_auth::HostClientAuth;
use crate::model::validate::check_host;

pub(super) const KEYS: &[Key] = &[
    Key::host("server-alias", OnInvalid::Default),
    Key::host("from-to-www-redirect", OnInvalid::Default),
    Key::host("app-root", OnInvalid::Default),
];

/// The host-scope settings an Ingress asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostAnnotations {
    /// `server-alias`: more host names served exactly like each of the Ingress's hosts
    /// (sorted, without duplicates).
    pub aliases: Vec<HostMatch>,
    /// `from-to-www-redirect`: `www.<host>` redirects to `<host>` (and `<host>` to
    /// `www.<host>` for a host that starts with `www.`).
    pub www_redirect: bool,
    /// `app-root`: requests for `/` are redirected (302) to this path.
    pub app_root: Option<HeaderValue>,
    /// `auth-tls-*` (read by the `client_auth` group): client certificates, or why they
    /// cannot be set up.
    pub client_auth: Option<HostClientAuth>,
    /// `ssl-passthrough` (read by the `passthrough` group, with `--enable-ssl-passthrough`):
    /// the hosts' TLS connections go to their backend unopened.
    pub passthrough: bool,
}

impl HostAnnotations {
    /// True when the Ingress sets none of them.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
            && !self.www_redirect
            && self.app_root.is_none()
            && self.client_auth.is_none()
            && !self.passthrough
    }
}

pub(super) fn parse(r: &mut Reader<'_>) -> HostAnnotations {
    let mut aliases = Vec::new();
    if let Some(found) = r.get("server-alias") {
        for alias in values::list(found.value) {
            match check_host(alias) {
                Ok(()) if !alias.is_empty() => aliases.push(HostMatch::from_rule_host(alias)),
                Ok(()) => {}
                Err(why) => r.invalid(
                    found,
                    &format!("each alias must be a DNS name or *.wildcard ({why}; nginx regex names are not supported)"),
                    format_args!("the other aliases"),
                ),
            }
        }
        aliases.sort();
        aliases.dedup();
    }
    let app_root = r.get("app-root").and_then(|found| {
        let value = found.trimmed();
        let valid = value.starts_with('/')
            && !value.starts_with("//")
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
        match valid.then(|| HeaderValue::from_str(value).ok()).flatten() {
            Some(path) => Some(path),
            None => {
                r.invalid(
                    found,
                    "it must be a path starting with '/' (letters, digits and -._~/ only)",
                    "no app-root redirect",
                );
                None
            }
        }
    });
    HostAnnotations {
        aliases,
        www_redirect: r.flag("from-to-www-redirect", false),
        app_root,
        client_auth: None,
        passthrough: false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use crate::model::HostMatch;

    #[test]
    fn aliases_are_hosts_sorted_and_deduplicated() {
        let [weir, nginx] = both("server-alias");
        let (parsed, diagnostics) =
            parse_pairs(&[(&nginx, " b.example, A.example ,*.w.example,b.example,")]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(
            parsed.host.aliases,
            [
                HostMatch::Exact("a.example".into()),
                HostMatch::Exact("b.example".into()),
                HostMatch::Wildcard("w.example".into()),
            ]
        );
        let (parsed, diagnostics) =
            parse_pairs(&[(&weir, "ok.example,~^www\\d+\\.example$,1.2.3.4")]);
        assert_eq!(parsed.host.aliases, [HostMatch::Exact("ok.example".into())]);
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
        assert!(
            parsed.policy.refused.is_none(),
            "a bad alias is not served, nothing else changes"
        );
    }

    #[test]
    fn www_redirect_and_app_root() {
        let [_, www] = both("from-to-www-redirect");
        assert!(parse_pairs(&[(&www, "true")]).0.host.www_redirect);
        assert!(!parse_pairs(&[]).0.host.www_redirect);
        let [_, root] = both("app-root");
        let (parsed, diagnostics) = parse_pairs(&[(&root, "/app1")]);
        assert_eq!(parsed.host.app_root.unwrap(), "/app1");
        assert!(diagnostics.is_empty());
        for bad in ["app1", "http://x/app", "//x", "/a b", "/$1"] {
            let (parsed, diagnostics) = parse_pairs(&[(&root, bad)]);
            assert!(parsed.host.app_root.is_none(), "{bad:?}");
            assert_eq!(diagnostics.len(), 1, "{bad:?}");
        }
    }
}

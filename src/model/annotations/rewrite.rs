//! `rewrite-target`, `use-regex`, `x-forwarded-prefix`, `upstream-vhost`: what the endpoint
//! receives instead of the client's path and Host, and how the host's paths are matched.

use http::HeaderValue;

use super::{Key, OnInvalid, Reader};
use crate::model::paths::Template;
use crate::model::policy::Rewrite;

pub(super) const KEYS: &[Key] = &[
    Key::route("rewrite-target", OnInvalid::Refuse),
    Key::route("use-regex", OnInvalid::Refuse),
    Key::route("x-forwarded-prefix", OnInvalid::Default),
    Key::route("upstream-vhost", OnInvalid::Refuse),
];

/// The rewrite annotations of one Ingress, and whether it asks for regex paths
/// (`use-regex`). A `rewrite-target` makes the host's paths regexes as well, except on a path
/// equal to the target (ingress-nginx's rule); the build decides that per path.
pub(super) fn parse(r: &mut Reader<'_>) -> (Rewrite, bool) {
    let use_regex = r.flag("use-regex", false);
    let target = r.get("rewrite-target").and_then(|found| {
        Template::parse(found.trimmed())
            .map_err(|why| r.invalid(found, &why.0, "nothing"))
            .ok()
    });
    let forwarded_prefix = r.get("x-forwarded-prefix").and_then(|found| {
        let value = found.trimmed();
        if value.is_empty() {
            return None;
        }
        match Template::parse(value) {
            Ok(prefix) if target.is_some() => Some(prefix),
            Ok(_) => {
                r.report(
                    crate::model::Reason::InvalidAnnotationValue,
                    format!(
                        "annotation {:?} has no effect without rewrite-target (as in \
                         ingress-nginx); no X-Forwarded-Prefix is sent",
                        found.key
                    ),
                );
                None
            }
            Err(why) => {
                r.invalid(found, &why.0, "no X-Forwarded-Prefix");
                None
            }
        }
    });
    let upstream_vhost = r.get("upstream-vhost").and_then(|found| {
        let value = found.trimmed();
        match host_header(value) {
            Some(header) => Some(header),
            None => {
                r.invalid(
                    found,
                    "it must be a host name with an optional port (nginx variables are not \
                     supported)",
                    "nothing",
                );
                None
            }
        }
    });
    let rewrite = Rewrite {
        target,
        forwarded_prefix,
        upstream_vhost,
    };
    (rewrite, use_regex)
}

/// A Host header value: a DNS name or IP literal with an optional `:port`.
fn host_header(value: &str) -> Option<HeaderValue> {
    let (host, port) = match value.rsplit_once(':') {
        Some((head, _)) if !head.ends_with(']') && head.contains(':') => (value, None),
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return None;
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let valid = match bracketed {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        }
    };
    valid.then(|| HeaderValue::from_str(value).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use super::host_header;

    #[test]
    fn rewrite_target_is_a_template_and_fails_closed() {
        let [weir, nginx] = both("rewrite-target");
        let (parsed, diagnostics) = parse_pairs(&[(&nginx, "/$2")]);
        assert!(diagnostics.is_empty());
        assert_eq!(
            parsed.policy.rewrite.target.as_ref().unwrap().as_str(),
            "/$2"
        );
        assert!(parsed.policy.refused.is_none());
        let (parsed, _) = parse_pairs(&[(&weir, "/a"), (&nginx, "/b")]);
        assert_eq!(
            parsed.policy.rewrite.target.as_ref().unwrap().as_str(),
            "/a",
            "weir wins"
        );
        for bad in ["/$host", "https://elsewhere/", "", "relative"] {
            let (parsed, diagnostics) = parse_pairs(&[(&nginx, bad)]);
            assert!(parsed.policy.refused.is_some(), "{bad:?}");
            assert_eq!(diagnostics.len(), 1, "{bad:?}");
            assert!(diagnostics[0].message.contains("answer 503"));
        }
    }

    #[test]
    fn use_regex_is_a_boolean_and_fails_closed() {
        let [weir, nginx] = both("use-regex");
        assert!(parse_pairs(&[(&nginx, "true")]).0.regex);
        assert!(!parse_pairs(&[(&weir, "false"), (&nginx, "true")]).0.regex);
        let (parsed, _) = parse_pairs(&[(&nginx, "yes")]);
        assert!(parsed.policy.refused.is_some());
        assert!(!parse_pairs(&[]).0.regex);
    }

    #[test]
    fn forwarded_prefix_needs_a_rewrite_target() {
        let [_, prefix] = both("x-forwarded-prefix");
        let [_, target] = both("rewrite-target");
        let (parsed, diagnostics) = parse_pairs(&[(&prefix, "/app"), (&target, "/$1")]);
        let prefix_template = parsed.policy.rewrite.forwarded_prefix.as_ref().unwrap();
        assert_eq!(prefix_template.as_str(), "/app");
        assert!(diagnostics.is_empty());
        let (parsed, diagnostics) = parse_pairs(&[(&prefix, "/app")]);
        assert!(parsed.policy.rewrite.forwarded_prefix.is_none());
        assert!(
            diagnostics[0]
                .message
                .contains("no effect without rewrite-target")
        );
    }

    #[test]
    fn upstream_vhost_is_a_host_and_fails_closed() {
        let [_, nginx] = both("upstream-vhost");
        let (parsed, _) = parse_pairs(&[(&nginx, "internal.example.com")]);
        assert_eq!(
            parsed.policy.rewrite.upstream_vhost.clone().unwrap(),
            "internal.example.com"
        );
        for good in [
            "a.example:8080",
            "[::1]:80",
            "10.0.0.1",
            "svc.ns.svc.cluster.local",
        ] {
            assert!(host_header(good).is_some(), "{good}");
        }
        for bad in ["$host", "a b", "a:port", "", "http://x", "a..b"] {
            assert!(host_header(bad).is_none(), "{bad:?}");
        }
        let (parsed, _) = parse_pairs(&[(&nginx, "$host")]);
        assert!(parsed.policy.refused.is_some());
    }
}

//! Validation of rule hosts and rule paths, as the API server would do it.
//!
//! Objects from a manifests directory never went through the API server, and a permissive
//! API server version may let odd values through, so the model checks again. Each check
//! returns the matching form or a sentence saying what is wrong.

use std::net::IpAddr;

use super::table::PathRule;

/// The longest DNS name (RFC 1123 subdomain) Kubernetes accepts.
const MAX_HOST_LEN: usize = 253;
/// The longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Checks a rule host: empty (every host), a DNS-1123 subdomain such as `foo.example.com`, or
/// a wildcard `*.example.com`. Upper-case letters are accepted because hosts compare
/// case-insensitively. IP addresses, ports and `*` anywhere but a leading `*.` are refused.
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Ok(());
    }
    if host.parse::<IpAddr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<IpAddr>().is_ok())
    {
        return Err(format!(
            "host {host:?} is an IP address; rule hosts must be DNS names (leave the host empty to match every host)"
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "host {host:?} contains a port or a colon; rule hosts must be DNS names without a port"
        ));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(format!(
            "host {host:?} is longer than {MAX_HOST_LEN} characters"
        ));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Err(format!(
            "host {host:?} has a '*' that is not a leading \"*.\"; only wildcards of the form \"*.example.com\" are allowed"
        ));
    }
    for label in name.split('.') {
        check_label(label)
            .map_err(|why| format!("host {host:?} is not a valid DNS name: {why}"))?;
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "it has an empty label (two dots in a row, or a leading or trailing dot)".into(),
        );
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label {label:?} is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "label {label:?} contains {c:?}; only letters, digits and '-' are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with '-'"));
    }
    Ok(())
}

/// Character sequences the API server refuses in Exact and Prefix paths.
const INVALID_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
/// Endings the API server refuses in Exact and Prefix paths.
const INVALID_SUFFIXES: [&str; 2] = ["/..", "/."];

/// The path a rule means: as written, or `/` when it is missing or empty. The one place that
/// applies that default ([`path_rule`] and the build's messages both go through it).
pub(crate) fn rule_path(path: Option<&str>) -> &str {
    match path {
        None | Some("") => "/",
        Some(p) => p,
    }
}

/// Turns a rule path and its `pathType` into a [`PathRule`].
///
/// A missing or empty path means `/` ([`rule_path`]); a missing pathType means Prefix. `Exact` becomes an
/// exact rule; `Prefix` and `ImplementationSpecific` become prefix rules (weir defines
/// ImplementationSpecific as Prefix). Paths must start with `/`; Exact and Prefix paths must
/// also pass the API server's checks (no `//`, `/./`, `/../`, `%2f`, no trailing `/..` or `/.`).
/// The path is normalised as request paths are ([`normalize`](super::paths::normalize)).
pub(crate) fn path_rule(path: Option<&str>, path_type: &str) -> Result<PathRule, String> {
    let path = rule_path(path);
    let strict = match path_type {
        "Exact" | "Prefix" => true,
        "ImplementationSpecific" | "" => false,
        other => {
            return Err(format!(
                "pathType {other:?} of path {path:?} is not Exact, Prefix or ImplementationSpecific"
            ));
        }
    };
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with '/'"));
    }
    if strict {
        if let Some(seq) = INVALID_SEQUENCES.iter().find(|s| path.contains(*s)) {
            return Err(format!(
                "path {path:?} contains {seq:?}, which is not allowed for pathType {path_type}"
            ));
        }
        if let Some(suffix) = INVALID_SUFFIXES.iter().find(|s| path.ends_with(*s)) {
            return Err(format!(
                "path {path:?} ends with {suffix:?}, which is not allowed for pathType {path_type}"
            ));
        }
    }
    // Matched against normalised request paths, so normalised the same way (`/a//b`,
    // `/%7Euser` and `/caf%c3%a9` would otherwise never match anything).
    let path = super::paths::normalize(path)
        .map_err(|why| format!("path {path:?} cannot be matched: {why}"))?;
    Ok(if path_type == "Exact" {
        PathRule::exact(path)
    } else {
        PathRule::prefix(&path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let long_label = "a".repeat(64);
        let ok_label = "a".repeat(63);
        let too_long = vec!["a".repeat(50); 5].join("."); // 254 characters
        let rows: &[(&str, bool)] = &[
            ("", true),
            ("example.com", true),
            ("Foo.Example.COM", true),
            ("a", true),
            ("a-b.c0.d", true),
            ("*.example.com", true),
            ("*.com", true),
            ("1.2.3.4", false),
            ("::1", false),
            ("[::1]", false),
            ("example.com:80", false),
            ("*", false),
            ("*.", false),
            ("foo.*.com", false),
            ("*foo.com", false),
            ("**.foo.com", false),
            ("-a.com", false),
            ("a-.com", false),
            ("a..com", false),
            (".a.com", false),
            ("a.com.", false),
            ("a_b.com", false),
            ("a b.com", false),
            ("ä.com", false),
            (&long_label, false),
            (&ok_label, true),
            (&too_long, false),
        ];
        for (host, ok) in rows {
            assert_eq!(
                check_host(host).is_ok(),
                *ok,
                "host {host:?}: {:?}",
                check_host(host)
            );
        }
    }

    #[test]
    fn paths() {
        use crate::model::table::PathKind::{self, Exact, Prefix};
        type Row<'a> = (Option<&'a str>, &'a str, Option<(PathKind, &'a str)>);
        let rows: &[Row<'_>] = &[
            (None, "Prefix", Some((Prefix, "/"))),
            (Some(""), "Exact", Some((Exact, "/"))),
            (None, "", Some((Prefix, "/"))),
            (Some("/api/"), "Prefix", Some((Prefix, "/api"))),
            (Some("/api/"), "Exact", Some((Exact, "/api/"))),
            (
                Some("/api"),
                "ImplementationSpecific",
                Some((Prefix, "/api")),
            ),
            (
                Some("/a//b"),
                "ImplementationSpecific",
                Some((Prefix, "/a/b")),
            ),
            (Some("api"), "Prefix", None),
            (Some("api"), "ImplementationSpecific", None),
            (Some("/a//b"), "Prefix", None),
            (Some("/a/./b"), "Exact", None),
            (Some("/a/../b"), "Prefix", None),
            (Some("/a%2fb"), "Prefix", None),
            (Some("/a%2Fb"), "Exact", None),
            (Some("/a/.."), "Prefix", None),
            (Some("/a/."), "Prefix", None),
            (Some("/a/..b"), "Prefix", Some((Prefix, "/a/..b"))),
            (Some("/"), "Regex", None),
        ];
        for (path, path_type, want) in rows {
            let got = path_rule(*path, path_type).ok().map(|r| (r.kind, r.path));
            let want = want.map(|(k, p)| (k, p.to_owned()));
            assert_eq!(got, want, "path {path:?} type {path_type:?}");
        }
    }
}

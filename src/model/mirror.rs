//! Request mirroring (`mirror-target`, `mirror-request-body`, `mirror-host`), as ingress-nginx
//! has it (nginx's `mirror` module): a copy of each request of the route is sent to another
//! URL and its answer thrown away. The proxy sends the copies (`src/proxy/policy/mirror.rs`).
//!
//! The target is an absolute `http`/`https` URL that may hold nginx variables
//! ([`Expr`], e.g. `https://shadow.example.com$request_uri`). Like `auth-url`, it is written by
//! whoever writes the Ingress and can name any address: weir sends the copies wherever it
//! says, as ingress-nginx does.

use http::HeaderValue;

use super::variables::Expr;

/// Where and how a route's requests are copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `mirror-target`: the URL of the copy (`$request_uri` and the other variables filled in
    /// per request).
    pub target: Expr,
    /// The copy's `Host`: `mirror-host`, else the target's host name (without port, as
    /// ingress-nginx takes it); `None` when the target's host is a variable (then the expanded
    /// URL's).
    pub host: Option<HeaderValue>,
    /// `mirror-request-body` (default on): the copy carries the request's body.
    pub request_body: bool,
}

/// What is wrong with one mirror annotation: its name (without prefix) and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct InvalidMirror {
    /// The annotation name.
    pub key: &'static str,
    /// What is accepted.
    pub why: String,
}

impl Mirror {
    /// Reads the three annotations' values (`None`: not set).
    pub fn parse(
        target: &str,
        request_body: Option<&str>,
        host: Option<&str>,
    ) -> Result<Mirror, InvalidMirror> {
        let invalid = |key, why: String| InvalidMirror { key, why };
        let target = parse_target(target).map_err(|why| invalid("mirror-target", why))?;
        let request_body = match request_body.map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => {
                return Err(invalid(
                    "mirror-request-body",
                    "it must be \"on\" or \"off\"".to_owned(),
                ));
            }
        };
        let host = match host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => Some(host_value(host).ok_or_else(|| {
                invalid(
                    "mirror-host",
                    "it must be a host name, optionally with a port".to_owned(),
                )
            })?),
            None => literal_host(target.source()),
        };
        Ok(Mirror {
            target,
            host,
            request_body,
        })
    }
}

/// An absolute `http`/`https` URL with a host once its variables are filled in, whether they
/// stand for part of the host (`http://$host/`) or the path (`http://h:81$request_uri`).
fn parse_target(text: &str) -> Result<Expr, String> {
    let expr = Expr::parse(text.trim()).map_err(|e| e.to_string())?;
    let absolute = |sample: String| {
        sample.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
        })
    };
    if absolute(expr.sample("x")) || absolute(expr.sample("/x")) {
        Ok(expr)
    } else {
        Err("it must be an absolute http or https URL (http://… or https://…)".to_owned())
    }
}

/// The host name of `url` written before its first variable, as ingress-nginx takes it (`None`
/// when a variable starts before the host ends).
fn literal_host(url: &str) -> Option<HeaderValue> {
    let literal = url.split('$').next()?;
    let uri: http::Uri = literal.parse().ok()?;
    host_value(uri.host()?)
}

/// `host` as a `Host` value: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port.
fn host_value(host: &str) -> Option<HeaderValue> {
    let uri: http::Uri = format!("http://{host}/").parse().ok()?;
    let authority = uri.authority()?;
    (authority.as_str() == host && !host.contains('@'))
        .then(|| HeaderValue::from_str(host).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn targets_bodies_and_hosts() {
        let m = Mirror::parse("https://shadow.example.com:8443$request_uri", None, None).unwrap();
        assert_eq!(
            m.target.source(),
            "https://shadow.example.com:8443$request_uri"
        );
        assert_eq!(m.host.as_ref().unwrap(), "shadow.example.com");
        assert!(m.request_body);
        let m = Mirror::parse("http://10.0.0.1/copy", Some("off"), Some("api.test:81")).unwrap();
        assert_eq!(m.host.as_ref().unwrap(), "api.test:81");
        assert!(!m.request_body);
        let m = Mirror::parse("http://$host/x", None, None).unwrap();
        assert_eq!(m.host, None, "a variable host is the expanded URL's");
        let m = Mirror::parse("http://[::1]:9/x", None, None).unwrap();
        assert_eq!(m.host.as_ref().unwrap(), "[::1]");

        let bad: &[(&str, Option<&str>, Option<&str>, &str)] = &[
            ("/relative", None, None, "mirror-target"),
            ("ftp://x/", None, None, "mirror-target"),
            ("http://x$nonsense", None, None, "mirror-target"),
            ("", None, None, "mirror-target"),
            ("http://x/", Some("maybe"), None, "mirror-request-body"),
            ("http://x/", None, Some("a b"), "mirror-host"),
            ("http://x/", None, Some("user@host"), "mirror-host"),
            ("http://x/", None, Some("h/path"), "mirror-host"),
        ];
        for (target, body, host, key) in bad {
            let err = Mirror::parse(target, *body, *host).unwrap_err();
            assert_eq!(err.key, *key, "{target:?} {body:?} {host:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_is_a_mirror_or_an_error_never_a_panic(
            target in ".{0,40}",
            body in proptest::option::of(".{0,6}"),
            host in proptest::option::of(".{0,20}"),
        ) {
            if let Ok(m) = Mirror::parse(&target, body.as_deref(), host.as_deref()) {
                let url = m.target.sample("x");
                prop_assert!(url.starts_with("http://") || url.starts_with("https://"));
            }
        }

        #[test]
        fn host_names_are_kept(host in "[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,10}){0,3}(:[1-9][0-9]{0,3})?") {
            let m = Mirror::parse("http://t/", None, Some(&host)).unwrap();
            let kept = m.host.unwrap();
            prop_assert_eq!(kept.to_str().unwrap(), host.as_str());
        }
    }
}

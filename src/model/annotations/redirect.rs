//! `permanent-redirect` (+ `-code`), `temporal-redirect` (+ `-code`), `use-port-in-redirects`
//! and `relative-redirects`: redirects that replace forwarding, and how weir writes the ones
//! it makes itself.

use http::{HeaderValue, StatusCode, Uri};

use super::values;
use super::{Found, Key, OnInvalid, Reader};
use crate::model::policy::{Defaults, Redirect};

pub(super) const KEYS: &[Key] = &[
    Key::route("permanent-redirect", OnInvalid::Refuse),
    Key::route("permanent-redirect-code", OnInvalid::Default),
    Key::route("temporal-redirect", OnInvalid::Refuse),
    Key::route("temporal-redirect-code", OnInvalid::Default),
    Key::route("use-port-in-redirects", OnInvalid::Default),
    Key::route("relative-redirects", OnInvalid::Default),
];

const URL: &str = "it must be an absolute http:// or https:// URL without nginx variables \
                   (the Location is sent exactly as written)";

/// The redirect of an Ingress that sets `temporal-redirect` (which wins, as in ingress-nginx)
/// or `permanent-redirect`. The Location is the URL as written: the request's path and query
/// are not appended.
pub(super) fn parse_redirect(r: &mut Reader<'_>) -> Option<Redirect> {
    let temporal = redirect(
        r,
        "temporal-redirect",
        "temporal-redirect-code",
        302,
        (300, 307),
    );
    let permanent = redirect(
        r,
        "permanent-redirect",
        "permanent-redirect-code",
        301,
        (300, 308),
    );
    temporal.or(permanent)
}

fn redirect(
    r: &mut Reader<'_>,
    url_key: &str,
    code_key: &str,
    default_code: u16,
    (min, max): (u16, u16),
) -> Option<Redirect> {
    let default = StatusCode::from_u16(default_code).expect("a valid code");
    let code = r.get(code_key).map_or(default, |found| {
        values::status(found.value, min, max).unwrap_or_else(|| {
            r.invalid(
                found,
                &format!("it must be a status code from {min} to {max}"),
                default_code,
            );
            default
        })
    });
    let found = r.get(url_key)?;
    match location(found) {
        Some(location) => Some(Redirect { code, location }),
        None => {
            r.invalid(found, URL, "nothing");
            None
        }
    }
}

/// The annotation's URL as a Location header value, when it is an absolute http(s) URL.
fn location(found: Found<'_>) -> Option<HeaderValue> {
    let value = found.trimmed();
    if value.contains('$') || value.contains(char::is_whitespace) {
        return None;
    }
    let uri: Uri = value.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    (scheme_ok && host_ok)
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
}

/// `use-port-in-redirects` (default: the ConfigMap's, else false).
pub(super) fn parse_use_port(r: &mut Reader<'_>, defaults: &Defaults) -> bool {
    r.flag("use-port-in-redirects", defaults.use_port_in_redirects)
}

/// `relative-redirects` (default: the ConfigMap's, else false): redirects weir makes itself
/// name only the path.
pub(super) fn parse_relative(r: &mut Reader<'_>, defaults: &Defaults) -> bool {
    r.flag("relative-redirects", defaults.relative_redirects)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::super::tests::{both, parse_pairs};

    #[test]
    fn permanent_and_temporal_redirects_with_their_codes() {
        let read = |pairs: &[(&str, &str)]| {
            let (parsed, diagnostics) = parse_pairs(pairs);
            let redirect = parsed
                .policy
                .redirect
                .as_ref()
                .map(|r| (r.code.as_u16(), r.location.to_str().unwrap().to_owned()));
            (redirect, parsed.policy.refused.is_some(), diagnostics.len())
        };
        let [weir_p, nginx_p] = both("permanent-redirect");
        let [_, p_code] = both("permanent-redirect-code");
        let [_, nginx_t] = both("temporal-redirect");
        let [weir_t_code, t_code] = both("temporal-redirect-code");
        let to = |code: u16, url: &str| (Some((code, url.to_owned())), false, 0);

        assert_eq!(
            read(&[(&nginx_p, "https://new.example/")]),
            to(301, "https://new.example/")
        );
        assert_eq!(
            read(&[(&nginx_p, "https://new.example/x?y=1"), (&p_code, "308")]),
            to(308, "https://new.example/x?y=1")
        );
        assert_eq!(
            read(&[
                (&weir_p, "http://a.example"),
                (&nginx_p, "http://b.example")
            ]),
            to(301, "http://a.example")
        );
        assert_eq!(
            read(&[(&nginx_t, "https://t.example/")]),
            to(302, "https://t.example/")
        );
        assert_eq!(
            read(&[(&nginx_t, "https://t.example/"), (&t_code, "307")]),
            to(307, "https://t.example/")
        );
        assert_eq!(
            read(&[
                (&nginx_t, "https://t.example/"),
                (&nginx_p, "https://p.example/")
            ]),
            to(302, "https://t.example/"),
            "temporal wins, as in ingress-nginx"
        );
        // A bad code is a knob: reported, the default code is used.
        assert_eq!(
            read(&[(&nginx_p, "https://new.example/"), (&p_code, "418")]),
            (Some((301, "https://new.example/".into())), false, 1)
        );
        assert_eq!(
            read(&[(&nginx_t, "https://t.example/"), (&weir_t_code, "308")]),
            (Some((302, "https://t.example/".into())), false, 1)
        );
        // A bad URL fails closed.
        for bad in [
            "new.example",
            "/relative",
            "ftp://x/",
            "https://new.example$request_uri",
            "https://a b/",
            "http://",
        ] {
            let (redirect, refused, diagnostics) = read(&[(&nginx_p, bad)]);
            assert_eq!((redirect, refused, diagnostics), (None, true, 1), "{bad:?}");
        }
        assert_eq!(StatusCode::PERMANENT_REDIRECT.as_u16(), 308);
    }

    #[test]
    fn ports_and_relative_redirects() {
        let [_, port] = both("use-port-in-redirects");
        assert!(
            parse_pairs(&[(&port, "true")])
                .0
                .policy
                .use_port_in_redirects
        );
        assert!(!parse_pairs(&[]).0.policy.use_port_in_redirects);
        let [weir, _] = both("relative-redirects");
        assert!(parse_pairs(&[(&weir, "true")]).0.policy.relative_redirects);
    }
}

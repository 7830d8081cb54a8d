//! `enable-cors`, `cors-allow-origin`, `cors-allow-methods`, `cors-allow-headers`,
//! `cors-expose-headers`, `cors-allow-credentials`, `cors-max-age`: weir answers preflights and
//! adds the CORS headers to responses, as ingress-nginx does.
//!
//! ingress-nginx's defaults: every origin (`*`), methods `GET, PUT, POST, DELETE, PATCH,
//! OPTIONS`, its list of headers, credentials allowed, a max age of 1728000 s. An origin
//! list with an item that is not an origin makes the routes refuse (503): ingress-nginx drops
//! such items, and falls back to `*` when none is left, which would open the route to every
//! site. A bad method, header list or max age falls back to the default with a Diagnostic.

use std::sync::Arc;

use http::HeaderValue;

use super::{Key, OnInvalid, Reader, values};
use crate::model::access::{Cors, CorsOrigins, OriginPattern};

pub(super) const KEYS: &[Key] = &[
    Key::route("enable-cors", OnInvalid::Default),
    Key::route("cors-allow-origin", OnInvalid::Refuse),
    Key::route("cors-allow-methods", OnInvalid::Default),
    Key::route("cors-allow-headers", OnInvalid::Default),
    Key::route("cors-expose-headers", OnInvalid::Default),
    Key::route("cors-allow-credentials", OnInvalid::Refuse),
    Key::route("cors-max-age", OnInvalid::Default),
];

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,\
                               Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: &str = "1728000";

/// CORS, when `enable-cors` is true.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<Arc<Cors>> {
    if !r.flag("enable-cors", false) {
        return None;
    }
    let origins = match r.get("cors-allow-origin") {
        None => CorsOrigins::Any,
        Some(found) => match origins(found.value) {
            Some(origins) => origins,
            None => {
                r.refuse(
                    found,
                    "it must be \"*\" or a comma-separated list of origins \
                     (\"https://app.example.com\", \"https://*.example.com\", with an optional port)",
                );
                return None;
            }
        },
    };
    let credentials = match r.get("cors-allow-credentials") {
        None => true,
        Some(found) => match values::boolean(found.value) {
            Some(credentials) => credentials,
            None => {
                r.refuse(found, values::BOOLEAN);
                return None;
            }
        },
    };
    let mut list = |name: &str, valid: fn(&str) -> bool, default: &str, accepted: &str| {
        let value = match r.get(name) {
            None => default.to_owned(),
            Some(found) if valid(found.trimmed()) => found.trimmed().to_owned(),
            Some(found) => {
                r.invalid(found, accepted, format!("{default:?}"));
                default.to_owned()
            }
        };
        HeaderValue::try_from(value).ok().filter(|v| !v.is_empty())
    };
    let methods = list(
        "cors-allow-methods",
        |v| tokens(v, |t| t.bytes().all(|b| b.is_ascii_alphabetic())),
        DEFAULT_METHODS,
        "it must be a comma-separated list of methods",
    );
    let headers = list(
        "cors-allow-headers",
        |v| tokens(v, is_header_name),
        DEFAULT_HEADERS,
        "it must be a comma-separated list of header names",
    );
    let expose = list(
        "cors-expose-headers",
        |v| tokens(v, |t| t == "*" || is_header_name(t)),
        "",
        "it must be a comma-separated list of header names or \"*\"",
    );
    let max_age = list(
        "cors-max-age",
        |v| v.parse::<u32>().is_ok(),
        DEFAULT_MAX_AGE,
        "it must be a whole number of seconds",
    );
    Some(Arc::new(Cors {
        origins,
        credentials,
        methods,
        headers,
        expose,
        max_age,
    }))
}

/// `*`, or a list of origins.
fn origins(value: &str) -> Option<CorsOrigins> {
    let items: Vec<&str> = values::list(value).collect();
    if items.is_empty() {
        return None;
    }
    if items == ["*"] {
        return Some(CorsOrigins::Any);
    }
    let patterns: Option<Vec<OriginPattern>> =
        items.into_iter().map(OriginPattern::parse).collect();
    patterns.map(CorsOrigins::List)
}

/// Whether `value` is a comma-separated list of items that pass `valid` (spaces around them
/// allowed).
fn tokens(value: &str, valid: fn(&str) -> bool) -> bool {
    value
        .split(',')
        .map(str::trim)
        .all(|t| !t.is_empty() && valid(t))
}

fn is_header_name(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use crate::model::access::CorsOrigins;

    #[test]
    fn off_unless_enabled_and_ingress_nginx_s_defaults() {
        let [weir, nginx] = both("enable-cors");
        assert!(parse_pairs(&[]).0.policy.cors.is_none());
        assert!(parse_pairs(&[(&nginx, "false")]).0.policy.cors.is_none());
        for key in [&weir, &nginx] {
            let (parsed, diagnostics) = parse_pairs(&[(key, "true")]);
            let cors = parsed.policy.cors.clone().expect("on");
            assert!(diagnostics.is_empty());
            assert_eq!(cors.origins, CorsOrigins::Any);
            assert!(cors.credentials);
            assert_eq!(cors.methods.as_ref().unwrap(), super::DEFAULT_METHODS);
            assert_eq!(cors.max_age.as_ref().unwrap(), "1728000");
            assert!(cors.expose.is_none());
        }
    }

    #[test]
    fn values_and_what_bad_ones_do() {
        let [_, on] = both("enable-cors");
        let key = |name: &str| both(name)[1].clone();
        let read = |pairs: &[(String, &str)]| {
            let mut all: Vec<(&str, &str)> = vec![(on.as_str(), "true")];
            all.extend(pairs.iter().map(|(k, v)| (k.as_str(), *v)));
            parse_pairs(&all)
        };
        let (parsed, diagnostics) = read(&[
            (
                key("cors-allow-origin"),
                "https://a.test, https://*.b.test:8443",
            ),
            (key("cors-allow-methods"), "GET, POST"),
            (key("cors-expose-headers"), "X-Total, *"),
            (key("cors-allow-credentials"), "false"),
            (key("cors-max-age"), "600"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let cors = parsed.policy.cors.clone().unwrap();
        assert!(!cors.credentials);
        assert_eq!(cors.expose.as_ref().unwrap(), "X-Total, *");
        let CorsOrigins::List(list) = &cors.origins else {
            panic!("a list")
        };
        assert_eq!(list.len(), 2);
        // An origin list that is not one: refused, never "*".
        for bad in [
            "https://a.test, javascript:alert(1)",
            "https://a.test/path",
            "",
        ] {
            let (parsed, _) = read(&[(key("cors-allow-origin"), bad)]);
            assert!(parsed.policy.refused.is_some(), "{bad:?}");
        }
        let (parsed, _) = read(&[(key("cors-allow-credentials"), "maybe")]);
        assert!(parsed.policy.refused.is_some());
        // Knobs fall back.
        let (parsed, diagnostics) = read(&[
            (key("cors-allow-methods"), "GET;rm"),
            (key("cors-max-age"), "a day"),
        ]);
        assert_eq!(diagnostics.len(), 2);
        let cors = parsed.policy.cors.clone().unwrap();
        assert_eq!(cors.methods.as_ref().unwrap(), super::DEFAULT_METHODS);
        assert!(parsed.policy.refused.is_none());
    }
}

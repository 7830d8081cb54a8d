//! Phase 14's choice of endpoint (`load-balance`, `upstream-hash-by`, `affinity`): the route's
//! [`Balancer`] picks, and a new affinity cookie becomes the response's `Set-Cookie` with
//! ingress-nginx's attributes (`sticky.lua`): `Path` the rule's path unless
//! `session-cookie-path`, `HttpOnly`, `Secure` on HTTPS or with `session-cookie-secure`, and
//! `SameSite=None` left out for the browsers that reject it when
//! `session-cookie-conditional-samesite-none` asks so.

use std::net::SocketAddr;

use http::HeaderValue;
use http::header::USER_AGENT;
use tracing::debug;

use crate::model::variables::Vars;
use crate::model::{Affinity, Balance, Route, SameSite};
use crate::state::{Balancer, Picked};

/// The endpoint chosen for a request and the affinity cookie its response sets.
#[derive(Debug)]
pub(crate) struct Chosen {
    /// The balancer's pick.
    pub picked: Picked,
    /// `Set-Cookie` for a new affinity cookie.
    pub set_cookie: Option<HeaderValue>,
}

impl Chosen {
    /// A pick without a cookie.
    pub fn plain(picked: Picked) -> Chosen {
        Chosen {
            picked,
            set_cookie: None,
        }
    }

    /// The endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.picked.addr
    }
}

/// The backend that serves a request: its route, balancing settings (the main backend's, or
/// the route's canary's) and balancer.
pub(crate) type Serving<'a> = (&'a Route, &'a Balance, &'a Balancer);

/// The endpoint of the serving balancer for the request `request` describes (called only by
/// hashing and affinity), and its cookie.
pub(crate) fn pick<'v>(
    (route, balance, balancer): Serving<'_>,
    request: impl Fn() -> Vars<'v>,
) -> Option<Chosen> {
    let picked = balancer.pick(&request)?;
    Some(with_cookie(route, balance, picked, request))
}

fn with_cookie<'v>(
    route: &Route,
    balance: &Balance,
    picked: Picked,
    request: impl Fn() -> Vars<'v>,
) -> Chosen {
    let set_cookie = match (&picked.cookie, &balance.affinity) {
        (Some(value), Some(affinity)) => {
            let header = set_cookie(route, affinity, value, &request());
            debug!(ingress = %route.ingress, endpoint = %picked.addr, cookie = %affinity.cookie.name, "new affinity cookie");
            header
        }
        _ => None,
    };
    Chosen { picked, set_cookie }
}

/// The `Set-Cookie` of affinity cookie `value` for a request on `route`.
fn set_cookie(
    route: &Route,
    affinity: &Affinity,
    value: &str,
    request: &Vars<'_>,
) -> Option<HeaderValue> {
    use std::fmt::Write;
    let cookie = &affinity.cookie;
    let mut out = format!("{}={value}", cookie.name);
    if let Some(seconds) = cookie.expires {
        let at = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        if let Ok(date) =
            jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&at)
        {
            let _ = write!(out, "; Expires={date}");
        }
    }
    if let Some(seconds) = cookie.max_age {
        let _ = write!(out, "; Max-Age={seconds}");
    }
    if let Some(domain) = &cookie.domain {
        let _ = write!(out, "; Domain={domain}");
    }
    let _ = write!(out, "; Path={}", cookie_path(route, cookie.path.as_deref()));
    if cookie.secure || request.scheme == "https" {
        out.push_str("; Secure");
    }
    out.push_str("; HttpOnly");
    let user_agent = request
        .headers
        .get(USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .unwrap_or("");
    match cookie.same_site {
        Some(SameSite::None)
            if cookie.conditional_same_site_none && !same_site_none_compatible(user_agent) => {}
        Some(same_site) => {
            let _ = write!(out, "; SameSite={}", same_site.as_str());
        }
        None => {}
    }
    HeaderValue::try_from(out).ok()
}

/// `session-cookie-path`, else the route's rule path (ingress-nginx's `location_path`); `/` for
/// a regex path (which is no cookie path) and for default backends.
fn cookie_path<'a>(route: &'a Route, configured: Option<&'a str>) -> &'a str {
    if let Some(path) = configured {
        return path;
    }
    match route.location.split_once(' ') {
        Some((_, path)) if route.regex.is_none() && path.starts_with('/') => path,
        _ => "/",
    }
}

/// Whether a browser accepts `SameSite=None` (ingress-nginx's `same_site.lua`, after
/// Chromium's list of incompatible clients): Chrome 40–69, iOS 12 and macOS 10.14's Safari
/// reject such cookies or treat them as `Strict`.
pub(crate) fn same_site_none_compatible(user_agent: &str) -> bool {
    let has = |s: &str| user_agent.contains(s);
    let incompatible = has("Chrome/4")
        || has("Chrome/5")
        || has("Chrome/6")
        || has("CPU iPhone OS 12")
        || has("iPad; CPU OS 12")
        || (has("Macintosh") && has("Intel Mac OS X 10_14") && has("Safari") && !has("Chrome"));
    !incompatible
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, ObjectKind, ObjectRef, SessionCookie};
    use std::sync::Arc;

    #[test]
    fn same_site_none_is_left_out_for_old_browsers() {
        for (ua, compatible) in [
            (
                "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/51.0.2704.103 Safari/537.36",
                false,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X) AppleWebKit/605.1.15",
                false,
            ),
            ("Mozilla/5.0 (iPad; CPU OS 12_1 like Mac OS X)", false),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 Version/12.1 Safari/605.1.15",
                false,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) Chrome/120.0 Safari/537.36",
                true,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36",
                true,
            ),
            ("curl/8.5.0", true),
            ("", true),
        ] {
            assert_eq!(same_site_none_compatible(ua), compatible, "{ua}");
        }
    }

    #[test]
    fn cookie_attributes() {
        let headers = http::HeaderMap::new();
        let vars = |scheme| Vars {
            scheme,
            host: "h",
            http_host: "h",
            method: "GET",
            request_uri: "/",
            remote_addr: "192.0.2.1".parse().unwrap(),
            headers: &headers,
        };
        let mut route = Route::new(
            ObjectRef::new(ObjectKind::Ingress, "d", "i"),
            Arc::new(Backend::new(
                ObjectRef::new(ObjectKind::Service, "d", "s"),
                "80",
                vec![],
            )),
        );
        route.location = Arc::from("app.example.com /shop");
        let mut affinity = Affinity::default();
        let header = |affinity: &Affinity, route: &Route, scheme| {
            set_cookie(route, affinity, "k|t", &vars(scheme))
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            header(&affinity, &route, "http"),
            "INGRESSCOOKIE=k|t; Path=/shop; HttpOnly"
        );
        assert_eq!(
            header(&affinity, &route, "https"),
            "INGRESSCOOKIE=k|t; Path=/shop; Secure; HttpOnly"
        );
        affinity.cookie = SessionCookie {
            name: "route".to_owned(),
            path: Some("/".to_owned()),
            domain: Some("example.com".to_owned()),
            max_age: Some(60),
            same_site: Some(SameSite::None),
            secure: true,
            ..SessionCookie::default()
        };
        assert_eq!(
            header(&affinity, &route, "http"),
            "route=k|t; Max-Age=60; Domain=example.com; Path=/; Secure; HttpOnly; SameSite=None"
        );
        affinity.cookie.expires = Some(3600);
        let with_expiry = header(&affinity, &route, "http");
        let expires = with_expiry
            .split("; ")
            .find_map(|a| a.strip_prefix("Expires="))
            .unwrap();
        assert!(expires.ends_with(" GMT"), "{expires}");
        // A regex route's path is no cookie path.
        affinity.cookie.path = None;
        route.regex = Some(crate::model::PathRegex::new("/shop/.*").unwrap());
        assert!(header(&affinity, &route, "http").contains("; Path=/;"));
    }
}

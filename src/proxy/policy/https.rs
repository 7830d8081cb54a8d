//! `ssl-redirect` / `force-ssl-redirect`: plain HTTP → HTTPS, and HSTS on HTTPS responses.
//!
//! The redirect goes to `https://<host><request target>` with the route's code (308 unless
//! `http-redirect-code` says otherwise); the port is `--https-port-external` unless it is 443
//! (always, with `use-port-in-redirects`). Without `preserve-trailing-slash`, one trailing `/`
//! of the request target is removed, as ingress-nginx does. Not redirected: ACME HTTP-01
//! challenges (cert-manager must reach its solver), and requests a trusted proxy in front says
//! came over HTTPS already.

use http::header::{self, HeaderMap};
use http::{Request, Response};

use super::super::body::ProxyBody;
use super::super::headers::{self, ClientInfo};
use super::super::respond;
use crate::model::Route;

/// The HTTPS redirect of a plain-HTTP request on `route`, if it gets one. Inline: a route
/// that does not redirect pays only its first test.
#[inline]
pub(in crate::proxy) fn redirect<B>(
    route: &Route,
    conn: &ClientInfo,
    host: &str,
    req: &Request<B>,
    https_port: u16,
) -> Option<Response<ProxyBody>> {
    if !route.https.redirect || conn.scheme != "http" {
        return None;
    }
    redirect_plain_http(route, conn, host, req, https_port)
}

/// [`redirect`] on a redirecting route, for a plain-HTTP request.
fn redirect_plain_http<B>(
    route: &Route,
    conn: &ClientInfo,
    host: &str,
    req: &Request<B>,
    https_port: u16,
) -> Option<Response<ProxyBody>> {
    if req.uri().path().starts_with("/.well-known/acme-challenge/") {
        return None;
    }
    let says_https = req
        .headers()
        .get(&headers::X_FORWARDED_PROTO)
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    if conn.trusted && says_https {
        return None;
    }
    let port = https_port.to_string();
    let port = (https_port != 443 || route.policy.use_port_in_redirects).then_some(port.as_str());
    let mut target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !route.https.preserve_trailing_slash && target.len() > 1 {
        target = target.strip_suffix('/').unwrap_or(target);
    }
    let location = super::origin("https", host, port) + target;
    Some(respond::redirect(route.https.redirect_code, &location))
}

/// Adds `Strict-Transport-Security` to an HTTPS response of a route on a TLS host.
pub(in crate::proxy) fn add_hsts(route: &Route, conn: &ClientInfo, headers: &mut HeaderMap) {
    if let Some(hsts) = route.https.hsts.as_ref().filter(|_| conn.scheme == "https") {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
}

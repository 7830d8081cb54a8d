//! Phase 9 and the CORS headers of phase 14 (`enable-cors` and the `cors-*` annotations), as
//! ingress-nginx does it: a request from an allowed origin (every one with `*`) gets
//! `Access-Control-Allow-Origin` (its origin, or `*`), `-Allow-Credentials`, `-Allow-Methods`,
//! `-Allow-Headers`, `-Expose-Headers` and `-Max-Age`; an `OPTIONS` request from one is a
//! preflight that weir answers itself with 204, before access control (browsers send
//! preflights without credentials). A request from another origin gets no CORS header and is
//! served as if CORS were off. With a list of origins, responses also say `Vary: Origin`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::super::body::ProxyBody;
use super::super::respond::SERVER;
use crate::model::{Cors, CorsOrigins};

/// The route's CORS and the `Access-Control-Allow-Origin` of this request, when it gets CORS
/// headers. Boxed: it lives across the forwarding's awaits, and a route without CORS should
/// not carry its room in every request's future.
pub(in crate::proxy) type Allowed<'a> = Option<Box<(&'a Cors, HeaderValue)>>;

/// Whether `req` gets CORS headers from a route with `cors` (a route without CORS does not
/// call it: it pays only the test of its `Option`).
pub(in crate::proxy) fn allowed<'a, B>(cors: &'a Cors, req: &Request<B>) -> Allowed<'a> {
    let origin = cors.allow_origin(req.headers().get(header::ORIGIN))?;
    Some(Box::new((cors, origin)))
}

/// The answer to a preflight, when `req` is one from an origin that is `allowed`.
pub(in crate::proxy) fn preflight<B>(
    allowed: &(&Cors, HeaderValue),
    req: &Request<B>,
) -> Option<Response<ProxyBody>> {
    let (cors, origin) = allowed;
    if req.method() != Method::OPTIONS {
        return None;
    }
    let mut response = Response::new(ProxyBody::full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::SERVER, SERVER);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    add(cors, origin, headers);
    Some(response)
}

/// Adds the CORS headers to a response, replacing the endpoint's own.
#[inline]
pub(in crate::proxy) fn add_headers(allowed: &Allowed<'_>, headers: &mut HeaderMap) {
    if let Some((cors, origin)) = allowed.as_deref() {
        add(cors, origin, headers);
    }
}

fn add(cors: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &cors.methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.headers),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, &cors.expose),
        (header::ACCESS_CONTROL_MAX_AGE, &cors.max_age),
    ] {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    }
    if matches!(cors.origins, CorsOrigins::List(_)) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

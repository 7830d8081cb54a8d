//! `rewrite-target`, `x-forwarded-prefix`, `upstream-vhost`: the request the endpoint receives.
//!
//! The new path is the target with `$1`…`$9` replaced by the capture groups of the route's path
//! regex matched against the (normalised) path, followed by the request's query, as nginx's
//! `rewrite … break` does. `X-Forwarded-Prefix` is sent only with a rewrite (as in
//! ingress-nginx). `upstream-vhost` replaces the `Host` the endpoint sees (X-Forwarded-Host
//! keeps the client's).

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri};
use tracing::debug;

use super::super::respond::Refusal;
use crate::model::{Route, normalize_path};

/// `X-Forwarded-Prefix`.
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Applies the route's rewrite to `req` (already in the form sent upstream). Inline: a route
/// without one pays only this test.
#[inline]
pub(in crate::proxy) fn apply<B>(route: &Route, req: &mut Request<B>) -> Result<(), Refusal> {
    if route.policy.rewrite.is_empty() {
        return Ok(());
    }
    rewrite_request(route, req)
}

/// [`apply`] on a route with a rewrite.
fn rewrite_request<B>(route: &Route, req: &mut Request<B>) -> Result<(), Refusal> {
    let rewrite = &route.policy.rewrite;
    if let Some(target) = &rewrite.target {
        let (new, prefix) = {
            let path = req.uri().path();
            let captures = route.regex.as_ref().and_then(|r| r.captures(path));
            let expanded = target.expand(captures.as_ref(), req.uri().query());
            let prefix = rewrite
                .forwarded_prefix
                .as_ref()
                .map(|p| p.expand(captures.as_ref(), None));
            (expanded, prefix)
        };
        debug!(ingress = %route.ingress, from = %req.uri(), to = %new, "rewrite-target");
        *req.uri_mut() = rewritten(&new)?;
        if let Some(value) = prefix.and_then(|p| HeaderValue::try_from(p).ok()) {
            req.headers_mut().insert(X_FORWARDED_PREFIX.clone(), value);
        }
    }
    if let Some(host) = &rewrite.upstream_vhost {
        req.headers_mut().insert(header::HOST, host.clone());
    }
    Ok(())
}

/// The URI of an expanded rewrite target. Its path is normalised like any request path, so
/// that captures cannot make a dot-segment the endpoint would resolve.
fn rewritten(expanded: &str) -> Result<Uri, Refusal> {
    let invalid = || Refusal::BadRequest("the rewritten path is not a valid path");
    let (path, query) = match expanded.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (expanded, None),
    };
    let path = normalize_path(path).map_err(|_| invalid())?;
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let target = PathAndQuery::try_from(target).map_err(|_| invalid())?;
    Ok(Uri::from(target))
}

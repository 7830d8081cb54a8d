//! Custom error pages (`custom-http-errors`, `default-backend`; the model's
//! [`ErrorPages`]): an error response of a route that has them is replaced by its error
//! backend's answer, as ingress-nginx's `proxy_intercept_errors` and `@custom_*` locations do.
//!
//! - What is replaced: a response whose status is listed — the endpoint's, or one weir makes
//!   itself on that route (503 without endpoints, 502/504 when the endpoint fails, 403 of
//!   access rules, …) — and, with `default-backend`, the 503 of a route whose Service has no
//!   ready endpoints, listed or not. gRPC calls are never replaced (their clients read
//!   `grpc-status`, not a page).
//! - The error request: the client's method, path `/`, no body, the client's headers (without
//!   hop-by-hop ones, forwarding headers set as for the endpoint) and ingress-nginx's `X-Code`
//!   (the status), `X-Format` (the client's `Accept`), `X-Original-URI`, `X-Namespace`,
//!   `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port` and `X-Request-ID` (the endpoint's).
//!   It goes to one of the error backend's endpoints (in turn) and may take the route's connect
//!   plus read timeouts.
//! - The client gets the error backend's answer as it is, status included (nginx's
//!   `error_page CODE = @location`: the error backend is expected to answer with `X-Code`).
//!   When the error backend cannot be asked (no endpoints, refused, timed out, a page over
//!   [`MAX_PAGE`] bytes), the original response is sent (ingress-nginx sends its own 502).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tracing::{debug, warn};

use super::super::Proxy;
use super::super::body::ProxyBody;
use super::super::headers::{self, ClientInfo};
use super::super::respond::{Refusal, SERVER};
use crate::model::{ErrorPages, Route};

/// The largest error page read from an error backend (bigger: the original response is sent).
pub const MAX_PAGE: usize = 1024 * 1024;

/// The client for error backends and mirror targets.
pub(in crate::proxy) type SideClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends error requests to error backends.
pub(in crate::proxy) struct ErrorPageClient {
    client: SideClient,
    /// Which endpoint of an error backend is asked next.
    next: AtomicUsize,
}

impl ErrorPageClient {
    /// A client with its own connection pool.
    pub fn new() -> Self {
        ErrorPageClient {
            client: super::external_auth::pooled_client(),
            next: AtomicUsize::new(0),
        }
    }
}

/// What the error backend is told about a request of a route with error pages, taken when it
/// was routed (the request itself goes on to the endpoint).
pub(in crate::proxy) struct Pending {
    pages: Arc<ErrorPages>,
    route: Arc<Route>,
    method: Method,
    /// `$request_uri`: the path (normalised) and query the client asked for.
    original_uri: HeaderValue,
    /// The host as the client sent it.
    host: HeaderValue,
    /// The client's headers, with the request's `X-Request-ID`.
    headers: HeaderMap,
}

impl Pending {
    /// Takes what the error request needs from `req`, routed to `route` (whose policy has
    /// `pages`); makes sure it has the `X-Request-ID` the endpoint will get.
    pub fn new(
        pages: &Arc<ErrorPages>,
        route: &Arc<Route>,
        req: &mut Request<Incoming>,
        host: &HeaderValue,
    ) -> Box<Pending> {
        headers::ensure_request_id(req.headers_mut());
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        Box::new(Pending {
            pages: pages.clone(),
            route: route.clone(),
            method: req.method().clone(),
            original_uri: HeaderValue::from_str(uri).unwrap_or(HeaderValue::from_static("/")),
            host: host.clone(),
            headers: req.headers().clone(),
        })
    }

    /// The status the error backend is asked about, when `result` is to be replaced.
    fn code(&self, result: &Result<Response<ProxyBody>, Refusal>) -> Option<StatusCode> {
        let status = match result {
            Ok(response) => response.status(),
            Err(refusal) => refusal.status(),
        };
        let no_endpoints = matches!(result, Err(Refusal::NoEndpoints));
        (self.pages.intercepts(status.as_u16()) || self.pages.when_no_endpoints && no_endpoints)
            .then_some(status)
    }
}

/// The headers of a request weir sends on the side of the client's (an error page, a mirror
/// copy): the client's `headers` without hop-by-hop ones and without body framing, with the
/// forwarding headers set as for the endpoint. `Host` is left as it is.
pub(in crate::proxy) fn side_headers(
    headers: &HeaderMap,
    conn: &ClientInfo,
    host: &HeaderValue,
    body: bool,
) -> HeaderMap {
    let mut headers = headers.clone();
    headers::strip_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);
    if !body {
        headers.remove(header::CONTENT_LENGTH);
    }
    let host = (!host.is_empty()).then_some(host);
    headers::set_forwarding_headers(&mut headers, conn, host);
    headers
}

impl Proxy {
    /// Replaces `result` (a routed request's response, or weir's refusal) by the error
    /// backend's page when `pending`'s error pages ask for it.
    pub(in crate::proxy) async fn error_page(
        &self,
        pending: Box<Pending>,
        conn: &ClientInfo,
        result: Result<Response<ProxyBody>, Refusal>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let Some(code) = pending.code(&result) else {
            return result;
        };
        let route = &pending.route;
        match self.ask_error_backend(&pending, conn, code).await {
            Ok(mut page) => {
                debug!(ingress = %route.ingress, code = code.as_u16(), status = page.status().as_u16(), "custom error page");
                // The page goes out with the original status, whatever the error backend
                // answered: a 503 stays a 503 for clients, caches and monitors.
                *page.status_mut() = code;
                super::https::add_hsts(route, conn, page.headers_mut());
                Ok(page)
            }
            Err(why) => {
                let backend = &pending.pages.backend.service;
                warn!(ingress = %route.ingress, error_backend = %backend, code = code.as_u16(), %why, "the error backend failed; the original response is sent");
                result
            }
        }
    }

    /// The error backend's answer about a response with `code`.
    async fn ask_error_backend(
        &self,
        pending: &Pending,
        conn: &ClientInfo,
        code: StatusCode,
    ) -> Result<Response<ProxyBody>, String> {
        let endpoints = &pending.pages.backend.endpoints;
        if endpoints.is_empty() {
            return Err("it has no ready endpoints".to_owned());
        }
        let turn = self.error_pages.next.fetch_add(1, Ordering::Relaxed);
        let addr = endpoints[turn % endpoints.len()];
        let mut headers = side_headers(&pending.headers, conn, &pending.host, false);
        let route = &pending.route;
        let service = &route.backend.service;
        let contract: [(&str, Option<HeaderValue>); 7] = [
            ("x-code", Some(HeaderValue::from(code.as_u16()))),
            ("x-format", pending.headers.get(header::ACCEPT).cloned()),
            ("x-original-uri", Some(pending.original_uri.clone())),
            ("x-namespace", value(&route.ingress.namespace)),
            ("x-ingress-name", value(route.ingress_name())),
            ("x-service-name", value(&service.name)),
            ("x-service-port", value(&route.backend.port)),
        ];
        for (name, found) in contract {
            let name = HeaderName::from_static(name);
            match found {
                Some(found) => headers.insert(name, found),
                None => headers.remove(name),
            };
        }
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = pending.method.clone();
        *req.uri_mut() = format!("http://{addr}/")
            .parse()
            .map_err(|e| format!("{e}"))?;
        *req.headers_mut() = headers;
        let timeouts = &route.policy.timeouts;
        let ask = async {
            let response = self
                .error_pages
                .client
                .request(req)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let (mut parts, body) = response.into_parts();
            let page = Limited::new(body, MAX_PAGE)
                .collect()
                .await
                .map_err(|e| format!("{addr}: reading the page: {e}"))?
                .to_bytes();
            headers::strip_hop_by_hop(&mut parts.headers);
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(header::SERVER, SERVER);
            Ok(Response::from_parts(parts, ProxyBody::full(page)))
        };
        tokio::time::timeout(timeouts.connect + timeouts.read, ask)
            .await
            .map_err(|_| format!("{addr}: no answer in time"))?
    }
}

/// A header value of `text`, `None` when empty (nginx does not send a header set to an empty
/// value).
fn value(text: &str) -> Option<HeaderValue> {
    (!text.is_empty())
        .then(|| HeaderValue::from_str(text).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_not_sent() {
        assert_eq!(value(""), None);
        assert_eq!(value("web").unwrap(), "web");
        assert_eq!(value("bad\nvalue"), None);
    }
}

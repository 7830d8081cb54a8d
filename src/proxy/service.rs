//! One request through the proxy: check → route → forward → relay.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::Proxy;
use super::activity::ConnActivity;
use super::body::ProxyBody;
use super::exchange::Exchange;
use super::grpc;
use super::headers::{self, ClientInfo};
use super::idle::{IdleTimeout, Side};
use super::policy;
use super::policy::body_limit::BodyTooLarge;
use super::respond::{Refusal, SERVER};
use super::upgrade::UpgradeRequest;
use super::upstream::{BodyFailure, ClientBodyBroken, Lease, UpstreamError};
use crate::model::{Backend, Route, normalize_host};

/// The 400's detail when the client's request body could not be read.
const BROKEN_BODY: &str = "the request body is malformed or incomplete";

impl Proxy {
    /// Serves one request: finds its route and relays it, or answers it with a refusal.
    ///
    /// `activity` is the connection's: a tunnel opened by an upgrade counts as in flight on it
    /// for as long as it is open.
    ///
    /// A plain function returning an `async move` block, as `forward` is: an `async fn` would
    /// keep the request twice in every request's future.
    #[allow(clippy::manual_async_fn)] // see above: an `async fn` is what this avoids
    pub(super) fn serve_request<'a>(
        self: &'a Arc<Self>,
        conn: &'a ClientInfo,
        activity: &'a Arc<ConnActivity>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
        async move {
            let version = req.version();
            let grpc = grpc::is_grpc(req.headers());
            let mut exchange = self.exchange(conn, &req);
            if let (true, Some(exchange)) = (grpc, exchange.as_deref_mut()) {
                exchange.grpc();
            }
            let mut errors = None;
            let mut result = self
                .forward(conn, activity, req, &mut exchange, &mut errors)
                .await;
            if let Some(pending) = errors {
                // Boxed: asking the error backend is a request of its own, and every request's
                // future would otherwise carry its room (and copy it with every move).
                result = Box::pin(self.error_page(pending, conn, result)).await;
            }
            let response = match result {
                Ok(response) => response,
                Err(refusal) if grpc => refusal.into_grpc_response(),
                Err(refusal) => refusal.into_response(version),
            };
            match exchange {
                Some(mut exchange) => {
                    exchange.responding(&response);
                    response.map(|body| body.with_exchange(exchange))
                }
                None => response,
            }
        }
    }

    /// The record of a request, counted as unrouted until it is routed; `None` when neither
    /// request metrics nor the access log want it.
    fn exchange(&self, conn: &ClientInfo, req: &Request<Incoming>) -> Option<Box<Exchange>> {
        let requests = &self.metrics.requests;
        let stats = requests.enabled().then(|| requests.unrouted().clone());
        let log = self.config.access_log.as_ref();
        (stats.is_some() || log.is_some()).then(|| {
            let client = headers::client_addr(conn, req.headers());
            Exchange::start(req, client, stats, log)
        })
    }

    pub(super) fn relay(
        &self,
        result: Result<(Response<Incoming>, Lease), UpstreamError>,
        (route, backend): (&Route, &Backend),
        conn: &ClientInfo,
        cors: &policy::cors::Allowed<'_>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        match result {
            Ok((response, _)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                warn!(ingress = %route.ingress, service = %backend.service, "upstream switched protocols although no upgrade was asked for");
                Err(Refusal::UnexpectedUpgrade)
            }
            Ok((response, lease)) => {
                let (mut parts, body) = response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                parts.headers.insert(header::SERVER, SERVER);
                policy::https::add_hsts(route, conn, &mut parts.headers);
                policy::cors::add_headers(cors, &mut parts.headers);
                let body = ProxyBody::upstream(body, route.policy.timeouts.read, lease);
                Ok(Response::from_parts(parts, body))
            }
            Err(UpstreamError::Request { source, .. })
                if IdleTimeout::in_chain(&source, Side::Client) =>
            {
                debug!(ingress = %route.ingress, "client stopped sending its request body");
                Err(Refusal::ClientBodyTimeout)
            }
            Err(UpstreamError::Request { source, .. }) if BodyTooLarge::in_chain(&source) => {
                debug!(ingress = %route.ingress, "request body over proxy-body-size");
                Err(Refusal::PayloadTooLarge)
            }
            Err(UpstreamError::Request { source, .. }) if ClientBodyBroken::in_chain(&source) => {
                debug!(ingress = %route.ingress, error = %source, "the request body from the client failed");
                Err(Refusal::BadRequest(BROKEN_BODY))
            }
            Err(UpstreamError::ClientBody { failure, .. }) => {
                debug!(ingress = %route.ingress, ?failure, "the request body failed");
                Err(match failure {
                    BodyFailure::TooLarge => Refusal::PayloadTooLarge,
                    BodyFailure::ClientTimeout => Refusal::ClientBodyTimeout,
                    BodyFailure::Broken => Refusal::BadRequest(BROKEN_BODY),
                })
            }
            Err(error) => {
                warn!(ingress = %route.ingress, service = %backend.service, %error, "upstream request failed");
                self.count_upstream_error(backend, &error);
                Err(Refusal::Upstream(error))
            }
        }
    }

    /// Counts a failed attempt in `weir_upstream_errors_total`.
    pub(super) fn count_upstream_error(&self, backend: &Backend, error: &UpstreamError) {
        let service = &backend.service;
        self.metrics
            .connections
            .upstream_errors
            .with_label_values(&[&service.namespace, &service.name, error.reason()])
            .inc();
    }

    /// Counts and logs (debug) a request `route`'s access rules refused.
    pub(super) fn count_denied(&self, route: &Route, refusal: &Refusal, client: IpAddr) {
        let Some(reason) = refusal.denial() else {
            return;
        };
        debug!(ingress = %route.ingress, %client, reason, "access denied");
        self.metrics
            .connections
            .denied
            .with_label_values(&[&route.ingress.namespace, &route.ingress.name, reason])
            .inc();
    }
}

pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Refuses requests weir will not forward: CONNECT (except HTTP/2 extended CONNECT, an
/// upgrade), a request-target that is neither origin-form (`/path`) nor absolute-form
/// (`http://host/path`) — `*` and authority-form (`host:443`) get 400, as from nginx, and
/// never reach a route —, one longer than `max_target` bytes (414, as nginx past its header
/// buffer), and transfer codings other than chunked (the endpoint would receive bytes in a
/// coding it was not told about). Dot-segments are not refused: the path is normalised
/// before routing (`policy/path.rs`).
pub(super) fn check_request(
    req: &Request<Incoming>,
    upgrade: Option<&UpgradeRequest>,
    max_target: usize,
) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT && !upgrade.is_some_and(UpgradeRequest::is_extended_connect)
    {
        return Err(Refusal::MethodNotAllowed);
    }
    check_target(req.uri(), max_target)?;
    let mut codings = req.headers().get_all(header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next()
        && (codings.next().is_some()
            || !coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked"))
    {
        return Err(Refusal::UnsupportedTransferCoding);
    }
    Ok(())
}

/// The request-target's form and the length of its path and query (see [`check_request`]):
/// an origin-form or absolute-form target has a path starting with `/` (`http` gives an
/// absolute-form target without one the path `/`).
fn check_target(uri: &http::Uri, max_target: usize) -> Result<(), Refusal> {
    if !uri.path().starts_with('/') {
        return Err(Refusal::BadRequest(
            "the request-target must be a path or an absolute URI",
        ));
    }
    if uri.path_and_query().map_or(0, |p| p.as_str().len()) > max_target {
        return Err(Refusal::UriTooLong);
    }
    Ok(())
}

/// The host a request is for, as sent; 400 when it is missing or malformed (see
/// [`raw_host`]).
pub(super) fn request_host(req: &Request<Incoming>) -> Result<HeaderValue, Refusal> {
    raw_host(req).ok_or_else(invalid_host)
}

/// The host as routing and redirects use it ([`normalize_host`]); 400 when it is malformed.
pub(super) fn routing_host(value: &HeaderValue) -> Result<Cow<'_, str>, Refusal> {
    match value.to_str() {
        Ok("") => Ok(Cow::Borrowed("")),
        Ok(raw) => normalize_host(raw).ok_or_else(invalid_host),
        Err(_) => Err(invalid_host()),
    }
}

/// The refusal of a missing or malformed host. Made only when needed: a refusal made and
/// dropped unused costs every request a call.
fn invalid_host() -> Refusal {
    Refusal::BadRequest("missing or invalid Host")
}

/// The host a request is for: the authority of an absolute-form or HTTP/2 request, else the
/// Host header. HTTP/1.0 requests without one are routed as the empty host (`Some("")`).
/// Malformed (`None`): an HTTP/1.1 request without a host, several Host headers, an authority
/// with user info, or an HTTP/2 Host header naming another host than `:authority`
/// (RFC 9112 §3.2, RFC 9113 §8.3.1).
fn raw_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return None;
    }
    if let Some(authority) = req.uri().authority() {
        if authority.as_str().contains('@') {
            return None;
        }
        if req.version() == Version::HTTP_2
            && header.is_some_and(|h| {
                !h.as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
            })
        {
            return None;
        }
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    match header {
        Some(host) if !host.is_empty() => Some(host.clone()),
        _ if req.version() <= Version::HTTP_10 => Some(HeaderValue::from_static("")),
        _ => None,
    }
}

/// Turns the client's request into the one sent upstream (HTTP/1.1, origin-form, hop-by-hop
/// headers removed, forwarding headers set) and returns its request id. Method, path, query,
/// Host and Content-Length stay as the client sent them.
pub(super) fn prepare_upstream_request(
    req: &mut Request<Incoming>,
    host: HeaderValue,
    client: &ClientInfo,
) -> HeaderValue {
    let from_http2 = req.version() == Version::HTTP_2;
    // Without an authority in the target, `host` is the request's own Host header (see
    // [`raw_host`]): it is already there, and writing it again would cost a lookup.
    let host_is_header = req.uri().authority().is_none();
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    if from_http2 {
        join_cookies(headers);
    }
    let host = (!host.is_empty()).then_some(host);
    if let Some(host) = host.as_ref().filter(|_| !host_is_header) {
        headers.insert(header::HOST, host.clone());
    }
    headers::set_forwarding_headers(headers, client, host.as_ref());
    let id = headers::ensure_request_id(headers);
    debug!(request_id = ?id, "forwarding");
    id.clone()
}

/// HTTP/2 may split Cookie into several fields; HTTP/1.1 wants one, joined with "; ".
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if let (Some(first), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = first.as_bytes().to_vec();
        for value in headers.get_all(header::COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(value.as_bytes());
        }
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, value);
        }
    }
}

//! One request through the proxy: route → forward → relay.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::Proxy;
use super::body::ProxyBody;
use super::headers::{self, ClientInfo};
use super::respond::{Refusal, SERVER};
use crate::model::{Route, normalize_host};

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The listener's local port.
    pub local_port: u16,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl Proxy {
    /// Serves one request: finds its route and relays it, or answers it with a refusal.
    pub(super) async fn serve_request(
        self: &Arc<Self>,
        conn: &ConnInfo,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        match self.forward(conn, req).await {
            Ok(response) => response,
            Err(refusal) => refusal.into_response(),
        }
    }

    async fn forward(
        self: &Arc<Self>,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        if req.method() == Method::CONNECT {
            return Err(Refusal::MethodNotAllowed);
        }
        let host_value = request_host(&req).ok_or(Refusal::BadHost)?;
        let route: Arc<Route> = {
            let host = if host_value.is_empty() {
                Cow::Borrowed("")
            } else {
                host_value
                    .to_str()
                    .ok()
                    .and_then(normalize_host)
                    .ok_or(Refusal::BadHost)?
            };
            let snapshot = self.state.snapshot();
            snapshot
                .table
                .route(&host, req.uri().path())
                .cloned()
                .ok_or(Refusal::NoRoute)?
        };
        let backend = &route.backend;
        if backend.endpoints.is_empty() {
            return Err(Refusal::NoEndpoints);
        }

        prepare_upstream_request(
            &mut req,
            host_value,
            &ClientInfo {
                peer: conn.peer,
                local_port: conn.local_port,
                scheme: conn.scheme,
                trusted: &self.config.trust_forwarded_from,
            },
        );

        // One retry on another endpoint when the connect failed and the method is idempotent:
        // nothing of the request has been sent at that point.
        let attempts = if is_idempotent(req.method()) {
            backend.endpoints.len().min(2)
        } else {
            1
        };
        let mut tried: Option<SocketAddr> = None;
        let mut last_error = None;
        for _ in 0..attempts {
            let Some(addr) = pick_other(backend, tried) else {
                break;
            };
            tried = Some(addr);
            match self.pool.connection(addr).await {
                Ok(upstream) => {
                    let result = self.pool.send(upstream, req).await;
                    return relay(result, &route);
                }
                Err(error) => {
                    warn!(service = %backend.service, endpoint = %addr, %error, "upstream connect failed");
                    last_error = Some(error);
                }
            }
        }
        Err(Refusal::Upstream(
            last_error.expect("at least one attempt is made"),
        ))
    }
}

fn relay(
    result: Result<Response<Incoming>, super::upstream::UpstreamError>,
    route: &Route,
) -> Result<Response<ProxyBody>, Refusal> {
    match result {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            parts.headers.insert(header::SERVER, SERVER);
            Ok(Response::from_parts(parts, ProxyBody::upstream(body)))
        }
        Err(error) => {
            warn!(ingress = %route.ingress, service = %route.backend.service, %error, "upstream request failed");
            Err(Refusal::Upstream(error))
        }
    }
}

/// The round-robin pick, skipping `avoid` when there is another endpoint.
fn pick_other(backend: &crate::model::Backend, avoid: Option<SocketAddr>) -> Option<SocketAddr> {
    let first = backend.pick()?;
    if Some(first) != avoid {
        return Some(first);
    }
    backend.pick().filter(|addr| Some(*addr) != avoid)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The host a request is for: the authority of an absolute-form or HTTP/2 request, else the
/// Host header. HTTP/1.0 requests without one are routed as the empty host (`Some("")`).
/// An HTTP/2 request whose Host header names another host than `:authority` is malformed
/// (RFC 9113 §8.3.1), as is an HTTP/1.1 request without any host.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    let header = req.headers().get(header::HOST);
    if let Some(authority) = req.uri().authority() {
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
/// headers removed, forwarding headers set). Method, path, query, Host and Content-Length stay
/// as the client sent them.
fn prepare_upstream_request(
    req: &mut Request<Incoming>,
    host: HeaderValue,
    client: &ClientInfo<'_>,
) {
    let from_http2 = req.version() == Version::HTTP_2;
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
    if !host.is_empty() {
        headers.insert(header::HOST, host.clone());
    }
    headers::set_forwarding_headers(headers, client, Some(&host).filter(|h| !h.is_empty()));
    let id = headers::ensure_request_id(headers);
    debug!(request_id = ?id, "forwarding");
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

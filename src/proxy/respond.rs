//! Responses weir makes itself, and the one place where failures become status codes.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::upstream::UpstreamError;

/// The `Server` header weir sends on every response.
pub const SERVER: HeaderValue = HeaderValue::from_static("weir");

/// Why weir answered a request itself instead of relaying an endpoint's response.
#[derive(Debug)]
pub enum Refusal {
    /// The request has no usable Host / `:authority`.
    BadHost,
    /// A method weir does not proxy (CONNECT).
    MethodNotAllowed,
    /// No Ingress rule matches and there is no default backend.
    NoRoute,
    /// The route's Service is missing or has no ready endpoints.
    NoEndpoints,
    /// Every endpoint tried failed.
    Upstream(UpstreamError),
}

impl Refusal {
    /// The status code for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadHost => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Upstream(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A small plain-text response for this refusal.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let detail = match &self {
            Refusal::BadHost => "missing or invalid Host header",
            Refusal::MethodNotAllowed => "method not allowed",
            Refusal::NoRoute => "no route for this host and path",
            Refusal::NoEndpoints => "no ready endpoints for this service",
            Refusal::Upstream(e) if e.is_timeout() => "upstream timed out",
            Refusal::Upstream(_) => "upstream connection failed",
        };
        let body = format!(
            "{} {}: {detail}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut response = Response::new(ProxyBody::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::SERVER, SERVER);
        if matches!(self, Refusal::MethodNotAllowed) {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failures_map_to_their_status_codes() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let refused = UpstreamError::Connect {
            addr,
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let timeout = UpstreamError::ResponseTimeout {
            addr,
            after: Duration::from_secs(1),
        };
        let connect_timeout = UpstreamError::ConnectTimeout {
            addr,
            after: Duration::from_secs(1),
        };
        assert_eq!(Refusal::NoRoute.status(), 404);
        assert_eq!(Refusal::NoEndpoints.status(), 503);
        assert_eq!(Refusal::BadHost.status(), 400);
        assert_eq!(Refusal::Upstream(refused).status(), 502);
        assert_eq!(Refusal::Upstream(timeout).status(), 504);
        assert_eq!(Refusal::Upstream(connect_timeout).status(), 504);
        let response = Refusal::NoRoute.into_response();
        assert_eq!(response.headers()["server"], "weir");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
    }
}

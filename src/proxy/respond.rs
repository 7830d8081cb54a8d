//! Responses weir makes itself, and the one place where failures become status codes.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};

use super::body::ProxyBody;
use super::upstream::UpstreamError;

/// The `Server` header weir sends on every response.
pub const SERVER: HeaderValue = HeaderValue::from_static("weir");

/// Why weir answered a request itself instead of relaying an endpoint's response.
#[derive(Debug)]
pub enum Refusal {
    /// A malformed request (the detail says what is wrong).
    BadRequest(&'static str),
    /// A method weir does not proxy (CONNECT).
    MethodNotAllowed,
    /// The request-target is longer than `--max-request-target-size`.
    UriTooLong,
    /// A transfer coding other than chunked.
    UnsupportedTransferCoding,
    /// The client stopped sending its request body.
    ClientBodyTimeout,
    /// No Ingress rule matches and there is no default backend.
    NoRoute,
    /// The request body is larger than the route's `proxy-body-size`.
    PayloadTooLarge,
    /// The client is over the route's `limit-rps` or `limit-rpm` (the status to answer).
    RateLimited(StatusCode),
    /// The client has the route's `limit-connections` requests in progress already.
    ConnectionLimited(StatusCode),
    /// The route's access rules do not let this client in (source lists).
    Forbidden,
    /// The route needs credentials the request does not carry (the `WWW-Authenticate`
    /// challenge to send).
    Unauthorized(HeaderValue),
    /// The host's client-certificate policy (`auth-tls-*`) refuses the connection's
    /// certificate (with the host's `auth-tls-error-page`).
    ClientCert(CertRefusal, Option<HeaderValue>),
    /// The route's authentication service said no (401, 403, or 302 to its sign-in page, with
    /// the headers to send) or failed (500).
    ExternalAuth(Box<(StatusCode, http::HeaderMap)>),
    /// The route refuses every request: one of its Ingress's annotations is invalid and weir
    /// fails closed.
    Misconfigured,
    /// The route's Service is missing or has no ready endpoints.
    NoEndpoints,
    /// Every endpoint tried failed.
    Upstream(UpstreamError),
    /// The endpoint switched protocols when no upgrade, or another one, was asked for.
    UnexpectedUpgrade,
    /// A request on weir's TLS for a host whose TLS connections go to its backend unopened
    /// (`ssl-passthrough`).
    PassedThrough,
}

/// Why a host's client-certificate policy refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// Plain HTTP (403).
    PlainHttp,
    /// The connection's handshake was for another host, or named none (421).
    Misdirected,
    /// No certificate where one is required (400).
    Missing,
    /// A certificate that does not verify (400).
    Invalid,
    /// A subject `auth-tls-match-cn` does not match (403).
    Unauthorized,
}

impl CertRefusal {
    /// A short name, for logs and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRefusal::PlainHttp => "plain-http",
            CertRefusal::Misdirected => "misdirected",
            CertRefusal::Missing => "missing",
            CertRefusal::Invalid => "invalid",
            CertRefusal::Unauthorized => "unauthorized",
        }
    }
}

impl Refusal {
    /// The `reason` of `weir_requests_denied_total` when the route's access rules refused the
    /// request.
    pub fn denial(&self) -> Option<&'static str> {
        match self {
            Refusal::RateLimited(_) => Some("rate-limit"),
            Refusal::ConnectionLimited(_) => Some("connection-limit"),
            Refusal::Forbidden => Some("ip"),
            Refusal::Unauthorized(_) => Some("auth"),
            Refusal::ClientCert(..) => Some("mtls"),
            Refusal::ExternalAuth(answer) if answer.0.is_server_error() => Some("auth-error"),
            Refusal::ExternalAuth(_) => Some("auth"),
            _ => None,
        }
    }

    /// The status code of this refusal's response (as HTTP, not gRPC).
    pub fn status(&self) -> StatusCode {
        self.status_and_detail().0
    }

    /// The status code and a short explanation for this refusal.
    fn status_and_detail(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::BadRequest(detail) => (StatusCode::BAD_REQUEST, detail),
            Refusal::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            Refusal::UriTooLong => (StatusCode::URI_TOO_LONG, "the request-target is too long"),
            Refusal::UnsupportedTransferCoding => (
                StatusCode::NOT_IMPLEMENTED,
                "transfer codings other than chunked are not supported",
            ),
            Refusal::ClientBodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body stopped arriving",
            ),
            Refusal::NoRoute => (StatusCode::NOT_FOUND, "no route for this host and path"),
            Refusal::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this route accepts",
            ),
            Refusal::RateLimited(status) => (*status, "rate limit exceeded"),
            Refusal::ConnectionLimited(status) => (*status, "too many requests in progress"),
            Refusal::Forbidden => (StatusCode::FORBIDDEN, "access denied"),
            Refusal::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "authentication required"),
            Refusal::ExternalAuth(answer) => (answer.0, "the authentication service said no"),
            Refusal::ClientCert(why, _) => match why {
                CertRefusal::PlainHttp => (
                    StatusCode::FORBIDDEN,
                    "this host requires a client certificate: use HTTPS",
                ),
                CertRefusal::Misdirected => (
                    StatusCode::MISDIRECTED_REQUEST,
                    "this host requires a client certificate; connect with its name (SNI)",
                ),
                CertRefusal::Missing => (
                    StatusCode::BAD_REQUEST,
                    "No required SSL certificate was sent",
                ),
                CertRefusal::Invalid => (StatusCode::BAD_REQUEST, "The SSL certificate error"),
                CertRefusal::Unauthorized => {
                    (StatusCode::FORBIDDEN, "client certificate unauthorized")
                }
            },
            Refusal::Misconfigured => (
                StatusCode::SERVICE_UNAVAILABLE,
                "this route's Ingress has an invalid annotation (see its Events)",
            ),
            Refusal::NoEndpoints => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no ready endpoints for this service",
            ),
            Refusal::Upstream(e) if e.is_timeout() => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
            Refusal::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream connection failed"),
            Refusal::UnexpectedUpgrade => (
                StatusCode::BAD_GATEWAY,
                "upstream switched to a protocol that was not asked for",
            ),
            Refusal::PassedThrough => (
                StatusCode::MISDIRECTED_REQUEST,
                "this host's TLS goes to its backend (ssl-passthrough); connect with its name (SNI)",
            ),
        }
    }

    /// The refusal as a gRPC client understands it: HTTP 200, the status in `grpc-status`
    /// (see [`grpc`](super::grpc)).
    pub fn into_grpc_response(self) -> Response<ProxyBody> {
        let (status, detail) = self.status_and_detail();
        let timeout = matches!(&self, Refusal::Upstream(e) if e.is_timeout());
        super::grpc::respond(super::grpc::status_for(status, timeout), detail)
    }

    /// A small plain-text response for this refusal to a request of `version`.
    pub fn into_response(self, version: Version) -> Response<ProxyBody> {
        if let Refusal::ExternalAuth(answer) = self {
            let (status, headers) = *answer;
            return super::policy::external_auth::respond(status, headers);
        }
        if let Refusal::ClientCert(CertRefusal::Missing | CertRefusal::Invalid, Some(page)) = self {
            return redirect_to(StatusCode::FOUND, page);
        }
        let (status, detail) = self.status_and_detail();
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
        match self {
            Refusal::Unauthorized(challenge) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Refusal::MethodNotAllowed => {
                headers.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"),
                );
            }
            // The connection's framing can no longer be trusted (HTTP/1 only: HTTP/2 frames
            // each stream on its own and forbids the header).
            Refusal::BadRequest(_)
            | Refusal::UnsupportedTransferCoding
            | Refusal::ClientBodyTimeout
            | Refusal::PayloadTooLarge
                if version < Version::HTTP_2 =>
            {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A redirect to `location`, with an empty body. A location that is not a valid header value
/// (it cannot come from a valid request) gets no Location header.
pub fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    match HeaderValue::try_from(location) {
        Ok(location) => redirect_to(status, location),
        Err(_) => redirect_without_location(status),
    }
}

/// A redirect to `location`, with an empty body.
pub fn redirect_to(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut response = redirect_without_location(status);
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn redirect_without_location(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(""));
    *response.status_mut() = status;
    response.headers_mut().insert(header::SERVER, SERVER);
    response
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
        assert_eq!(Refusal::NoRoute.status_and_detail().0, 404);
        assert_eq!(Refusal::NoEndpoints.status_and_detail().0, 503);
        assert_eq!(Refusal::BadRequest("x").status_and_detail().0, 400);
        assert_eq!(Refusal::ClientBodyTimeout.status_and_detail().0, 408);
        assert_eq!(
            Refusal::UnsupportedTransferCoding.status_and_detail().0,
            501
        );
        assert_eq!(Refusal::Upstream(refused).status_and_detail().0, 502);
        assert_eq!(Refusal::Upstream(timeout).status_and_detail().0, 504);
        assert_eq!(
            Refusal::Upstream(connect_timeout).status_and_detail().0,
            504
        );
        let response = Refusal::NoRoute.into_response(Version::HTTP_11);
        assert_eq!(response.headers()["server"], "weir");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
    }
}

//! gRPC at the edge: telling a gRPC request, its deadline (`grpc-timeout`), the responses weir
//! makes itself in gRPC's shape, and the status a gRPC exchange ended with.
//!
//! A gRPC client reads the outcome of a call from `grpc-status`, not from the HTTP status: a
//! plain `503` is a protocol error to it. So every response weir makes itself to a gRPC
//! request is HTTP 200 with `content-type: application/grpc` and the status in the headers
//! (a "trailers-only" response), chosen as gRPC's own HTTP-to-gRPC mapping does, except that a
//! timeout is `DEADLINE_EXCEEDED`.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::body::ProxyBody;
use super::respond::SERVER;

/// The gRPC status codes weir uses.
pub mod code {
    /// OK.
    pub const OK: u8 = 0;
    /// CANCELLED.
    pub const CANCELLED: u8 = 1;
    /// UNKNOWN.
    pub const UNKNOWN: u8 = 2;
    /// DEADLINE_EXCEEDED.
    pub const DEADLINE_EXCEEDED: u8 = 4;
    /// PERMISSION_DENIED.
    pub const PERMISSION_DENIED: u8 = 7;
    /// RESOURCE_EXHAUSTED.
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    /// UNIMPLEMENTED.
    pub const UNIMPLEMENTED: u8 = 12;
    /// INTERNAL.
    pub const INTERNAL: u8 = 13;
    /// UNAVAILABLE.
    pub const UNAVAILABLE: u8 = 14;
    /// UNAUTHENTICATED.
    pub const UNAUTHENTICATED: u8 = 16;
}

/// The largest gRPC status code (`UNAUTHENTICATED`); anything else is counted as `UNKNOWN`.
const MAX_CODE: u8 = 16;

/// Whether a request with these headers is a gRPC call (`application/grpc`, with or without
/// a subtype such as `+proto`, and gRPC-Web).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The call's deadline from `grpc-timeout` (`1*8DIGIT` and a unit: `H`, `M`, `S`, `m`, `u`,
/// `n`); `None` when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status of a response weir made itself with `status` (`timeout`: it was a timeout).
pub fn status_for(status: StatusCode, timeout: bool) -> u8 {
    if timeout {
        return code::DEADLINE_EXCEEDED;
    }
    match status.as_u16() {
        200 => code::OK,
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        408 | 504 => code::DEADLINE_EXCEEDED,
        413 | 429 => code::RESOURCE_EXHAUSTED,
        502 | 503 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// A trailers-only gRPC response with status `code` and `message`.
pub fn respond(code: u8, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(""));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.extend(trailers(code, message));
    headers.insert(header::SERVER, SERVER);
    response
}

/// Trailers that end a call with status `code` and `message`.
pub fn trailers(code: u8, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::try_from(percent_encode(message)) {
        trailers.insert("grpc-message", message);
    }
    trailers
}

/// `grpc-message` is percent-encoded outside printable ASCII and `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The label of a call's final status: `grpc-status` of its trailers or trailers-only
/// headers; `CANCELLED` when the client went away first (HTTP 499, or a 200 whose body did
/// not end); else derived from the HTTP status as a gRPC client would.
pub fn status_label(
    grpc_status: Option<&HeaderValue>,
    http: StatusCode,
    ended: bool,
) -> &'static str {
    const LABELS: [&str; MAX_CODE as usize + 1] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    let code = match grpc_status {
        Some(value) => std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|c| *c <= MAX_CODE)
            .unwrap_or(code::UNKNOWN),
        None if http.as_u16() == 499 || (http == StatusCode::OK && !ended) => code::CANCELLED,
        None if http == StatusCode::OK => code::UNKNOWN,
        None => status_for(http, false),
    };
    LABELS[usize::from(code)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn timeouts() {
        for (value, expected) in [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("300m", Some(Duration::from_millis(300))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("1s", None),
            ("-1S", None),
            ("1.5S", None),
        ] {
            assert_eq!(
                timeout(&headers(&[("grpc-timeout", value)])),
                expected,
                "{value}"
            );
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_requests_and_statuses() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert_eq!(status_for(StatusCode::NOT_FOUND, false), 12);
        assert_eq!(status_for(StatusCode::SERVICE_UNAVAILABLE, false), 14);
        assert_eq!(status_for(StatusCode::GATEWAY_TIMEOUT, true), 4);
        assert_eq!(status_for(StatusCode::TOO_MANY_REQUESTS, false), 8);
        let response = respond(14, "no endpoints: 100%");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()["grpc-message"], "no endpoints: 100%25");
        let status = |v| Some(HeaderValue::from_static(v));
        assert_eq!(
            status_label(status("0").as_ref(), StatusCode::OK, true),
            "0"
        );
        assert_eq!(
            status_label(status("99").as_ref(), StatusCode::OK, true),
            "2"
        );
        assert_eq!(
            status_label(None, StatusCode::SERVICE_UNAVAILABLE, true),
            "14"
        );
        assert_eq!(status_label(None, StatusCode::OK, true), "2");
        assert_eq!(status_label(None, StatusCode::OK, false), "1");
        let client_closed = StatusCode::from_u16(499).unwrap();
        assert_eq!(status_label(None, client_closed, false), "1");
    }

    proptest! {
        #[test]
        fn any_timeout_header_parses_or_is_ignored(value in "[0-9A-Za-z.-]{0,12}") {
            let headers = headers(&[("grpc-timeout", &value)]);
            if let Some(d) = timeout(&headers) {
                prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
            }
        }
    }
}

//! Per-route enforcement, one file per behaviour. [`phases`](super::phases) says in which
//! order they run; each one costs a route that does not use it no more than an `Option` test.

pub(super) mod access;
pub(super) mod balance;
pub(super) mod body_limit;
pub(super) mod canary;
pub(super) mod client_cert;
pub(super) mod cors;
pub(super) mod custom_errors;
pub(super) mod external_auth;
pub(super) mod host_redirect;
pub(super) mod https;
pub(super) mod mirror;
pub(super) mod passthrough;
pub(super) mod path;
pub(super) mod rate_limit;
pub(super) mod redirect;
pub(super) mod retry;
pub(super) mod rewrite;
pub(super) mod send_timeout;
pub(super) mod slash;

use http::Request;

/// The port of the request's `Host` (or `:authority`), when it names one.
pub(super) fn host_port<B>(req: &Request<B>) -> Option<&str> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())?;
    let (_, port) = raw.rsplit_once(':')?;
    (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some(port)
}

/// The start of every `Location` weir makes: `scheme://host[:port]`. `host` is a normalised
/// host ([`normalize_host`](crate::model::normalize_host): DNS characters or a bracketed IPv6
/// address only) and `port` digits, so nothing else a client sent can reach a Location
/// (no open redirect through a crafted `Host`).
pub(super) fn origin(scheme: &str, host: &str, port: Option<&str>) -> String {
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

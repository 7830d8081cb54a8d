//! Per-route enforcement, one file per behaviour. [`phases`](super::phases) says in which
//! order they run; each one costs nothing on a route that does not use it (an `Option` test).

pub(super) mod body_limit;
pub(super) mod host_redirect;
pub(super) mod https;
pub(super) mod path;
pub(super) mod redirect;
pub(super) mod rewrite;
pub(super) mod send_timeout;
pub(super) mod slash;

use http::Request;

use super::headers::ClientInfo;

/// The port of the request's `Host` (or `:authority`), if it names one.
pub(super) fn host_port<B>(req: &Request<B>) -> Option<&str> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())?;
    let (_, port) = raw.rsplit_once(':')?;
    (!port.contains(']') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some(port)
}

/// `scheme://host[:port]` for a redirect weir makes on `conn` to `host` (normalized), with
/// the port of the request's `Host` when `with_port` is set.
pub(super) fn origin<B>(
    conn: &ClientInfo,
    host: &str,
    req: &Request<B>,
    with_port: bool,
) -> String {
    match host_port(req).filter(|_| with_port) {
        Some(port) => format!("{}://{host}:{port}", conn.scheme),
        None => format!("{}://{host}", conn.scheme),
    }
}

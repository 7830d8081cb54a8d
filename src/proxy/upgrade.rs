//! Protocol upgrades (WebSocket and the like): which requests ask for one, how they are sent
//! to an endpoint, and whether the endpoint's answer switches the connection to a tunnel.
//!
//! Endpoints always see an HTTP/1.1 upgrade (`Connection: upgrade` + `Upgrade: <protocols>`).
//! A WebSocket over HTTP/2 (RFC 8441: an extended CONNECT with `:protocol websocket`) becomes
//! such a request, with the `Sec-WebSocket-Key` that HTTP/2 clients do not send; the endpoint's
//! `101` becomes the `200` that opens the stream.
//!
//! Only a `101` whose `Upgrade` names a protocol the client asked for opens a tunnel. Any other
//! answer is relayed as a normal response and the connection stays HTTP, so an endpoint cannot
//! be tricked into a tunnel that weir would not parse (request smuggling through upgrades).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::{Instrument, debug, info_span, warn};

use super::Proxy;
use super::activity::ConnActivity;
use super::body::ProxyBody;
use super::exchange::Exchange;
use super::headers::{self, ClientInfo};
use super::respond::{Refusal, SERVER};
use super::tunnel::Tunnel;
use super::upstream::{Lease, UpstreamError};
use crate::metrics::GaugeGuard;
use crate::model::{Backend, Route};
use crate::state::ConnectionSlot;

/// `Sec-WebSocket-Key`.
static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `Sec-WebSocket-Accept`.
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The upgrade a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeRequest {
    /// HTTP/1.1 `Connection: upgrade` with these `Upgrade` protocols (h2c removed).
    Http1(HeaderValue),
    /// HTTP/2 extended CONNECT with this `:protocol`.
    ExtendedConnect(HeaderValue),
}

impl UpgradeRequest {
    /// The upgrade `req` asks for, if any. `Upgrade: h2c` is never passed on: weir speaks
    /// HTTP/2 to clients itself and HTTP/1.1 to endpoints.
    pub fn of<B>(req: &Request<B>) -> Option<UpgradeRequest> {
        if req.version() == Version::HTTP_2 {
            if req.method() != Method::CONNECT {
                return None;
            }
            let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
            return HeaderValue::from_str(protocol.as_str())
                .ok()
                .map(UpgradeRequest::ExtendedConnect);
        }
        if req.version() != Version::HTTP_11 || !connection_has_upgrade(req.headers()) {
            return None;
        }
        let protocols: Vec<&str> = req
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty() && !protocol_name(p).eq_ignore_ascii_case("h2c"))
            .collect();
        if protocols.is_empty() {
            return None;
        }
        HeaderValue::from_str(&protocols.join(", "))
            .ok()
            .map(UpgradeRequest::Http1)
    }

    /// True for an HTTP/2 extended CONNECT.
    pub fn is_extended_connect(&self) -> bool {
        matches!(self, UpgradeRequest::ExtendedConnect(_))
    }

    /// The protocols asked for, as the `Upgrade` header sent to the endpoint.
    fn protocols(&self) -> &HeaderValue {
        match self {
            UpgradeRequest::Http1(protocols) | UpgradeRequest::ExtendedConnect(protocols) => {
                protocols
            }
        }
    }

    /// Turns the prepared upstream request (HTTP/1.1, hop-by-hop headers already stripped)
    /// into the upgrade request the endpoint sees.
    pub fn apply<B>(&self, req: &mut Request<B>) {
        if self.is_extended_connect() {
            *req.method_mut() = Method::GET;
            req.extensions_mut().remove::<hyper::ext::Protocol>();
        }
        let websocket = self.is_extended_connect()
            && self
                .protocols()
                .as_bytes()
                .eq_ignore_ascii_case(b"websocket");
        let headers = req.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocols().clone());
        if websocket {
            headers.insert(SEC_WEBSOCKET_KEY.clone(), websocket_key());
        }
    }

    /// Whether the endpoint's `101` switches to a protocol that was asked for: its `Upgrade`
    /// must name exactly one of them (case-insensitively).
    pub fn accepts(&self, response_headers: &HeaderMap) -> bool {
        let mut values = response_headers.get_all(header::UPGRADE).iter();
        let (Some(chosen), None) = (values.next(), values.next()) else {
            return false;
        };
        let Ok(chosen) = chosen.to_str() else {
            return false;
        };
        let chosen = chosen.trim();
        !chosen.contains(',')
            && self.protocols().to_str().is_ok_and(|asked| {
                asked
                    .split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case(chosen))
            })
    }

    /// Turns the endpoint's accepted `101` head (hop-by-hop headers already stripped) into the
    /// head the client gets: `101` with `Connection`/`Upgrade` for HTTP/1.1, `200` without the
    /// HTTP/1-only WebSocket accept for an extended CONNECT.
    pub fn client_response_head(
        &self,
        status: &mut StatusCode,
        headers: &mut HeaderMap,
        upstream_upgrade: HeaderValue,
    ) {
        match self {
            UpgradeRequest::Http1(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, upstream_upgrade);
            }
            UpgradeRequest::ExtendedConnect(_) => {
                *status = StatusCode::OK;
                headers.remove(&SEC_WEBSOCKET_ACCEPT);
                headers.remove(header::CONTENT_LENGTH);
            }
        }
    }
}

impl Proxy {
    /// Answers an upgrade request with the endpoint's answer: an accepted `101` opens a tunnel
    /// (on its own tracked task) and tells the client so; any other answer is relayed as a
    /// normal response. `upgrade` is what the client asked for and its side of the upgrade.
    /// The tunnel takes the request's record from `exchange`: the request is reported when
    /// the tunnel closes, with the bytes it carried; and its `limit-connections` place
    /// (`slot`), given back when the tunnel closes.
    pub(super) fn switch(
        &self,
        result: Result<(Response<Incoming>, Lease), UpstreamError>,
        (upgrade, client, slot): (&UpgradeRequest, OnUpgrade, Option<ConnectionSlot>),
        (route, backend): (&Route, &Backend),
        conn: &ClientInfo,
        activity: &Arc<ConnActivity>,
        exchange: &mut Option<Box<Exchange>>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let mut response = match result {
            // The connection is the tunnel's now: its lease is dropped, never released.
            Ok((response, _)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => response,
            // A 2xx to an extended CONNECT would open the stream as a tunnel the endpoint never
            // agreed to.
            Ok((response, _))
                if upgrade.is_extended_connect() && response.status().is_success() =>
            {
                warn!(ingress = %route.ingress, service = %backend.service, status = %response.status(), "upstream answered a WebSocket over HTTP/2 with neither 101 nor an error");
                return Err(Refusal::UnexpectedUpgrade);
            }
            other => return self.relay(other, (route, backend), conn, &None),
        };
        if !upgrade.accepts(response.headers()) {
            warn!(ingress = %route.ingress, service = %backend.service, asked = ?upgrade.protocols(), answered = ?response.headers().get(header::UPGRADE), "upstream switched to a protocol that was not asked for");
            return Err(Refusal::UnexpectedUpgrade);
        }
        let upstream = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        let chosen = parts.headers.get(header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(chosen) = chosen {
            upgrade.client_response_head(&mut parts.status, &mut parts.headers, chosen);
        }
        parts.headers.insert(header::SERVER, SERVER);

        let idle_timeout = route.policy.timeouts.tunnel_idle;
        let response = Response::from_parts(parts, ProxyBody::full(Bytes::new()));
        let mut exchange = exchange.take();
        if let Some(exchange) = exchange.as_deref_mut() {
            exchange.responding(&response);
            // Reported as 101, also when HTTP/2's extended CONNECT answered the client 200:
            // either way a tunnel, not a request of that duration.
            exchange.switched();
        }
        let in_flight = activity.start();
        // The client connection stays counted (and under the caps) while it is a tunnel.
        let open = conn.open.clone();
        let tunnels = self.metrics.connections.tunnels.clone();
        let span = info_span!("tunnel", ingress = %route.ingress, service = %backend.service);
        self.tasks.spawn(
            async move {
                let (_slot, _open_connection) = (slot, open);
                let (client, upstream) = match tokio::try_join!(client, upstream) {
                    Ok(both) => both,
                    Err(error) => {
                        debug!(%error, "upgrade did not complete");
                        return;
                    }
                };
                let _open = GaugeGuard::new(tunnels);
                debug!(?idle_timeout, "tunnel open");
                let tunnel = Tunnel::new(TokioIo::new(client), TokioIo::new(upstream), idle_timeout);
                let (end, bytes) = tunnel.await;
                match end {
                    Ok(end) => debug!(?end, bytes.upstream = bytes.upstream, bytes.downstream = bytes.downstream, "tunnel closed"),
                    Err(error) => debug!(%error, bytes.upstream = bytes.upstream, bytes.downstream = bytes.downstream, "tunnel closed by an error"),
                }
                if let Some(exchange) = exchange.as_deref_mut() {
                    exchange.tunnel_closed(bytes.upstream, bytes.downstream);
                }
                drop(in_flight);
            }
            .instrument(span),
        );
        Ok(response)
    }
}

/// True when a `Connection` header lists the `upgrade` option.
fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("upgrade"))
}

/// The name of an `Upgrade` protocol without its version (`h2c`, `websocket`, `HTTP/2.0` →
/// `HTTP`).
fn protocol_name(protocol: &str) -> &str {
    protocol.split('/').next().unwrap_or(protocol).trim()
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn websocket_key() -> HeaderValue {
    let bytes = fastrand::u128(..).to_le_bytes();
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    HeaderValue::from_str(&key).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().version(version).uri("/chat");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn http1_upgrades_need_connection_upgrade_and_an_upgrade_header() {
        let ws = request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        assert_eq!(
            UpgradeRequest::of(&ws),
            Some(UpgradeRequest::Http1(HeaderValue::from_static("websocket")))
        );
        let no_connection = request(Version::HTTP_11, &[("upgrade", "websocket")]);
        assert_eq!(UpgradeRequest::of(&no_connection), None);
        let http10 = request(
            Version::HTTP_10,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert_eq!(UpgradeRequest::of(&http10), None);
    }

    #[test]
    fn h2c_is_never_passed_on() {
        let h2c = request(
            Version::HTTP_11,
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
            ],
        );
        assert_eq!(UpgradeRequest::of(&h2c), None);
        let mixed = request(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "h2c, websocket")],
        );
        assert_eq!(
            UpgradeRequest::of(&mixed),
            Some(UpgradeRequest::Http1(HeaderValue::from_static("websocket")))
        );
    }

    #[test]
    fn only_a_protocol_that_was_asked_for_is_accepted() {
        let asked = UpgradeRequest::Http1(HeaderValue::from_static("websocket, foo/2"));
        let answer = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::UPGRADE, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(asked.accepts(&answer("WebSocket")));
        assert!(asked.accepts(&answer("foo/2")));
        assert!(!asked.accepts(&answer("h2c")));
        assert!(!asked.accepts(&answer("websocket, foo/2")));
        assert!(!asked.accepts(&HeaderMap::new()));
    }

    #[test]
    fn extended_connect_becomes_an_http1_websocket_upgrade() {
        let asked = UpgradeRequest::ExtendedConnect(HeaderValue::from_static("websocket"));
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("/chat")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        asked.apply(&mut req);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.headers()["connection"], "upgrade");
        assert_eq!(req.headers()["upgrade"], "websocket");
        let key = req.headers()["sec-websocket-key"].to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(decoded.len(), 16);

        let mut status = StatusCode::SWITCHING_PROTOCOLS;
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-accept", HeaderValue::from_static("x"));
        headers.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
        asked.client_response_head(
            &mut status,
            &mut headers,
            HeaderValue::from_static("websocket"),
        );
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("sec-websocket-accept"));
        assert!(!headers.contains_key("upgrade"));
        assert_eq!(headers["sec-websocket-protocol"], "chat");
    }
}

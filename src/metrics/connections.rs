//! Data-plane metrics that are not per request: client connections, tunnels, TLS passthrough,
//! TLS handshakes, upstream failures, access denials and the access log's drops.

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// Connection-level metrics of the data plane. Handles are cheap to clone.
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// `weir_client_connections_active{listener}`: `http` or `https`.
    pub active: IntGaugeVec,
    /// `weir_client_connections_total{listener}`: accepted connections.
    pub accepted: IntCounterVec,
    /// `weir_client_connections_limit`: `--max-connections` (0: none).
    pub limit: IntGauge,
    /// `weir_client_connections_refused_total{reason}`: connections closed as soon as they
    /// were accepted: `per_client` (over `--max-connections-per-client`).
    pub refused: IntCounterVec,
    /// `weir_accept_pauses_total{reason}`: times accepting paused: `max_connections` (the cap
    /// reached), `resources` (accepting failed for want of file descriptors or memory).
    pub accept_pauses: IntCounterVec,
    /// `weir_client_connections_parked`: idle HTTP/1 connections holding only their socket.
    pub parked: IntGauge,
    /// `weir_client_connections_parks_total`: times a connection was parked.
    pub parks: IntCounter,
    /// `weir_websocket_tunnels_active`: open upgraded connections (WebSocket).
    pub tunnels: IntGauge,
    /// `weir_passthrough_connections_active`: open TLS connections passed to a backend
    /// unterminated (`ssl-passthrough`).
    pub passthrough: IntGauge,
    /// `weir_tls_handshakes_total{version,alpn}`: completed TLS handshakes.
    pub tls_handshakes: IntCounterVec,
    /// `weir_tls_handshake_errors_total{reason}`: `timeout`, `protocol` or `io`.
    pub tls_handshake_errors: IntCounterVec,
    /// `weir_proxy_protocol_errors_total{reason}`: connections closed for their PROXY
    /// protocol header: `invalid`, `too_long`, `timeout`, `empty` or `io`.
    pub proxy_protocol_errors: IntCounterVec,
    /// `weir_upstream_errors_total{namespace,service,reason}`: failed attempts to get a
    /// response from an endpoint.
    pub upstream_errors: IntCounterVec,
    /// `weir_upstream_retries_total{namespace,ingress,service,reason}`: requests sent on to
    /// another endpoint, by the `proxy-next-upstream` condition that sent them (`error`,
    /// `timeout`, `invalid_header`, `http_502`…).
    pub upstream_retries: IntCounterVec,
    /// `weir_access_log_dropped_total`: access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// `weir_requests_denied_total{namespace,ingress,reason}`: requests a route's access rules
    /// refused: `rate-limit` (503), `connection-limit` (503), `ip` (source lists, 403), `auth`
    /// (credentials or the authentication service said no: 401, 403, or the sign-in
    /// redirect), `auth-error` (the authentication service failed: 500), `mtls` (client
    /// certificates: 400, 403, 421).
    pub denied: IntCounterVec,
    /// `weir_external_auth_duration_seconds{outcome}`: sub-requests to authentication services
    /// (`auth-url`), by outcome: `allowed` (2xx), `denied` (401, 403), `error` (anything else,
    /// a timeout, a failed connection). Answers from the cache are not counted.
    pub external_auth: HistogramVec,
    /// `weir_mirror_requests_total{namespace,ingress,outcome}`: copies of requests
    /// (`mirror-target`): `sent` (the target answered), `error` (it could not be reached or did
    /// not answer in time), `overflow` (too many copies in flight), `body-too-large` (more body
    /// than a copy keeps), `incomplete` (the request's body did not arrive whole).
    pub mirror_requests: IntCounterVec,
}

impl ConnectionMetrics {
    pub(super) fn new(registry: &super::Registrar) -> prometheus::Result<Self> {
        let metrics = ConnectionMetrics {
            active: IntGaugeVec::new(
                Opts::new(
                    "weir_client_connections_active",
                    "Open client connections, by listener.",
                ),
                &["listener"],
            )?,
            accepted: IntCounterVec::new(
                Opts::new(
                    "weir_client_connections_total",
                    "Accepted client connections, by listener.",
                ),
                &["listener"],
            )?,
            parked: IntGauge::new(
                "weir_client_connections_parked",
                "Idle HTTP/1 keep-alive connections parked (holding only their socket).",
            )?,
            parks: IntCounter::new(
                "weir_client_connections_parks_total",
                "Times an idle HTTP/1 keep-alive connection was parked.",
            )?,
            tunnels: IntGauge::new(
                "weir_websocket_tunnels_active",
                "Open upgraded connections (WebSocket tunnels).",
            )?,
            passthrough: IntGauge::new(
                "weir_passthrough_connections_active",
                "Open TLS connections passed through to a backend unterminated (ssl-passthrough).",
            )?,
            tls_handshakes: IntCounterVec::new(
                Opts::new(
                    "weir_tls_handshakes_total",
                    "Completed TLS handshakes, by version and ALPN protocol.",
                ),
                &["version", "alpn"],
            )?,
            tls_handshake_errors: IntCounterVec::new(
                Opts::new(
                    "weir_tls_handshake_errors_total",
                    "Failed TLS handshakes: timeout, protocol (a TLS error, e.g. no shared cipher), io (the peer went away).",
                ),
                &["reason"],
            )?,
            limit: IntGauge::new(
                "weir_client_connections_limit",
                "The most client connections open at once (--max-connections; 0: no cap).",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "weir_client_connections_refused_total",
                    "Client connections closed as soon as they were accepted: per_client (over --max-connections-per-client).",
                ),
                &["reason"],
            )?,
            accept_pauses: IntCounterVec::new(
                Opts::new(
                    "weir_accept_pauses_total",
                    "Times accepting connections paused: max_connections (--max-connections reached; new connections wait in the listen backlog), resources (accepting failed for want of file descriptors or memory; backs off 10 ms to 1 s).",
                ),
                &["reason"],
            )?,
            proxy_protocol_errors: IntCounterVec::new(
                Opts::new(
                    "weir_proxy_protocol_errors_total",
                    "Client connections closed for their PROXY protocol header (--proxy-protocol): invalid, too_long, timeout, empty (closed before sending anything), io (closed or failed before it ended).",
                ),
                &["reason"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "weir_upstream_errors_total",
                    "Failed attempts to get a response from an endpoint, by Service and reason: connect_refused, connect_error, connect_timeout, tls_verify, tls_handshake, tls_settings, send_timeout, response_timeout, request_failed.",
                ),
                &["namespace", "service", "reason"],
            )?,
            upstream_retries: IntCounterVec::new(
                Opts::new(
                    "weir_upstream_retries_total",
                    "Requests sent on to another endpoint (proxy-next-upstream), by Ingress, Service and the condition that sent them: error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429.",
                ),
                &["namespace", "ingress", "service", "reason"],
            )?,
            access_log_dropped: IntCounter::new(
                "weir_access_log_dropped_total",
                "Access log lines dropped because the log writer could not keep up.",
            )?,
            denied: IntCounterVec::new(
                Opts::new(
                    "weir_requests_denied_total",
                    "Requests refused by a route's access rules, by Ingress and reason: rate-limit (503), connection-limit (503), ip (source lists, 403), auth (credentials or the authentication service said no), auth-error (the authentication service failed, 500), mtls (client certificates).",
                ),
                &["namespace", "ingress", "reason"],
            )?,
            external_auth: HistogramVec::new(
                HistogramOpts::new(
                    "weir_external_auth_duration_seconds",
                    "Time to get an answer from an authentication service (auth-url), by outcome: allowed, denied, error.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["outcome"],
            )?,
            mirror_requests: IntCounterVec::new(
                Opts::new(
                    "weir_mirror_requests_total",
                    "Copies of requests sent to mirror targets (mirror-target), by outcome: sent, error, overflow, body-too-large, incomplete.",
                ),
                &["namespace", "ingress", "outcome"],
            )?,
        };
        let m = metrics.clone();
        registry.register_all([
            Box::new(m.active) as Box<dyn Collector>,
            Box::new(m.accepted),
            Box::new(m.parked),
            Box::new(m.parks),
            Box::new(m.tunnels),
            Box::new(m.passthrough),
            Box::new(m.tls_handshakes),
            Box::new(m.tls_handshake_errors),
            Box::new(m.limit),
            Box::new(m.refused),
            Box::new(m.accept_pauses),
            Box::new(m.proxy_protocol_errors),
            Box::new(m.upstream_errors),
            Box::new(m.upstream_retries),
            Box::new(m.access_log_dropped),
            Box::new(m.denied),
            Box::new(m.external_auth),
            Box::new(m.mirror_requests),
        ])?;
        Ok(metrics)
    }
}

/// Counts one in a gauge while it lives (an open connection, a tunnel).
#[derive(Debug)]
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it on drop.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

//! The data plane: hyper listeners, request routing and forwarding to endpoints.
//!
//! [`Proxy`] holds what every request needs: the shared [`State`], the settings and the
//! upstream connection pool. It never talks to the control plane except through `State`.

mod activity;
mod body;
mod client_cert;
pub(crate) mod client_hello;
mod exchange;
mod grpc;
mod headers;
mod idle;
mod listener;
mod overload;
mod park;
mod passthrough;
mod phases;
mod policy;
mod preface;
pub(crate) mod proxy_protocol;
mod respond;
mod service;
mod tunnel;
mod upgrade;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::state::State;
pub use overload::default_max_connections;
use park::ParkedCount;
pub use policy::mirror::MirrorLimits;
pub use policy::retry::REPLAY_LIMIT;
use upstream::{Pool, UpstreamConfig};

/// The errors of type `T` in `error`'s source chain, `error` itself first.
pub(crate) fn in_chain<'e, T: std::error::Error + 'static>(
    error: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e T> {
    std::iter::successors(Some(error), |e| e.source()).filter_map(|e| e.downcast_ref::<T>())
}

/// Data-plane settings (see the flags of the same names). What Ingresses can change per route
/// (timeouts, body size, redirects, HSTS) comes with each route's policy instead.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// How long idle upstream connections are pooled.
    pub upstream_keepalive_timeout: Duration,
    /// Most idle upstream connections per endpoint.
    pub upstream_keepalive_connections: usize,
    /// Time allowed to receive an HTTP/1 request head.
    pub client_header_timeout: Duration,
    /// Time allowed for a client to complete the TLS handshake (with `ssl_passthrough`: to
    /// send its whole ClientHello, on connections passed through).
    pub tls_handshake_timeout: Duration,
    /// `--enable-ssl-passthrough`: the TLS listener passes the connections of hosts with
    /// `ssl-passthrough` to their backend (it reads their ClientHello first, when the table
    /// has such hosts).
    pub ssl_passthrough: bool,
    /// The HTTPS port clients see; redirects name it unless it is 443.
    pub https_port_external: u16,
    /// How long a client may pause while sending its request body (then 408).
    pub client_body_timeout: Duration,
    /// Idle client connections are closed after this.
    pub keepalive_timeout: Duration,
    /// An HTTP/1 connection idle this long after a request gives back its buffers and
    /// connection state, keeping only the socket, until the client sends again.
    pub keepalive_park_after: Duration,
    /// Largest request head in bytes (431 above).
    pub max_request_header_size: usize,
    /// Most request headers (431 above).
    pub max_headers: usize,
    /// Longest request-target in bytes (414 above).
    pub max_request_target_size: usize,
    /// Most open client connections (0: no cap); at the cap, accepting pauses.
    pub max_connections: usize,
    /// Most open connections per client address (0: no cap); more are closed when accepted.
    pub max_connections_per_client: usize,
    /// Where each finished request is logged (`None`: no access log).
    pub access_log: Option<AccessLog>,
    /// How many request copies (`mirror-target`) may be in flight, with how much body each.
    pub mirror: MirrorLimits,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            upstream_keepalive_timeout: Duration::from_secs(60),
            upstream_keepalive_connections: 320,
            client_header_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            ssl_passthrough: false,
            https_port_external: 443,
            client_body_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_park_after: Duration::from_secs(1),
            max_request_header_size: 32 * 1024,
            max_headers: 100,
            max_request_target_size: 8 * 1024,
            max_connections: 0,
            max_connections_per_client: 0,
            access_log: None,
            mirror: MirrorLimits::default(),
        }
    }
}

/// The data plane.
pub struct Proxy {
    state: Arc<State>,
    config: ProxyConfig,
    pool: Arc<Pool>,
    tasks: TaskTracker,
    parked: ParkedCount,
    metrics: Arc<Metrics>,
    /// The pooled client and answer cache for authentication services (`auth-url`).
    auth: policy::external_auth::AuthClient,
    /// The client for error backends (`custom-http-errors`, `default-backend`).
    error_pages: policy::custom_errors::ErrorPageClient,
    /// Request copies (`mirror-target`).
    mirrors: policy::mirror::Mirrors,
    /// `--max-connections`, `--max-connections-per-client`.
    limits: overload::ConnectionLimits,
}

impl Proxy {
    /// A proxy serving whatever `state` holds, counting into the state's metrics. Connection
    /// tasks are spawned on `tasks`; the upstream pool's reaper runs until `cancel` fires.
    pub fn new(
        state: Arc<State>,
        config: ProxyConfig,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let pool = Arc::new(Pool::new(
            UpstreamConfig {
                keepalive_timeout: config.upstream_keepalive_timeout,
                max_idle_per_endpoint: config.upstream_keepalive_connections,
                client_body_timeout: config.client_body_timeout,
            },
            tasks.clone(),
        ));
        let reaper = pool.clone();
        let metrics = state.metrics().clone();
        let mirrors = policy::mirror::Mirrors::new(
            config.mirror,
            metrics.connections.mirror_requests.clone(),
            tasks.clone(),
            cancel.clone(),
        );
        tasks.spawn(async move { reaper.reap_idle(cancel).await });
        let limits = overload::ConnectionLimits::new(
            config.max_connections,
            config.max_connections_per_client,
        );
        metrics.connections.limit.set(config.max_connections as i64);
        Arc::new(Proxy {
            limits,
            state,
            config,
            pool,
            tasks,
            parked: ParkedCount::new(&metrics.connections),
            auth: policy::external_auth::AuthClient::new(metrics.connections.external_auth.clone()),
            error_pages: policy::custom_errors::ErrorPageClient::new(),
            mirrors,
            metrics,
        })
    }

    /// How many idle HTTP/1 connections are parked (holding only their socket) right now.
    pub fn parked_connections(&self) -> usize {
        self.parked.now()
    }

    /// How many times an idle HTTP/1 connection was parked since the start (also counting
    /// those resumed at once because the next request had begun to arrive).
    pub fn parks_total(&self) -> u64 {
        self.parked.total()
    }
}

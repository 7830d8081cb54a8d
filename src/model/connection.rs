//! What the table sets for each client connection, read once when the connection is accepted:
//! how its client is found ([`ClientAddress`]) and how many requests it may carry (the
//! controller ConfigMap's `keep-alive-requests` and `http2-max-concurrent-streams`, over the
//! flags `--keepalive-requests` and `--http2-max-concurrent-streams`). A connection keeps what it
//! started with; a changed ConfigMap applies to the connections accepted after it.

use std::sync::Arc;

use super::client_address::ClientAddress;

/// The requests one client connection may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Requests served on one connection before it is closed (HTTP/1: `Connection: close` on
    /// the last response; HTTP/2: GOAWAY when the last stream starts); 0: no cap.
    pub keepalive_requests: u64,
    /// Most requests in flight on one HTTP/2 connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub http2_max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    /// ingress-nginx's defaults: 1000 requests, 128 streams.
    fn default() -> Self {
        ConnectionLimits {
            keepalive_requests: 1000,
            http2_max_concurrent_streams: 128,
        }
    }
}

/// Everything a client connection takes from the table when it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// How its client is found.
    pub client_address: Arc<ClientAddress>,
    /// How many requests it may carry.
    pub limits: ConnectionLimits,
}

//! Who the client is behind load balancers, and what the endpoint is told about it: the
//! controller ConfigMap's `use-proxy-protocol`, `proxy-protocol-header-timeout`,
//! `use-forwarded-headers`, `forwarded-for-header`, `compute-full-forwarded-for` and
//! `proxy-real-ip-cidr`, over the flags `--proxy-protocol`, `--proxy-protocol-header-timeout`,
//! `--proxy-protocol-trusted-from` and `--trust-forwarded-from`.
//!
//! The rules, applied per connection and request by `proxy::headers::client_ip` (the one
//! function every decision by address uses):
//! 1. With PROXY protocol on, a connection's client is its header's source when the balancer
//!    is in [`ClientAddress::proxy_protocol_from`] (else the balancer). The header's client is
//!    final: `X-Forwarded-For` is not read for the address (nginx's
//!    `real_ip_header proxy_protocol`, which ingress-nginx sets whenever PROXY protocol is on).
//! 2. Else the TCP peer; when it is in [`ClientAddress::forwarded_from`], the header
//!    [`ClientAddress::forwarded_for_header`] is read from the right, peeling trusted
//!    addresses, as nginx's `real_ip_recursive on`.
//!
//! A peer (or PROXY client) in `forwarded_from` also has its `X-Forwarded-Proto`, `-Host` and
//! `-Port` passed on; anyone else's are replaced.

use std::time::Duration;

use http::HeaderName;

use super::access::IpList;

/// How a connection's client is found and described (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// Every client connection starts with a PROXY protocol header (`use-proxy-protocol`, or
    /// `--proxy-protocol`).
    pub proxy_protocol: bool,
    /// How long a connection may take to send its PROXY protocol header
    /// (`proxy-protocol-header-timeout`).
    pub proxy_protocol_header_timeout: Duration,
    /// The balancers whose PROXY protocol headers name the client (`proxy-real-ip-cidr`, or
    /// `--proxy-protocol-trusted-from`; by default every peer).
    pub proxy_protocol_from: IpList,
    /// The peers whose forwarding headers are believed (`use-forwarded-headers` with
    /// `proxy-real-ip-cidr`, or `--trust-forwarded-from`; by default nobody).
    pub forwarded_from: IpList,
    /// The header whose chain names the client (`forwarded-for-header`, default
    /// `X-Forwarded-For`).
    pub forwarded_for_header: HeaderName,
    /// `compute-full-forwarded-for`: from a trusted peer, `X-Forwarded-For` is the chain
    /// received with the peer appended; else it is the client's address alone.
    pub full_forwarded_for: bool,
}

impl Default for ClientAddress {
    /// ingress-nginx's defaults: no PROXY protocol (5 s header timeout, every balancer's
    /// header believed), nobody's forwarding headers believed, `X-Forwarded-For`.
    fn default() -> Self {
        ClientAddress {
            proxy_protocol: false,
            proxy_protocol_header_timeout: Duration::from_secs(5),
            proxy_protocol_from: IpList::everyone(),
            forwarded_from: IpList::from_nets(&[]),
            forwarded_for_header: HeaderName::from_static("x-forwarded-for"),
            full_forwarded_for: false,
        }
    }
}

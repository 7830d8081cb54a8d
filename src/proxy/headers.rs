//! Header rewriting between client and endpoint: hop-by-hop headers out, forwarding headers in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use super::client_cert::ClientCert;
use super::overload::Open;
use crate::model::access::{IpList, canonical};
use crate::model::client_address::ClientAddress;
use crate::model::external_auth::HOP_BY_HOP;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Original-Forwarded-For`: the forwarded-for header as the client sent it.
pub static X_ORIGINAL_FORWARDED_FOR: HeaderName =
    HeaderName::from_static("x-original-forwarded-for");
/// `X-Real-IP`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Request-ID`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The most a header may take in an HPACK table of 4,096 bytes (name, value and 32 bytes of
/// overhead) and still be indexed: h2 does not index larger ones (three quarters of the table).
const HPACK_INDEXABLE: usize = 3 * 4096 / 4;

/// Moves the header values a message sent over HTTP/2 may leave in its connection's HPACK table
/// (those neither sensitive nor too large) into one allocation of their own.
///
/// Header values parsed from HTTP/1 are slices of that connection's read buffer (8 KiB or
/// more), and h2's encoder keeps the values it indexes for the life of the connection it
/// sends on: without the copy, each entry would hold a whole read buffer alive, an idle
/// HTTP/2 client connection the buffers of the endpoint connections its last responses
/// came from, and a pooled HTTP/2 endpoint connection those of the clients it served.
pub fn own_values(headers: &mut HeaderMap) {
    let indexable = |name: &HeaderName, value: &HeaderValue| {
        !value.is_sensitive() && 32 + name.as_str().len() + value.len() <= HPACK_INDEXABLE
    };
    let total: usize = headers
        .iter()
        .filter(|(name, value)| indexable(name, value))
        .map(|(_, value)| value.len())
        .sum();
    if total == 0 {
        return;
    }
    let mut copy = bytes::BytesMut::with_capacity(total);
    for (name, value) in headers.iter() {
        if indexable(name, value) {
            copy.extend_from_slice(value.as_bytes());
        }
    }
    let copy = copy.freeze();
    let mut at = 0;
    for (name, value) in headers.iter_mut() {
        if !indexable(name, value) {
            continue;
        }
        let end = at + value.len();
        // The bytes were a valid value a moment ago.
        if let Ok(owned) = HeaderValue::from_maybe_shared(copy.slice(at..end)) {
            *value = owned;
        }
        at = end;
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header names
/// (except Host and Content-Length, which a client may not remove this way).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them (Connection is one): one look at the names is cheaper
    // than a single lookup or removal, which hashes.
    if !headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()))
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| *name != header::HOST && *name != header::CONTENT_LENGTH)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the proxy knows about a client connection. The header values it yields are made once
/// per connection: formatting an address costs more than all the rest of a request's header
/// rewriting.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer: the TCP peer's address, or the client a trusted balancer's PROXY protocol
    /// header named.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Whether the peer's forwarding headers are believed (it is in the rules'
    /// `forwarded_from`).
    pub trusted: bool,
    /// The connection came with PROXY protocol on: the peer (the header's client, or the
    /// balancer when the header named none or the balancer is not trusted) is the client,
    /// whatever `X-Forwarded-For` says (ingress-nginx's `real_ip_header proxy_protocol`).
    proxied: bool,
    /// The served table's rules when the connection was accepted.
    rules: Arc<ClientAddress>,
    /// The peer's address (IPv4-mapped IPv6 as IPv4), as a header value.
    peer_ip: HeaderValue,
    /// The port the client connected to (the listener's, or the PROXY protocol header's
    /// destination port), as a header value.
    local_port: HeaderValue,
    /// On a TLS connection whose SNI named a host with client certificates: what the client
    /// presented.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The connection's count in `weir_client_connections_active` and its places under the
    /// connection caps: held for as long as the connection, or a tunnel it became, is open.
    pub(super) open: Option<Arc<Open>>,
}

impl ClientInfo {
    /// The facts of a connection from `peer` to `local_port`, under `rules`; `proxied`: PROXY
    /// protocol is on (the peer and port are the header's when it named a client).
    pub fn new(
        peer: SocketAddr,
        local_port: u16,
        scheme: &'static str,
        rules: Arc<ClientAddress>,
        proxied: bool,
    ) -> ClientInfo {
        let peer_ip = HeaderValue::try_from(canonical(peer.ip()).to_string())
            .expect("an IP address is a valid header value");
        ClientInfo {
            peer,
            scheme,
            trusted: rules.forwarded_from.contains(peer.ip()),
            proxied,
            rules,
            peer_ip,
            local_port: HeaderValue::from(local_port),
            client_cert: None,
            open: None,
        }
    }

    /// Whether the forwarded-for header may name the client: the peer is trusted and no
    /// PROXY protocol header decides instead.
    fn reads_chain(&self) -> bool {
        self.trusted && !self.proxied
    }
}

/// The client's address, the one every decision by address uses (the access log, rate limits,
/// source lists, `X-Real-IP`): the peer (a PROXY protocol header's client is final), or, when
/// the peer is trusted, the rightmost address of the forwarded-for header that is not in a
/// trusted network, read as [`forwarded_client`] does (the peer itself when there is none). An
/// untrusted peer's header is never read. IPv4-mapped IPv6 is IPv4.
pub fn client_ip(client: &ClientInfo, headers: &HeaderMap) -> IpAddr {
    // The untrusted (common) case looks at no header.
    let chain = client
        .reads_chain()
        .then(|| joined(headers, &client.rules.forwarded_for_header));
    client_in(client, chain.flatten().as_ref())
}

/// [`client_ip`] from the forwarded-for header's values `chain` (joined).
fn client_in(client: &ClientInfo, chain: Option<&HeaderValue>) -> IpAddr {
    let peer = canonical(client.peer.ip());
    match chain {
        Some(chain) if client.reads_chain() => {
            forwarded_client(chain.as_bytes(), &client.rules.forwarded_from).unwrap_or(peer)
        }
        _ => peer,
    }
}

/// [`client_ip`] with the peer's port, or port 0 when the address is a forwarded header's
/// (which names no port), as the access log has it.
pub fn client_addr(client: &ClientInfo, headers: &HeaderMap) -> SocketAddr {
    let ip = client_ip(client, headers);
    let port = match ip == canonical(client.peer.ip()) {
        true => client.peer.port(),
        false => 0,
    };
    SocketAddr::new(ip, port)
}

/// The values of `name`, joined with ", " when there are several; `None` without any.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first.clone());
    };
    let mut all = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}

/// The client in an X-Forwarded-For chain, read from the right as nginx's realip module
/// does: the first address not in a trusted network. An entry that is not an address
/// (`unknown`, garbage) ends the walk at the last trusted one: what stands left of it was
/// written by someone no trusted proxy vouches for. `ip:port` and `[v6]:port` entries count
/// as their address. Read as bytes: an entry that is not UTF-8 is one that is not an address,
/// and leaves the entries right of it as they are. `None`: the chain names no address at all.
fn forwarded_client(chain: &[u8], trusted: &IpList) -> Option<IpAddr> {
    let mut last = None;
    for entry in chain.rsplit(|b| *b == b',') {
        let entry = std::str::from_utf8(entry).map(str::trim).unwrap_or("");
        let Some(ip) = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        else {
            return last;
        };
        let ip = canonical(ip);
        if !trusted.contains(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// Sets X-Forwarded-For/-Proto/-Host/-Port, X-Real-IP and X-Original-Forwarded-For, as
/// ingress-nginx does. `X-Real-IP` is the client ([`client_ip`]); `X-Forwarded-For` too,
/// unless the peer is trusted and `compute-full-forwarded-for` is on: then it is the chain
/// received with the peer appended. A trusted peer's `-Proto`/`-Host`/`-Port` are kept;
/// anyone else's are replaced, and an RFC 7239 `Forwarded` header is removed, so a client
/// cannot forge them. `X-Original-Forwarded-For` is the forwarded-for header as received.
/// `host` is the request's Host as received.
pub fn set_forwarding_headers(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
) {
    let trusted = client.trusted;
    let rules = &*client.rules;
    if !trusted {
        headers.remove(header::FORWARDED);
    }
    let original = joined(headers, &rules.forwarded_for_header);
    // The peer (the common case) only copies the connection's ready-made value.
    let ip = client_in(client, original.as_ref());
    let real_ip = match ip == canonical(client.peer.ip()) {
        true => client.peer_ip.clone(),
        false => {
            HeaderValue::try_from(ip.to_string()).expect("an IP address is a valid header value")
        }
    };
    let xff = match trusted && rules.full_forwarded_for {
        true => {
            let received = match rules.forwarded_for_header == X_FORWARDED_FOR {
                true => original.clone(),
                false => joined(headers, &X_FORWARDED_FOR),
            };
            let peer = client.peer_ip.to_str().unwrap_or_default();
            received
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .filter(|chain| !chain.trim().is_empty())
                .and_then(|chain| HeaderValue::try_from(format!("{chain}, {peer}")).ok())
                .unwrap_or_else(|| client.peer_ip.clone())
        }
        false => real_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), real_ip);
    match original {
        Some(original) => headers.insert(X_ORIGINAL_FORWARDED_FOR.clone(), original),
        None => headers.remove(&X_ORIGINAL_FORWARDED_FOR),
    };
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(client.scheme),
        );
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PORT)) {
        headers.insert(X_FORWARDED_PORT.clone(), client.local_port.clone());
    }
}

/// Keeps a client's X-Request-ID when it is sane (1–200 visible ASCII characters), otherwise
/// sets a new random one (32 hex digits). Returns the value used, as the request carries it.
pub fn ensure_request_id(headers: &mut HeaderMap) -> &HeaderValue {
    // One lookup: the entry is read, and written only when the client's value is not kept.
    match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(entry) if is_sane_request_id(entry.get()) => entry.into_mut(),
        Entry::Occupied(mut entry) => {
            entry.insert(new_request_id());
            entry.into_mut()
        }
        Entry::Vacant(entry) => entry.insert(new_request_id()),
    }
}

/// Whether a client's X-Request-ID is kept: 1–200 visible ASCII characters.
fn is_sane_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= 200 && bytes.iter().all(u8::is_ascii_graphic)
}

/// A new request ID: 128 random bits as 32 lowercase hex digits.
fn new_request_id() -> HeaderValue {
    // Arithmetic rather than a table lookup: the compiler turns the loop into a few vector
    // instructions.
    let hex = |nibble: u8| {
        if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' - 10 + nibble
        }
    };
    let mut digits = [0u8; 32];
    for (pair, byte) in digits
        .chunks_exact_mut(2)
        .zip(fastrand::u128(..).to_le_bytes())
    {
        pair[0] = hex(byte >> 4);
        pair[1] = hex(byte & 0xf);
    }
    // Owned by the value, not copied into a vector: its copies (the request's id kept for the
    // access log, the copy of the request kept for a replay in `upstream.rs`) then count
    // references instead of moving it to a shared allocation of its own.
    HeaderValue::from_maybe_shared(Bytes::from_owner(digits))
        .expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Secret, host"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("host", "a.com"),
            ("content-length", "3"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-length", "host", "x-keep"]);
        // Connection alone is enough to look further.
        let mut h = headers(&[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        let mut h = headers(&[("host", "a.com"), ("x-keep", "yes")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    fn trusting(nets: &str) -> ClientAddress {
        ClientAddress {
            forwarded_from: IpList::parse(nets).unwrap(),
            ..ClientAddress::default()
        }
    }

    fn client(peer: &str, rules: &ClientAddress) -> ClientInfo {
        ClientInfo::new(
            peer.parse().unwrap(),
            8080,
            "http",
            Arc::new(rules.clone()),
            false,
        )
    }

    #[test]
    fn the_client_address_is_forwarded_only_by_trusted_peers() {
        let lb = trusting("10.0.0.0/8");
        let ip = |peer: &str, xff: &[&str]| {
            let pairs: Vec<(&str, &str)> = xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
            client_ip(&client(peer, &lb), &headers(&pairs)).to_string()
        };
        // An untrusted peer is the client, whatever it sends.
        assert_eq!(ip("203.0.113.9:1", &["10.1.1.1"]), "203.0.113.9");
        assert_eq!(ip("[::ffff:203.0.113.9]:1", &[]), "203.0.113.9");
        // From a trusted peer: the rightmost untrusted address, over several headers too.
        assert_eq!(ip("10.0.0.1:1", &["198.51.100.7"]), "198.51.100.7");
        assert_eq!(
            ip("10.0.0.1:1", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            "198.51.100.7"
        );
        assert_eq!(
            ip("10.0.0.1:1", &["6.6.6.6", "198.51.100.7"]),
            "198.51.100.7"
        );
        assert_eq!(ip("10.0.0.1:1", &["198.51.100.7:4711"]), "198.51.100.7");
        assert_eq!(ip("10.0.0.1:1", &["[2001:db8::7]:4711"]), "2001:db8::7");
        // What no trusted proxy vouches for ends the walk: the client cannot hide behind
        // garbage to have its own left-hand entry believed.
        assert_eq!(
            ip("10.0.0.1:1", &["6.6.6.6, unknown, 10.0.0.2"]),
            "10.0.0.2"
        );
        assert_eq!(ip("10.0.0.1:1", &["6.6.6.6, unknown"]), "10.0.0.1");
        // Bytes that are not UTF-8 (obs-text, which HTTP/1 and HTTP/2 let through) are an
        // entry that is not an address, not a reason to ignore the balancer's own entry.
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap();
        h.insert("x-forwarded-for", value);
        assert_eq!(
            client_ip(&client("10.0.0.1:1", &lb), &h).to_string(),
            "198.51.100.7"
        );
        assert_eq!(ip("10.0.0.1:1", &[]), "10.0.0.1");
        // Everyone trusted (use-forwarded-headers without proxy-real-ip-cidr): the leftmost.
        let all = ClientAddress {
            forwarded_from: IpList::everyone(),
            ..ClientAddress::default()
        };
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(
            client_ip(&client("10.0.0.1:1", &all), &h).to_string(),
            "6.6.6.6"
        );
    }

    #[test]
    fn untrusted_peers_cannot_forge_forwarding_headers() {
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.com"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4;proto=https"),
        ]);
        let host = HeaderValue::from_static("a.com");
        let none = ClientAddress::default();
        set_forwarding_headers(&mut h, &client("203.0.113.9:5555", &none), Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.com");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-original-forwarded-for"], "1.2.3.4");
        assert!(!h.contains_key("forwarded"));
        // A client's own X-Original-Forwarded-For goes, as from ingress-nginx.
        let mut h = headers(&[("x-original-forwarded-for", "1.2.3.4")]);
        set_forwarding_headers(&mut h, &client("203.0.113.9:5555", &none), None);
        assert!(!h.contains_key("x-original-forwarded-for"));
    }

    #[test]
    fn trusted_peers_name_the_client_and_the_full_chain_is_optional() {
        let received = || {
            headers(&[
                ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
                ("x-forwarded-proto", "https"),
            ])
        };
        let mut rules = trusting("10.0.0.0/8");
        let mut h = received();
        set_forwarding_headers(&mut h, &client("10.0.0.2:5555", &rules), None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(h["x-original-forwarded-for"], "198.51.100.7, 10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key("x-forwarded-host"));
        rules.full_forwarded_for = true;
        let mut h = received();
        set_forwarding_headers(&mut h, &client("10.0.0.2:5555", &rules), None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.1.1.1, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
    }

    #[test]
    fn another_forwarded_for_header_names_the_client() {
        let mut rules = trusting("10.0.0.0/8");
        rules.forwarded_for_header = HeaderName::from_static("cf-connecting-ip");
        let received = || {
            headers(&[
                ("cf-connecting-ip", "198.51.100.9"),
                ("x-forwarded-for", "6.6.6.6"),
            ])
        };
        let mut h = received();
        let conn = client("10.0.0.2:5555", &rules);
        assert_eq!(client_ip(&conn, &h).to_string(), "198.51.100.9");
        set_forwarding_headers(&mut h, &conn, None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.9");
        assert_eq!(h["x-real-ip"], "198.51.100.9");
        assert_eq!(h["x-original-forwarded-for"], "198.51.100.9");
        // The full chain is X-Forwarded-For's, as ingress-nginx's `$http_x_forwarded_for`.
        rules.full_forwarded_for = true;
        let mut h = received();
        set_forwarding_headers(&mut h, &client("10.0.0.2:5555", &rules), None);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.2");
    }

    #[test]
    fn a_proxy_protocol_client_is_final() {
        let rules = Arc::new(trusting("0.0.0.0/0"));
        let peer = "198.51.100.7:40000".parse().unwrap();
        let conn = ClientInfo::new(peer, 443, "https", rules, true);
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(client_ip(&conn, &h).to_string(), "198.51.100.7");
        set_forwarding_headers(&mut h, &conn, None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        assert_eq!(h["x-forwarded-port"], "443");
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever chain a trusted balancer passes on, the client is the peer or an address
        /// of the chain; the rightmost untrusted address when the chain ends in one.
        #[test]
        fn the_client_is_the_peer_or_an_address_of_the_chain(
            entries in proptest::collection::vec(
                prop_oneof![
                    any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
                    (0u8..4).prop_map(|b| format!("10.0.0.{b}")),
                    // Printable, without commas: one entry.
                    "[ -+\\--~]{0,12}",
                ],
                0..6,
            ),
        ) {
            let lb = trusting("10.0.0.0/8");
            let chain = entries.join(",");
            let h = headers(&[("x-forwarded-for", chain.as_str())]);
            let found = client_ip(&client("10.0.0.1:1", &lb), &h);
            let address = |e: &String| {
                let e = e.trim();
                e.parse::<IpAddr>().ok().or_else(|| e.parse::<SocketAddr>().ok().map(|a| a.ip()))
            };
            let named: Vec<IpAddr> = entries.iter().filter_map(address).map(canonical).collect();
            prop_assert!(found == "10.0.0.1".parse::<IpAddr>().unwrap() || named.contains(&found));
            let last = entries.last().and_then(|e| e.trim().parse::<IpAddr>().ok());
            if let Some(IpAddr::V4(last)) = last.filter(|ip| !lb.forwarded_from.contains(*ip)) {
                prop_assert_eq!(found, IpAddr::V4(last));
            }
        }
    }

    #[test]
    fn ipv4_mapped_peers_are_reported_as_ipv4() {
        let mut h = HeaderMap::new();
        let none = ClientAddress::default();
        set_forwarding_headers(&mut h, &client("[::ffff:192.0.2.1]:80", &none), None);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
    }

    #[test]
    fn owned_values_keep_their_bytes_order_and_sensitivity() {
        let mut h = headers(&[("a", "1"), ("b", "two"), ("a", ""), ("c", "three")]);
        let mut secret = HeaderValue::from_static("s");
        secret.set_sensitive(true);
        h.insert("d", secret);
        let large = "x".repeat(HPACK_INDEXABLE);
        h.insert("e", HeaderValue::from_str(&large).unwrap());
        let before = h.clone();
        own_values(&mut h);
        assert_eq!(h, before);
        assert!(h["d"].is_sensitive());
        assert!(!h["c"].is_sensitive());
        let a: Vec<_> = h.get_all("a").iter().collect();
        assert_eq!(a, ["1", ""]);
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut h = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut h), "abc-123");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h).clone();
        assert_eq!(id.len(), 32);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_eq!(h["x-request-id"], id);
        let mut h = headers(&[("x-request-id", ""), ("x-request-id", "second")]);
        let replaced = ensure_request_id(&mut h).clone();
        assert_eq!(replaced.len(), 32);
        let all: Vec<_> = h.get_all("x-request-id").iter().collect();
        assert_eq!(all, [&replaced]);
        assert_ne!(*ensure_request_id(&mut HeaderMap::new()), id);
    }
}

//! The PROXY protocol on the client listeners (`--proxy-protocol`): real sockets writing v1
//! and v2 headers as a load balancer does, then HTTP or TLS on the same connection.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tls::{connector, start_tls_proxy};
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::model::access::IpList;
use weir::model::client_address::ClientAddress;
use weir::model::{PathRule, RouteTable};
use weir::proxy::ProxyConfig;

/// PROXY protocol on, a 300 ms header timeout, the headers of the balancers in `trusted`
/// (comma-separated; empty: every peer) believed.
fn with_header(table: RouteTable, trusted: &str) -> RouteTable {
    table.with_client_address(ClientAddress {
        proxy_protocol: true,
        proxy_protocol_header_timeout: Duration::from_millis(300),
        proxy_protocol_from: match trusted {
            "" => IpList::everyone(),
            nets => IpList::parse(nets).unwrap(),
        },
        ..ClientAddress::default()
    })
}

async fn proxy(trusted: &str) -> (TestProxy, TestBackend) {
    let backend = TestBackend::start("b").await;
    let table = table(&[("h", PathRule::prefix("/"), "s", vec![backend.addr])]);
    let table = with_header(table, trusted);
    (
        TestProxy::start(ProxyConfig::default(), table).await,
        backend,
    )
}

const GET: &[u8] = b"GET /who HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";

/// A v2 PROXY header for TCP over IPv4 from `client`, with an AWS-like TLV.
fn v2_header(client: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(client) = client else {
        panic!("IPv4 only")
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, 0x11, 0, 12 + 6]);
    out.extend(client.ip().octets());
    out.extend([10, 0, 0, 1]);
    out.extend(client.port().to_be_bytes());
    out.extend(443u16.to_be_bytes());
    out.extend([0xEA, 0, 3, 1, 2, 3]);
    out
}

fn proxy_protocol_errors(proxy: &TestProxy, reason: &str) -> f64 {
    let text = proxy.state.metrics().encode();
    common::metrics::sum(
        &common::metrics::parse(&text),
        "weir_proxy_protocol_errors_total",
        &[("reason", reason)],
    )
}

#[tokio::test]
async fn the_header_s_client_is_the_client_for_v1_and_v2() {
    let (proxy, _backend) = proxy("").await;
    let v1 = [&b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &v1).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.7"));
    assert_eq!(echo.header_all("x-forwarded-for"), ["198.51.100.7"]);
    // The port the balancer accepted the connection on, as ingress-nginx's
    // `$proxy_protocol_server_port`.
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("80"));

    let v6 = [&b"PROXY TCP6 2001:db8::7 2001:db8::1 443 8443\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &v6).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("2001:db8::7"));
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("8443"));

    let v2 = [&v2_header("203.0.113.9:40000".parse().unwrap())[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &v2).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("443"));

    // A balancer's own check (v2 LOCAL) and v1 UNKNOWN: the peer is the client.
    let local = [&b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &local).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    let unknown = [&b"PROXY UNKNOWN\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &unknown).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_header_in_pieces_is_read_whole_and_nothing_after_it_is_lost() {
    let (proxy, _backend) = proxy("").await;
    let v2 = v2_header("203.0.113.10:40001".parse().unwrap());
    let v1 = b"PROXY TCP4 203.0.113.10 10.0.0.1 40001 80\r\n".to_vec();
    // v2 in three pieces; v1 cut right after a space (a line that would parse with an empty
    // field) and before its CR LF.
    for (header, cuts) in [(v2, [7, 20]), (v1, [33, 39])] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(&header[..cuts[0]]).await.unwrap();
        // Separate segments, so that the proxy sees the beginning alone (fault injection,
        // not a wait for a condition).
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&header[cuts[0]..cuts[1]]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The rest of the header and the request in one write.
        stream
            .write_all(&[&header[cuts[1]..], GET].concat())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let echo = echo_of_raw(&answer);
        assert_eq!(echo.header("x-real-ip").as_deref(), Some("203.0.113.10"));
        assert_eq!(echo.uri(), "/who");
    }
}

#[tokio::test]
async fn connections_without_a_valid_header_are_closed_unanswered() {
    let (proxy, _backend) = proxy("").await;
    // Plain HTTP where the header should be.
    assert_eq!(raw(proxy.addr, GET).await, "");
    assert_eq!(proxy_protocol_errors(&proxy, "invalid"), 1.0);
    // A malformed v1 header.
    let bad = [&b"PROXY TCP4 198.51.100.7 10.0.0.1 99999 80\r\n"[..], GET].concat();
    assert_eq!(raw(proxy.addr, &bad).await, "");
    assert_eq!(proxy_protocol_errors(&proxy, "invalid"), 2.0);
    // A v1 line that does not end within 107 bytes.
    let long = [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat();
    assert_eq!(raw(proxy.addr, &long).await, "");
    assert_eq!(proxy_protocol_errors(&proxy, "too_long"), 1.0);
    // Nothing at all: closed after the header timeout (300 ms here).
    let (answer, after) = raw_timed(proxy.addr, b"").await;
    assert_eq!(answer, "");
    assert!(after >= Duration::from_millis(250), "{after:?}");
    assert_eq!(proxy_protocol_errors(&proxy, "timeout"), 1.0);
    // A balancer's TCP health check: connect, close.
    drop(TcpStream::connect(proxy.addr).await.unwrap());
    wait_until(
        "the empty connection is counted",
        Duration::from_secs(5),
        || proxy_protocol_errors(&proxy, "empty") == 1.0,
    )
    .await;
    // Half a header, then the client closes its side.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(b"PROXY TCP4 198.51").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty());
    assert_eq!(proxy_protocol_errors(&proxy, "io"), 1.0);
    assert_eq!(
        proxy_protocol_errors(&proxy, "timeout"),
        1.0,
        "not a timeout"
    );
}

#[tokio::test]
async fn an_untrusted_balancer_s_header_is_required_but_not_believed() {
    let (proxy, _backend) = proxy("10.0.0.0/8").await;
    let v1 = [&b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &v1).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(raw(proxy.addr, GET).await, "", "still required");

    // Nor does X-Forwarded-For name the client then, even from a peer whose forwarded
    // headers are believed: with PROXY protocol on, the header alone decides (as
    // ingress-nginx's `real_ip_header proxy_protocol`).
    let backend = TestBackend::start("b").await;
    let routes = table(&[("h", PathRule::prefix("/"), "s", vec![backend.addr])]);
    let rules = ClientAddress {
        proxy_protocol: true,
        proxy_protocol_from: IpList::parse("10.0.0.0/8").unwrap(),
        forwarded_from: IpList::everyone(),
        ..ClientAddress::default()
    };
    let proxy = TestProxy::start(ProxyConfig::default(), routes.with_client_address(rules)).await;
    let spoof =
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    for header in [
        &b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n"[..],
        b"PROXY UNKNOWN\r\n",
    ] {
        let echo = echo_of_raw(&raw(proxy.addr, &[header, spoof].concat()).await);
        assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn a_balancer_that_accepted_on_443_terminated_tls() {
    let backend = TestBackend::start("b").await;
    let rows = [(
        "h",
        PathRule::prefix("/"),
        "s",
        vec![backend.addr],
        tls_host(true),
    )];
    let proxy = TestProxy::start(ProxyConfig::default(), with_header(table_https(&rows), "")).await;
    // Accepted on 443 (TLS terminated there, as an AWS NLB's TLS listener does): HTTPS, served.
    let https = [&b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &https).await);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("443"));
    // Accepted on 80: plain HTTP, redirected to HTTPS.
    let plain = [&b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n"[..], GET].concat();
    let answer = raw(proxy.addr, &plain).await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
}

#[tokio::test]
async fn tls_starts_after_the_header() {
    let backend = TestBackend::start("b").await;
    let routes = table(&[("h.example", PathRule::prefix("/"), "s", vec![backend.addr])]);
    let proxy = start_tls_proxy(ProxyConfig::default(), with_header(routes, ""), &[], &[]).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(&v2_header("192.0.2.44:5555".parse().unwrap()))
        .await
        .unwrap();
    let name = ServerName::try_from("h.example").unwrap();
    let mut tls = connector(&[b"http/1.1"]).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: h.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify: what was read is the answer.
    let _ = tls.read_to_end(&mut answer).await;
    let echo = echo_of_raw(&String::from_utf8_lossy(&answer));
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("192.0.2.44"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
}

#[tokio::test]
async fn the_controller_config_map_turns_it_on_and_off_while_serving() {
    let backend = TestBackend::start("b").await;
    let built = |use_proxy_protocol: &str| {
        let ingress = ingress_json(
            "app",
            1,
            &[],
            serde_json::json!([rule("h", &[("/", "Prefix", "s")])]),
        );
        let settings = config_map_json("weir", &[("use-proxy-protocol", use_proxy_protocol)]);
        let built = build_table_with(
            vec![ingress],
            vec![service_json("s", &[backend.addr])],
            vec![settings],
            &with_config_map(),
        );
        assert_eq!(built.diagnostics, [], "{use_proxy_protocol}");
        built.table
    };
    let proxy = TestProxy::start(ProxyConfig::default(), built("true")).await;
    let v1 = [&b"PROXY TCP4 198.51.100.8 10.0.0.1 51234 80\r\n"[..], GET].concat();
    let echo = echo_of_raw(&raw(proxy.addr, &v1).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.8"));
    assert_eq!(raw(proxy.addr, GET).await, "", "a header is required");

    // The ConfigMap changes: new connections need none (as after ingress-nginx's reload).
    proxy.publish(built("false"));
    let echo = echo_of_raw(&raw(proxy.addr, GET).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
}

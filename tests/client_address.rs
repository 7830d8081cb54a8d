//! Who the client is behind load balancers, set by the controller ConfigMap as with
//! ingress-nginx (`use-forwarded-headers`, `proxy-real-ip-cidr`, `forwarded-for-header`,
//! `compute-full-forwarded-for`, `use-proxy-protocol`): one address for the forwarding headers,
//! the access log and source lists. Real sockets; the test client (127.0.0.1) plays the
//! balancer.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(5);

/// A GET of `/` on host `h` with these extra headers.
async fn get_with(proxy: &TestProxy, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(format!("http://{}/", proxy.addr)).header("host", "h");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(&http1_client(), req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn a_trusted_balancer_s_x_forwarded_for_names_the_client_everywhere() {
    let backend = TestBackend::start("b").await;
    let (table, diagnostics) = built_for_h(
        &backend,
        &[("whitelist-source-range", "198.51.100.0/24")],
        &[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "127.0.0.1/32, 10.0.0.0/8"),
        ],
    );
    assert_eq!(diagnostics, Vec::<String>::new());
    let (log, lines) = memory_access_log();
    let config = ProxyConfig {
        access_log: Some(log),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::start(config, table).await;

    // The rightmost address no trusted balancer has is the client; a CDN's own hop (10/8,
    // trusted) is peeled off.
    let answer = get_with(
        &proxy,
        &[
            ("x-forwarded-for", "203.0.113.50, 198.51.100.1, 10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.echo();
    assert_eq!(echo.header_all("x-forwarded-for"), ["198.51.100.1"]);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.1"));
    assert_eq!(
        echo.header("x-original-forwarded-for").as_deref(),
        Some("203.0.113.50, 198.51.100.1, 10.0.0.9")
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("443"));
    wait_until("the request is logged", LIMIT, || {
        lines.lock().unwrap().contains(" 200 ")
    })
    .await;
    let line = lines.lock().unwrap().clone();
    assert!(line.starts_with("198.51.100.1 - - ["), "{line}");

    // The same allowlist keeps out a client the chain names outside it, and the balancer
    // itself when the chain names nobody.
    let outside = get_with(&proxy, &[("x-forwarded-for", "198.51.100.1, 203.0.113.50")]).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    assert_eq!(get_with(&proxy, &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(backend.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn another_header_can_name_the_client_and_the_full_chain_is_kept_on_request() {
    let backend = TestBackend::start("b").await;
    let (table, diagnostics) = built_for_h(
        &backend,
        &[],
        &[
            ("use-forwarded-headers", "true"),
            ("forwarded-for-header", "CF-Connecting-IP"),
            ("compute-full-forwarded-for", "true"),
        ],
    );
    assert_eq!(diagnostics, Vec::<String>::new());
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    let echo = get_with(
        &proxy,
        &[
            ("cf-connecting-ip", "198.51.100.9"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await
    .echo();
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.9"));
    assert_eq!(echo.header_all("x-forwarded-for"), ["6.6.6.6, 127.0.0.1"]);
    assert_eq!(
        echo.header("x-original-forwarded-for").as_deref(),
        Some("198.51.100.9")
    );
}

#[tokio::test]
async fn an_untrusted_peer_or_an_unreadable_list_changes_nothing() {
    let backend = TestBackend::start("b").await;
    let spoof = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-proto", "https"),
    ];
    // The balancer list does not hold the peer.
    let (table, _) = built_for_h(
        &backend,
        &[],
        &[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8"),
        ],
    );
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    let echo = get_with(&proxy, &spoof).await.echo();
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));

    // A list weir cannot read trusts nobody, is reported, and the route keeps serving.
    let (table, diagnostics) = built_for_h(
        &backend,
        &[],
        &[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "127.0.0.1/32, the-balancer"),
        ],
    );
    assert!(
        diagnostics.iter().any(|d| d.contains("proxy-real-ip-cidr")),
        "{diagnostics:?}"
    );
    proxy.publish(table);
    let echo = get_with(&proxy, &spoof).await.echo();
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test]
async fn behind_proxy_protocol_the_header_s_client_is_final() {
    let backend = TestBackend::start("b").await;
    let settings = |full: &'static str| {
        [
            ("use-proxy-protocol", "true"),
            ("use-forwarded-headers", "true"),
            ("compute-full-forwarded-for", full),
        ]
    };
    let (table, diagnostics) = built_for_h(&backend, &[], &settings("false"));
    assert_eq!(diagnostics, Vec::<String>::new());
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    // Every peer is trusted (no proxy-real-ip-cidr), yet the client cannot pick its address
    // with X-Forwarded-For: the PROXY header's source is the client (ingress-nginx's
    // `real_ip_header proxy_protocol`), and its destination port is X-Forwarded-Port.
    let request = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 8443\r\n\
                    GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n\
                    Connection: close\r\n\r\n";
    let echo = echo_of_raw(&raw(proxy.addr, request).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.7"));
    assert_eq!(echo.header_all("x-forwarded-for"), ["198.51.100.7"]);
    assert_eq!(echo.header("x-forwarded-port").as_deref(), Some("8443"));

    let (table, _) = built_for_h(&backend, &[], &settings("true"));
    proxy.publish(table);
    let echo = echo_of_raw(&raw(proxy.addr, request).await);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("198.51.100.7"));
    assert_eq!(
        echo.header_all("x-forwarded-for"),
        ["6.6.6.6, 198.51.100.7"]
    );
}

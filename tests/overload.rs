//! Overload protection with real sockets: `--max-connections` pauses accepting and resumes,
//! `--max-connections-per-client` keeps one address from crowding out the others,
//! `keep-alive-requests` ends connections after their last request, and HTTP/2 connections
//! announce `http2-max-concurrent-streams` (both keys of the controller ConfigMap, over flags of
//! the same names).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use weir::model::PathRule;
use weir::model::access::IpList;
use weir::model::client_address::ClientAddress;
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(5);

/// A proxy for host `h` with the controller ConfigMap `settings`.
async fn proxy_with_settings(settings: &[(&str, &str)]) -> (TestProxy, TestBackend) {
    let backend = TestBackend::start("b").await;
    let (table, diagnostics) = built_for_h(&backend, &[], settings);
    assert_eq!(diagnostics, Vec::<String>::new());
    (
        TestProxy::start(ProxyConfig::default(), table).await,
        backend,
    )
}

fn request() -> Request<Full<Bytes>> {
    Request::get("/")
        .header("host", "h")
        .body(Full::default())
        .unwrap()
}

/// Sends a request on `sender`'s connection; the status.
async fn status(sender: &mut SendRequest<Full<Bytes>>) -> StatusCode {
    sender.ready().await.unwrap();
    sender.send_request(request()).await.unwrap().status()
}

/// A request on a new connection (after `preamble`); `None` when the connection is closed
/// unanswered.
async fn try_status(addr: std::net::SocketAddr, preamble: &[u8]) -> Option<StatusCode> {
    let mut sender = http1_connect(addr, preamble).await;
    sender.ready().await.ok()?;
    Some(sender.send_request(request()).await.ok()?.status())
}

fn metric(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = proxy.state.metrics().encode();
    common::metrics::sum(&common::metrics::parse(&text), name, labels)
}

#[tokio::test]
async fn at_max_connections_accepting_pauses_and_established_connections_go_on() {
    // The binary: its plain and TLS listeners share the cap (neither may hold a place while it
    // waits for a connection).
    let backend = TestBackend::start("b").await;
    let (_dir, weir) = weir_with_open_files(&backend, 4096, &["--max-connections", "2"]).await;
    let scrape = || async {
        let text = get(&http1_client(), weir.admin, "admin", "/metrics")
            .await
            .text();
        let samples = common::metrics::parse(&text);
        let pauses = &[("reason", "max_connections")];
        (
            common::metrics::value(&samples, "weir_client_connections_limit", &[]),
            common::metrics::sum(&samples, "weir_accept_pauses_total", pauses),
        )
    };
    assert_eq!(scrape().await, (2.0, 0.0));
    let mut first = http1_connect(weir.http, b"").await;
    let mut second = http1_connect(weir.http, b"").await;
    assert_eq!(status(&mut first).await, StatusCode::OK);
    assert_eq!(status(&mut second).await, StatusCode::OK);

    // A third connection waits in the backlog, unanswered (a bounded look for an answer that
    // must not come).
    let mut third = http1_connect(weir.http, b"").await;
    let waiting = tokio::spawn(async move { status(&mut third).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served over the cap");
    assert_eq!(scrape().await.1, 1.0, "one pause");
    // The connections already open keep being served.
    assert_eq!(status(&mut first).await, StatusCode::OK);

    // One closes: the waiting one is accepted and served.
    drop(second);
    let answered = tokio::time::timeout(LIMIT, waiting).await;
    assert_eq!(answered.expect("served once a place is free").unwrap(), 200);
}

#[tokio::test]
async fn one_address_cannot_crowd_out_the_others() {
    let config = ProxyConfig {
        max_connections_per_client: 2,
        ..ProxyConfig::default()
    };
    let backend = TestBackend::start("b").await;
    // Behind a balancer with PROXY protocol, so that the test can be many clients.
    let table = table(&[("h", PathRule::prefix("/"), "s", vec![backend.addr])])
        .with_client_address(ClientAddress {
            proxy_protocol: true,
            proxy_protocol_from: IpList::everyone(),
            ..ClientAddress::default()
        });
    let proxy = TestProxy::start(config, table).await;
    let from = |client: &str| format!("PROXY TCP4 {client} 10.0.0.1 40000 80\r\n").into_bytes();
    let flooder = from("198.51.100.1");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut sender = http1_connect(proxy.addr, &flooder).await;
        assert_eq!(status(&mut sender).await, StatusCode::OK);
        held.push(sender);
    }
    // A third from the same address is closed unanswered…
    assert_eq!(try_status(proxy.addr, &flooder).await, None);
    assert_eq!(
        metric(
            &proxy,
            "weir_client_connections_refused_total",
            &[("reason", "per_client")]
        ),
        1.0
    );
    // …while another client is served,
    let mut other = http1_connect(proxy.addr, &from("198.51.100.2")).await;
    assert_eq!(status(&mut other).await, StatusCode::OK);
    // and the address gets its place back when one of its connections closes.
    drop(held.pop());
    wait_until("the closed connection is gone", LIMIT, || {
        metric(&proxy, "weir_client_connections_active", &[]) == 2.0
    })
    .await;
    assert_eq!(try_status(proxy.addr, &flooder).await, Some(StatusCode::OK));
}

#[tokio::test]
async fn a_connection_ends_after_its_last_request() {
    let (proxy, backend) = proxy_with_settings(&[("keep-alive-requests", "3")]).await;

    // HTTP/1.1: the third response says `Connection: close`, then the connection ends.
    let mut sender = http1_connect(proxy.addr, b"").await;
    for n in 1..=3 {
        sender.ready().await.unwrap();
        let response = sender.send_request(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let close = response
            .headers()
            .get("connection")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            close.as_deref(),
            (n == 3).then_some("close"),
            "response {n}"
        );
        read_answer(response).await;
    }
    assert!(sender.ready().await.is_err(), "closed after the third");

    // HTTP/2: the third request is answered, then a GOAWAY ends the connection.
    let h2 = http2_connect(proxy.addr).await;
    for _ in 1..=3 {
        let mut sender = h2.clone();
        let response = sender
            .send_request(Request::get("http://h/").body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(read_answer(response).await.status, StatusCode::OK);
    }
    wait_until("the HTTP/2 connection is shut down", LIMIT, || {
        h2.is_closed()
    })
    .await;
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        6
    );
}

#[tokio::test]
async fn http2_connections_announce_the_stream_limit() {
    let (proxy, _backend) = proxy_with_settings(&[("http2-max-concurrent-streams", "7")]).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let request = Request::get("http://h/").body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    // The connection ends once the client is done with it; what the server announced stays.
    let announced = tokio::spawn(async move {
        let _ = (&mut connection).await;
        connection.max_concurrent_send_streams()
    });
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop((sender, response));
    assert_eq!(announced.await.unwrap(), 7);
}

/// Starts the binary on a manifests directory routing host `h` to `backend`, with at most
/// `files` open file descriptors.
async fn weir_with_open_files(
    backend: &TestBackend,
    files: u32,
    extra: &[&str],
) -> (tempfile::TempDir, common::process::WeirProcess) {
    use common::manifests::{ingress_yaml, service_yaml, write};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.yaml", &service_yaml("s", &[backend.addr]));
    write(dir.path(), "h.yaml", &ingress_yaml("h", "h", "/", "s"));
    let mut args = vec!["--manifests", dir.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    let weir = common::process::WeirProcess::spawn_with_open_files(&args, files);
    weir.until_ready().await;
    (dir, weir)
}

const RESOURCES_WARNING: &str = "accepting connections fails for want of resources";

#[tokio::test]
async fn out_of_file_descriptors_weir_backs_off_serves_what_it_has_and_recovers() {
    let backend = TestBackend::start("b").await;
    // No connection cap: the flood reaches the file descriptor limit itself.
    let (_dir, weir) = weir_with_open_files(&backend, 64, &["--max-connections", "0"]).await;
    let mut established = http1_connect(weir.http, b"").await;
    assert_eq!(status(&mut established).await, StatusCode::OK);

    // A flood of connections that send nothing: the kernel completes them all, weir runs out
    // of descriptors accepting them.
    let mut flood = Vec::new();
    for _ in 0..120 {
        flood.push(tokio::net::TcpStream::connect(weir.http).await.unwrap());
    }
    weir.wait_for_line("about failing accepts", LIMIT, |l| {
        l.contains(RESOURCES_WARNING)
    })
    .await;
    // The established connection is served meanwhile (its endpoint connection is pooled).
    assert_eq!(status(&mut established).await, StatusCode::OK);

    // The flood goes away: weir accepts again.
    drop(flood);
    let mut recovered = false;
    for _ in 0..100 {
        let client = http1_client();
        let attempt = tokio::time::timeout(Duration::from_millis(500), async {
            try_get(&client, weir.http, "h", "/").await
        });
        if let Ok(Ok(answer)) = attempt.await
            && answer.status == StatusCode::OK
        {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "weir never served again:\n{}", weir.log());
    let warnings = weir.log().matches(RESOURCES_WARNING).count();
    assert_eq!(warnings, 1, "one warning per 10 s:\n{}", weir.log());
    let metrics = get(&http1_client(), weir.admin, "admin", "/metrics")
        .await
        .text();
    let samples = common::metrics::parse(&metrics);
    let pauses = common::metrics::sum(
        &samples,
        "weir_accept_pauses_total",
        &[("reason", "resources")],
    );
    assert!(pauses >= 1.0, "{metrics}");
}

#[tokio::test]
async fn the_default_cap_is_half_the_open_files_limit() {
    let backend = TestBackend::start("b").await;
    let (_dir, weir) = weir_with_open_files(&backend, 256, &[]).await;
    let metrics = get(&http1_client(), weir.admin, "admin", "/metrics")
        .await
        .text();
    let samples = common::metrics::parse(&metrics);
    assert_eq!(
        common::metrics::value(&samples, "weir_client_connections_limit", &[]),
        128.0
    );
}

#[tokio::test]
async fn a_websocket_keeps_its_place_under_the_caps() {
    use common::ws::{WsBackend, ws_connect, ws_table};
    use futures_util::{SinkExt, StreamExt};
    let backend = WsBackend::start("ws").await;
    let config = ProxyConfig {
        max_connections_per_client: 1,
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::start(config, ws_table("chat.local", vec![backend.addr], None)).await;
    let (mut ws, response) = ws_connect(proxy.addr, "chat.local", "/room").await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
        .await
        .unwrap();
    assert!(
        ws.next().await.unwrap().is_ok(),
        "the tunnel carries messages"
    );
    // The tunnel is the address's one connection: another is refused…
    assert_eq!(try_status(proxy.addr, b"").await, None);
    assert_eq!(metric(&proxy, "weir_client_connections_active", &[]), 1.0);
    // …until it closes.
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    wait_until("the tunnel is gone", LIMIT, || {
        metric(&proxy, "weir_client_connections_active", &[]) == 0.0
    })
    .await;
    assert_eq!(
        try_status(proxy.addr, b"").await,
        Some(StatusCode::NOT_FOUND)
    );
}

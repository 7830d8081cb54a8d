//! WebSocket and other HTTP/1.1 upgrades through the proxy, against real tungstenite clients and
//! backends: ws://, wss://, HTTP/2 extended CONNECT (RFC 8441), refused and wrong upgrades,
//! closes in both directions, the idle timeout, balancing, and tunnels outliving snapshot swaps
//! and certificate rotations.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::tls::*;
use common::ws::*;
use common::*;
use weir::model::PathRule;
use weir::proxy::ProxyConfig;

const HOST: &str = "ws.local";
/// How soon a close on one side must reach the other.
const PROMPTLY: Duration = Duration::from_secs(2);

/// A proxy routing [`HOST`] to `endpoints`, with a certificate for it on the TLS listener.
async fn proxy_to(endpoints: Vec<std::net::SocketAddr>) -> (WsProxy, Cert) {
    let cert = cert_for(&[HOST]);
    let proxy = WsProxy::start(
        ProxyConfig::default(),
        ws_table(HOST, endpoints, None),
        cert_store(HOST, &cert),
    )
    .await;
    (proxy, cert)
}

fn assert_upgrade_headers(head: &Head) {
    assert_eq!(head.method, "GET");
    assert_eq!(
        head.header("upgrade").map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_owned()),
        "{head:?}"
    );
    let connection = head.header_all("connection").join(",").to_ascii_lowercase();
    assert!(
        connection.split(',').any(|t| t.trim() == "upgrade"),
        "Connection names upgrade: {head:?}"
    );
    assert_eq!(head.header("sec-websocket-version").as_deref(), Some("13"));
    assert!(head.header("sec-websocket-key").is_some(), "{head:?}");
    assert_eq!(head.header("host").as_deref(), Some(HOST));
    assert_eq!(head.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(head.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(head.header("x-forwarded-host").as_deref(), Some(HOST));
}

/// One tunnel of each kind through `proxy` to `HOST/`: ws, wss and HTTP/2 extended CONNECT
/// (h2c), named. The HTTP/2 connection's sender is returned too: the tunnel lives on it.
async fn one_tunnel_of_each_kind(
    proxy: &WsProxy,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    [(&'static str, Box<dyn Tunnel>); 3],
) {
    let (ws, _) = ws_connect(proxy.http, HOST, "/").await;
    let (wss, _, _) = wss_connect(proxy.https, HOST, "/").await;
    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (h2, _) = h2_websocket(&mut sender, &format!("http://{HOST}/")).await;
    (
        sender,
        [
            ("ws", Box::new(ws)),
            ("wss", Box::new(wss)),
            ("h2", Box::new(h2)),
        ],
    )
}

#[tokio::test]
async fn ws_echoes_text_and_binary_frames_of_every_size_with_the_upgrade_headers_forwarded() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    let tcp = TcpStream::connect(proxy.http).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{HOST}/chat?room=1"
        ))
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    // Hop-by-hop headers of the client's own (named by Connection) stay on this hop.
    headers.insert("connection", "keep-alive, Upgrade, X-Hop".parse().unwrap());
    headers.insert("x-hop", "for weir only".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-backend"], "a", "101 headers relayed");
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");

    echo_all_sizes(&mut ws).await;

    let heads = backend.stats.heads();
    assert_eq!(heads.len(), 1);
    let head = &heads[0];
    assert_upgrade_headers(head);
    assert_eq!(head.uri, "/chat?room=1");
    assert_eq!(head.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        head.header("x-forwarded-port"),
        Some(proxy.http.port().to_string())
    );
    assert_eq!(
        head.header("sec-websocket-protocol").as_deref(),
        Some("chat, superchat")
    );
    assert_eq!(head.header("x-hop"), None);
    assert_eq!(head.header("keep-alive"), None);

    close_cleanly(&mut ws).await.unwrap();
}

#[tokio::test]
async fn wss_echoes_frames_of_every_size_over_the_tls_listener() {
    let backend = WsBackend::start("a").await;
    let (proxy, cert) = proxy_to(vec![backend.addr]).await;

    let (mut ws, response, leaf) = wss_connect(proxy.https, HOST, "/secure").await;
    assert_eq!(leaf, cert.der, "the route's certificate");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    echo_all_sizes(&mut ws).await;

    let head = &backend.stats.heads()[0];
    assert_upgrade_headers(head);
    assert_eq!(head.uri, "/secure");
    assert_eq!(head.header("x-forwarded-proto").as_deref(), Some("https"));
    close_cleanly(&mut ws).await.unwrap();
}

#[tokio::test]
async fn http2_extended_connect_over_tls_becomes_a_websocket_to_an_http1_backend() {
    let backend = WsBackend::start("a").await;
    let (proxy, cert) = proxy_to(vec![backend.addr]).await;

    let (tls, leaf) = handshake(proxy.https, HOST, &[b"h2", b"http/1.1"]).await;
    assert_eq!(leaf, cert.der);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_connect(tls).await;
    let (mut ws, headers) = try_h2_websocket_with(
        &mut sender,
        &format!("https://{HOST}/chat"),
        &[("sec-websocket-protocol", "chat, superchat")],
    )
    .await
    .unwrap_or_else(|(status, body)| panic!("extended CONNECT answered {status} {body:?}"));
    assert_eq!(
        headers["x-backend"], "a",
        "the 101's headers reach the client"
    );
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    assert!(
        !headers.contains_key("sec-websocket-accept"),
        "no HTTP/1.1 handshake answer over HTTP/2: {headers:?}"
    );
    echo_all_sizes(&mut ws).await;

    let head = &backend.stats.heads()[0];
    assert_upgrade_headers(head);
    assert_eq!(head.uri, "/chat");
    assert_eq!(head.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        head.header("sec-websocket-protocol").as_deref(),
        Some("chat, superchat")
    );

    // The same connection still serves more WebSocket streams.
    let (mut second, _) = h2_websocket(&mut sender, &format!("https://{HOST}/again")).await;
    echo(&mut second, Message::text("second stream"))
        .await
        .unwrap();
    echo(&mut ws, Message::text("first stream still open"))
        .await
        .unwrap();
    assert_eq!(backend.stats.upgrades(), 2);

    close_cleanly(&mut ws).await.unwrap();
    wait_until("the backend saw the close", PROMPTLY, || {
        backend.stats.ended() == 1
    })
    .await;
    echo(
        &mut second,
        Message::text("unaffected by the other stream's close"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn http2_extended_connect_over_h2c_becomes_a_websocket_to_an_http1_backend() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (mut ws, _) = h2_websocket(&mut sender, &format!("http://{HOST}/chat")).await;
    let (mut second, _) = h2_websocket(&mut sender, &format!("http://{HOST}/two")).await;
    echo_all_sizes(&mut ws).await;
    echo(&mut second, Message::binary(payload(70_000, 7)))
        .await
        .unwrap();

    let heads = backend.stats.heads();
    assert_eq!(heads.len(), 2);
    for head in &heads {
        assert_upgrade_headers(head);
        assert_eq!(head.header("x-forwarded-proto").as_deref(), Some("http"));
    }
    assert_eq!(heads[0].uri, "/chat");

    // Plain requests on the same HTTP/2 connection still work (a 404 for another host).
    let req = http::Request::get("http://other.local/")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // A CONNECT without `:protocol` is a forward-proxy request, which weir does not serve.
    let req = http::Request::connect(format!("{HOST}:443"))
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(backend.stats.upgrades(), 2);

    close_cleanly(&mut second).await.unwrap();
    echo(&mut ws, Message::text("still here")).await.unwrap();
}

#[tokio::test]
async fn a_refused_upgrade_is_relayed_as_a_response_and_the_connection_stays_http() {
    let cases = [
        (
            StatusCode::UPGRADE_REQUIRED,
            "use a newer WebSocket version\n",
        ),
        (StatusCode::BAD_REQUEST, "bad handshake: missing origin\n"),
        (StatusCode::OK, "not upgrading, here is a page\n"),
    ];
    for (status, body) in cases {
        let backend = RefusingBackend::start(status, body).await;
        let (proxy, _) = proxy_to(vec![backend.addr]).await;
        let mut conn = RawConn::connect(proxy.http).await;

        let refused = conn.send(&upgrade_request(HOST, "/chat")).await;
        assert_eq!(refused.status, status.as_u16(), "{refused:?}");
        assert_eq!(refused.text(), body);

        // The upgrade was really asked of the backend.
        let heads = backend.heads();
        assert_upgrade_headers(&heads[0]);

        // The same client connection is still plain HTTP/1.1.
        let next = conn
            .send(&format!("GET /next HTTP/1.1\r\nHost: {HOST}\r\n\r\n"))
            .await;
        assert_eq!(next.status, 200, "after a {status}: {next:?}");
        assert_eq!(next.text(), "plain /next");
        assert_eq!(backend.heads().len(), 2);
    }
}

#[tokio::test]
async fn a_101_for_another_protocol_than_asked_is_a_502() {
    let answers = [
        &b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: tls/1.3\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
    ];
    for answer in answers {
        let backend = RawBackend::start(answer).await;
        let (proxy, _) = proxy_to(vec![backend.addr]).await;
        let mut conn = RawConn::connect(proxy.http).await;
        let response = conn.send(&upgrade_request(HOST, "/chat")).await;
        assert_eq!(
            response.status, 502,
            "backend answered {answer:?}: {response:?}"
        );
        assert_eq!(backend.heads().len(), 1);
    }

    // A 101 to a request that asked for no upgrade at all.
    let backend = RawBackend::start(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let mut conn = RawConn::connect(proxy.http).await;
    let response = conn
        .send(&format!("GET /plain HTTP/1.1\r\nHost: {HOST}\r\n\r\n"))
        .await;
    assert_eq!(response.status, 502, "{response:?}");
    assert!(!backend.heads()[0].to_ascii_lowercase().contains("upgrade"));
}

#[tokio::test]
async fn upgrade_h2c_is_not_forwarded_and_gets_a_normal_response() {
    let backend = TestBackend::start("plain").await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let mut conn = RawConn::connect(proxy.addr).await;
    let response = conn
        .send(&format!(
            "GET /h2c HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        ))
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("upgrade").is_none(), "{response:?}");
    let echo = Echo(serde_json::from_slice(&response.body).unwrap());
    assert_eq!(echo.uri(), "/h2c");
    assert_eq!(echo.header("upgrade"), None);
    assert_eq!(echo.header("http2-settings"), None);
    assert!(
        echo.header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("upgrade")),
        "{:?}",
        echo.header_all("connection")
    );

    // Still HTTP/1.1 on the same connection.
    let next = conn
        .send(&format!("GET /after HTTP/1.1\r\nHost: {HOST}\r\n\r\n"))
        .await;
    assert_eq!(next.status, 200);
    let echo = Echo(serde_json::from_slice(&next.body).unwrap());
    assert_eq!(echo.uri(), "/after");
    assert_eq!(echo.0["version"], "HTTP/1.1");
}

#[tokio::test]
async fn a_close_from_the_client_reaches_the_backend_promptly() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    // A clean close handshake, on ws:// and on wss://.
    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("hi")).await.unwrap();
    ws.close(None).await.unwrap();
    wait_until("the backend got the close frame", PROMPTLY, || {
        backend.stats.closes_received() == 1
    })
    .await;
    // The backend's reply, then the end.
    assert_eq!(wait_ended(&mut ws, PROMPTLY).await, Ended::CloseFrame);
    assert_eq!(wait_ended(&mut ws, PROMPTLY).await, Ended::Eof);
    wait_until("the backend session ended", PROMPTLY, || {
        backend.stats.ended() == 1
    })
    .await;

    let (mut wss, _, _) = wss_connect(proxy.https, HOST, "/").await;
    echo(&mut wss, Message::text("hi")).await.unwrap();
    wss.close(None).await.unwrap();
    wait_until("the backend got the close frame", PROMPTLY, || {
        backend.stats.closes_received() == 2
    })
    .await;
    assert_eq!(wait_ended(&mut wss, PROMPTLY).await, Ended::CloseFrame);
    assert_eq!(wait_ended(&mut wss, PROMPTLY).await, Ended::Eof);

    // The client's TCP connection just goes away.
    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("hi")).await.unwrap();
    drop(ws);
    wait_until("the backend saw the connection end", PROMPTLY, || {
        backend.stats.ended() == 3
    })
    .await;
    assert_eq!(
        backend.stats.closes_received(),
        2,
        "no close frame that time"
    );
}

#[tokio::test]
async fn a_close_frame_from_the_backend_reaches_the_client_promptly() {
    let backend = WsBackend::start_with("closing", WsBehaviour::CloseAfter(2)).await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("one")).await.unwrap();
    echo(&mut ws, Message::text("two")).await.unwrap();
    assert_eq!(wait_ended(&mut ws, PROMPTLY).await, Ended::CloseFrame);
    // Reading on sends our reply; then the connection ends.
    assert_eq!(wait_ended(&mut ws, PROMPTLY).await, Ended::Eof);
    wait_until("the backend session ended", PROMPTLY, || {
        backend.stats.ended() == 1
    })
    .await;

    let (mut wss, _, _) = wss_connect(proxy.https, HOST, "/").await;
    echo(&mut wss, Message::text("one")).await.unwrap();
    echo(&mut wss, Message::text("two")).await.unwrap();
    assert_eq!(wait_ended(&mut wss, PROMPTLY).await, Ended::CloseFrame);
    assert_eq!(wait_ended(&mut wss, PROMPTLY).await, Ended::Eof);
}

#[tokio::test]
async fn a_backend_dropping_the_connection_ends_the_client_tunnel_promptly() {
    let backend = WsBackend::start_with("dropping", WsBehaviour::DropAfter(1)).await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("last words")).await.unwrap();
    let ended = wait_ended(&mut ws, PROMPTLY).await;
    assert_ne!(ended, Ended::CloseFrame, "the backend sent no close frame");

    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (mut h2, _) = h2_websocket(&mut sender, &format!("http://{HOST}/")).await;
    echo(&mut h2, Message::text("last words")).await.unwrap();
    let ended = wait_ended(&mut h2, PROMPTLY).await;
    assert_ne!(ended, Ended::CloseFrame, "the backend sent no close frame");
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_routes_read_timeout_but_not_while_messages_flow() {
    const IDLE: Duration = Duration::from_millis(400);
    let backend = WsBackend::start("a").await;
    let cert = cert_for(&[HOST]);
    let proxy = WsProxy::start(
        ProxyConfig::default(),
        ws_table(HOST, vec![backend.addr], Some(IDLE)),
        cert_store(HOST, &cert),
    )
    .await;

    // Silence: closed after the timeout, not before, on both sides.
    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("then nothing")).await.unwrap();
    let took = time_until_ended(&mut ws).await;
    assert!(
        took >= IDLE.mul_f32(0.9) && took < IDLE + Duration::from_secs(3),
        "closed after {took:?}, the idle timeout is {IDLE:?}"
    );
    wait_until("the backend side was closed too", PROMPTLY, || {
        backend.stats.ended() == 1
    })
    .await;

    // Traffic every 100 ms for four timeouts keeps it open; then silence closes it.
    for name in ["ws", "wss"] {
        let mut ws: Box<dyn Tunnel> = if name == "ws" {
            Box::new(ws_connect(proxy.http, HOST, "/").await.0)
        } else {
            Box::new(wss_connect(proxy.https, HOST, "/").await.0)
        };
        let started = tokio::time::Instant::now();
        let mut sent = 0;
        while started.elapsed() < IDLE * 4 {
            ws.echo(Message::text(format!("{name} keepalive {sent}")))
                .await
                .unwrap_or_else(|e| panic!("{name} after {:?}: {e}", started.elapsed()));
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(sent >= 10);
        let took = ws.time_until_ended().await;
        assert!(
            took >= IDLE.mul_f32(0.9) - Duration::from_millis(100)
                && took < IDLE + Duration::from_secs(3),
            "{name} closed {took:?} after the last echo, the idle timeout is {IDLE:?}"
        );
    }
}

#[tokio::test]
async fn thirty_websockets_are_balanced_round_robin_over_three_endpoints() {
    let (a, b, c) = tokio::join!(
        WsBackend::start("a"),
        WsBackend::start("b"),
        WsBackend::start("c")
    );
    let (proxy, _) = proxy_to(vec![a.addr, b.addr, c.addr]).await;

    let mut open = Vec::new();
    let mut answered_by = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..30 {
        let (mut ws, response) = ws_connect(proxy.http, HOST, "/").await;
        let name = response.headers()["x-backend"].to_str().unwrap().to_owned();
        echo(&mut ws, Message::text(format!("{i} via {name}")))
            .await
            .unwrap();
        *answered_by.entry(name).or_default() += 1;
        open.push(ws);
    }
    for backend in [&a, &b, &c] {
        assert_eq!(
            backend.stats.upgrades(),
            10,
            "{}: {answered_by:?}",
            backend.name
        );
        assert_eq!(answered_by.get(&backend.name), Some(&10));
    }
    // All thirty are still open and independent.
    for (i, ws) in open.iter_mut().enumerate() {
        echo(ws, Message::binary(payload(100, i as u64)))
            .await
            .unwrap();
    }
    assert_eq!(a.stats.ended() + b.stats.ended() + c.stats.ended(), 0);
}

#[tokio::test]
async fn a_websocket_whose_endpoint_refuses_the_connect_goes_to_the_next_one() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![refusing_addr(), backend.addr]).await;
    for i in 0..6 {
        let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
        echo(&mut ws, Message::text(format!("attempt {i}")))
            .await
            .unwrap();
    }
    assert_eq!(backend.stats.upgrades(), 6);
}

#[tokio::test]
async fn plain_requests_and_websockets_share_an_endpoint_and_its_pooled_connections() {
    let backend = HybridBackend::start().await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let client = http1_client();
    for round in 0..3 {
        // A plain request leaves a pooled connection to the endpoint...
        let answer = get(&client, proxy.http, HOST, &format!("/page/{round}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), format!("plain /page/{round}"));
        // ...which the upgrade may take over, and must not give back to the pool.
        let (mut ws, _) = ws_connect(proxy.http, HOST, "/live").await;
        echo(&mut ws, Message::text(format!("round {round}")))
            .await
            .unwrap();
        let answer = get(&client, proxy.http, HOST, "/after").await;
        assert_eq!(answer.text(), "plain /after");
        echo(&mut ws, Message::binary(payload(5000, round)))
            .await
            .unwrap();
        close_cleanly(&mut ws).await.unwrap();
    }
    assert_eq!(backend.upgrades.load(Ordering::SeqCst), 3);
    assert_eq!(backend.requests.load(Ordering::SeqCst), 9);
}

#[tokio::test]
async fn an_upgrade_on_a_pooled_connection_the_endpoint_just_closed_is_sent_again() {
    // Every connection serves one request; the next one on it is dropped unanswered.
    let backend = HybridBackend::start_with(Some(1)).await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let client = http1_client();
    for round in 0..3 {
        let answer = get(&client, proxy.http, HOST, "/page").await;
        assert_eq!(answer.text(), "plain /page");
        let (mut ws, _) = ws_connect(proxy.http, HOST, "/live").await;
        echo(&mut ws, Message::text(format!("round {round}")))
            .await
            .unwrap();
    }
    assert_eq!(backend.upgrades.load(Ordering::SeqCst), 3);
    assert_eq!(
        backend.requests.load(Ordering::SeqCst),
        9,
        "each upgrade first went out on the pooled connection, which dropped it"
    );
}

#[tokio::test]
async fn open_tunnels_survive_route_removal_endpoint_removal_and_certificate_rotation() {
    let (a, other) = tokio::join!(WsBackend::start("a"), WsBackend::start("other"));
    let (old, new) = (cert_for(&[HOST]), cert_for(&[HOST]));
    let proxy = WsProxy::start(
        ProxyConfig::default(),
        ws_table(HOST, vec![a.addr], None),
        cert_store(HOST, &old),
    )
    .await;

    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    let (mut wss, _, leaf) = wss_connect(proxy.https, HOST, "/").await;
    assert_eq!(leaf, old.der);
    let mut h2_sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (mut h2, _) = h2_websocket(&mut h2_sender, &format!("http://{HOST}/")).await;
    let mut round = 0;
    let mut all_echo = async |ws: &mut PlainWs, wss: &mut TlsWs, h2: &mut H2Ws, what: &str| {
        round += 1;
        echo(ws, Message::text(format!("ws {round} {what}")))
            .await
            .unwrap_or_else(|e| panic!("ws {what}: {e}"));
        echo(wss, Message::text(format!("wss {round} {what}")))
            .await
            .unwrap_or_else(|e| panic!("wss {what}: {e}"));
        echo(h2, Message::binary(payload(3000, round)))
            .await
            .unwrap_or_else(|e| panic!("h2 {what}: {e}"));
    };
    all_echo(&mut ws, &mut wss, &mut h2, "at first").await;

    // The route disappears: new connections get 404, open tunnels carry on.
    proxy.publish(table(&[(
        "elsewhere.local",
        PathRule::prefix("/"),
        "x",
        vec![other.addr],
    )]));
    assert_eq!(
        refused_status(try_ws_connect(proxy.http, HOST, "/").await),
        StatusCode::NOT_FOUND
    );
    all_echo(&mut ws, &mut wss, &mut h2, "without the route").await;

    // The route is back without its endpoint: new connections get 503.
    proxy.publish(ws_table(HOST, vec![], None));
    assert_eq!(
        refused_status(try_ws_connect(proxy.http, HOST, "/").await),
        StatusCode::SERVICE_UNAVAILABLE
    );
    all_echo(&mut ws, &mut wss, &mut h2, "without the endpoint").await;

    // The route now points elsewhere: new connections go there, old ones stay on `a`.
    proxy.publish(ws_table(HOST, vec![other.addr], None));
    let (mut moved, response) = ws_connect(proxy.http, HOST, "/").await;
    assert_eq!(response.headers()["x-backend"], "other");
    echo(&mut moved, Message::text("on the new table"))
        .await
        .unwrap();
    all_echo(&mut ws, &mut wss, &mut h2, "with the route moved").await;

    // Certificate rotation: new handshakes see the new certificate, the open wss carries on.
    let table_now = ws_table(HOST, vec![other.addr], None);
    proxy.publish_with_certs(table_now, cert_store(HOST, &new));
    let (_, leaf) = handshake(proxy.https, HOST, &[b"http/1.1"]).await;
    assert_eq!(
        leaf, new.der,
        "a fresh handshake sees the rotated certificate"
    );
    all_echo(&mut ws, &mut wss, &mut h2, "after the rotation").await;

    assert_eq!(a.stats.upgrades(), 3);
    assert_eq!(a.stats.ended(), 0, "no tunnel to `a` was closed");
    assert_eq!(a.stats.messages(), 3 * 5);
    close_cleanly(&mut ws).await.unwrap();
    close_cleanly(&mut wss).await.unwrap();
    close_cleanly(&mut h2).await.unwrap();
}

#[tokio::test]
async fn bytes_the_backend_sends_together_with_its_101_reach_the_client() {
    let backend = WsBackend::start_with("greeter", WsBehaviour::Greet("welcome")).await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    let (_h2_connection, tunnels) = one_tunnel_of_each_kind(&proxy).await;
    for (name, mut tunnel) in tunnels {
        assert_eq!(
            tunnel.next_message().await,
            Ok(Message::text("welcome")),
            "{name}"
        );
        tunnel
            .echo(Message::text("and then"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(backend.stats.upgrades(), 3);
}

#[tokio::test]
async fn bytes_a_client_sends_right_behind_its_upgrade_request_reach_the_backend() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    // The handshake and a first frame in one write, without waiting for the 101 (a WebSocket
    // client should wait, but weir must not lose bytes it has already read).
    let mut bytes = upgrade_request(HOST, "/").into_bytes();
    bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']); // "hi", zero mask
    let mut conn = RawConn::connect(proxy.http).await;
    let response = conn.send_bytes(&bytes).await;
    assert_eq!(response.status, 101);
    assert_eq!(conn.read_bytes(4).await, [0x81, 0x02, b'h', b'i']);
    assert_eq!(backend.stats.messages(), 1);
}

#[tokio::test]
async fn http2_extended_connect_refused_by_the_backend_is_relayed_and_a_200_is_a_502() {
    let cases = [
        (
            StatusCode::UPGRADE_REQUIRED,
            "use a newer WebSocket version\n",
        ),
        (StatusCode::BAD_REQUEST, "bad handshake: missing origin\n"),
    ];
    for (status, body) in cases {
        let backend = RefusingBackend::start(status, body).await;
        let (proxy, _) = proxy_to(vec![backend.addr]).await;
        let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
        let Err((got, got_body)) =
            try_h2_websocket(&mut sender, &format!("http://{HOST}/chat")).await
        else {
            panic!("the backend refused the upgrade, yet the stream opened");
        };
        assert_eq!((got, &got_body[..]), (status, body.as_bytes()));
        assert_upgrade_headers(&backend.heads()[0]);

        // The same HTTP/2 connection still serves requests.
        let req = http::Request::get(format!("http://{HOST}/next"))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        let answer = read_answer(sender.send_request(req).await.unwrap()).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "plain /next");
    }

    // A 2xx instead of a 101 would open a stream the backend never agreed to tunnel.
    let backend = RefusingBackend::start(StatusCode::OK, "not upgrading").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let refused = try_h2_websocket(&mut sender, &format!("http://{HOST}/chat")).await;
    assert_eq!(
        refused.err().map(|(status, _)| status),
        Some(StatusCode::BAD_GATEWAY)
    );

    // And a 101 to another protocol than websocket.
    let backend = RawBackend::start(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let refused = try_h2_websocket(&mut sender, &format!("http://{HOST}/chat")).await;
    assert_eq!(
        refused.err().map(|(status, _)| status),
        Some(StatusCode::BAD_GATEWAY)
    );
}

#[tokio::test]
async fn an_http2_client_resetting_its_stream_or_losing_its_connection_ends_the_backend_side() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;

    // Dropping the stream (RST_STREAM) ends its tunnel and nothing else.
    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (mut first, _) = h2_websocket(&mut sender, &format!("http://{HOST}/1")).await;
    let (mut second, _) = h2_websocket(&mut sender, &format!("http://{HOST}/2")).await;
    echo(&mut first, Message::text("one")).await.unwrap();
    drop(first);
    wait_until("the backend saw the stream end", PROMPTLY, || {
        backend.stats.ended() == 1
    })
    .await;
    echo(&mut second, Message::text("the other stream carries on"))
        .await
        .unwrap();

    // The client's TCP connection goes away under two open tunnels.
    let std_stream = std::net::TcpStream::connect(proxy.http).unwrap();
    std_stream.set_nonblocking(true).unwrap();
    let cable = std_stream.try_clone().unwrap();
    let mut sender = h2_connect(TcpStream::from_std(std_stream).unwrap()).await;
    let (mut third, _) = h2_websocket(&mut sender, &format!("http://{HOST}/3")).await;
    let (mut fourth, _) = h2_websocket(&mut sender, &format!("http://{HOST}/4")).await;
    echo(&mut third, Message::text("three")).await.unwrap();
    echo(&mut fourth, Message::text("four")).await.unwrap();
    cable.shutdown(std::net::Shutdown::Both).unwrap();
    wait_until("the backend saw both tunnels end", PROMPTLY, || {
        backend.stats.ended() == 3
    })
    .await;
    echo(&mut second, Message::text("still unaffected"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_routes_tunnel_idle_timeout_closes_http1_and_http2_tunnels_and_follows_the_table() {
    const IDLE: Duration = Duration::from_millis(300);
    let backend = WsBackend::start("a").await;
    let cert = cert_for(&[HOST]);
    let proxy = WsProxy::start(
        ProxyConfig::default(),
        ws_table(HOST, vec![backend.addr], Some(IDLE)),
        cert_store(HOST, &cert),
    )
    .await;
    let in_time = |took: Duration, timeout: Duration| {
        took >= timeout.mul_f32(0.9) && took < timeout + Duration::from_secs(3)
    };

    let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
    echo(&mut ws, Message::text("then nothing")).await.unwrap();
    let took = time_until_ended(&mut ws).await;
    assert!(in_time(took, IDLE), "ws closed after {took:?}");

    // An HTTP/2 stream's tunnel times out alone; its connection opens the next one.
    let mut sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (mut h2, _) = h2_websocket(&mut sender, &format!("http://{HOST}/")).await;
    echo(&mut h2, Message::text("then nothing")).await.unwrap();
    let took = time_until_ended(&mut h2).await;
    assert!(in_time(took, IDLE), "h2 stream closed after {took:?}");
    let (mut again, _) = h2_websocket(&mut sender, &format!("http://{HOST}/")).await;
    echo(&mut again, Message::text("a new stream"))
        .await
        .unwrap();
    wait_until("both backend sides were closed", PROMPTLY, || {
        backend.stats.ended() == 2
    })
    .await;

    // A new table's timeout applies to the next tunnels, longer or shorter.
    for route_timeout in [Duration::from_millis(1200), Duration::from_millis(100)] {
        proxy.publish(ws_table(HOST, vec![backend.addr], Some(route_timeout)));
        let (mut ws, _) = ws_connect(proxy.http, HOST, "/").await;
        echo(&mut ws, Message::text("then nothing")).await.unwrap();
        let took = time_until_ended(&mut ws).await;
        assert!(
            in_time(took, route_timeout),
            "closed after {took:?} with a route timeout of {route_timeout:?}"
        );
    }
}

#[tokio::test]
async fn no_other_timeout_cuts_a_quiet_tunnel() {
    const SHORT: Duration = Duration::from_millis(300);
    let backend = WsBackend::start("a").await;
    let cert = cert_for(&[HOST]);
    let config = ProxyConfig {
        keepalive_timeout: SHORT,
        upstream_keepalive_timeout: SHORT,
        client_body_timeout: SHORT,
        client_header_timeout: SHORT,
        ..ProxyConfig::default()
    };
    // The route's read and send timeouts are short too; its tunnel idle timeout is the
    // default hour.
    let route = with_policy(route("ws", vec![backend.addr]), |policy| {
        policy.timeouts.read = SHORT;
        policy.timeouts.send = SHORT;
    });
    let proxy = WsProxy::start(
        config,
        routes(vec![(HOST, PathRule::prefix("/"), route)]),
        cert_store(HOST, &cert),
    )
    .await;
    let (ws, _) = ws_connect(proxy.http, HOST, "/").await;
    let (wss, _, _) = wss_connect(proxy.https, HOST, "/").await;
    let mut h2c_sender = h2_connect(TcpStream::connect(proxy.http).await.unwrap()).await;
    let (h2c, _) = h2_websocket(&mut h2c_sender, &format!("http://{HOST}/")).await;
    let (tls, _) = handshake(proxy.https, HOST, &[b"h2"]).await;
    let mut h2_sender = h2_connect(tls).await;
    let (h2, _) = h2_websocket(&mut h2_sender, &format!("https://{HOST}/")).await;
    let mut tunnels: [(&str, Box<dyn Tunnel>); 4] = [
        ("ws", Box::new(ws)),
        ("wss", Box::new(wss)),
        ("h2c", Box::new(h2c)),
        ("h2", Box::new(h2)),
    ];
    for (name, tunnel) in tunnels.iter_mut() {
        tunnel
            .echo(Message::text(format!("{name} before")))
            .await
            .unwrap();
    }
    // Silence for several times every one of those timeouts (the tunnel idle timeout is an
    // hour).
    tokio::time::sleep(SHORT * 4).await;
    for (name, tunnel) in tunnels.iter_mut() {
        tunnel
            .echo(Message::text("after the silence"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(backend.stats.ended(), 0);
}

#[tokio::test]
async fn on_shutdown_open_tunnels_keep_working_until_their_clients_close_them() {
    let backend = WsBackend::start("a").await;
    let (proxy, _) = proxy_to(vec![backend.addr]).await;
    let (_h2_connection, mut tunnels) = one_tunnel_of_each_kind(&proxy).await;
    for (name, tunnel) in tunnels.iter_mut() {
        tunnel
            .echo(Message::text(format!("{name} before")))
            .await
            .unwrap();
    }

    let tasks = proxy.shut_down();
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while TcpStream::connect(proxy.http).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener still accepts after the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (name, tunnel) in tunnels.iter_mut() {
        tunnel
            .echo(Message::text(format!("{name} while draining")))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(50), tasks.wait())
            .await
            .is_err(),
        "the drain waits for open tunnels"
    );
    for (name, tunnel) in tunnels.iter_mut() {
        tunnel
            .close()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A client that keeps its socket after the close handshake gets weir's half-close linger;
    // these let go at once.
    drop(tunnels);
    tokio::time::timeout(PROMPTLY, tasks.wait())
        .await
        .expect("the drain ends once the tunnels are closed");
    assert_eq!(backend.stats.closes_received(), 3);
}

/// The soft and hard limits on open files of this process (Linux; `None` elsewhere).
fn open_files_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next().unwrap_or(u64::MAX)))
}

/// Makes sure this process may open `needed` files: raises the soft limit towards the hard one
/// (with util-linux `prlimit`, as `ulimit -n` would) when it is lower, else fails clearly.
fn ensure_open_files(needed: u64) {
    let Some((soft, hard)) = open_files_limits() else {
        return;
    };
    if soft >= needed {
        return;
    }
    if hard >= needed {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={needed}:{hard}"))
            .status();
    }
    let (soft, _) = open_files_limits().unwrap();
    assert!(
        soft >= needed,
        "this test needs {needed} open files; the limit is {soft} (raise it: ulimit -n {needed})"
    );
}

const PLAIN: usize = 500;
const SECURE: usize = 500;
const MESSAGES: usize = 20;
const SNAPSHOTS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tunnels_lose_nothing_while_a_hundred_snapshots_and_a_rotation_are_published() {
    const CLIENTS: usize = PLAIN + SECURE;
    // Each tunnel holds four sockets in this process: client, proxy's client side, proxy's
    // upstream side, backend.
    ensure_open_files(CLIENTS as u64 * 4 + 1000);
    let (a, b) = tokio::join!(WsBackend::start("a"), WsBackend::start("b"));
    let (old, new) = (cert_for(&[HOST]), cert_for(&[HOST]));
    // Alternate which backend serves the host, and add a route only this table has.
    let table_for = |i: usize| {
        let (name, addr) = if i.is_multiple_of(2) {
            ("a", a.addr)
        } else {
            ("b", b.addr)
        };
        table(&[
            (HOST, PathRule::prefix("/"), name, vec![addr]),
            (HOST, PathRule::exact(format!("/gen-{i}")), name, vec![addr]),
        ])
    };
    let proxy = Arc::new(
        WsProxy::start(ProxyConfig::default(), table_for(0), cert_store(HOST, &old)).await,
    );

    let opened = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (go_tx, go) = tokio::sync::watch::channel(false);
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    let old_der = Arc::new(old.der.clone());
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let (opened, echoed, failures) = (opened.clone(), echoed.clone(), failures.clone());
        let (mut go, mut done, connecting) = (go.clone(), done.clone(), connecting.clone());
        let (proxy, old_der) = (proxy.clone(), old_der.clone());
        clients.push(tokio::spawn(async move {
            let secure = id >= PLAIN;
            let run = async {
                let mut tunnel: Box<dyn Tunnel> = {
                    let _permit = connecting.acquire().await.unwrap();
                    if secure {
                        let (ws, _, leaf) = try_wss_connect(proxy.https, HOST, "/")
                            .await
                            .map_err(|e| format!("wss connect: {}", describe_error(&e)))?;
                        if leaf != *old_der {
                            return Err("not the certificate of the time".to_owned());
                        }
                        Box::new(ws)
                    } else {
                        let (ws, _) = try_ws_connect(proxy.http, HOST, "/")
                            .await
                            .map_err(|e| format!("ws connect: {}", describe_error(&e)))?;
                        Box::new(ws)
                    }
                };
                tunnel.echo(Message::text(format!("{id} hello"))).await?;
                echoed.fetch_add(1, Ordering::SeqCst);
                opened.fetch_add(1, Ordering::SeqCst);
                go.wait_for(|go| *go)
                    .await
                    .map_err(|_| "the test gave up".to_owned())?;
                let mut rng = fastrand::Rng::with_seed(id as u64);
                for seq in 0..MESSAGES {
                    let message = if seq % 2 == 0 {
                        Message::text(format!("{id}:{seq}:{}", "x".repeat(rng.usize(0..200))))
                    } else {
                        Message::binary(payload(rng.usize(1..300), (id * MESSAGES + seq) as u64))
                    };
                    tunnel
                        .echo(message)
                        .await
                        .map_err(|e| format!("message {seq}: {e}"))?;
                    echoed.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(rng.u64(5..30))).await;
                }
                // Stay open until every snapshot and the rotation are in, then once more.
                done.wait_for(|done| *done)
                    .await
                    .map_err(|_| "the test gave up".to_owned())?;
                tunnel.echo(Message::text(format!("{id} bye"))).await?;
                echoed.fetch_add(1, Ordering::SeqCst);
                tunnel.close().await
            };
            if let Err(error) = run.await {
                let kind = if secure { "wss" } else { "ws" };
                failures
                    .lock()
                    .unwrap()
                    .push(format!("{kind} #{id}: {error}"));
            }
        }));
    }
    let failed = || !failures.lock().unwrap().is_empty();

    // All thousand are open at once before the exchange starts.
    wait_until("every tunnel is open", Duration::from_secs(60), || {
        opened.load(Ordering::SeqCst) == CLIENTS || failed()
    })
    .await;
    assert!(!failed(), "{:?}", failures.lock().unwrap());
    assert_eq!(a.stats.upgrades(), CLIENTS);
    go_tx.send(true).unwrap();

    // Spread the publishes over the first three quarters of the exchange.
    let total = CLIENTS * MESSAGES;
    for i in 1..=SNAPSHOTS {
        let target = CLIENTS + i * (total * 3 / 4) / SNAPSHOTS;
        wait_until(
            "clients exchanged messages",
            Duration::from_secs(60),
            || echoed.load(Ordering::SeqCst) >= target || failed(),
        )
        .await;
        if i == SNAPSHOTS / 2 {
            proxy.publish_with_certs(table_for(i), cert_store(HOST, &new));
            let (_, leaf) = handshake(proxy.https, HOST, &[b"http/1.1"]).await;
            assert_eq!(
                leaf, new.der,
                "a fresh handshake sees the rotated certificate"
            );
        } else {
            proxy.publish(table_for(i));
        }
    }
    assert_eq!(proxy.state.snapshot().generation, SNAPSHOTS as u64 + 1);
    assert_eq!(
        a.stats.ended(),
        0,
        "no tunnel closed while the snapshots changed"
    );
    done_tx.send(true).unwrap();

    for client in clients {
        client.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} tunnels failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(echoed.load(Ordering::SeqCst), CLIENTS * (MESSAGES + 2));
    assert_eq!(
        a.stats.messages(),
        CLIENTS * (MESSAGES + 2),
        "no message lost"
    );
    assert_eq!(a.stats.upgrades(), CLIENTS);
    assert_eq!(b.stats.upgrades(), 0);
    wait_until("every backend session ended", PROMPTLY, || {
        a.stats.ended() == CLIENTS
    })
    .await;
    assert_eq!(
        a.stats.closes_received(),
        CLIENTS,
        "every tunnel closed cleanly"
    );

    // A new tunnel goes by the last table (even: `a`) and gets the new certificate.
    let (mut wss, response, leaf) = wss_connect(proxy.https, HOST, "/").await;
    assert_eq!(leaf, new.der);
    assert_eq!(response.headers()["x-backend"], "a");
    echo(&mut wss, Message::text("after it all")).await.unwrap();
    drop(wss);

    // Nothing is left behind: with every client gone, every task the proxy spawned (connections,
    // tunnels, HTTP/2 streams, the pool's reaper) ends.
    let tasks = proxy.shut_down();
    tokio::time::timeout(PROMPTLY, tasks.wait())
        .await
        .unwrap_or_else(|_| panic!("{} proxy tasks still running", tasks.len()));
}

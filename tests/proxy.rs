//! The data plane against real sockets: routing, status codes, headers, protocols, pooling.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use common::*;
use weir::model::PathRule;
use weir::proxy::ProxyConfig;

#[tokio::test]
async fn routes_by_host_and_path() {
    let (a, b, c) = tokio::join!(
        TestBackend::start("a"),
        TestBackend::start("b"),
        TestBackend::start("c")
    );
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[
            ("a.example.com", PathRule::prefix("/"), "a", vec![a.addr]),
            ("a.example.com", PathRule::prefix("/api"), "b", vec![b.addr]),
            ("*.example.com", PathRule::exact("/only"), "c", vec![c.addr]),
        ]),
    )
    .await;
    let client = http1_client();
    let cases = [
        ("a.example.com", "/", Some("a")),
        ("A.Example.COM:8080", "/web/page", Some("a")),
        ("a.example.com", "/api", Some("b")),
        ("a.example.com", "/api/v1/x?q=1", Some("b")),
        ("a.example.com", "/apix", Some("a")),
        ("z.example.com", "/only", Some("c")),
        ("z.example.com", "/only/", None),
        ("x.z.example.com", "/only", None),
        ("other.com", "/", None),
    ];
    for (host, path, want) in cases {
        let answer = get(&client, proxy.addr, host, path).await;
        match want {
            Some(backend) => {
                assert_eq!(answer.status, 200, "{host}{path}");
                assert_eq!(answer.echo().backend(), backend, "{host}{path}");
                assert_eq!(
                    answer.echo().uri(),
                    path,
                    "path and query reach the backend as sent"
                );
            }
            None => {
                assert_eq!(answer.status, 404, "{host}{path}");
                assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
                assert!(
                    answer.text().starts_with("404 Not Found"),
                    "{}",
                    answer.text()
                );
            }
        }
    }
}

#[tokio::test]
async fn answers_503_502_and_504() {
    let slow = TestBackend::start("slow").await;
    let dead = refusing_addr();
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table_with(
            &[
                ("h", PathRule::prefix("/empty"), "empty", vec![]),
                ("h", PathRule::prefix("/dead"), "dead", vec![dead]),
                ("h", PathRule::prefix("/"), "slow", vec![slow.addr]),
            ],
            |policy| policy.timeouts.read = Duration::from_millis(300),
        ),
    )
    .await;
    let client = http1_client();
    assert_eq!(
        get(&client, proxy.addr, "h", "/empty").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&client, proxy.addr, "h", "/dead").await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        get(&client, proxy.addr, "h", "/reset").await.status,
        StatusCode::BAD_GATEWAY
    );
    let timed_out = get(&client, proxy.addr, "h", "/slow?ms=3000").await;
    assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(timed_out.headers["server"], "weir");
    // The timed-out connection was closed, not pooled: the next request opens a new one.
    let opened = slow.connections.load(Ordering::SeqCst);
    assert_eq!(
        get(&client, proxy.addr, "h", "/slow?ms=0").await.status,
        200
    );
    assert_eq!(slow.connections.load(Ordering::SeqCst), opened + 1);
}

#[tokio::test]
async fn connect_timeouts_answer_504_or_move_to_the_next_endpoint() {
    let (unanswering, live) = (Unanswering::new().await, TestBackend::start("live").await);
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table_with(
            &[
                ("h", PathRule::prefix("/only"), "s", vec![unanswering.addr]),
                (
                    "h",
                    PathRule::prefix("/"),
                    "t",
                    vec![unanswering.addr, live.addr],
                ),
            ],
            |policy| policy.timeouts.connect = Duration::from_millis(200),
        ),
    )
    .await;
    let client = http1_client();
    let started = Instant::now();
    let answer = get(&client, proxy.addr, "h", "/only").await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.text()
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    for _ in 0..4 {
        let answer = get(&client, proxy.addr, "h", "/").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.echo().backend(), "live");
    }
}

#[tokio::test]
async fn retries_idempotent_requests_on_another_endpoint_when_connect_fails() {
    let live = TestBackend::start("live").await;
    let dead = refusing_addr();
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[("h", PathRule::prefix("/"), "s", vec![live.addr, dead])]),
    )
    .await;
    let client = http1_client();
    for _ in 0..6 {
        let answer = get(&client, proxy.addr, "h", "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.echo().backend(), "live");
    }
    // A failed connect sent nothing, so even a POST goes on (tests/retries.rs has the rest).
    for _ in 0..4 {
        let req = Request::post(format!("http://{}/", proxy.addr))
            .header("host", "h")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        assert_eq!(send(&client, req).await.status, 200);
    }
}

#[tokio::test]
async fn balances_requests_round_robin_over_pooled_connections() {
    let (a, b) = tokio::join!(TestBackend::start("a"), TestBackend::start("b"));
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[("h", PathRule::prefix("/"), "s", vec![a.addr, b.addr])]),
    )
    .await;
    let client = http1_client();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(
            get(&client, proxy.addr, "h", "/")
                .await
                .echo()
                .backend()
                .to_owned(),
        );
    }
    let a_count = seen.iter().filter(|s| *s == "a").count();
    assert_eq!(a_count, 10, "per-request round robin: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "alternates: {seen:?}"
    );
    let opened = a.connections.load(Ordering::SeqCst);
    assert!(
        opened <= 2,
        "sequential requests reuse pooled connections, opened {opened}"
    );
}

#[tokio::test]
async fn rewrites_headers_both_ways() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[("h.example", PathRule::prefix("/"), "s", vec![backend.addr])]),
    )
    .await;
    let client = http1_client();
    let req = Request::post(format!("http://{}/p/a%20th?x=1&y=%2F", proxy.addr))
        .header("host", "h.example:8080")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "6.6.6.6")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let answer = send(&client, req).await;
    assert_eq!(answer.status, 200);
    let echo = answer.echo();
    assert_eq!(echo.uri(), "/p/a%20th?x=1&y=%2F");
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.0["body_len"], 5);
    assert_eq!(echo.header("host").as_deref(), Some("h.example:8080"));
    assert_eq!(echo.header("content-length").as_deref(), Some("5"));
    assert_eq!(echo.header("x-custom").as_deref(), Some("kept"));
    for gone in ["x-drop-me", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(echo.header(gone), None, "{gone} must not reach the backend");
    }
    // hyper's client adds its own `connection` only when needed; the client's never passes.
    assert_ne!(
        echo.header("connection").as_deref(),
        Some("keep-alive, x-drop-me")
    );
    assert_eq!(echo.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some("h.example:8080")
    );
    assert_eq!(
        echo.header("x-forwarded-port").as_deref(),
        Some(proxy.addr.port().to_string().as_str())
    );
    let id = echo
        .header("x-request-id")
        .expect("a request id is generated");
    assert_eq!(id.len(), 32);

    // Response side: hop-by-hop headers from the backend are dropped, Server is weir's.
    assert_eq!(answer.headers["server"], "weir");
    assert!(!answer.headers.contains_key("keep-alive"));

    // A client's request id is kept.
    let req = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "h.example")
        .header("x-request-id", "trace-me-42")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(&client, req)
            .await
            .echo()
            .header("x-request-id")
            .as_deref(),
        Some("trace-me-42")
    );
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[("h2.example", PathRule::prefix("/"), "s", vec![backend.addr])]),
    )
    .await;
    let sender = http2_connect(proxy.addr).await;
    let mut requests = Vec::new();
    for i in 0..20 {
        let req = Request::get(format!("http://h2.example/stream/{i}?q={i}"))
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Full::default())
            .unwrap();
        let mut sender = sender.clone();
        requests.push(async move { read_answer(sender.send_request(req).await.unwrap()).await });
    }
    let answers = futures_util::future::join_all(requests).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200);
        let echo = answer.echo();
        assert_eq!(
            echo.0["version"], "HTTP/1.1",
            "the upstream side is HTTP/1.1"
        );
        assert_eq!(echo.uri(), format!("/stream/{i}?q={i}"));
        assert_eq!(echo.header("host").as_deref(), Some("h2.example"));
        assert_eq!(echo.header_all("cookie"), ["a=1; b=2"]);
    }
    // A Host header that contradicts :authority is malformed.
    let req = Request::get("http://h2.example/")
        .header("host", "other.example")
        .body(Full::default())
        .unwrap();
    let mut sender = sender.clone();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn rejects_oversized_and_malformed_requests() {
    let backend = TestBackend::start("b").await;
    let config = ProxyConfig {
        max_request_header_size: 4096,
        max_headers: 20,
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::serving(config, backend.addr).await;

    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8000)
    );
    assert!(
        raw(proxy.addr, big.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );

    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(
        raw(proxy.addr, many.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );

    let no_host = raw(proxy.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let bad_host = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host}");
    let connect = raw(
        proxy.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    let garbage = raw(proxy.addr, b"\x16\x03\x01\x00garbage\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    // HTTP/1.0 without Host is routed as the empty host.
    let old = raw(proxy.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
}

#[tokio::test]
async fn request_targets_that_are_not_paths_or_urls_never_reach_a_route() {
    let backend = TestBackend::start("b").await;
    let config = ProxyConfig {
        max_request_target_size: 1024,
        ..ProxyConfig::default()
    };
    // A catch-all route: whatever reaches routing is served (200).
    let proxy = TestProxy::serving(config, backend.addr).await;
    let long_path = format!("/{}", "a".repeat(1100));
    let long_query = format!("/?q={}", "a".repeat(1100));
    let just_fits = format!("/{}", "a".repeat(1023));
    let cases: [(String, &str); 8] = [
        ("GET *".into(), "HTTP/1.1 400"),
        ("OPTIONS *".into(), "HTTP/1.1 400"),
        ("GET h:80".into(), "HTTP/1.1 400"),
        (format!("GET {long_path}"), "HTTP/1.1 414"),
        (format!("GET {long_query}"), "HTTP/1.1 414"),
        (format!("GET http://h{long_path}"), "HTTP/1.1 414"),
        (format!("GET {just_fits}"), "HTTP/1.1 200"),
        ("GET http://h".into(), "HTTP/1.1 200"),
    ];
    for (line, want) in &cases {
        let request = format!("{line} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let response = raw(proxy.addr, request.as_bytes()).await;
        assert!(response.starts_with(want), "{line:.40}\n=> {response}");
    }
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "only the last two reached the endpoint"
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_client_s_fault() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let bodies: [&[u8]; 3] = [
        b"3\r\nabc\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabc\r\nffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        b"3\nabc\n0\n\n",
    ];
    for body in bodies {
        let request = [
            &b"POST /sink HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
        ]
        .concat();
        let response = raw(proxy.addr, &request).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{:?}\n=> {response}",
            String::from_utf8_lossy(body)
        );
    }
    let samples = common::metrics::parse(&proxy.state.metrics().encode());
    assert_eq!(
        common::metrics::total(&samples, "weir_upstream_errors_total"),
        0.0,
        "not the endpoint's fault"
    );
    // A well-formed chunked body still goes through.
    let good = b"POST /sink HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert!(raw(proxy.addr, good).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn slow_header_clients_are_cut_off() {
    let config = ProxyConfig {
        client_header_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::start(config, table(&[])).await;
    let (text, took) = raw_timed(proxy.addr, b"GET / HTTP/1.1\r\nHost: h\r\n").await;
    assert!(took >= Duration::from_millis(300), "cut off after {took:?}");
    assert!(
        !text.contains(" 404 ") && !text.contains(" 200 "),
        "the unfinished request was not answered: {text}"
    );
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    let backend = TestBackend::start("b").await;
    let config = ProxyConfig {
        keepalive_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::serving(config, backend.addr).await;
    let (text, took) = raw_timed(proxy.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(
        took >= Duration::from_millis(300),
        "closed after {took:?}, before the keep-alive timeout"
    );
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "the request itself was answered: {text}"
    );
}

#[tokio::test]
async fn streams_chunked_bodies_both_ways() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let client = http1_client();
    let answer = get(&client, proxy.addr, "h", "/source?bytes=5000000").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 5_000_000);

    let chunked = b"POST /sink HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let response = raw(proxy.addr, chunked).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("11"),
        "the backend received all 11 bytes: {response}"
    );
}

#[tokio::test]
async fn connections_the_backend_closes_are_not_reused() {
    // The backend answers `Connection: close`; the pool must not keep those connections.
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let client = http1_client();
    let mut ids = HashSet::new();
    let before = backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        let answer = get(&client, proxy.addr, "h", "/close").await;
        assert_eq!(answer.status, 200);
        ids.insert(answer.echo().header("x-request-id").unwrap());
    }
    assert_eq!(ids.len(), 10, "every request gets its own id");
    let opened = backend
        .connections
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert_eq!(
        opened, 10,
        "a connection the backend closed is never reused"
    );
}

#[tokio::test]
async fn replays_idempotent_requests_when_a_pooled_connection_dies_under_them() {
    // The backend answers one request per connection and drops the connection on the next one
    // without answering: what a backend closing an idle connection as weir reuses it looks like.
    let options = BackendOptions {
        requests_per_connection: Some(1),
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("b", options).await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let client = http1_client();
    for _ in 0..5 {
        let answer = get(&client, proxy.addr, "h", "/").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // Every request after the first was written to a pooled connection that died, then replayed.
    assert_eq!(backend.requests.load(Ordering::SeqCst), 9);
    // A POST may have had side effects, so it is not replayed.
    let req = Request::post(format!("http://{}/", proxy.addr))
        .header("host", "h")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    assert_eq!(send(&client, req).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn pooled_connections_the_backend_closed_while_idle_are_not_used() {
    let options = BackendOptions {
        idle_close: Some(Duration::from_millis(100)),
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("b", options).await;
    let proxy = TestProxy::serving(ProxyConfig::default(), backend.addr).await;
    let client = http1_client();
    for round in 1..=3 {
        assert_eq!(get(&client, proxy.addr, "h", "/").await.status, 200);
        wait_until(
            "the backend closed its idle connection",
            Duration::from_secs(5),
            || backend.closed.load(Ordering::SeqCst) >= 2 * round - 1,
        )
        .await;
        let req = Request::post(format!("http://{}/sink", proxy.addr))
            .header("host", "h")
            .body(Full::new(Bytes::from_static(b"with a body")))
            .unwrap();
        let answer = send(&client, req).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.text(), "11");
        wait_until(
            "the backend closed its idle connection",
            Duration::from_secs(5),
            || backend.closed.load(Ordering::SeqCst) >= 2 * round,
        )
        .await;
    }
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let backend = TestBackend::start("b").await;
    let config = ProxyConfig {
        client_body_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::serving(config, backend.addr).await;
    let (text, took) = raw_timed(
        proxy.addr,
        b"POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab",
    )
    .await;
    assert!(took >= Duration::from_millis(300));
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn a_response_body_that_stalls_is_cut_off() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::serving_with(ProxyConfig::default(), backend.addr, |policy| {
        policy.timeouts.read = Duration::from_millis(300)
    })
    .await;
    let response = http1_client()
        .request(
            Request::get(format!("http://{}/stall", proxy.addr))
                .header("host", "h")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("the stalled body ends");
    assert!(
        body.is_err(),
        "the client sees the body fail, not a clean end"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn refuses_requests_it_cannot_forward_safely() {
    let backend = TestBackend::start("b").await;
    let proxy = TestProxy::start(
        ProxyConfig::default(),
        table(&[
            ("h", PathRule::prefix("/public"), "s", vec![backend.addr]),
            (
                "absolute.example",
                PathRule::prefix("/"),
                "abs",
                vec![backend.addr],
            ),
        ]),
    )
    .await;
    let cases: [(&[u8], &str); 7] = [
        (b"GET /public HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n", "HTTP/1.1 400"),
        // Normalised to /admin, which no rule serves (tests/routing.rs has the rest).
        (b"GET /public/../admin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 404"),
        (b"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 404"),
        (b"GET /public/%zz HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 400"),
        (b"GET http://user@absolute.example/ HTTP/1.1\r\nHost: absolute.example\r\n\r\n", "HTTP/1.1 400"),
        (
            b"POST /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 501",
        ),
        (b"GET http://absolute.example/x?y HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n", "HTTP/1.1 200"),
    ];
    for (request, want) in cases {
        let response = raw(proxy.addr, request).await;
        assert!(
            response.starts_with(want),
            "{}\n=> {response}",
            String::from_utf8_lossy(request)
        );
    }
    // Absolute-form: routed by the URI's authority, forwarded in origin-form with that Host.
    let response = raw(proxy.addr, cases[6].0).await;
    let echo =
        Echo(serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap());
    assert_eq!(echo.uri(), "/x?y");
    assert_eq!(echo.header("host").as_deref(), Some("absolute.example"));

    // HEAD gets the headers of a GET and no body.
    let head = raw(
        proxy.addr,
        b"HEAD /public HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body after the head: {head}");

    // Content-Length with Transfer-Encoding: chunked framing wins, Content-Length is dropped.
    let both = raw(
        proxy.addr,
        b"POST /public/sink HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        both.starts_with("HTTP/1.1 200") || both.starts_with("HTTP/1.1 400"),
        "{both}"
    );
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_where_the_route_says_so() {
    let backend = TestBackend::start("b").await;
    let (redirect, stay) = (tls_host(true), tls_host(false));
    let mut rows = [
        (
            "secure.example",
            PathRule::prefix("/"),
            "s",
            vec![backend.addr],
            redirect,
        ),
        (
            "optout.example",
            PathRule::prefix("/"),
            "o",
            vec![backend.addr],
            stay,
        ),
    ];
    let proxy = TestProxy::start(ProxyConfig::default(), table_https(&rows)).await;
    let client = http1_client();

    let answer = get(&client, proxy.addr, "Secure.Example:8080", "/a/b?x=1&y=2").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        answer.headers["location"],
        "https://secure.example/a/b?x=1&y=2"
    );
    assert_eq!(answer.headers["server"], "weir");
    // 308 keeps the method: a POST is redirected too, not forwarded.
    let post = Request::post(format!("http://{}/form", proxy.addr))
        .header("host", "secure.example")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    assert_eq!(
        send(&client, post).await.status,
        StatusCode::PERMANENT_REDIRECT
    );
    assert_eq!(
        backend.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the backend"
    );

    // ACME HTTP-01 challenges are never redirected; nor is a route that opted out.
    let acme = get(
        &client,
        proxy.addr,
        "secure.example",
        "/.well-known/acme-challenge/token",
    )
    .await;
    assert_eq!(acme.status, 200);
    assert_eq!(
        get(&client, proxy.addr, "optout.example", "/").await.status,
        200
    );

    // An untrusted client claiming HTTPS is still redirected.
    let claim = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "secure.example")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(&client, claim).await.status,
        StatusCode::PERMANENT_REDIRECT
    );

    // Behind a trusted proxy that terminated TLS, it is not; a non-443 external port and
    // another code (http-redirect-code) are honoured.
    let config = ProxyConfig {
        https_port_external: 8443,
        ..ProxyConfig::default()
    };
    for row in rows.iter_mut() {
        row.4.redirect_code = StatusCode::MOVED_PERMANENTLY;
    }
    let proxy = TestProxy::start(config, trusting(table_https(&rows), "127.0.0.0/8")).await;
    let trusted = Request::get(format!("http://{}/", proxy.addr))
        .header("host", "secure.example")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, trusted).await.status, 200);
    let answer = get(&client, proxy.addr, "secure.example", "/p").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(answer.headers["location"], "https://secure.example:8443/p");
    // Plain HTTP responses never carry HSTS.
    assert!(
        !get(&client, proxy.addr, "optout.example", "/")
            .await
            .headers
            .contains_key("strict-transport-security")
    );
}

//! ingress-nginx's routing annotations and path behaviours, end to end through the data
//! plane: Ingress objects built by weir's model (annotations and all), served by the real
//! proxy on a socket, in front of real backends.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::model::{BuildConfig, ObjectKind, ObjectRef};
use weir::proxy::ProxyConfig;

/// The proxy serving what the model builds for `ingresses` and `services`; the build must have
/// no diagnostics.
async fn serve(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
) -> TestProxy {
    serve_with(ingresses, services, &BuildConfig::default()).await
}

async fn serve_with(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    config: &BuildConfig,
) -> TestProxy {
    let built = build_table(ingresses, services, config);
    assert_eq!(built.diagnostics, [], "the test's Ingresses are valid");
    TestProxy::start(ProxyConfig::default(), built.table).await
}

#[tokio::test]
async fn rewrite_target_expands_capture_groups_and_sends_the_prefix() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "rewrite",
            &[
                ("rewrite-target", "/$2"),
                ("x-forwarded-prefix", "/something$1"),
            ],
            rule(
                "r.test",
                &[("/something(/|$)(.*)", "ImplementationSpecific", "web")],
            ),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    // x-forwarded-prefix "/something$1" expands $1 (`/` or nothing) like the target.
    for (path, want, prefix) in [
        ("/something/new?x=1", "/new?x=1", "/something/"),
        ("/something", "/", "/something"),
        ("/something/", "/", "/something/"),
        ("/SOMETHING/a/b", "/a/b", "/something/"),
    ] {
        let answer = get(&client, proxy.addr, "r.test", path).await;
        assert_eq!(answer.status, 200, "{path}");
        let echo = answer.echo();
        assert_eq!(echo.uri(), want, "{path}");
        assert_eq!(
            echo.header("x-forwarded-prefix").as_deref(),
            Some(prefix),
            "{path}"
        );
    }
    // Not a match of the regex (anchored at the start): nothing serves it.
    assert_eq!(
        get(&client, proxy.addr, "r.test", "/x/something")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn proxy_body_size_answers_413_for_declared_and_for_growing_bodies() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "small",
            &[("proxy-body-size", "1k")],
            rule("b.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    let post = |body: Vec<u8>| {
        Request::post(format!("http://{}/sink", proxy.addr))
            .header("host", "b.test")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let answer = send(&client, post(vec![b'x'; 1024])).await;
    assert_eq!(
        (answer.status, answer.text()),
        (StatusCode::OK, "1024".into())
    );
    let before = web.requests.load(Ordering::SeqCst);
    let answer = send(&client, post(vec![b'x'; 1025])).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.headers["server"], "weir");
    assert_eq!(
        web.requests.load(Ordering::SeqCst),
        before,
        "a declared length over the limit never reaches the backend"
    );

    // Bodies without a declared length that grow past the limit: cut, and 413 (no response
    // had started) — chunked over HTTP/1.1, and DATA frames over HTTP/2.
    let growing = || {
        let chunks = (0..8)
            .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'y'; 512]))));
        StreamBody::new(futures_util::stream::iter(chunks))
    };
    let chunked = Request::post(format!("http://{}/sink", proxy.addr))
        .header("host", "b.test")
        .body(growing())
        .unwrap();
    let streaming =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = streaming.request(chunked).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://b.test/sink").body(growing()).unwrap();
    assert!(!req.headers().contains_key("content-length"));
    let response = h2.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A large declared body over HTTP/2: 413 at once, well before the flow-control window
    // would let the client send it all.
    let mut h2 = http2_connect(proxy.addr).await;
    let req = Request::post("http://b.test/sink")
        .header("content-length", "10485760")
        .body(Full::new(Bytes::from(vec![b'z'; 10 << 20])))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), h2.send_request(req))
        .await
        .expect("weir answers without reading the body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut h2 = http2_connect(proxy.addr).await;
    let req = Request::post("http://b.test/sink")
        .body(Full::new(Bytes::from(vec![b'z'; 100])))
        .unwrap();
    assert_eq!(
        read_answer(h2.send_request(req).await.unwrap())
            .await
            .text(),
        "100"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_any_endpoint_is_contacted() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "small",
            &[("proxy-body-size", "10")],
            rule("b.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    // The body is announced but never sent: weir answers from the header alone.
    let response = raw(
        proxy.addr,
        b"POST /sink HTTP/1.1\r\nHost: b.test\r\nContent-Length: 100000\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("connection: close"), "{response}");
    assert_eq!(web.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn permanent_and_temporal_redirects_answer_with_the_url_as_written() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![
            nginx_ingress(
                "moved",
                &[("permanent-redirect", "https://new.test/landing?from=old")],
                rule("p.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "moved-308",
                &[
                    ("permanent-redirect", "https://new.test/"),
                    ("permanent-redirect-code", "308"),
                ],
                rule("p308.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "away",
                &[("temporal-redirect", "http://away.test/x")],
                rule("t.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "away-307",
                &[
                    ("temporal-redirect", "http://away.test/"),
                    ("temporal-redirect-code", "307"),
                ],
                rule("t307.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    for (host, code, location) in [
        ("p.test", 301, "https://new.test/landing?from=old"),
        ("p308.test", 308, "https://new.test/"),
        ("t.test", 302, "http://away.test/x"),
        ("t307.test", 307, "http://away.test/"),
    ] {
        let answer = get(&client, proxy.addr, host, "/some/path?q=1").await;
        assert_eq!(answer.status.as_u16(), code, "{host}");
        assert_eq!(
            answer.headers["location"], location,
            "{host}: path and query are not appended"
        );
    }
    assert_eq!(
        web.connections.load(Ordering::SeqCst),
        0,
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn app_root_redirects_only_the_root() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "app",
            &[("app-root", "/app1")],
            rule("a.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    let answer = get(&client, proxy.addr, "a.test:8080", "/?q=1").await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(
        answer.headers["location"], "http://a.test:8080/app1",
        "the Host as sent; the query dropped"
    );
    assert_eq!(
        get(&client, proxy.addr, "a.test", "/app1")
            .await
            .echo()
            .uri(),
        "/app1"
    );
    assert_eq!(
        get(&client, proxy.addr, "a.test", "/other").await.status,
        200
    );
}

#[tokio::test]
async fn a_crafted_host_never_reaches_a_location_header() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "wild",
            &[("app-root", "/app"), ("force-ssl-redirect", "true")],
            rule("*.w.test", &[("/docs/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    for host in [
        "evil%2ecom?.w.test",
        "evil.com#.w.test",
        "u@evil.w.test",
        "evil.com\\.w.test",
    ] {
        let response = raw(
            proxy.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{host}: {response}");
    }
    let answer = get(&http1_client(), proxy.addr, "a.w.test", "/").await;
    assert_eq!(answer.headers["location"], "http://a.w.test/app");
}

#[tokio::test]
async fn from_to_www_redirect_works_both_ways() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![
            nginx_ingress(
                "bare",
                &[("from-to-www-redirect", "true")],
                rule("bare.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "www",
                &[("from-to-www-redirect", "true")],
                rule("www.dotted.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    let answer = get(&client, proxy.addr, "www.bare.test", "/a/b?c=d").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(answer.headers["location"], "http://bare.test/a/b?c=d");
    let answer = get(&client, proxy.addr, "dotted.test:8080", "/x").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        answer.headers["location"], "http://www.dotted.test:8080/x",
        "the client's port is kept on plain HTTP"
    );
    assert_eq!(
        get(&client, proxy.addr, "bare.test", "/a").await.status,
        200
    );
    assert_eq!(
        get(&client, proxy.addr, "www.dotted.test", "/a")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn upstream_vhost_and_server_alias() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![nginx_ingress(
            "vhost",
            &[
                ("upstream-vhost", "internal.example"),
                ("server-alias", "other.test"),
            ],
            rule("v.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    for host in ["v.test", "other.test"] {
        let echo = get(&client, proxy.addr, host, "/").await.echo();
        assert_eq!(
            echo.header("host").as_deref(),
            Some("internal.example"),
            "{host}"
        );
        assert_eq!(
            echo.header("x-forwarded-host").as_deref(),
            Some(host),
            "{host}"
        );
    }
}

#[tokio::test]
async fn paths_are_normalised_before_routing_and_forwarded_normalised() {
    let (public, admin) = (
        TestBackend::start("public").await,
        TestBackend::start("admin").await,
    );
    let proxy = serve(
        vec![ingress_json(
            "paths",
            1,
            &[],
            serde_json::json!([rule(
                "n.test",
                &[
                    ("/public", "Prefix", "public"),
                    ("/admin", "Prefix", "admin")
                ]
            )]),
        )],
        vec![
            service_json("public", &[public.addr]),
            service_json("admin", &[admin.addr]),
        ],
    )
    .await;
    for (request, backend, uri) in [
        ("/public/../admin", "admin", "/admin"),
        ("/public/%2e%2e/admin", "admin", "/admin"),
        ("/public/%2E%2e/admin/x?y=1", "admin", "/admin/x?y=1"),
        ("//admin", "admin", "/admin"),
        ("/public/./a//b", "public", "/public/a/b"),
        ("/%61dmin", "admin", "/admin"),
        ("/public/a%2Fb", "public", "/public/a%2Fb"),
    ] {
        // Raw, so that no client library normalises the path first.
        let response = raw(
            proxy.addr,
            format!("GET {request} HTTP/1.1\r\nHost: n.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{request}: {response}"
        );
        let echo = Echo(
            serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap(),
        );
        assert_eq!((echo.backend(), echo.uri()), (backend, uri), "{request}");
    }
    // A dot-segment behind an encoded slash, a malformed escape: 400, never a guess.
    for request in ["/x%2F..%2Fadmin", "/public/%2e%2E%2Fadmin", "/public/%zz"] {
        let response = raw(
            proxy.addr,
            format!("GET {request} HTTP/1.1\r\nHost: n.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{request}: {response}"
        );
    }
    // Climbing above the root stays at the root: nothing serves it.
    let response = raw(
        proxy.addr,
        b"GET /public/../../x HTTP/1.1\r\nHost: n.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn a_prefix_written_with_a_slash_redirects_the_bare_path() {
    let web = TestBackend::start("web").await;
    let proxy = serve(
        vec![ingress_json(
            "slash",
            1,
            &[],
            serde_json::json!([rule(
                "s.test",
                &[
                    ("/app/", "Prefix", "web"),
                    ("/exact/", "Exact", "web"),
                    ("/api", "Prefix", "web")
                ]
            )]),
        )],
        vec![service_json("web", &[web.addr])],
    )
    .await;
    let client = http1_client();
    let answer = get(&client, proxy.addr, "s.test:8080", "/app?x=1").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        answer.headers["location"], "http://s.test/app/?x=1",
        "absolute, no port, query kept"
    );
    assert_eq!(
        get(&client, proxy.addr, "s.test", "/app/")
            .await
            .echo()
            .uri(),
        "/app/"
    );
    // Exact rules never redirect (the Ingress conformance suite); nor do paths written without
    // a slash.
    assert_eq!(
        get(&client, proxy.addr, "s.test", "/exact").await.status,
        404
    );
    assert_eq!(get(&client, proxy.addr, "s.test", "/api").await.status, 200);
    assert_eq!(web.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unmatched_paths_of_a_host_never_reach_another_ingress_s_catch_all() {
    let (app, catch_all, fallback) = (
        TestBackend::start("app").await,
        TestBackend::start("catch-all").await,
        TestBackend::start("fallback").await,
    );
    let ingresses = || {
        vec![
            ingress_json(
                "app",
                1,
                &[],
                serde_json::json!([rule("app.test", &[("/api", "Prefix", "app")])]),
            ),
            serde_json::json!({
                "metadata": {"name": "catch-all", "namespace": "default", "creationTimestamp": "1970-01-01T00:00:02Z"},
                "spec": {"ingressClassName": "weir", "defaultBackend": {"service": {"name": "catch-all", "port": {"name": "http"}}}},
            }),
        ]
    };
    let services = || {
        vec![
            service_json("app", &[app.addr]),
            service_json("catch-all", &[catch_all.addr]),
            service_json("fallback", &[fallback.addr]),
        ]
    };
    let client = http1_client();
    let proxy = serve(ingresses(), services()).await;
    assert_eq!(
        get(&client, proxy.addr, "app.test", "/api")
            .await
            .echo()
            .backend(),
        "app"
    );
    assert_eq!(
        get(&client, proxy.addr, "app.test", "/other").await.status,
        404
    );
    assert_eq!(
        get(&client, proxy.addr, "unknown.test", "/")
            .await
            .echo()
            .backend(),
        "catch-all"
    );

    // --default-backend-service serves the unmatched paths of hosts with rules.
    let config = BuildConfig {
        default_backend_service: Some(ObjectRef::new(ObjectKind::Service, "default", "fallback")),
        ..BuildConfig::default()
    };
    let proxy = serve_with(ingresses(), services(), &config).await;
    assert_eq!(
        get(&client, proxy.addr, "app.test", "/other")
            .await
            .echo()
            .backend(),
        "fallback"
    );
    assert_eq!(
        get(&client, proxy.addr, "unknown.test", "/")
            .await
            .echo()
            .backend(),
        "catch-all"
    );
}

#[tokio::test]
async fn an_invalid_routing_annotation_fails_closed() {
    let web = TestBackend::start("web").await;
    let built = build_table(
        vec![
            nginx_ingress(
                "broken",
                &[("rewrite-target", "/$host")],
                rule("x.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress("fine", &[], rule("y.test", &[("/", "Prefix", "web")])),
        ],
        vec![service_json("web", &[web.addr])],
        &BuildConfig::default(),
    );
    assert_eq!(built.diagnostics.len(), 1, "{:#?}", built.diagnostics);
    let proxy = TestProxy::start(ProxyConfig::default(), built.table).await;
    let client = http1_client();
    let answer = get(&client, proxy.addr, "x.test", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text().contains("invalid annotation"),
        "{}",
        answer.text()
    );
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);
    assert_eq!(
        get(&client, proxy.addr, "y.test", "/").await.status,
        200,
        "other Ingresses keep serving"
    );
}

/// A backend that accepts connections and reads nothing, ever (its socket buffers fill up).
async fn deaf_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn each_timeout_annotation_bounds_its_step() {
    let slow = TestBackend::start("slow").await;
    let unanswering = Unanswering::new().await;
    let (deaf, _deaf_task) = deaf_backend().await;
    let proxy = serve(
        vec![
            nginx_ingress(
                "connect",
                &[("proxy-connect-timeout", "1")],
                rule("connect.test", &[("/", "Prefix", "blackhole")]),
            ),
            nginx_ingress(
                "read",
                &[("proxy-read-timeout", "1")],
                rule("read.test", &[("/", "Prefix", "slow")]),
            ),
            nginx_ingress(
                "send",
                &[("proxy-send-timeout", "1"), ("proxy-body-size", "0")],
                rule("send.test", &[("/", "Prefix", "deaf")]),
            ),
        ],
        vec![
            service_json("blackhole", &[unanswering.addr]),
            service_json("slow", &[slow.addr]),
            service_json("deaf", &[deaf]),
        ],
    )
    .await;
    let client = http1_client();
    let within =
        |took: Duration| took >= Duration::from_millis(900) && took < Duration::from_secs(4);

    // A blackholed endpoint: 504 after the route's 1 s, not the default 5 s.
    let started = Instant::now();
    let answer = get(&client, proxy.addr, "connect.test", "/").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        within(started.elapsed()),
        "connect timeout after {:?}",
        started.elapsed()
    );

    // An endpoint that stops answering: 504 after 1 s.
    let started = Instant::now();
    let answer = get(&client, proxy.addr, "read.test", "/slow?ms=5000").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        within(started.elapsed()),
        "read timeout after {:?}",
        started.elapsed()
    );
    assert_eq!(
        get(&client, proxy.addr, "read.test", "/slow?ms=200")
            .await
            .status,
        200
    );

    // An endpoint that stops reading the request body: 504 after 1 s without progress.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let size: usize = 256 << 20;
    stream
        .write_all(
            format!("POST / HTTP/1.1\r\nHost: send.test\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let writing = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    });
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut response))
        .await
        .expect("weir answers while the body is still being sent")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..n]);
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    writing.abort();
}

#[tokio::test]
async fn regex_hosts_match_case_insensitively_through_the_proxy() {
    let (web, other) = (
        TestBackend::start("web").await,
        TestBackend::start("other").await,
    );
    let proxy = serve(
        vec![
            nginx_ingress(
                "regex",
                &[("use-regex", "true")],
                rule(
                    "re.test",
                    &[("/v[0-9]+/items", "ImplementationSpecific", "web")],
                ),
            ),
            ingress_json(
                "exact",
                2,
                &[],
                serde_json::json!([rule("re.test", &[("/Header", "Exact", "other")])]),
            ),
        ],
        vec![
            service_json("web", &[web.addr]),
            service_json("other", &[other.addr]),
        ],
    )
    .await;
    let client = http1_client();
    assert_eq!(
        get(&client, proxy.addr, "re.test", "/V2/ITEMS/x")
            .await
            .echo()
            .backend(),
        "web"
    );
    assert_eq!(
        get(&client, proxy.addr, "re.test", "/headers")
            .await
            .echo()
            .backend(),
        "other",
        "Exact became a case-insensitive prefix regex, as in ingress-nginx"
    );
    assert_eq!(
        get(&client, proxy.addr, "re.test", "/v/items").await.status,
        404
    );
}

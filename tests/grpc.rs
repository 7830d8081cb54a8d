//! gRPC and HTTP/2 to endpoints, end to end: Ingresses with `backend-protocol` read by weir's
//! model, the real proxy on a socket (plain listener with HTTP/2 prior knowledge, or TLS with
//! ALPN h2), a real tonic client and a real gRPC service (`common::grpc`).
//!
//! Contract checked here: `GRPC` and `H2C` reach endpoints over HTTP/2 in cleartext, `GRPCS`
//! over HTTP/2 with TLS; every call picks its endpoint; trailers are relayed; `grpc-timeout`
//! bounds a call; the answers weir makes itself to gRPC requests are trailers-only gRPC
//! answers (HTTP 200, `grpc-status` in the head) with the status the HTTP one maps to.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::StatusCode;
use tonic::Code;

use common::grpc::*;
use common::manifests::{ingress_yaml_with, service_yaml, write};
use common::metrics::{scrape_until, sum};
use common::process::WeirProcess;
use common::tls::{cert_for, server_config, start_tls_proxy};
use common::*;
use weir::model::{BuildConfig, Defaults, RouteTable};
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(10);

/// "secret" for alice (apr1), for a route with basic authentication.
const HTPASSWD: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n";

/// An Ingress `name` routing `host` (all paths) to Service `service` with
/// `backend-protocol: GRPC` and the ingress-nginx annotations `more`.
fn grpc_ingress(name: &str, host: &str, service: &str, more: &[(&str, &str)]) -> serde_json::Value {
    let mut annotations = vec![("backend-protocol", "GRPC")];
    annotations.extend_from_slice(more);
    nginx_ingress(name, &annotations, rule(host, &[("/", "Prefix", service)]))
}

/// What weir's model builds (with `defaults`): the table and the diagnostics' messages.
fn build(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    objects: Vec<serde_json::Value>,
    defaults: Defaults,
) -> (RouteTable, Vec<String>) {
    let config = BuildConfig {
        defaults,
        ..BuildConfig::default()
    };
    let built = build_table_with(ingresses, services, objects, &config);
    let (table, diagnostics) = messages(built);
    (table, diagnostics)
}

/// The in-process proxy (plain listener) serving `ingresses`; the build must report nothing.
async fn serve(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    objects: Vec<serde_json::Value>,
    defaults: Defaults,
) -> TestProxy {
    let (table, diagnostics) = build(ingresses, services, objects, defaults);
    assert_eq!(diagnostics, Vec::<String>::new());
    TestProxy::start(ProxyConfig::default(), table).await
}

/// The proxy serving `grpc.test` → Service `grpc` (`backend-protocol: GRPC` and `more`) on
/// `endpoints`.
async fn serve_grpc(endpoints: &[std::net::SocketAddr], more: &[(&str, &str)]) -> TestProxy {
    serve(
        vec![grpc_ingress("grpc", "grpc.test", "grpc", more)],
        vec![service_json("grpc", endpoints)],
        Vec::new(),
        Defaults::default(),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The fixtures themselves, without weir.

#[tokio::test]
async fn the_grpc_fixture_answers_all_four_kinds_without_weir() {
    let server = GrpcServer::start("alpha").await;
    let mut client = GrpcClient::connect(server.addr, "grpc.test").await;
    assert_eq!(call_all_four_kinds(&mut client).await, ["alpha"; 4]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    let cert = cert_for(&["grpc.test"]);
    let secure = GrpcServer::start_tls("beta", server_config(&cert, None, &[], &[b"h2"])).await;
    let mut client = GrpcClient::connect_tls(secure.addr, "grpc.test").await;
    assert_eq!(call_all_four_kinds(&mut client).await, ["beta"; 4]);
    let handshake = secure.tls.last();
    assert_eq!(handshake.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(handshake.sni.as_deref(), Some("grpc.test"));
}

#[tokio::test]
async fn the_grpc_fixture_ignores_deadlines_and_sends_its_statuses_as_the_client_expects() {
    let server = GrpcServer::start("alpha").await;
    let mut client = GrpcClient::connect(server.addr, "grpc.test").await;

    // Neither the tonic client nor the server enforce `grpc-timeout`: a deadline that passes
    // ends a call only where weir enforces it.
    let mut slow = tonic::Request::new(Call {
        delay_ms: 300,
        ..call("late")
    });
    slow.set_timeout(Duration::from_millis(50));
    let reply = client.slow(slow).await.expect("no deadline enforced");
    assert_eq!(reply.into_inner().text, "late");

    // Fail: the replies, then the status in trailers with trailing metadata.
    let fail = Call {
        count: 2,
        code: Code::FailedPrecondition as i32,
        ..call("not now")
    };
    let replies = client.fail(fail.clone()).await.unwrap().into_inner();
    let (got, status) = drain(replies).await.expect_err("ends with the status");
    assert_eq!(got.len(), 2);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "not now");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "not now");
    let raw = raw_call(server.addr, "grpc.test", "Fail", &fail, &[]).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert!(raw.headers.get("grpc-status").is_none(), "{raw:#?}");
    let trailers = raw.trailers.expect("a trailers frame");
    assert_eq!(trailers["grpc-status"], "9");
    assert_eq!(trailers["x-detail"], "not now");

    // Unary with a code: a trailers-only answer.
    let not_found = Call {
        code: Code::NotFound as i32,
        ..call("no such thing")
    };
    let raw = raw_call(server.addr, "grpc.test", "Unary", &not_found, &[]).await;
    raw.assert_trailers_only(Code::NotFound);
    assert_eq!(raw.headers["x-detail"], "no such thing");
}

#[tokio::test]
async fn the_h2c_test_backend_echoes_the_http_version_it_received() {
    let options = BackendOptions {
        h2c: true,
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("h2", options).await;
    let mut sender = http2_connect(backend.addr).await;
    let req = http::Request::get(format!("http://{}/x", backend.addr))
        .body(http_body_util::Full::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.echo().0["version"], "HTTP/2.0");
}

// ---------------------------------------------------------------------------------------
// gRPC through weir.

#[tokio::test]
async fn grpc_over_h2c_through_weir_serves_unary_and_all_three_streaming_kinds() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[]).await;
    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;
    assert_eq!(call_all_four_kinds(&mut client).await, ["alpha"; 4]);
    assert_eq!(server.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn grpc_over_tls_with_alpn_h2_through_weir_serves_unary_and_all_three_streaming_kinds() {
    let server = GrpcServer::start("alpha").await;
    let (table, diagnostics) = build(
        vec![grpc_ingress("grpc", "grpc.test", "grpc", &[])],
        vec![service_json("grpc", &[server.addr])],
        Vec::new(),
        Defaults::default(),
    );
    assert_eq!(diagnostics, Vec::<String>::new());
    let proxy = start_tls_proxy(ProxyConfig::default(), table, &[], &[]).await;
    let mut client = GrpcClient::connect_tls(proxy.addr, "grpc.test").await;
    assert_eq!(call_all_four_kinds(&mut client).await, ["alpha"; 4]);
}

#[tokio::test]
async fn grpcs_reaches_the_endpoint_over_http2_with_tls() {
    let cert = cert_for(&["grpc.default.svc"]);
    let server = GrpcServer::start_tls("secure", server_config(&cert, None, &[], &[b"h2"])).await;
    let proxy = serve(
        vec![nginx_ingress(
            "grpc",
            &[("backend-protocol", "GRPCS")],
            rule("grpc.test", &[("/", "Prefix", "grpc")]),
        )],
        vec![service_json("grpc", &[server.addr])],
        Vec::new(),
        Defaults::default(),
    )
    .await;
    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;
    assert_eq!(call_all_four_kinds(&mut client).await, ["secure"; 4]);
    let handshake = server.tls.last();
    assert_eq!(
        handshake.alpn.as_deref(),
        Some(&b"h2"[..]),
        "weir asks for h2 by ALPN"
    );
    assert_eq!(
        server.tls.failures.load(Ordering::SeqCst),
        0,
        "no verification by default: the self-signed certificate is accepted"
    );
}

#[tokio::test]
async fn a_thousand_unary_calls_on_one_client_connection_spread_over_three_endpoints() {
    let servers = [
        GrpcServer::start("a").await,
        GrpcServer::start("b").await,
        GrpcServer::start("c").await,
    ];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let proxy = serve_grpc(&addrs, &[]).await;
    // One client connection (a GrpcClient and its clones are one HTTP/2 connection), 32
    // calls in flight at a time.
    let client = GrpcClient::connect(proxy.addr, "grpc.test").await;

    let endpoints: Vec<String> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let reply = client.unary(call(&format!("call {i}"))).await;
                reply.expect("unary through weir").into_inner().endpoint
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let mut share: BTreeMap<String, usize> = BTreeMap::new();
    for endpoint in endpoints {
        *share.entry(endpoint).or_default() += 1;
    }
    // Round robin gives each endpoint a third; each must get at least a quarter (250).
    assert_eq!(share.len(), 3, "{share:?}");
    for (endpoint, calls) in &share {
        assert!(
            *calls >= 250,
            "{endpoint} served {calls} of 1000: {share:?}"
        );
    }
    // HTTP/2 to endpoints is pooled and multiplexed: one connection per endpoint carries its
    // ~333 calls, 32 at a time at most (one more is tolerated, for a connect racing the first
    // calls).
    let accepted: Vec<(String, usize)> = servers
        .iter()
        .map(|s| (s.name.clone(), s.connections.load(Ordering::SeqCst)))
        .collect();
    assert!(
        accepted.iter().all(|(_, n)| (1..=2).contains(n)),
        "connections accepted per endpoint for ~333 calls each: {accepted:?}"
    );
}

#[tokio::test]
async fn a_handler_s_status_and_trailing_metadata_reach_the_client() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[]).await;
    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;

    // The status in a trailers frame after two messages.
    let fail = Call {
        count: 2,
        code: Code::FailedPrecondition as i32,
        ..call("not now")
    };
    let replies = client.fail(fail.clone()).await.unwrap().into_inner();
    let (got, status) = drain(replies).await.expect_err("the handler's status");
    assert_eq!(got.len(), 2, "the messages before the status");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "not now");
    assert_eq!(status.metadata().get("x-detail").unwrap(), "not now");

    // On the wire: head, the same messages, then the same trailers in a trailers frame as
    // the endpoint sends them directly.
    let direct = raw_call(server.addr, "grpc.test", "Fail", &fail, &[]).await;
    let raw = raw_call(proxy.addr, "grpc.test", "Fail", &fail, &[]).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, direct.body);
    let trailers = raw.trailers.as_ref().expect("trailers relayed as trailers");
    assert_eq!(trailers["grpc-status"], "9", "{raw:#?}");
    for name in ["grpc-status", "grpc-message", "x-detail"] {
        assert_eq!(
            trailers.get(name),
            direct.trailers.as_ref().unwrap().get(name),
            "{name}: {raw:#?}"
        );
    }

    // A trailers-only answer of the handler keeps its status and metadata too.
    let not_found = Call {
        code: Code::NotFound as i32,
        ..call("no such thing")
    };
    let status = client.unary(not_found).await.expect_err("NOT_FOUND");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.metadata().get("x-detail").unwrap(), "no such thing");
}

#[tokio::test]
async fn grpc_timeout_bounds_the_call_deadline_exceeded_long_before_the_handler_answers() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[]).await;
    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;

    // `set_timeout` only sends `grpc-timeout: 300m`; the client enforces nothing (see
    // the_grpc_fixture_ignores_deadlines_…), and the handler sleeps 5 s regardless.
    let mut slow = tonic::Request::new(Call {
        delay_ms: 5000,
        ..call("late")
    });
    slow.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.slow(slow).await.expect_err("DEADLINE_EXCEEDED");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "answered after {took:?}, not at the 300 ms deadline"
    );
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        1,
        "the call was forwarded"
    );

    // weir's answer is trailers-only.
    let slow = Call {
        delay_ms: 5000,
        ..call("late")
    };
    let raw = raw_call(
        proxy.addr,
        "grpc.test",
        "Slow",
        &slow,
        &[("grpc-timeout", "300m")],
    )
    .await;
    raw.assert_trailers_only(Code::DeadlineExceeded);
}

#[tokio::test]
async fn proxy_read_timeout_ends_a_grpc_call_with_deadline_exceeded() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[("proxy-read-timeout", "1")]).await;
    let slow = Call {
        delay_ms: 5000,
        ..call("late")
    };
    let started = Instant::now();
    let raw = raw_call(proxy.addr, "grpc.test", "Slow", &slow, &[]).await;
    let took = started.elapsed();
    raw.assert_trailers_only(Code::DeadlineExceeded);
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
}

// ---------------------------------------------------------------------------------------
// Answers weir makes itself to gRPC requests: trailers-only, the status mapped.

#[tokio::test]
async fn a_grpc_call_with_no_route_answers_unimplemented() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[]).await;
    let raw = raw_call(proxy.addr, "nowhere.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::Unimplemented);

    let mut client = GrpcClient::connect(proxy.addr, "nowhere.test").await;
    let status = client.unary(call("hi")).await.expect_err("no route");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_grpc_service_without_endpoints_answers_unavailable() {
    let (table, diagnostics) = build(
        vec![grpc_ingress("grpc", "grpc.test", "grpc", &[])],
        vec![service_json("grpc", &[])],
        Vec::new(),
        Defaults::default(),
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0].contains("no ready endpoints"),
        "{diagnostics:?}"
    );
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::Unavailable);

    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;
    let status = client.unary(call("hi")).await.expect_err("no endpoints");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn a_refused_grpc_connection_answers_unavailable() {
    let proxy = serve_grpc(&[refusing_addr()], &[]).await;
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::Unavailable);
}

#[tokio::test]
async fn a_grpc_route_failing_closed_answers_unavailable() {
    let server = GrpcServer::start("alpha").await;
    let (table, diagnostics) = build(
        vec![grpc_ingress(
            "grpc",
            "grpc.test",
            "grpc",
            &[("whitelist-source-range", "not-a-range")],
        )],
        vec![service_json("grpc", &[server.addr])],
        Vec::new(),
        Defaults::default(),
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::Unavailable);
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_grpc_call_without_credentials_answers_unauthenticated() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve(
        vec![grpc_ingress(
            "grpc",
            "grpc.test",
            "grpc",
            &[("auth-type", "basic"), ("auth-secret", "users")],
        )],
        vec![service_json("grpc", &[server.addr])],
        vec![secret_json("users", &[("auth", HTPASSWD)])],
        Defaults::default(),
    )
    .await;
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::Unauthenticated);
    // With the credentials the call goes through.
    let raw = raw_call(
        proxy.addr,
        "grpc.test",
        "Unary",
        &call("hi"),
        &[("authorization", "Basic YWxpY2U6c2VjcmV0")],
    )
    .await;
    assert_eq!(
        raw.trailers.as_ref().map(|t| &t["grpc-status"]),
        Some(&http::HeaderValue::from_static("0")),
        "{raw:#?}"
    );
}

#[tokio::test]
async fn a_grpc_call_from_a_denied_address_answers_permission_denied() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[("whitelist-source-range", "10.0.0.0/8")]).await;
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
    raw.assert_trailers_only(Code::PermissionDenied);
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rate_limited_grpc_calls_answer_resource_exhausted() {
    let server = GrpcServer::start("alpha").await;
    let defaults = Defaults {
        limit_req_status: StatusCode::TOO_MANY_REQUESTS,
        ..Defaults::default()
    };
    let proxy = serve(
        vec![grpc_ingress(
            "grpc",
            "grpc.test",
            "grpc",
            &[("limit-rps", "1"), ("limit-burst-multiplier", "1")],
        )],
        vec![service_json("grpc", &[server.addr])],
        Vec::new(),
        defaults,
    )
    .await;
    // A burst of 1 at 1/s: within a few calls one is limited (429 → RESOURCE_EXHAUSTED).
    for attempt in 1..=10 {
        let raw = raw_call(proxy.addr, "grpc.test", "Unary", &call("hi"), &[]).await;
        let served = raw.trailers.as_ref().and_then(|t| t.get("grpc-status"));
        if served.is_some_and(|code| code == "0") {
            continue;
        }
        raw.assert_trailers_only(Code::ResourceExhausted);
        assert!(attempt >= 2, "the first call is within the burst");
        return;
    }
    panic!("10 calls at once, none limited");
}

#[tokio::test]
async fn an_oversized_grpc_request_answers_resource_exhausted() {
    let server = GrpcServer::start("alpha").await;
    let proxy = serve_grpc(&[server.addr], &[("proxy-body-size", "1k")]).await;
    let big = Call {
        padding: vec![7; 8 * 1024],
        ..call("big")
    };
    // hyper declares the length of this body: 413 before the endpoint is asked.
    let raw = raw_call(proxy.addr, "grpc.test", "Unary", &big, &[]).await;
    raw.assert_trailers_only(Code::ResourceExhausted);
    // tonic streams it without a length: counted as it arrives, cut past the limit.
    let mut client = GrpcClient::connect(proxy.addr, "grpc.test").await;
    let status = client.unary(big).await.expect_err("over proxy-body-size");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // A small one passes.
    let reply = client.unary(call("small")).await.expect("under the limit");
    assert_eq!(reply.into_inner().text, "small");
}

// ---------------------------------------------------------------------------------------
// Other backend protocols.

#[tokio::test]
async fn backend_protocol_h2c_speaks_http2_with_prior_knowledge_to_the_endpoint() {
    let options = BackendOptions {
        h2c: true,
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("h2", options).await;
    // The value is case-insensitive.
    let proxy = serve(
        vec![nginx_ingress(
            "h2",
            &[("backend-protocol", "h2c")],
            rule("h2.test", &[("/", "Prefix", "h2")]),
        )],
        vec![service_json("h2", &[backend.addr])],
        Vec::new(),
        Defaults::default(),
    )
    .await;
    // An HTTP/1.1 client; weir speaks HTTP/2 to the endpoint.
    let client = http1_client();
    for _ in 0..3 {
        let answer = get(&client, proxy.addr, "h2.test", "/app").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let echo = answer.echo();
        assert_eq!(echo.backend(), "h2");
        assert_eq!(echo.0["version"], "HTTP/2.0");
    }
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "one pooled HTTP/2 connection"
    );
}

#[tokio::test]
async fn ajp_fcgi_and_unknown_backend_protocols_answer_503_with_a_diagnostic() {
    let web = TestBackend::start("web").await;
    let ingress = |name: &str, protocol: &str| {
        nginx_ingress(
            name,
            &[("backend-protocol", protocol)],
            rule(&format!("{name}.test"), &[("/", "Prefix", "web")]),
        )
    };
    let (table, diagnostics) = build(
        vec![
            ingress("ajp", "AJP"),
            ingress("fcgi", "fcgi"),
            ingress("unknown", "SPDY"),
            ingress("plain", "HTTP"),
        ],
        vec![service_json("web", &[web.addr])],
        Vec::new(),
        Defaults::default(),
    );
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
    for protocol in ["AJP", "fcgi", "SPDY"] {
        assert!(
            diagnostics
                .iter()
                .any(|d| d.contains("backend-protocol") && d.contains(protocol)),
            "a diagnostic names backend-protocol {protocol}: {diagnostics:#?}"
        );
    }
    let proxy = TestProxy::start(ProxyConfig::default(), table).await;
    let client = http1_client();
    for host in ["ajp.test", "fcgi.test", "unknown.test"] {
        let answer = get(&client, proxy.addr, host, "/").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
    }
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);
    let plain = get(&client, proxy.addr, "plain.test", "/").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.echo().0["version"], "HTTP/1.1");
}

// ---------------------------------------------------------------------------------------
// Metrics, from the binary.

#[tokio::test]
async fn grpc_requests_are_counted_by_their_final_grpc_status() {
    let server = GrpcServer::start("alpha").await;
    let dir = tempfile::tempdir().unwrap();
    let grpc = [("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")];
    write(
        dir.path(),
        "grpc.yaml",
        &service_yaml("grpc", &[server.addr]),
    );
    write(dir.path(), "empty.yaml", &service_yaml("empty", &[]));
    write(
        dir.path(),
        "grpc-ingress.yaml",
        &ingress_yaml_with("grpc", "grpc.test", "/", "grpc", &grpc),
    );
    write(
        dir.path(),
        "empty-ingress.yaml",
        &ingress_yaml_with("empty", "empty.test", "/", "empty", &grpc),
    );
    let weir = WeirProcess::start(dir.path(), &[]);
    weir.until_ready().await;

    let mut client = GrpcClient::connect(weir.http, "grpc.test").await;
    for i in 0..3 {
        client.unary(call(&format!("{i}"))).await.expect("OK");
    }
    let mut slow = tonic::Request::new(Call {
        delay_ms: 3000,
        ..call("late")
    });
    slow.set_timeout(Duration::from_millis(200));
    let status = client.slow(slow).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    // The handler's status comes in trailers, after the 200 head: the final one counts.
    let fail = Call {
        count: 1,
        code: Code::FailedPrecondition as i32,
        ..call("no")
    };
    let (_, status) = drain(client.fail(fail).await.unwrap().into_inner())
        .await
        .expect_err("FAILED_PRECONDITION");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let mut empty = GrpcClient::connect(weir.http, "empty.test").await;
    let status = empty.unary(call("x")).await.expect_err("no endpoints");
    assert_eq!(status.code(), Code::Unavailable);

    let name = "weir_grpc_requests_total";
    let count = |samples: &[common::metrics::Sample], ingress: &str, code: &str| {
        sum(
            samples,
            name,
            &[
                ("namespace", "default"),
                ("ingress", ingress),
                ("grpc_status", code),
            ],
        )
    };
    let expected = [
        ("grpc", "0", 3.0),
        ("grpc", "4", 1.0),
        ("grpc", "9", 1.0),
        ("empty", "14", 1.0),
    ];
    let samples = scrape_until(&weir, "the gRPC calls by status", LIMIT, |s| {
        expected
            .iter()
            .all(|(ingress, code, n)| count(s, ingress, code) == *n)
    })
    .await;
    assert_eq!(
        common::metrics::total(&samples, name),
        6.0,
        "no other series"
    );
}

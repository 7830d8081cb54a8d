//! Access control end to end: source lists and basic authentication read by weir's model
//! from Ingress annotations and Secrets, enforced by the real proxy on a socket in front of
//! real backends; and a table of the bug classes that let requests past access rules
//! elsewhere (missing Secrets, spoofed X-Forwarded-For, path tricks, other protocols).

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use weir::model::BuildConfig;
use weir::proxy::ProxyConfig;

/// "secret" for alice (apr1, as `htpasswd -m` writes it) and bob (bcrypt, `htpasswd -B`).
const HTPASSWD: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n\
                        bob:$2y$05$KzDnLdNDVX3p.8IVXyuUmONaz0awLFIKsAyrFdKZTd5Clj5OTvwBi\n";

/// `Authorization` values: alice's right password, and a wrong one.
const ALICE: &str = "Basic YWxpY2U6c2VjcmV0";
const BOB: &str = "Basic Ym9iOnNlY3JldA==";
const WRONG: &str = "Basic YWxpY2U6d3Jvbmc=";

/// The proxy serving these Ingresses, Services and Secrets; returns it with the diagnostics
/// of the build.
async fn serve(
    ingresses: Vec<serde_json::Value>,
    services: Vec<[serde_json::Value; 2]>,
    secrets: Vec<serde_json::Value>,
    config: ProxyConfig,
) -> (TestProxy, Vec<String>) {
    let built = build_table_with(ingresses, services, secrets, &BuildConfig::default());
    let (table, diagnostics) = messages(built);
    (TestProxy::start(config, table).await, diagnostics)
}

/// GET with optional `Authorization` and `X-Forwarded-For`.
async fn request(
    proxy: &TestProxy,
    host: &str,
    path: &str,
    authorization: Option<&str>,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut req = Request::get(format!("http://{}{path}", proxy.addr)).header(header::HOST, host);
    if let Some(value) = authorization {
        req = req.header(header::AUTHORIZATION, value);
    }
    if let Some(value) = forwarded_for {
        req = req.header("x-forwarded-for", value);
    }
    send(&http1_client(), req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn source_lists_allow_and_deny_by_the_client_address() {
    let web = TestBackend::start("web").await;
    let (proxy, diagnostics) = serve(
        vec![
            nginx_ingress(
                "office",
                &[("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16")],
                rule("office.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "local",
                &[("allowlist-source-range", "127.0.0.1/32")],
                rule("local.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "blocked",
                &[("denylist-source-range", "127.0.0.0/8")],
                rule("blocked.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
        vec![],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());
    let status = |host: &'static str| {
        let proxy = &proxy;
        async move { request(proxy, host, "/", None, None).await.status }
    };
    assert_eq!(status("office.test").await, StatusCode::FORBIDDEN);
    assert_eq!(status("local.test").await, StatusCode::OK);
    assert_eq!(status("blocked.test").await, StatusCode::FORBIDDEN);
    assert_eq!(web.requests.load(Ordering::SeqCst), 1, "only local.test");
}

#[tokio::test]
async fn a_forwarded_address_counts_only_from_a_trusted_peer() {
    let web = TestBackend::start("web").await;
    let ingresses = || {
        vec![nginx_ingress(
            "office",
            &[("whitelist-source-range", "10.0.0.0/8")],
            rule("office.test", &[("/", "Prefix", "web")]),
        )]
    };
    let services = || vec![service_json("web", &[web.addr])];
    let (untrusting, _) = serve(ingresses(), services(), vec![], ProxyConfig::default()).await;
    for spoof in ["10.1.2.3", "10.1.2.3, 10.9.9.9", "127.0.0.1, 10.1.2.3"] {
        let answer = request(&untrusting, "office.test", "/", None, Some(spoof)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{spoof}");
    }
    // The controller ConfigMap trusts the balancer (here the test client's address).
    let settings = config_map_json(
        "weir",
        &[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "127.0.0.1/32"),
        ],
    );
    let built = build_table_with(ingresses(), services(), vec![settings], &with_config_map());
    assert_eq!(built.diagnostics, []);
    let trusting = TestProxy::start(ProxyConfig::default(), built.table).await;
    let via_lb = request(&trusting, "office.test", "/", None, Some("10.1.2.3")).await;
    assert_eq!(via_lb.status, StatusCode::OK);
    // The rightmost untrusted address is the client: what the client itself wrote further
    // left does not count.
    let spoofed = request(
        &trusting,
        "office.test",
        "/",
        None,
        Some("10.1.2.3, 203.0.113.9"),
    )
    .await;
    assert_eq!(spoofed.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn basic_auth_asks_checks_and_lets_listed_users_through() {
    let web = TestBackend::start("web").await;
    let (proxy, diagnostics) = serve(
        vec![nginx_ingress(
            "private",
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "Authentication Required - ops"),
            ],
            rule("private.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
        vec![secret_json("users", &[("auth", HTPASSWD)])],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());
    for authorization in [None, Some(WRONG), Some("Basic !!"), Some("Bearer x")] {
        let answer = request(&proxy, "private.test", "/", authorization, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            answer.headers[header::WWW_AUTHENTICATE],
            "Basic realm=\"Authentication Required - ops\""
        );
    }
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);
    for user in [ALICE, BOB] {
        let answer = request(&proxy, "private.test", "/", Some(user), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{user}");
        // As from ingress-nginx, the endpoint sees the credentials too.
        assert_eq!(answer.echo().header("authorization").as_deref(), Some(user));
    }
}

#[tokio::test]
async fn satisfy_any_lets_the_office_in_without_a_password() {
    let web = TestBackend::start("web").await;
    let (proxy, _) = serve(
        vec![nginx_ingress(
            "either",
            &[
                ("whitelist-source-range", "127.0.0.1"),
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("satisfy", "any"),
            ],
            rule("either.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
        vec![secret_json("users", &[("auth", HTPASSWD)])],
        ProxyConfig::default(),
    )
    .await;
    let answer = request(&proxy, "either.test", "/", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// The bug classes that opened access rules in other controllers, one row each: the
/// protected route must refuse, and its backend must never see the request.
#[tokio::test]
async fn security_table_nothing_reaches_a_protected_backend_unprotected() {
    let admin = TestBackend::start("admin").await;
    let public = TestBackend::start("public").await;
    let auth = [("auth-type", "basic"), ("auth-secret", "users")];
    let ingresses = vec![
        nginx_ingress(
            "public",
            &[],
            rule("app.test", &[("/", "Prefix", "public")]),
        ),
        nginx_ingress(
            "admin",
            &auth,
            rule("app.test", &[("/admin", "Prefix", "admin")]),
        ),
        // Its Secret does not exist: 503, never open.
        nginx_ingress(
            "missing",
            &[("auth-type", "basic"), ("auth-secret", "nope")],
            rule("missing.test", &[("/", "Prefix", "admin")]),
        ),
        // Its Secret has no `auth` key.
        nginx_ingress(
            "nokey",
            &[("auth-type", "basic"), ("auth-secret", "nokey")],
            rule("nokey.test", &[("/", "Prefix", "admin")]),
        ),
        // Another namespace's Secret, without --allow-cross-namespace-resources.
        nginx_ingress(
            "cross",
            &[("auth-type", "basic"), ("auth-secret", "other/users")],
            rule("cross.test", &[("/", "Prefix", "admin")]),
        ),
        // A list that does not parse.
        nginx_ingress(
            "badlist",
            &[("whitelist-source-range", "10.0.0.0/8,everyone")],
            rule("badlist.test", &[("/", "Prefix", "admin")]),
        ),
    ];
    let (proxy, diagnostics) = serve(
        ingresses,
        vec![
            service_json("admin", &[admin.addr]),
            service_json("public", &[public.addr]),
        ],
        vec![
            secret_json("users", &[("auth", HTPASSWD)]),
            secret_json("nokey", &[("htpasswd", HTPASSWD)]),
        ],
        ProxyConfig::default(),
    )
    .await;
    for expected in [
        "default/nope does not exist",
        "no key \"auth\"",
        "another namespace",
        "everyone",
    ] {
        assert!(
            diagnostics.iter().any(|d| d.contains(expected)),
            "a Diagnostic says {expected:?}: {diagnostics:?}"
        );
    }
    let rows: &[(&str, &str, StatusCode)] = &[
        ("missing.test", "/", StatusCode::SERVICE_UNAVAILABLE),
        ("nokey.test", "/", StatusCode::SERVICE_UNAVAILABLE),
        ("cross.test", "/", StatusCode::SERVICE_UNAVAILABLE),
        ("badlist.test", "/", StatusCode::SERVICE_UNAVAILABLE),
        ("app.test", "/admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/admin/", StatusCode::UNAUTHORIZED),
        ("app.test", "/admin/users", StatusCode::UNAUTHORIZED),
        ("app.test", "/%61dmin", StatusCode::UNAUTHORIZED),
        ("app.test", "/%61%64min/x", StatusCode::UNAUTHORIZED),
        ("app.test", "/x/../admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/x/%2e%2e/admin", StatusCode::UNAUTHORIZED),
        ("app.test", "//admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/./admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/admin;x", StatusCode::UNAUTHORIZED),
        (
            "app.test",
            "/admin;jsessionid=1/users",
            StatusCode::UNAUTHORIZED,
        ),
        ("app.test", "/.;/admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/;/admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/public/..;/admin", StatusCode::UNAUTHORIZED),
        ("app.test", "/admin%2Fusers", StatusCode::UNAUTHORIZED),
        ("app.test", "/%2Fadmin", StatusCode::UNAUTHORIZED),
        // Paths are case-sensitive (the Ingress spec): /ADMIN is another path, which the
        // public backend serves — never the admin one.
        ("app.test", "/ADMIN", StatusCode::OK),
        ("app.test", "/public/..%2Fadmin", StatusCode::BAD_REQUEST),
    ];
    for (host, path, expected) in rows {
        let answer = request(&proxy, host, path, None, None).await;
        assert_eq!(answer.status, *expected, "{host}{path}");
    }
    assert_eq!(
        admin.requests.load(Ordering::SeqCst),
        0,
        "the admin backend saw nothing"
    );
    let allowed = request(&proxy, "app.test", "/x/../admin", Some(ALICE), None).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.echo().uri(), "/admin", "forwarded as routed");
}

/// The same rules for HTTP/2, HTTP/1.0 and WebSocket clients.
#[tokio::test]
async fn every_protocol_meets_the_same_rules() {
    let admin = TestBackend::start("admin").await;
    let (proxy, _) = serve(
        vec![nginx_ingress(
            "admin",
            &[("auth-type", "basic"), ("auth-secret", "users")],
            rule("app.test", &[("/admin", "Prefix", "admin")]),
        )],
        vec![service_json("admin", &[admin.addr])],
        vec![secret_json("users", &[("auth", HTPASSWD)])],
        ProxyConfig::default(),
    )
    .await;
    let mut h2 = http2_connect(proxy.addr).await;
    for path in ["/admin", "/%61dmin", "/x/../admin"] {
        let req = Request::get(format!("http://app.test{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = read_answer(h2.send_request(req).await.unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "h2 {path}");
    }
    let http10 = raw(
        proxy.addr,
        b"GET /x/../admin HTTP/1.0\r\nHost: app.test\r\n\r\n",
    )
    .await;
    assert!(http10.starts_with("HTTP/1.0 401"), "{http10}");
    // A WebSocket upgrade is asked for credentials like any request.
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let upgrade = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "ws://app.test/x/../admin/socket",
    )
    .unwrap();
    match tokio_tungstenite::client_async(upgrade, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        other => panic!("the upgrade was not refused: {other:?}"),
    }
    let with_password =
        format!("GET /admin HTTP/1.0\r\nHost: app.test\r\nAuthorization: {ALICE}\r\n\r\n");
    let http10 = raw(proxy.addr, with_password.as_bytes()).await;
    assert!(http10.starts_with("HTTP/1.0 200"), "{http10}");
    assert_eq!(admin.requests.load(Ordering::SeqCst), 1);
}

/// Sends `method path` with an `Origin`.
async fn from_origin(proxy: &TestProxy, method: &str, path: &str, origin: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.addr))
        .header(header::HOST, "cors.test")
        .header(header::ORIGIN, origin)
        .header("access-control-request-method", "PUT")
        .body(Full::default())
        .unwrap();
    send(&http1_client(), req).await
}

#[tokio::test]
async fn cors_preflights_are_answered_and_responses_carry_the_headers() {
    let web = TestBackend::start("web").await;
    let (proxy, diagnostics) = serve(
        vec![
            nginx_ingress(
                "listed",
                &[
                    ("enable-cors", "true"),
                    ("cors-allow-origin", "https://app.test, https://*.corp.test"),
                    ("cors-expose-headers", "X-Total"),
                    ("cors-max-age", "600"),
                    ("auth-type", "basic"),
                    ("auth-secret", "users"),
                ],
                rule("cors.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "everyone",
                &[("enable-cors", "true")],
                rule("cors.test", &[("/open", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
        vec![secret_json("users", &[("auth", HTPASSWD)])],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());

    // A preflight from a listed origin: 204 from weir, without credentials, before auth.
    for origin in ["https://app.test", "https://eu.corp.test"] {
        let answer = from_origin(&proxy, "OPTIONS", "/", origin).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{origin}");
        let h = &answer.headers;
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(
            h["access-control-allow-methods"],
            "GET, PUT, POST, DELETE, PATCH, OPTIONS"
        );
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("Authorization")
        );
        assert_eq!(h["access-control-expose-headers"], "X-Total");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["vary"], "Origin");
    }
    assert_eq!(
        web.requests.load(Ordering::SeqCst),
        0,
        "preflights stay at weir"
    );

    // Another origin: no CORS header at all; its OPTIONS is an ordinary request (here: 401).
    for origin in ["https://evil.test", "https://app.test.evil.test", "null"] {
        let answer = from_origin(&proxy, "OPTIONS", "/", origin).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{origin}");
        assert!(!answer.headers.contains_key("access-control-allow-origin"));
    }

    // Actual requests from a listed origin: the headers on the 401 and on the endpoint's 200.
    let denied = from_origin(&proxy, "GET", "/", "https://app.test").await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        denied.headers["access-control-allow-origin"],
        "https://app.test"
    );
    let req = Request::get(format!("http://{}/", proxy.addr))
        .header(header::HOST, "cors.test")
        .header(header::ORIGIN, "https://app.test")
        .header(header::AUTHORIZATION, ALICE)
        .body(Full::default())
        .unwrap();
    let answer = send(&http1_client(), req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(answer.echo().backend(), "web");

    // `*` (the default): every request gets `*`, every OPTIONS a 204.
    let open = from_origin(&proxy, "OPTIONS", "/open", "https://anyone.test").await;
    assert_eq!(open.status, StatusCode::NO_CONTENT);
    assert_eq!(open.headers["access-control-allow-origin"], "*");
    let open = from_origin(&proxy, "GET", "/open", "https://anyone.test").await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.headers["access-control-allow-origin"], "*");
}

/// Sends `n` GETs to `host` one after another and counts the answers by status.
async fn burst(proxy: &TestProxy, host: &str, n: usize) -> (usize, usize) {
    let client = http1_client();
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        match get(&client, proxy.addr, host, "/").await.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (ok, limited)
}

#[tokio::test]
async fn rate_limits_allow_the_burst_then_the_rate() {
    let web = TestBackend::start("web").await;
    let (proxy, diagnostics) = serve(
        vec![
            nginx_ingress(
                "limited",
                &[("limit-rps", "5"), ("limit-burst-multiplier", "2")],
                rule("limited.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "exempt",
                &[("limit-rps", "1"), ("limit-whitelist", "127.0.0.0/8")],
                rule("exempt.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
        vec![],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());
    // The burst: the request on schedule and 5 × 2 more; a request that slips in as a new
    // one falls due while they are sent is allowed too.
    let started = std::time::Instant::now();
    let (ok, limited) = burst(&proxy, "limited.test", 30).await;
    let elapsed = started.elapsed();
    let due = (elapsed.as_millis() / 200) as usize;
    assert!(
        (11..=11 + due).contains(&ok),
        "{ok} allowed of 30 in {elapsed:?}"
    );
    assert_eq!(ok + limited, 30);
    // The rate: over one more second of steady requests, about 5 get through.
    let client = http1_client();
    let second = std::time::Instant::now();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(10));
    let mut allowed = 0;
    while second.elapsed() < std::time::Duration::from_secs(1) {
        ticks.tick().await;
        if get(&client, proxy.addr, "limited.test", "/").await.status == StatusCode::OK {
            allowed += 1;
        }
    }
    assert!(
        (4..=6).contains(&allowed),
        "{allowed} allowed in 1 s at 5 rps"
    );
    // An exempt client is never limited.
    assert_eq!(burst(&proxy, "exempt.test", 30).await, (30, 0));
}

#[tokio::test]
async fn the_configmap_sets_the_rate_limit_status_and_global_source_lists() {
    let web = TestBackend::start("web").await;
    let defaults = weir::model::Defaults {
        limit_req_status: StatusCode::TOO_MANY_REQUESTS,
        deny_sources: weir::model::Global::On(weir::model::IpList::parse("127.0.0.0/8").unwrap()),
        ..weir::model::Defaults::default()
    };
    let config = BuildConfig {
        defaults,
        ..BuildConfig::default()
    };
    let built = build_table(
        vec![
            nginx_ingress(
                "limited",
                &[
                    ("limit-rps", "1"),
                    ("limit-burst-multiplier", "1"),
                    ("denylist-source-range", "10.0.0.1"),
                ],
                rule("limited.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "default",
                &[],
                rule("default.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![service_json("web", &[web.addr])],
        &config,
    );
    let proxy = TestProxy::start(ProxyConfig::default(), built.table).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            request(&proxy, "limited.test", "/", None, None)
                .await
                .status,
        );
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let denied = request(&proxy, "default.test", "/", None, None).await;
    assert_eq!(
        denied.status,
        StatusCode::FORBIDDEN,
        "the ConfigMap's denylist"
    );
}

#[tokio::test]
async fn limit_connections_caps_requests_in_progress_per_client() {
    let web = TestBackend::start("web").await;
    let (proxy, diagnostics) = serve(
        vec![nginx_ingress(
            "capped",
            &[("limit-connections", "2")],
            rule("capped.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[web.addr])],
        vec![],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());
    let client = http1_client();
    let slow = |proxy: &TestProxy| {
        let (client, addr) = (client.clone(), proxy.addr);
        async move {
            get(&client, addr, "capped.test", "/slow?ms=800")
                .await
                .status
        }
    };
    // Two slow requests in progress; a third one meanwhile is refused.
    let first = tokio::spawn(slow(&proxy));
    let second = tokio::spawn(slow(&proxy));
    wait_until(
        "both slow requests reached the backend",
        std::time::Duration::from_secs(5),
        || web.requests.load(Ordering::SeqCst) == 2,
    )
    .await;
    let third = request(&proxy, "capped.test", "/", None, None).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
    // Their places came back when their responses were sent.
    for _ in 0..3 {
        let answer = request(&proxy, "capped.test", "/", None, None).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn limit_rate_paces_a_response_after_its_first_bytes() {
    let web = TestBackend::start("web").await;
    let (proxy, _) = serve(
        vec![
            nginx_ingress(
                "paced",
                &[("limit-rate", "200"), ("limit-rate-after", "20")],
                rule("paced.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress("free", &[], rule("free.test", &[("/", "Prefix", "web")])),
        ],
        vec![service_json("web", &[web.addr])],
        vec![],
        ProxyConfig::default(),
    )
    .await;
    let client = http1_client();
    // 20 KiB at full speed, then 200 KiB at 200 KiB/s: about one second.
    let path = format!("/source?bytes={}", 220 * 1024);
    let started = std::time::Instant::now();
    let paced = get(&client, proxy.addr, "paced.test", &path).await;
    let took = started.elapsed();
    assert_eq!(paced.body.len(), 220 * 1024);
    assert!(
        took >= std::time::Duration::from_millis(900),
        "220 KiB took {took:?} at 200 KiB/s after 20 KiB"
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let started = std::time::Instant::now();
    let free = get(&client, proxy.addr, "free.test", &path).await;
    assert_eq!(free.body.len(), 220 * 1024);
    assert!(started.elapsed() < took, "without the limit it is faster");
}

#[tokio::test]
async fn a_websocket_holds_its_connection_place_until_its_tunnel_closes() {
    use common::ws::{HybridBackend, close_cleanly, ws_connect};
    let backend = HybridBackend::start().await;
    let (proxy, _) = serve(
        vec![nginx_ingress(
            "live",
            &[("limit-connections", "1")],
            rule("live.test", &[("/", "Prefix", "web")]),
        )],
        vec![service_json("web", &[backend.addr])],
        vec![],
        ProxyConfig::default(),
    )
    .await;
    let (mut ws, _) = ws_connect(proxy.addr, "live.test", "/live").await;
    let meanwhile = request(&proxy, "live.test", "/page", None, None).await;
    assert_eq!(meanwhile.status, StatusCode::SERVICE_UNAVAILABLE);
    close_cleanly(&mut ws).await.unwrap();
    drop(ws);
    // The tunnel's task ends just after the close; then the place is free again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let after = request(&proxy, "live.test", "/page", None, None).await;
        if after.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

//! External authentication end to end: Ingresses with `auth-url` read by weir's model, the real
//! proxy on a socket, real backends, and a real authentication server (`common::auth`) that
//! behaves like oauth2-proxy (`/oauth2/auth` answers 202 with `X-Auth-Request-*` headers for
//! a valid session cookie, 401 without one).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::auth::{AuthServer, SESSION};
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use weir::model::external_auth::Settings;
use weir::model::{BuildConfig, Defaults, ExternalAuth, Global};
use weir::proxy::ProxyConfig;

/// The proxy serving `ingresses` in front of backend `web` (with `defaults`, and the Secrets
/// and ConfigMaps `objects` in the cluster); also the build's diagnostics.
async fn serve_with(
    ingresses: Vec<serde_json::Value>,
    objects: Vec<serde_json::Value>,
    web: &TestBackend,
    defaults: Defaults,
) -> (TestProxy, Vec<String>) {
    let config = BuildConfig {
        defaults,
        ..BuildConfig::default()
    };
    let services = vec![service_json("web", &[web.addr])];
    let built = build_table_with(ingresses, services, objects, &config);
    let (table, diagnostics) = messages(built);
    (
        TestProxy::start(ProxyConfig::default(), table).await,
        diagnostics,
    )
}

async fn serve(ingresses: Vec<serde_json::Value>, web: &TestBackend) -> (TestProxy, Vec<String>) {
    serve_with(ingresses, Vec::new(), web, Defaults::default()).await
}

/// `method` on `host` + `path` with these extra headers.
async fn call(
    proxy: &TestProxy,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.addr))
        .header(header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(&http1_client(), req.body(Full::from("a body")).unwrap()).await
}

/// `GET` `host` + `path` with the session cookie the authentication server accepts.
async fn signed_in(proxy: &TestProxy, host: &str, path: &str) -> Answer {
    call(
        proxy,
        "GET",
        host,
        path,
        &[(header::COOKIE.as_str(), SESSION)],
    )
    .await
}

fn app(annotations: &[(&str, &str)]) -> serde_json::Value {
    nginx_ingress(
        "app",
        annotations,
        rule("app.test", &[("/", "Prefix", "web")]),
    )
}

#[tokio::test]
async fn an_oauth2_proxy_session_lets_the_request_through_with_the_user_s_headers() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let (proxy, diagnostics) = serve(
        vec![app(&[
            ("auth-url", &url),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
            (
                "auth-response-headers",
                "X-Auth-Request-User, X-Auth-Request-Email",
            ),
        ])],
        &web,
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());

    // No session: the sign-in redirect, with the auth server's cookies; the backend sees
    // nothing.
    let anonymous = call(&proxy, "GET", "app.test", "/dashboard?tab=1", &[]).await;
    assert_eq!(anonymous.status, StatusCode::FOUND);
    assert_eq!(
        anonymous.headers[header::LOCATION],
        "https://app.test/oauth2/start?rd=%2Fdashboard%3Ftab%3D1"
    );
    assert_eq!(
        anonymous.headers[header::SET_COOKIE],
        "_oauth2_proxy_csrf=c; Path=/"
    );
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);

    // A session: the backend answers, with the user's headers replacing a forged one.
    let signed_in = call(
        &proxy,
        "POST",
        "app.test",
        "/api/items?x=1",
        &[
            (header::COOKIE.as_str(), SESSION),
            ("x-auth-request-user", "mallory"),
            ("x-request-id", "req-42"),
            ("x-forwarded-for", "203.0.113.9"),
            ("ssl-client-subject-dn", "CN=admin"),
        ],
    )
    .await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let echo = signed_in.echo();
    assert_eq!(echo.header_all("x-auth-request-user"), ["alice"]);
    assert_eq!(
        echo.header("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(echo.header("host").as_deref(), Some("app.test"));
    assert_eq!(echo.0["body_len"], 6, "the body reaches the backend");
    assert_eq!(
        signed_in.headers[header::SET_COOKIE],
        "_oauth2_proxy=refreshed; Path=/; HttpOnly"
    );

    // What the auth server was asked: ingress-nginx's headers, no body, GET.
    let seen = auth.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/oauth2/auth");
    assert_eq!(seen.body_len, 0);
    let h = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(h("host").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        h("x-original-url").as_deref(),
        Some("http://app.test/api/items?x=1")
    );
    assert_eq!(h("x-original-method").as_deref(), Some("POST"));
    assert_eq!(
        h("x-auth-request-redirect").as_deref(),
        Some("/api/items?x=1")
    );
    assert_eq!(h("x-request-id").as_deref(), Some("req-42"));
    assert_eq!(echo.header("x-request-id").as_deref(), Some("req-42"));
    assert_eq!(
        h("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "the untrusted XFF is not passed"
    );
    assert_eq!(h("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(h("x-forwarded-host").as_deref(), Some("app.test"));
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(h("cookie").as_deref(), Some(SESSION));
    assert_eq!(h("content-length"), None);
    assert_eq!(h("x-original-uri"), None, "only with auth-method");
    assert_eq!(h("ssl-client-subject-dn"), None, "never the client's own");

    // The host is the one the request was routed by, not a Host header beside it.
    let raw_request = "GET http://app.test/abs HTTP/1.1\r\nHost: evil.test\r\nCookie: _oauth2_proxy=valid-session\r\nConnection: close\r\n\r\n";
    let answer = raw(proxy.addr, raw_request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = auth.last();
    assert_eq!(seen.headers["x-original-url"], "http://app.test/abs");
    assert_eq!(seen.headers["x-forwarded-host"], "app.test");

    let samples = common::metrics::parse(&proxy.state.metrics().encode());
    let denied = common::metrics::value(
        &samples,
        "weir_requests_denied_total",
        &[
            ("namespace", "default"),
            ("ingress", "app"),
            ("reason", "auth"),
        ],
    );
    assert_eq!(denied, 1.0);
    let allowed = common::metrics::value(
        &samples,
        "weir_external_auth_duration_seconds_count",
        &[("outcome", "allowed")],
    );
    assert_eq!(
        allowed, 2.0,
        "the session's request and the absolute-form one"
    );
}

#[tokio::test]
async fn a_config_map_s_headers_are_set_on_the_sub_request() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let headers = config_map_json(
        "auth-headers",
        &[
            ("X-Tenant", "blue"),
            ("X-Asked-For", "$host$request_uri"),
            ("X-Original-Method", "REPLACED"),
            ("X-Sent-From", ""),
            ("Connection", "close"),
        ],
    );
    let (proxy, diagnostics) = serve_with(
        vec![
            app(&[
                ("auth-url", &url),
                ("auth-proxy-set-headers", "auth-headers"),
            ]),
            nginx_ingress(
                "missing",
                &[("auth-url", &url), ("auth-proxy-set-headers", "not-there")],
                rule("missing.test", &[("/", "Prefix", "web")]),
            ),
        ],
        vec![headers],
        &web,
        Defaults::default(),
    )
    .await;
    assert_eq!(diagnostics.len(), 2, "{diagnostics:?}");
    assert!(
        diagnostics.iter().any(|d| d.contains("\"Connection\"")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics
            .iter()
            .any(|d| d.contains("the ConfigMap default/not-there does not exist")),
        "{diagnostics:?}"
    );

    let answer = call(
        &proxy,
        "GET",
        "app.test",
        "/dash?x=1",
        &[(header::COOKIE.as_str(), SESSION), ("x-tenant", "forged")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = auth.last();
    let h = |name: &str| {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(h("x-tenant"), ["blue"], "replaces the client's");
    assert_eq!(h("x-asked-for"), ["app.test/dash?x=1"]);
    assert_eq!(h("x-original-method"), ["REPLACED"], "replaces weir's own");
    assert!(h("x-sent-from").is_empty(), "an empty value is not sent");
    assert_ne!(h("connection"), ["close"]);
    assert_eq!(
        answer.echo().header("x-tenant").as_deref(),
        Some("forged"),
        "only the sub-request gets them"
    );

    // A ConfigMap that does not exist: refused, the service never asked.
    let asked = auth.asked();
    let refused = signed_in(&proxy, "missing.test", "/").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(auth.asked(), asked);
}

#[tokio::test]
async fn without_a_sign_in_page_the_service_s_401_reaches_the_client() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let (proxy, _) = serve(
        vec![app(&[("auth-url", &url), ("auth-method", "POST")])],
        &web,
    )
    .await;
    let answer = call(&proxy, "GET", "app.test", "/x", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"oauth2\""
    );
    assert!(
        answer.headers.get(header::SET_COOKIE).is_none(),
        "not without always-set-cookie"
    );
    let seen = auth.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.headers["x-original-uri"], "/x");
    assert_eq!(seen.headers["x-scheme"], "http");
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);

    let (always, _) = serve(
        vec![app(&[
            ("auth-url", &url),
            ("auth-always-set-cookie", "true"),
        ])],
        &web,
    )
    .await;
    let answer = call(&always, "GET", "app.test", "/x", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers[header::SET_COOKIE],
        "_oauth2_proxy_csrf=c; Path=/"
    );
}

#[tokio::test]
async fn a_failing_or_refusing_service_never_lets_a_request_pass() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let silent = Unanswering::new().await;
    let cases: Vec<(String, StatusCode)> = vec![
        (auth.url("/forbidden"), StatusCode::FORBIDDEN),
        (auth.url("/error"), StatusCode::INTERNAL_SERVER_ERROR),
        (auth.url("/moved"), StatusCode::INTERNAL_SERVER_ERROR),
        (auth.url("/nowhere"), StatusCode::INTERNAL_SERVER_ERROR),
        (
            format!("http://{}/auth", refusing_addr()),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            format!("http://{}/auth", silent.addr),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (auth.url("/hang"), StatusCode::INTERNAL_SERVER_ERROR),
        (
            "http://no-such-host.invalid/auth".to_owned(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (url, expected) in cases {
        let (proxy, _) = serve(
            vec![app(&[
                ("auth-url", &url),
                ("proxy-connect-timeout", "1"),
                ("proxy-read-timeout", "1"),
            ])],
            &web,
        )
        .await;
        let started = Instant::now();
        let answer = signed_in(&proxy, "app.test", "/").await;
        assert_eq!(answer.status, expected, "{url}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: bounded by the timeouts"
        );
    }
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_invalid_auth_url_fails_closed() {
    let web = TestBackend::start("web").await;
    for (key, value) in [
        ("auth-url", "auth.svc:4180/oauth2"),
        ("auth-url", "http://$nonsense/"),
        ("auth-method", "FETCH"),
    ] {
        let mut annotations = vec![("auth-url", "http://auth.test/")];
        annotations.retain(|(k, _)| *k != key);
        annotations.push((key, value));
        let (proxy, diagnostics) = serve(vec![app(&annotations)], &web).await;
        let answer = call(&proxy, "GET", "app.test", "/", &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{key}: {value}"
        );
        assert!(
            diagnostics
                .iter()
                .any(|d| d.contains(key) && d.contains("503")),
            "{diagnostics:?}"
        );
    }
    assert_eq!(web.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_service_cannot_set_host_or_hop_by_hop_headers_on_the_request() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/evil");
    let (proxy, diagnostics) = serve(
        vec![app(&[
            ("auth-url", &url),
            (
                "auth-response-headers",
                "X-Auth-Request-User, Host, Transfer-Encoding, Keep-Alive, Upgrade, Connection",
            ),
        ])],
        &web,
    )
    .await;
    assert_eq!(diagnostics.len(), 5, "{diagnostics:#?}");
    let answer = call(&proxy, "POST", "app.test", "/", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.echo();
    assert_eq!(echo.header("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(echo.header("host").as_deref(), Some("app.test"));
    assert_eq!(
        echo.0["body_len"], 6,
        "the body is framed as the client sent it"
    );
    for name in ["upgrade", "proxy-authenticate", "transfer-encoding"] {
        assert_eq!(echo.header(name), None, "{name}");
    }
}

#[tokio::test]
async fn answers_are_cached_per_key_for_their_duration() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/cacheable");
    let (proxy, _) = serve(
        vec![app(&[
            ("auth-url", &url),
            ("auth-cache-key", "$http_authorization"),
            ("auth-cache-duration", "200 1m"),
        ])],
        &web,
    )
    .await;
    let with = |token: &'static str| [(header::AUTHORIZATION.as_str(), token)];
    for _ in 0..3 {
        let answer = call(&proxy, "GET", "app.test", "/", &with("Bearer a")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(auth.asked(), 1, "one answer serves the same key");
    call(&proxy, "GET", "app.test", "/", &with("Bearer b")).await;
    assert_eq!(auth.asked(), 2, "another key asks again");
    for _ in 0..2 {
        let answer = call(&proxy, "GET", "app.test", "/", &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(auth.asked(), 4, "401 is not in \"200 1m\"");
}

#[tokio::test]
async fn global_auth_covers_ingresses_except_opted_out_ones_and_no_auth_locations() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let (global, _) = ExternalAuth::parse(
        &Settings {
            url: &url,
            ..Settings::default()
        },
        true,
    )
    .unwrap();
    let defaults = Defaults {
        global_auth: Global::On(Arc::new(global)),
        ..Defaults::default()
    };
    let (proxy, _) = serve_with(
        vec![
            nginx_ingress(
                "covered",
                &[],
                rule(
                    "covered.test",
                    &[
                        ("/", "Prefix", "web"),
                        ("/.well-known/acme-challenge", "Prefix", "web"),
                    ],
                ),
            ),
            nginx_ingress(
                "public",
                &[("enable-global-auth", "false")],
                rule("public.test", &[("/", "Prefix", "web")]),
            ),
        ],
        Vec::new(),
        &web,
        defaults,
    )
    .await;
    let status = |host: &'static str, path: &'static str| {
        let proxy = &proxy;
        async move { call(proxy, "GET", host, path, &[]).await.status }
    };
    assert_eq!(status("covered.test", "/").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status("covered.test", "/.well-known/acme-challenge/token").await,
        StatusCode::OK
    );
    assert_eq!(status("public.test", "/").await, StatusCode::OK);
    let session = signed_in(&proxy, "covered.test", "/").await;
    assert_eq!(session.status, StatusCode::OK);
}

#[tokio::test]
async fn satisfy_any_lets_an_allowed_address_in_without_asking() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let (proxy, _) = serve(
        vec![
            nginx_ingress(
                "office",
                &[
                    ("auth-url", &url),
                    ("auth-response-headers", "X-Auth-Request-User"),
                    ("whitelist-source-range", "127.0.0.0/8"),
                    ("satisfy", "any"),
                ],
                rule("office.test", &[("/", "Prefix", "web")]),
            ),
            nginx_ingress(
                "remote",
                &[
                    ("auth-url", &url),
                    ("whitelist-source-range", "10.0.0.0/8"),
                    ("satisfy", "any"),
                ],
                rule("remote.test", &[("/", "Prefix", "web")]),
            ),
        ],
        &web,
    )
    .await;
    let office = call(
        &proxy,
        "GET",
        "office.test",
        "/",
        &[("x-auth-request-user", "mallory")],
    )
    .await;
    assert_eq!(office.status, StatusCode::OK);
    assert_eq!(auth.asked(), 0);
    assert_eq!(
        office.echo().header("x-auth-request-user"),
        None,
        "a header the service would set is never the client's"
    );
    assert_eq!(
        call(&proxy, "GET", "remote.test", "/", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let with_session = [(header::COOKIE.as_str(), SESSION)];
    assert_eq!(
        call(&proxy, "GET", "remote.test", "/", &with_session)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn connections_to_the_service_are_reused() {
    let auth = AuthServer::start().await;
    let web = TestBackend::start("web").await;
    let url = auth.url("/oauth2/auth");
    let (proxy, _) = serve(vec![app(&[("auth-url", &url)])], &web).await;
    for _ in 0..5 {
        let answer = signed_in(&proxy, "app.test", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    assert_eq!(auth.asked(), 5);
    assert_eq!(auth.connections(), 1, "one pooled connection");
}

#[tokio::test]
async fn an_https_service_is_verified_against_the_trust_store_weir_is_given() {
    use common::manifests::{ingress_yaml_with, service_yaml, write};
    let cert = common::tls::cert_for(&["127.0.0.1"]);
    let auth = AuthServer::start_tls(&cert).await;
    let web = TestBackend::start("web").await;
    let manifests = tempfile::tempdir().unwrap();
    write(
        manifests.path(),
        "web.yaml",
        &service_yaml("web", &[web.addr]),
    );
    let url = auth.url("/oauth2/auth");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let annotations = [("nginx.ingress.kubernetes.io/auth-url", url.as_str())];
    let ingress = ingress_yaml_with("app", "app.test", "/", "web", &annotations);
    write(manifests.path(), "app.yaml", &ingress);
    let trust = tempfile::tempdir().unwrap();
    let ours = trust.path().join("ours.pem");
    std::fs::write(&ours, &cert.cert_pem).unwrap();
    let other = trust.path().join("other.pem");
    std::fs::write(&other, common::tls::cert_for(&["127.0.0.1"]).cert_pem).unwrap();

    for (bundle, status) in [
        (&ours, StatusCode::OK),
        (&other, StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let weir = common::process::WeirProcess::spawn_with_env(
            &["--manifests", manifests.path().to_str().unwrap()],
            &[
                ("RUST_LOG", "info"),
                ("SSL_CERT_FILE", bundle.to_str().unwrap()),
            ],
        );
        weir.until_ready().await;
        let req = Request::get(format!("http://{}/", weir.http))
            .header(header::HOST, "app.test")
            .header(header::COOKIE, SESSION)
            .body(Full::default())
            .unwrap();
        let answer = send(&http1_client(), req).await;
        assert_eq!(answer.status, status, "{bundle:?}; log:\n{}", weir.log());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The line reaches the log through a pipe: wait for it rather than read at once.
            weir.wait_for_line("the certificate error", Duration::from_secs(5), |line| {
                line.contains("invalid peer certificate")
            })
            .await;
        }
    }
    assert_eq!(
        auth.asked(),
        1,
        "only the verified connection reached the service"
    );
}

//! TLS to endpoints, end to end: Ingresses with `backend-protocol: HTTPS` (or
//! `secure-backends`) and the `proxy-ssl-*` annotations read by weir's model with their
//! Secrets, the real proxy, and real HTTPS endpoints (`common::tls::TlsBackend`: rustls +
//! hyper) that record the SNI, the client certificate and the TLS version of each handshake.
//!
//! Contract: verification is off by default (any certificate); `proxy-ssl-verify: on` checks
//! the chain against the Secret's `ca.crt`, within `proxy-ssl-verify-depth` (default 1), and
//! the name `proxy-ssl-name` (default `<service>.<namespace>.svc`); SNI only with
//! `proxy-ssl-server-name: on`; the Secret's `tls.crt`/`tls.key` is the client certificate;
//! `proxy-ssl-protocols` limits the versions. A failed verification or handshake answers 502
//! and counts in `weir_upstream_errors_total{reason="tls_verify"|"tls_handshake"}`; settings
//! that cannot be set up answer 503.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, ServerName, pem::PemObject};

use common::metrics::{parse, sum};
use common::tls::{AcceptAny, Cert, TestCa, TlsBackend, cert_for, server_config};
use common::*;
use weir::model::BuildConfig;
use weir::proxy::ProxyConfig;

const LIMIT: Duration = Duration::from_secs(10);

/// An Ingress `name` routing `<name>.test` to Service `service` with
/// `backend-protocol: HTTPS` and the ingress-nginx annotations `more`.
fn https_ingress(name: &str, service: &str, more: &[(&str, &str)]) -> serde_json::Value {
    let mut annotations = vec![("backend-protocol", "HTTPS")];
    annotations.extend_from_slice(more);
    nginx_ingress(
        name,
        &annotations,
        rule(&format!("{name}.test"), &[("/", "Prefix", service)]),
    )
}

/// The proxy serving `ingresses` over Services `(name, endpoint)` with these Secrets; also
/// the build's diagnostics.
async fn serve(
    ingresses: Vec<serde_json::Value>,
    services: &[(&str, SocketAddr)],
    secrets: Vec<serde_json::Value>,
) -> (TestProxy, Vec<String>) {
    let services = services
        .iter()
        .map(|(name, addr)| service_json(name, &[*addr]))
        .collect();
    let built = build_table_with(ingresses, services, secrets, &BuildConfig::default());
    let (table, diagnostics) = messages(built);
    (
        TestProxy::start(ProxyConfig::default(), table).await,
        diagnostics,
    )
}

/// Like [`serve`], one Service `web` on `backend`; the build must report nothing.
async fn serve_web(
    ingresses: Vec<serde_json::Value>,
    backend: &TlsBackend,
    secrets: Vec<serde_json::Value>,
) -> TestProxy {
    let (proxy, diagnostics) = serve(ingresses, &[("web", backend.addr)], secrets).await;
    assert_eq!(diagnostics, Vec::<String>::new());
    proxy
}

/// `GET /` on `<name>.test` through the proxy.
async fn get_site(proxy: &TestProxy, name: &str) -> Answer {
    get(&http1_client(), proxy.addr, &format!("{name}.test"), "/").await
}

/// `weir_upstream_errors_total` for Service `default/<service>` and `reason`.
fn upstream_errors(proxy: &TestProxy, service: &str, reason: &str) -> f64 {
    let samples = parse(&proxy.state.metrics().encode());
    sum(
        &samples,
        "weir_upstream_errors_total",
        &[
            ("namespace", "default"),
            ("service", service),
            ("reason", reason),
        ],
    )
}

/// Waits until a `reason` error towards `service` was counted; then no error of the other
/// reason may have been.
async fn expect_upstream_error(proxy: &TestProxy, service: &str, reason: &str) {
    wait_until(&format!("a {reason} error is counted"), LIMIT, || {
        upstream_errors(proxy, service, reason) >= 1.0
    })
    .await;
    let other = if reason == "tls_verify" {
        "tls_handshake"
    } else {
        "tls_verify"
    };
    assert_eq!(upstream_errors(proxy, service, other), 0.0, "not {other}");
}

/// A Secret `name` with a `ca.crt` (and a client certificate when `identity`).
fn ca_secret(name: &str, ca: &TestCa, identity: Option<&Cert>) -> serde_json::Value {
    let ca = ca.pem();
    let mut data = vec![("ca.crt", ca.as_str())];
    if let Some(identity) = identity {
        data.push(("tls.crt", &identity.cert_pem));
        data.push(("tls.key", &identity.key_pem));
    }
    secret_json(name, &data)
}

/// An HTTPS endpoint `name` presenting `cert`, offering ALPN h2 and http/1.1 (weir must pick
/// HTTP/1.1 for HTTPS).
async fn https_backend(name: &str, cert: &Cert) -> TlsBackend {
    TlsBackend::start(name, server_config(cert, None, &[], &[b"h2", b"http/1.1"])).await
}

/// Asserts that the answer came from the backend `name` over HTTP/1.1.
#[track_caller]
fn assert_served_by(answer: &Answer, name: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let echo = answer.echo();
    assert_eq!(echo.backend(), name);
    assert_eq!(echo.0["version"], "HTTP/1.1");
}

// ---------------------------------------------------------------------------------------
// The fixture, without weir.

/// GET `/` from `addr` over TLS with SNI `sni` (an IP address sends none), presenting
/// `identity`; the status.
async fn direct_get(addr: SocketAddr, sni: &str, identity: Option<&Cert>) -> Option<StatusCode> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny));
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(cert) => builder
            .with_client_auth_cert(
                vec![cert.der.clone().into()],
                PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "direct.test")
        .body(Full::<bytes::Bytes>::default())
        .unwrap();
    Some(sender.send_request(req).await.ok()?.status())
}

#[tokio::test]
async fn the_tls_backend_fixture_records_sni_and_client_certificates() {
    let _ = test_certs(); // installs the crypto provider
    let backend = https_backend("secure", &cert_for(&["secure.test"])).await;
    assert_eq!(
        direct_get(backend.addr, "secure.test", None).await,
        Some(StatusCode::OK)
    );
    assert_eq!(backend.seen.last().sni.as_deref(), Some("secure.test"));
    assert_eq!(backend.seen.last().client_cert, None);
    assert_eq!(
        direct_get(backend.addr, "127.0.0.1", None).await,
        Some(StatusCode::OK)
    );
    assert_eq!(backend.seen.last().sni, None, "an IP address sends no SNI");

    let clients = TestCa::new("clients");
    let alice = clients.client("alice");
    let config = server_config(&cert_for(&["mtls.test"]), Some(&clients.pem()), &[], &[]);
    let mtls = TlsBackend::start("mtls", config).await;
    assert_eq!(
        direct_get(mtls.addr, "mtls.test", Some(&alice)).await,
        Some(StatusCode::OK)
    );
    assert_eq!(mtls.seen.last().client_cert.as_ref(), Some(&alice.der));
    assert_eq!(direct_get(mtls.addr, "mtls.test", None).await, None);
    wait_until("the refused handshake is recorded", LIMIT, || {
        mtls.seen.failures.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(mtls.seen.handshakes().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Without verification.

#[tokio::test]
async fn https_without_verification_accepts_any_certificate_and_sends_no_sni() {
    let backend = https_backend("secure", &cert_for(&["somewhere.else"])).await;
    let proxy = serve_web(vec![https_ingress("app", "web", &[])], &backend, vec![]).await;
    let answer = get_site(&proxy, "app").await;
    assert_served_by(&answer, "secure");
    let handshake = backend.seen.last();
    assert_eq!(
        handshake.sni, None,
        "proxy-ssl-server-name is off by default"
    );
    assert_eq!(handshake.client_cert, None);
    assert_ne!(
        handshake.alpn.as_deref(),
        Some(&b"h2"[..]),
        "HTTPS is HTTP/1.1"
    );
}

#[tokio::test]
async fn secure_backends_true_means_https() {
    let backend = https_backend("secure", &cert_for(&["somewhere.else"])).await;
    let ingress = nginx_ingress(
        "app",
        &[("secure-backends", "true")],
        rule("app.test", &[("/", "Prefix", "web")]),
    );
    let proxy = serve_web(vec![ingress], &backend, vec![]).await;
    assert_served_by(&get_site(&proxy, "app").await, "secure");
    assert_eq!(backend.seen.handshakes().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Verification.

#[tokio::test]
async fn verify_on_with_the_right_ca_reaches_the_backend() {
    let ca = TestCa::new("upstream CA");
    let backend = https_backend("secure", &ca.server(&["web.default.svc"])).await;
    let proxy = serve_web(
        vec![
            https_ingress(
                "qualified",
                "web",
                &[
                    ("proxy-ssl-verify", "on"),
                    ("proxy-ssl-secret", "default/upstream-ca"),
                ],
            ),
            https_ingress(
                "plain",
                "web",
                &[
                    ("proxy-ssl-verify", "on"),
                    ("proxy-ssl-secret", "upstream-ca"),
                ],
            ),
        ],
        &backend,
        vec![ca_secret("upstream-ca", &ca, None)],
    )
    .await;
    assert_served_by(&get_site(&proxy, "qualified").await, "secure");
    assert_served_by(&get_site(&proxy, "plain").await, "secure");
    assert_eq!(upstream_errors(&proxy, "web", "tls_verify"), 0.0);
}

#[tokio::test]
async fn verify_on_with_another_ca_answers_502_and_counts_a_tls_verify_error() {
    let (ca, other) = (TestCa::new("upstream CA"), TestCa::new("another CA"));
    let backend = https_backend("secure", &ca.server(&["web.default.svc"])).await;
    let annotations = [("proxy-ssl-verify", "on"), ("proxy-ssl-secret", "other-ca")];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![ca_secret("other-ca", &other, None)],
    )
    .await;
    let answer = get_site(&proxy, "app").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    expect_upstream_error(&proxy, "web", "tls_verify").await;
    assert!(backend.seen.handshakes().is_empty(), "weir gave up");
}

#[tokio::test]
async fn verify_on_with_a_certificate_for_another_name_answers_502() {
    let ca = TestCa::new("upstream CA");
    let backend = https_backend("secure", &ca.server(&["other.example"])).await;
    let annotations = [
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-secret", "upstream-ca"),
    ];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![ca_secret("upstream-ca", &ca, None)],
    )
    .await;
    let answer = get_site(&proxy, "app").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    expect_upstream_error(&proxy, "web", "tls_verify").await;
}

#[tokio::test]
async fn proxy_ssl_name_is_the_name_verified_and_without_sni_on_it_is_not_sent() {
    let ca = TestCa::new("upstream CA");
    let backend = https_backend("secure", &ca.server(&["backend.internal"])).await;
    let annotations = [
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-secret", "upstream-ca"),
        ("proxy-ssl-name", "backend.internal"),
    ];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![ca_secret("upstream-ca", &ca, None)],
    )
    .await;
    assert_served_by(&get_site(&proxy, "app").await, "secure");
    assert_eq!(backend.seen.last().sni, None);
}

#[tokio::test]
async fn proxy_ssl_server_name_on_sends_proxy_ssl_name_as_sni() {
    let ca = TestCa::new("upstream CA");
    let backend = https_backend("secure", &ca.server(&["backend.internal"])).await;
    let annotations = [
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-secret", "upstream-ca"),
        ("proxy-ssl-name", "backend.internal"),
        ("proxy-ssl-server-name", "on"),
    ];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![ca_secret("upstream-ca", &ca, None)],
    )
    .await;
    assert_served_by(&get_site(&proxy, "app").await, "secure");
    assert_eq!(backend.seen.last().sni.as_deref(), Some("backend.internal"));
}

#[tokio::test]
async fn proxy_ssl_server_name_on_without_a_name_sends_the_service_s_dns_name() {
    let backend = https_backend("secure", &cert_for(&["somewhere.else"])).await;
    let annotations = [("proxy-ssl-server-name", "on")];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![],
    )
    .await;
    assert_served_by(&get_site(&proxy, "app").await, "secure");
    assert_eq!(backend.seen.last().sni.as_deref(), Some("web.default.svc"));
}

#[tokio::test]
async fn verify_on_with_a_secret_without_ca_crt_fails_closed_with_503() {
    let backend = https_backend("secure", &cert_for(&["web.default.svc"])).await;
    let identity = cert_for(&["client"]);
    let secret = secret_json(
        "no-ca",
        &[
            ("tls.crt", &identity.cert_pem),
            ("tls.key", &identity.key_pem),
        ],
    );
    let annotations = [("proxy-ssl-verify", "on"), ("proxy-ssl-secret", "no-ca")];
    let (proxy, diagnostics) = serve(
        vec![https_ingress("app", "web", &annotations)],
        &[("web", backend.addr)],
        vec![secret],
    )
    .await;
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert!(diagnostics[0].contains("ca.crt"), "{diagnostics:#?}");
    let answer = get_site(&proxy, "app").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        backend.seen.connections.load(Ordering::SeqCst),
        0,
        "the endpoint is never contacted"
    );
}

#[tokio::test]
async fn verify_depth_counts_the_certificates_above_the_backend_s_own() {
    let root = TestCa::new("root CA");
    let intermediate = root.intermediate("intermediate CA");
    let mut cert = intermediate.server(&["backend.internal"]);
    cert.cert_pem.push_str(&intermediate.pem());
    let backend = https_backend("secure", &cert).await;
    let verify = [
        ("proxy-ssl-verify", "on"),
        ("proxy-ssl-secret", "root-ca"),
        ("proxy-ssl-name", "backend.internal"),
    ];
    let mut deep = verify.to_vec();
    deep.push(("proxy-ssl-verify-depth", "2"));
    let (proxy, diagnostics) = serve(
        vec![
            https_ingress("shallow", "shallow", &verify),
            https_ingress("deep", "deep", &deep),
        ],
        &[("shallow", backend.addr), ("deep", backend.addr)],
        vec![ca_secret("root-ca", &root, None)],
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());
    // Depth 1 (the default): only a certificate issued by a CA of ca.crt.
    let answer = get_site(&proxy, "shallow").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    expect_upstream_error(&proxy, "shallow", "tls_verify").await;
    // Depth 2: through one intermediate.
    assert_served_by(&get_site(&proxy, "deep").await, "secure");
}

// ---------------------------------------------------------------------------------------
// Client certificates and versions.

#[tokio::test]
async fn a_backend_demanding_a_client_certificate_gets_the_secret_s_tls_crt() {
    let (servers, clients) = (TestCa::new("servers"), TestCa::new("clients"));
    let identity = clients.client("weir");
    let config = server_config(
        &servers.server(&["web.default.svc"]),
        Some(&clients.pem()),
        &[],
        &[],
    );
    let backend = TlsBackend::start("mtls", config).await;
    let annotations = [("proxy-ssl-verify", "on"), ("proxy-ssl-secret", "upstream")];
    let proxy = serve_web(
        vec![https_ingress("app", "web", &annotations)],
        &backend,
        vec![ca_secret("upstream", &servers, Some(&identity))],
    )
    .await;
    assert_served_by(&get_site(&proxy, "app").await, "mtls");
    assert_eq!(
        backend.seen.last().client_cert.as_ref(),
        Some(&identity.der),
        "weir presented the Secret's tls.crt"
    );
}

#[tokio::test]
async fn a_backend_demanding_a_client_certificate_refuses_weir_without_one() {
    let clients = TestCa::new("clients");
    let config = server_config(
        &cert_for(&["web.default.svc"]),
        Some(&clients.pem()),
        &[],
        &[],
    );
    let backend = TlsBackend::start("mtls", config).await;
    let proxy = serve_web(vec![https_ingress("app", "web", &[])], &backend, vec![]).await;
    let answer = get_site(&proxy, "app").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert!(backend.seen.handshakes().is_empty());
}

#[tokio::test]
async fn proxy_ssl_protocols_limits_the_tls_versions_offered() {
    let cert = cert_for(&["web.default.svc"]);
    let tls12 = TlsBackend::start(
        "tls12",
        server_config(&cert, None, &[&rustls::version::TLS12], &[]),
    )
    .await;
    let tls13 = TlsBackend::start(
        "tls13",
        server_config(&cert, None, &[&rustls::version::TLS13], &[]),
    )
    .await;
    let (proxy, diagnostics) = serve(
        vec![
            https_ingress("any12", "old", &[]),
            https_ingress(
                "only13",
                "old-refused",
                &[("proxy-ssl-protocols", "TLSv1.3")],
            ),
            https_ingress("any13", "new", &[]),
            https_ingress(
                "only12",
                "new-refused",
                &[("proxy-ssl-protocols", "TLSv1.2")],
            ),
        ],
        &[
            ("old", tls12.addr),
            ("old-refused", tls12.addr),
            ("new", tls13.addr),
            ("new-refused", tls13.addr),
        ],
        vec![],
    )
    .await;
    assert_eq!(diagnostics, Vec::<String>::new());

    // The default offers both.
    assert_served_by(&get_site(&proxy, "any12").await, "tls12");
    assert_eq!(
        tls12.seen.last().version,
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_served_by(&get_site(&proxy, "any13").await, "tls13");
    assert_eq!(
        tls13.seen.last().version,
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    // One version only: no common version, no connection.
    for (site, service) in [("only13", "old-refused"), ("only12", "new-refused")] {
        let answer = get_site(&proxy, site).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{site}: {}",
            answer.text()
        );
        expect_upstream_error(&proxy, service, "tls_handshake").await;
    }
    assert_eq!(tls12.seen.handshakes().len(), 1);
    assert_eq!(tls13.seen.handshakes().len(), 1);
}

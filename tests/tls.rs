//! TLS termination against real TLS clients: certificates by SNI, HTTP/2 by ALPN, bad Secrets,
//! rotation under load.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Secret;
use tokio::net::TcpStream;

use common::tls::*;
use common::*;
use weir::model::{ObjectKind, ObjectRef, PathRule, TlsBinding};
use weir::proxy::ProxyConfig;

/// A TLS Secret, shared as an `Input` holds it.
fn secret(name: &str, cert: &Cert) -> Arc<Secret> {
    let data = [
        (
            "tls.crt".to_owned(),
            k8s_openapi::ByteString(cert.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            k8s_openapi::ByteString(cert.key_pem.clone().into_bytes()),
        ),
    ];
    Arc::new(Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data.into()),
        ..Default::default()
    })
}

fn binding(host: &str, secret: &str) -> TlsBinding {
    TlsBinding {
        host: host.to_owned(),
        secret: ObjectRef::new(ObjectKind::Secret, "default", secret),
        ingress: ObjectRef::new(ObjectKind::Ingress, "default", "tls-test"),
    }
}

async fn start(backend: SocketAddr, bindings: &[TlsBinding], secrets: &[Arc<Secret>]) -> TlsProxy {
    start_with(
        table(&[("", PathRule::prefix("/"), "s", vec![backend])]),
        bindings,
        secrets,
    )
    .await
}

async fn start_with(
    routes: weir::model::RouteTable,
    bindings: &[TlsBinding],
    secrets: &[Arc<Secret>],
) -> TlsProxy {
    start_tls_proxy(ProxyConfig::default(), routes, bindings, secrets).await
}

#[tokio::test]
async fn certificates_are_chosen_by_sni_exact_then_wildcard_then_default() {
    let backend = TestBackend::start("b").await;
    let (a, wild) = (
        cert_for(&["a.example.com"]),
        cert_for(&["*.wild.example.com"]),
    );
    let proxy = start(
        backend.addr,
        &[
            binding("a.example.com", "a"),
            binding("*.wild.example.com", "wild"),
        ],
        &[secret("a", &a), secret("wild", &wild)],
    )
    .await;
    let cases: [(&str, &[u8]); 6] = [
        ("a.example.com", &a.der),
        ("A.Example.COM", &a.der),
        ("x.wild.example.com", &wild.der),
        ("y.x.wild.example.com", &proxy.default_der),
        ("unknown.example.com", &proxy.default_der),
        // An IP address as the name: the client sends no SNI.
        ("127.0.0.1", &proxy.default_der),
    ];
    for (sni, want) in cases {
        let (_, leaf) = handshake(proxy.addr, sni, &[b"http/1.1"]).await;
        assert_eq!(leaf, want, "certificate for SNI {sni}");
    }
}

#[tokio::test]
async fn http2_and_http1_over_tls_reach_the_backend_with_https_forwarding_headers() {
    let backend = TestBackend::start("b").await;
    let a = cert_for(&["a.example.com"]);
    let proxy = start(
        backend.addr,
        &[binding("a.example.com", "a")],
        &[secret("a", &a)],
    )
    .await;

    let (stream, _) = handshake(proxy.addr, "a.example.com", &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://a.example.com/over/h2?x=1")
        .body(Full::<Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    let echo = answer.echo();
    assert_eq!(echo.uri(), "/over/h2?x=1");
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(echo.header("host").as_deref(), Some("a.example.com"));

    let (stream, _) = handshake(proxy.addr, "a.example.com", &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/over/h1")
        .header("host", "a.example.com")
        .body(Full::<Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.echo().header("x-forwarded-proto").as_deref(),
        Some("https")
    );
}

#[tokio::test]
async fn a_bad_secret_gets_a_diagnostic_and_its_host_the_default_certificate() {
    let backend = TestBackend::start("b").await;
    let (good, other) = (
        cert_for(&["good.example.com"]),
        cert_for(&["other.example.com"]),
    );
    let mut broken = secret("broken", &good);
    Arc::make_mut(&mut broken).data.as_mut().unwrap().insert(
        "tls.key".into(),
        k8s_openapi::ByteString(b"not a key".to_vec()),
    );
    let bindings = [
        binding("good.example.com", "good"),
        binding("broken.example.com", "broken"),
        binding("wrong.example.com", "other"),
        binding("missing.example.com", "missing"),
    ];
    let secrets = [secret("good", &good), broken, secret("other", &other)];
    let default = weir::tls::self_signed_default().unwrap();
    let (_, diagnostics) = weir::tls::compile(&bindings, &secrets, default);
    let reasons: Vec<String> = diagnostics.iter().map(|d| d.reason.to_string()).collect();
    assert!(
        reasons.contains(&"InvalidTlsSecret".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"TlsHostNotCovered".to_owned()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"TlsSecretNotFound".to_owned()),
        "{reasons:?}"
    );
    // No key material in any message: no line of any key's base64 body.
    let key_lines: Vec<&str> = [&good, &other]
        .iter()
        .flat_map(|c| c.key_pem.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        diagnostics
            .iter()
            .all(|d| key_lines.iter().all(|l| !d.message.contains(l))),
        "key material in messages: {diagnostics:?}"
    );

    let proxy = start(backend.addr, &bindings, &secrets).await;
    assert_eq!(
        handshake(proxy.addr, "good.example.com", &[]).await.1,
        good.der
    );
    for sni in [
        "broken.example.com",
        "wrong.example.com",
        "missing.example.com",
    ] {
        assert_eq!(
            handshake(proxy.addr, sni, &[]).await.1,
            proxy.default_der,
            "{sni}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_new_handshakes_see_the_new_certificate() {
    let backend = TestBackend::start("b").await;
    let (old, new) = (
        cert_for(&["rot.example.com"]),
        cert_for(&["rot.example.com"]),
    );
    let proxy = Arc::new(
        start(
            backend.addr,
            &[binding("rot.example.com", "rot")],
            &[secret("rot", &old)],
        )
        .await,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (proxy, stop, done) = (proxy.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // A new connection (and handshake) per request, so handshakes overlap the swap.
                let (stream, _) = handshake(proxy.addr, "rot.example.com", &[b"http/1.1"]).await;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let req = Request::get("/")
                    .header("host", "rot.example.com")
                    .body(Full::<Bytes>::default())
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(response) if response.status() == 200 => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => failures.push(response.status().to_string()),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            failures
        }));
    }
    wait_until("clients are busy", Duration::from_secs(10), || {
        done.load(Ordering::Relaxed) >= 50
    })
    .await;
    let default = weir::tls::self_signed_default().unwrap();
    let (certs, _) = weir::tls::compile(
        &[binding("rot.example.com", "rot")],
        &[secret("rot", &new)],
        default,
    );
    proxy.state.publish(
        table(&[("", PathRule::prefix("/"), "s", vec![backend.addr])]),
        Arc::new(certs),
    );
    let after = done.load(Ordering::Relaxed) + 50;
    wait_until(
        "clients used the new certificate",
        Duration::from_secs(10),
        || done.load(Ordering::Relaxed) >= after,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        handshake(proxy.addr, "rot.example.com", &[]).await.1,
        new.der,
        "new handshakes get the new certificate"
    );
}

#[tokio::test]
async fn hsts_goes_on_https_responses_of_tls_hosts_only() {
    use weir::model::HttpsPolicy;
    let backend = TestBackend::start("b").await;
    let a = cert_for(&["a.example.com"]);
    let rows = [
        (
            "a.example.com",
            PathRule::prefix("/"),
            "a",
            vec![backend.addr],
            tls_host(true),
        ),
        (
            "plain.example.com",
            PathRule::prefix("/"),
            "p",
            vec![backend.addr],
            HttpsPolicy::default(),
        ),
    ];
    let proxy = start_with(
        table_https(&rows),
        &[binding("a.example.com", "a")],
        &[secret("a", &a)],
    )
    .await;
    for (host, want) in [("a.example.com", true), ("plain.example.com", false)] {
        let (stream, _) = handshake(proxy.addr, host, &[b"http/1.1"]).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", host)
            .body(Full::<Bytes>::default())
            .unwrap();
        let answer = read_answer(sender.send_request(req).await.unwrap()).await;
        assert_eq!(answer.status, 200, "HTTPS requests are never redirected");
        assert_eq!(
            answer
                .headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            want.then_some("max-age=31536000"),
            "{host}"
        );
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let config = ProxyConfig {
        tls_handshake_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxy = start_tls_proxy(config, weir::model::RouteTable::empty(), &[], &[]).await;
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf))
        .await
        .expect("the connection is closed after the handshake timeout")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed after {:?}",
        started.elapsed()
    );
}

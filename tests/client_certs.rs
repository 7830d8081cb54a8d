//! Client certificates (mTLS) end to end: Ingresses with `auth-tls-*` annotations and CA
//! Secrets read by weir's model, the real HTTPS listener, and real rustls clients presenting
//! valid, wrongly issued, expired, over-long and no certificates.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::tls::{AcceptAny, start_tls_proxy};
use common::*;
use weir::model::BuildConfig;
use weir::proxy::ProxyConfig;

/// A certificate authority for the tests.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// An intermediate CA signed by this one.
    fn intermediate(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca(CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.0).unwrap())
    }

    /// A client certificate for `cn` (organisation "Example"), valid now unless `expired`.
    fn client(&self, cn: &str, expired: bool) -> Identity {
        self.client_with_serial(cn, expired, fastrand::u64(1..u64::MAX / 2))
    }

    /// [`Ca::client`] with this serial number.
    fn client_with_serial(&self, cn: &str, expired: bool, serial: u64) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }
}

impl Ca {
    /// A revocation list of this CA revoking `serials`, current unless `expired`.
    fn crl_pem(&self, serials: &[u64], expired: bool) -> String {
        let (this_update, next_update) = if expired {
            (
                rcgen::date_time_ymd(2020, 1, 1),
                rcgen::date_time_ymd(2020, 2, 1),
            )
        } else {
            (
                rcgen::date_time_ymd(2024, 1, 1),
                rcgen::date_time_ymd(2099, 1, 1),
            )
        };
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.0).unwrap().pem().unwrap()
    }
}

/// A client's certificate chain and key.
#[derive(Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Identity {
    /// The same certificate presented with `intermediate` above it.
    fn via(mut self, intermediate: &Ca) -> Identity {
        self.chain.push(intermediate.0.der().clone());
        self
    }
}

/// GET `path` with `Host: host` over a new TLS connection whose SNI is `sni`, presenting
/// `identity`; the status and the body.
async fn get(
    proxy: &common::tls::TlsProxy,
    sni: &str,
    host: &str,
    path: &str,
    identity: Option<&Identity>,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny));
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                id.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .expect("the handshake completes whatever the certificate");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = sender
        .send_request(req.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// An Ingress for `host` with these `auth-tls-*` annotations (names without the prefix).
fn mtls(name: &str, host: &str, annotations: &[(&str, &str)]) -> serde_json::Value {
    nginx_ingress(name, annotations, rule(host, &[("/", "Prefix", "web")]))
}

#[tokio::test]
async fn each_verify_mode_answers_each_kind_of_client_as_nginx_does() {
    let ca = Ca::new("Test CA");
    let other_ca = Ca::new("Other CA");
    let intermediate = ca.intermediate("Test Intermediate");
    let alice = ca.client("alice", false);
    let bob = ca.client("bob", false);
    let expired = ca.client("alice", true);
    let stranger = other_ca.client("mallory", false);
    let chained = intermediate.client("carol", false).via(&intermediate);
    let web = TestBackend::start("web").await;
    let ingresses = vec![
        mtls("on", "on.test", &[("auth-tls-secret", "ca")]),
        mtls(
            "optional",
            "optional.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-verify-client", "optional"),
            ],
        ),
        mtls(
            "noca",
            "noca.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-verify-client", "optional_no_ca"),
                ("auth-tls-pass-certificate-to-upstream", "true"),
            ],
        ),
        mtls(
            "page",
            "page.test",
            &[
                ("auth-tls-secret", "ca"),
                (
                    "auth-tls-error-page",
                    "https://help.example.com/certificates",
                ),
            ],
        ),
        mtls(
            "cn",
            "cn.test",
            &[
                ("auth-tls-secret", "ca"),
                ("auth-tls-match-cn", "CN=(bob|carol)"),
            ],
        ),
        mtls(
            "deep",
            "deep.test",
            &[("auth-tls-secret", "ca"), ("auth-tls-verify-depth", "2")],
        ),
        mtls("broken", "broken.test", &[("auth-tls-secret", "missing")]),
        // A newer Ingress on the broken host: the host's certificates are the older one's,
        // which cannot be set up, so its path is refused too rather than served without them.
        ingress_json(
            "neighbour",
            2,
            &[],
            serde_json::json!([rule("broken.test", &[("/neighbour", "Prefix", "web")])]),
        ),
        nginx_ingress("plain", &[], rule("plain.test", &[("/", "Prefix", "web")])),
    ];
    let secrets = vec![secret_json("ca", &[("ca.crt", &ca.pem())])];
    let built = build_table_with(
        ingresses,
        vec![service_json("web", &[web.addr])],
        secrets,
        &BuildConfig::default(),
    );
    let diagnostics: Vec<&str> = built
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        diagnostics.len(),
        1,
        "only the missing Secret: {diagnostics:#?}"
    );
    let proxy = start_tls_proxy(ProxyConfig::default(), built.table, &[], &[]).await;

    let status = |host: &'static str, identity: Option<&Identity>| {
        let (proxy, identity) = (&proxy, identity.cloned());
        async move {
            get(proxy, host, host, "/", identity.as_ref(), &[])
                .await
                .0
                .as_u16()
        }
    };
    // host, client, expected status.
    let table: Vec<(&str, Option<&Identity>, u16)> = vec![
        ("on.test", Some(&alice), 200),
        ("on.test", None, 400),
        ("on.test", Some(&stranger), 400),
        ("on.test", Some(&expired), 400),
        ("on.test", Some(&chained), 400),
        ("optional.test", Some(&alice), 200),
        ("optional.test", None, 200),
        ("optional.test", Some(&stranger), 400),
        ("noca.test", Some(&stranger), 200),
        ("noca.test", None, 200),
        ("page.test", None, 302),
        ("page.test", Some(&alice), 200),
        ("cn.test", Some(&alice), 403),
        ("cn.test", Some(&bob), 200),
        ("cn.test", Some(&chained), 400),
        ("deep.test", Some(&chained), 200),
        ("deep.test", Some(&alice), 200),
        ("broken.test", Some(&alice), 503),
        ("plain.test", None, 200),
    ];
    for (host, identity, expected) in table {
        assert_eq!(
            status(host, identity).await,
            expected,
            "{host} with {:?}",
            identity.map(|i| i.chain.len())
        );
    }

    let (status, _, _) = get(
        &proxy,
        "broken.test",
        "broken.test",
        "/neighbour",
        Some(&alice),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the whole host fails closed"
    );

    // What the endpoint learns, and that the client cannot forge it.
    let forged = [
        ("ssl-client-verify", "SUCCESS"),
        ("ssl-client-subject-dn", "CN=admin"),
    ];
    let (status, _, body) = get(&proxy, "on.test", "on.test", "/", Some(&alice), &forged).await;
    assert_eq!(status, StatusCode::OK);
    let echo = Echo(serde_json::from_str(&body).unwrap());
    assert_eq!(echo.header_all("ssl-client-verify"), ["SUCCESS"]);
    assert_eq!(
        echo.header("ssl-client-subject-dn").as_deref(),
        Some("CN=alice,O=Example")
    );
    assert_eq!(
        echo.header("ssl-client-issuer-dn").as_deref(),
        Some("CN=Test CA")
    );
    assert_eq!(
        echo.header("ssl-client-cert"),
        None,
        "only with pass-certificate"
    );
    let (_, _, body) = get(&proxy, "noca.test", "noca.test", "/", Some(&stranger), &[]).await;
    let echo = Echo(serde_json::from_str(&body).unwrap());
    let verify = echo.header("ssl-client-verify").unwrap();
    assert!(verify.starts_with("FAILED:"), "{verify}");
    let pem = echo.header("ssl-client-cert").unwrap();
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
    let (_, _, body) = get(&proxy, "optional.test", "optional.test", "/", None, &forged).await;
    let echo = Echo(serde_json::from_str(&body).unwrap());
    assert_eq!(echo.header("ssl-client-verify").as_deref(), Some("NONE"));
    assert_eq!(echo.header("ssl-client-subject-dn"), None);

    // The error page, and the 400 bodies nginx writes.
    let (_, headers, _) = get(&proxy, "page.test", "page.test", "/", None, &[]).await;
    assert_eq!(headers["location"], "https://help.example.com/certificates");
    let (_, _, body) = get(&proxy, "on.test", "on.test", "/", None, &[]).await;
    assert!(
        body.contains("No required SSL certificate was sent"),
        "{body}"
    );

    // A connection made for another host (or for none) cannot be used for this one.
    for sni in ["plain.test", "optional.test", "127.0.0.1"] {
        let (status, _, _) = get(&proxy, sni, "on.test", "/", Some(&alice), &[]).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "SNI {sni}");
    }

    let samples = common::metrics::parse(&proxy.state.metrics().encode());
    let denied = common::metrics::value(
        &samples,
        "weir_requests_denied_total",
        &[
            ("namespace", "default"),
            ("ingress", "on"),
            ("reason", "mtls"),
        ],
    );
    assert!(denied >= 5.0, "{denied}");
}

#[tokio::test]
async fn revoked_certificates_and_stale_revocation_lists_are_refused() {
    let ca = Ca::new("Test CA");
    let alice = ca.client_with_serial("alice", false, 1001);
    let revoked = ca.client_with_serial("mallory", false, 1002);
    let web = TestBackend::start("web").await;
    let secrets = vec![
        secret_json(
            "current",
            &[
                ("ca.crt", &ca.pem()),
                ("ca.crl", &ca.crl_pem(&[1002], false)),
            ],
        ),
        secret_json(
            "stale",
            &[("ca.crt", &ca.pem()), ("ca.crl", &ca.crl_pem(&[], true))],
        ),
        secret_json("garbled", &[("ca.crt", &ca.pem()), ("ca.crl", "not a CRL")]),
    ];
    let built = build_table_with(
        vec![
            mtls("current", "current.test", &[("auth-tls-secret", "current")]),
            mtls("stale", "stale.test", &[("auth-tls-secret", "stale")]),
            mtls("garbled", "garbled.test", &[("auth-tls-secret", "garbled")]),
        ],
        vec![service_json("web", &[web.addr])],
        secrets,
        &BuildConfig::default(),
    );
    assert_eq!(built.diagnostics.len(), 1, "{:#?}", built.diagnostics);
    let proxy = start_tls_proxy(ProxyConfig::default(), built.table, &[], &[]).await;
    let status = |host: &'static str, identity: &Identity| {
        let (proxy, identity) = (&proxy, identity.clone());
        async move {
            get(proxy, host, host, "/", Some(&identity), &[])
                .await
                .0
                .as_u16()
        }
    };
    assert_eq!(status("current.test", &alice).await, 200);
    assert_eq!(status("current.test", &revoked).await, 400);
    assert_eq!(
        status("stale.test", &alice).await,
        400,
        "an expired list proves nothing"
    );
    assert_eq!(status("garbled.test", &alice).await, 503);
}

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::model::ObjectKind;
use crate::tls::testutil::{self, RSA_CRT, RSA_PKCS1_KEY};

fn secret(name: &str, kind: &str, cert: &[u8], key: &[u8]) -> Secret {
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), ByteString(cert.to_vec())),
        ("tls.key".to_owned(), ByteString(key.to_vec())),
    ]);
    Secret {
        metadata: ObjectMeta {
            namespace: Some("ns".to_owned()),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(kind.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn tls_secret(name: &str, hosts: &[&str]) -> (Secret, String) {
    let (cert, key) = testutil::self_signed(hosts);
    (
        secret(name, TLS_SECRET_TYPE, cert.as_bytes(), key.as_bytes()),
        key,
    )
}

fn ingress(name: &str) -> ObjectRef {
    ObjectRef::new(ObjectKind::Ingress, "ns", name)
}

fn binding(host: &str, secret: &str, ing: &str) -> TlsBinding {
    TlsBinding {
        host: host.to_owned(),
        secret: ObjectRef::new(ObjectKind::Secret, "ns", secret),
        ingress: ingress(ing),
    }
}

fn reasons(diagnostics: &[Diagnostic]) -> Vec<(String, Reason)> {
    diagnostics
        .iter()
        .map(|d| (d.object.name.clone(), d.reason))
        .collect()
}

#[test]
fn good_secrets_land_in_the_store() {
    let default = testutil::certified(&["default.invalid"]);
    let (a, _) = tls_secret("a", &["a.example.com", "b.example.com"]);
    let (wild, _) = tls_secret("wild", &["*.wild.example.com"]);
    let rsa = secret("rsa", TLS_SECRET_TYPE, RSA_CRT, RSA_PKCS1_KEY);
    let bindings = [
        binding("a.example.com", "a", "web"),
        binding("b.example.com", "a", "web"),
        binding("*.wild.example.com", "wild", "web"),
        binding("rsa.example.com", "rsa", "other"),
    ];
    let (store, diagnostics) = compile(&bindings, &[a, wild, rsa].map(Arc::new), default.clone());
    assert_eq!(diagnostics, []);
    assert_eq!(store.len(), 4);
    for host in [
        "a.example.com",
        "b.example.com",
        "x.wild.example.com",
        "rsa.example.com",
    ] {
        assert!(store.has_host(host), "{host}");
        assert!(!Arc::ptr_eq(&store.resolve(Some(host)), &default), "{host}");
    }
    // One parse per Secret: both hosts share the same key.
    let (ka, kb) = (
        store.resolve(Some("a.example.com")),
        store.resolve(Some("b.example.com")),
    );
    assert!(Arc::ptr_eq(&ka, &kb));
}

#[test]
fn missing_and_wrong_type_secrets_are_not_found() {
    let default = testutil::certified(&["default.invalid"]);
    let (cert, key) = testutil::self_signed(&["b.example.com"]);
    let opaque = secret("opaque", "Opaque", cert.as_bytes(), key.as_bytes());
    let bindings = [
        binding("a.example.com", "missing", "one"),
        binding("a2.example.com", "missing", "one"),
        binding("b.example.com", "opaque", "two"),
    ];
    let (store, diagnostics) = compile(&bindings, &[Arc::new(opaque)], default);
    assert!(store.is_empty());
    assert_eq!(
        reasons(&diagnostics),
        [
            ("one".to_owned(), Reason::TlsSecretNotFound),
            ("two".to_owned(), Reason::TlsSecretNotFound),
        ],
        "{diagnostics:#?}"
    );
    assert_eq!(diagnostics[0].object, ingress("one"));
    assert!(
        diagnostics[0]
            .message
            .contains("Secret ns/missing does not exist")
    );
    assert!(
        diagnostics[1].message.contains("\"Opaque\""),
        "{}",
        diagnostics[1].message
    );
}

#[test]
fn bad_pem_and_mismatched_keys_are_invalid_without_leaking_keys() {
    let default = testutil::certified(&["default.invalid"]);
    let (cert, key) = testutil::self_signed(&["a.example.com"]);
    let (_, other_key) = testutil::self_signed(&["a.example.com"]);
    let garbage = secret("garbage", TLS_SECRET_TYPE, b"garbage", key.as_bytes());
    let mismatch = secret(
        "mismatch",
        TLS_SECRET_TYPE,
        cert.as_bytes(),
        other_key.as_bytes(),
    );
    let mut no_key = secret("nokey", TLS_SECRET_TYPE, cert.as_bytes(), b"");
    no_key.data.as_mut().unwrap().remove("tls.key");
    let bindings = [
        binding("a.example.com", "garbage", "g"),
        binding("b.example.com", "mismatch", "m"),
        binding("c.example.com", "nokey", "n"),
    ];
    let (store, diagnostics) = compile(
        &bindings,
        &[garbage, mismatch, no_key].map(Arc::new),
        default,
    );
    assert!(store.is_empty());
    assert_eq!(
        reasons(&diagnostics),
        [
            ("g".to_owned(), Reason::InvalidTlsSecret),
            ("m".to_owned(), Reason::InvalidTlsSecret),
            ("n".to_owned(), Reason::InvalidTlsSecret),
        ]
    );
    assert!(diagnostics[0].message.contains("Secret ns/garbage"));
    assert!(diagnostics[1].message.contains("does not match"));
    assert!(diagnostics[2].message.contains("\"tls.key\""));
    for d in &diagnostics {
        for line in key
            .lines()
            .chain(other_key.lines())
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!d.message.contains(line), "{}", d.message);
        }
    }
}

#[test]
fn certificates_must_cover_the_host() {
    let default = testutil::certified(&["default.invalid"]);
    let (a, _) = tls_secret("a", &["a.example.com"]);
    let (wild, _) = tls_secret("wild", &["*.wild.example.com"]);
    let bindings = [
        binding("a.example.com", "a", "ok"),
        binding("other.example.com", "a", "exact"),
        // The wildcard certificate covers one label under wild.example.com, not the apex,
        // and not a different wildcard.
        binding("wild.example.com", "wild", "apex"),
        binding("*.example.com", "wild", "broader"),
        // An exact host under a wildcard certificate is covered.
        binding("x.wild.example.com", "wild", "ok"),
        binding("*.wild.example.com", "wild", "ok"),
    ];
    let (store, diagnostics) = compile(&bindings, &[a, wild].map(Arc::new), default);
    assert_eq!(
        reasons(&diagnostics),
        [
            ("apex".to_owned(), Reason::TlsHostNotCovered),
            ("broader".to_owned(), Reason::TlsHostNotCovered),
            ("exact".to_owned(), Reason::TlsHostNotCovered),
        ],
        "{diagnostics:#?}"
    );
    assert!(diagnostics[2].message.contains("other.example.com"));
    assert_eq!(store.len(), 3);
    assert!(!store.has_host("other.example.com"));
    assert!(!store.has_host("wild.example.com"));
    assert!(!store.has_host("y.example.com"));
}

#[test]
fn diagnostics_are_sorted_and_deduplicated() {
    let default = testutil::certified(&["default.invalid"]);
    let bindings = [
        binding("b.example.com", "missing", "z"),
        binding("a.example.com", "missing", "z"),
        binding("c.example.com", "missing", "a"),
    ];
    let (_, diagnostics) = compile(&bindings, &[], default);
    assert_eq!(
        reasons(&diagnostics),
        [
            ("a".to_owned(), Reason::TlsSecretNotFound),
            ("z".to_owned(), Reason::TlsSecretNotFound),
        ]
    );
}

#[test]
fn string_data_and_default_namespace_are_read() {
    let default = testutil::certified(&["default.invalid"]);
    let (cert, key) = testutil::self_signed(&["a.example.com"]);
    let mut s = secret("a", TLS_SECRET_TYPE, b"", b"");
    s.metadata.namespace = None;
    s.data = None;
    s.string_data = Some(BTreeMap::from([
        ("tls.crt".to_owned(), cert),
        ("tls.key".to_owned(), key),
    ]));
    let b = TlsBinding {
        host: "a.example.com".to_owned(),
        secret: ObjectRef::new(ObjectKind::Secret, "default", "a"),
        ingress: ObjectRef::new(ObjectKind::Ingress, "default", "web"),
    };
    let (store, diagnostics) = compile(&[b], &[Arc::new(s)], default);
    assert_eq!(diagnostics, []);
    assert!(store.has_host("a.example.com"));
}

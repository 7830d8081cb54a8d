//! Phase 9, client certificates (`auth-tls-*`) of the request's host, checked against what the
//! client presented in its handshake ([`ClientCert`]), with nginx's answers:
//!
//! - plain HTTP to such a host (not redirected to HTTPS by phase 8): 403 — ingress-nginx
//!   would serve it without a certificate;
//! - a connection whose handshake was for another host (its SNI named a host without this
//!   policy, or none): 421 Misdirected Request, so the client opens one for this host;
//! - `on` without a certificate, or any certificate that does not verify (except with
//!   `optional_no_ca`): 400, or a 302 to `auth-tls-error-page`;
//! - a subject `auth-tls-match-cn` does not match: 403.
//!
//! The endpoint (and an external authentication service, `external_auth.rs`) then gets
//! `ssl-client-verify`, `ssl-client-subject-dn`, `ssl-client-issuer-dn` and, with
//! `auth-tls-pass-certificate-to-upstream`, `ssl-client-cert`; headers of those names from
//! the client are dropped on such hosts (and never reach an authentication service).

use std::sync::Arc;

use http::HeaderMap;
use http::header::HeaderName;
use tracing::debug;

use super::super::headers::ClientInfo;
use super::super::respond::{CertRefusal, Refusal};
use crate::model::{ClientAuth, VerifyClient};

/// The headers nginx sets from the client certificate.
static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// Whether the connection's client certificate satisfies the host's policy `auth`.
pub(in crate::proxy) fn check(auth: &Arc<ClientAuth>, conn: &ClientInfo) -> Result<(), Refusal> {
    let refuse = |why: CertRefusal| {
        debug!(secret = %auth.secret, reason = why.as_str(), "client certificate refused");
        Err(Refusal::ClientCert(why, auth.error_page.clone()))
    };
    if conn.scheme != "https" {
        return refuse(CertRefusal::PlainHttp);
    }
    let Some(cert) = conn.client_cert.as_deref() else {
        return refuse(CertRefusal::Misdirected);
    };
    if !(Arc::ptr_eq(&cert.policy, auth) || *cert.policy == **auth) {
        return refuse(CertRefusal::Misdirected);
    }
    match (auth.verify, &cert.verdict) {
        (_, Some(Ok(()))) | (VerifyClient::OptionalNoCa, _) | (VerifyClient::Optional, None) => {}
        (VerifyClient::On, None) => return refuse(CertRefusal::Missing),
        (_, Some(Err(_))) => return refuse(CertRefusal::Invalid),
    }
    if let Some(pattern) = &auth.match_cn
        && !pattern.matches(&cert.subject)
    {
        return refuse(CertRefusal::Unauthorized);
    }
    Ok(())
}

/// Removes the `ssl-client-*` headers a client sent.
pub(in crate::proxy) fn strip_headers(headers: &mut HeaderMap) {
    for name in [
        &SSL_CLIENT_VERIFY,
        &SSL_CLIENT_SUBJECT_DN,
        &SSL_CLIENT_ISSUER_DN,
        &SSL_CLIENT_CERT,
    ] {
        headers.remove(name);
    }
}

/// Sets the `ssl-client-*` headers for the endpoint (after [`check`] passed), replacing any
/// the client sent.
pub(in crate::proxy) fn set_headers(auth: &ClientAuth, conn: &ClientInfo, headers: &mut HeaderMap) {
    strip_headers(headers);
    let Some(cert) = conn.client_cert.as_deref() else {
        return;
    };
    headers.insert(SSL_CLIENT_VERIFY.clone(), cert.verify_header());
    let name = |text: &str| http::HeaderValue::try_from(text).ok();
    if let Some(subject) = name(&cert.subject).filter(|_| !cert.subject.is_empty()) {
        headers.insert(SSL_CLIENT_SUBJECT_DN.clone(), subject);
    }
    if let Some(issuer) = name(&cert.issuer).filter(|_| !cert.issuer.is_empty()) {
        headers.insert(SSL_CLIENT_ISSUER_DN.clone(), issuer);
    }
    if auth.pass_certificate
        && let Some(pem) = &cert.escaped_pem
    {
        headers.insert(SSL_CLIENT_CERT.clone(), pem.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::client_auth::MatchCn;
    use crate::model::{ObjectKind, ObjectRef};
    use crate::proxy::client_cert::ClientCert;

    /// For tests: a connection's certificate state.
    fn with_cert(
        policy: Arc<ClientAuth>,
        verdict: Option<Result<(), String>>,
        subject: &str,
    ) -> ClientInfo {
        let mut conn = ClientInfo::new(
            "127.0.0.1:1".parse().unwrap(),
            443,
            "https",
            Default::default(),
            false,
        );
        conn.client_cert = Some(Arc::new(ClientCert {
            policy,
            verdict,
            subject: subject.to_owned(),
            issuer: "CN=ca".to_owned(),
            escaped_pem: None,
        }));
        conn
    }

    fn policy(verify: VerifyClient, match_cn: Option<&str>) -> Arc<ClientAuth> {
        Arc::new(ClientAuth {
            secret: ObjectRef::new(ObjectKind::Secret, "d", "ca"),
            ca: vec![vec![1, 2, 3]],
            crl: Vec::new(),
            verify,
            depth: 1,
            error_page: None,
            pass_certificate: false,
            match_cn: match_cn.map(|p| MatchCn::new(p).unwrap()),
        })
    }

    fn outcome(auth: &Arc<ClientAuth>, conn: &ClientInfo) -> &'static str {
        match check(auth, conn) {
            Ok(()) => "ok",
            Err(Refusal::ClientCert(why, _)) => why.as_str(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_verdicts_as_a_table() {
        use VerifyClient::{On, Optional, OptionalNoCa};
        let good = Some(Ok(()));
        let bad = || Some(Err("expired".to_owned()));
        /// The mode, the handshake's verdict, the outcome.
        type Row = (VerifyClient, Option<Result<(), String>>, &'static str);
        let table: Vec<Row> = vec![
            (On, good.clone(), "ok"),
            (On, None, "missing"),
            (On, bad(), "invalid"),
            (Optional, good.clone(), "ok"),
            (Optional, None, "ok"),
            (Optional, bad(), "invalid"),
            (OptionalNoCa, good.clone(), "ok"),
            (OptionalNoCa, None, "ok"),
            (OptionalNoCa, bad(), "ok"),
        ];
        for (verify, verdict, expected) in table {
            let auth = policy(verify, None);
            let conn = with_cert(auth.clone(), verdict.clone(), "CN=alice");
            assert_eq!(outcome(&auth, &conn), expected, "{verify:?} {verdict:?}");
        }
    }

    #[test]
    fn another_host_s_handshake_plain_http_and_the_wrong_cn_are_refused() {
        let auth = policy(VerifyClient::On, Some("CN=(alice|bob)"));
        let other = policy(VerifyClient::Optional, None);
        assert_eq!(
            outcome(
                &auth,
                &with_cert(auth.clone(), Some(Ok(())), "CN=alice,O=x")
            ),
            "ok"
        );
        assert_eq!(
            outcome(&auth, &with_cert(auth.clone(), Some(Ok(())), "CN=carol")),
            "unauthorized"
        );
        assert_eq!(
            outcome(&auth, &with_cert(other, Some(Ok(())), "CN=alice")),
            "misdirected"
        );
        let equal = policy(VerifyClient::On, Some("CN=(alice|bob)"));
        assert_eq!(
            outcome(&auth, &with_cert(equal, Some(Ok(())), "CN=alice")),
            "ok",
            "an equal policy of a newer table"
        );
        let no_sni = ClientInfo::new(
            "127.0.0.1:1".parse().unwrap(),
            443,
            "https",
            Default::default(),
            false,
        );
        assert_eq!(outcome(&auth, &no_sni), "misdirected");
        let plain = ClientInfo::new(
            "127.0.0.1:1".parse().unwrap(),
            80,
            "http",
            Default::default(),
            false,
        );
        assert_eq!(outcome(&auth, &plain), "plain-http");
    }

    #[test]
    fn the_endpoint_gets_the_certificate_s_headers_never_the_client_s() {
        let auth = policy(VerifyClient::OptionalNoCa, None);
        let conn = with_cert(
            auth.clone(),
            Some(Err("unknown issuer".to_owned())),
            "CN=alice",
        );
        let mut headers = HeaderMap::new();
        headers.insert("ssl-client-verify", "SUCCESS".parse().unwrap());
        headers.insert("ssl-client-cert", "forged".parse().unwrap());
        set_headers(&auth, &conn, &mut headers);
        assert_eq!(headers["ssl-client-verify"], "FAILED:unknown issuer");
        assert_eq!(headers["ssl-client-subject-dn"], "CN=alice");
        assert_eq!(headers["ssl-client-issuer-dn"], "CN=ca");
        assert!(headers.get("ssl-client-cert").is_none());
    }
}

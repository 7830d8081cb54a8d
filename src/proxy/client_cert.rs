//! The TLS handshake when some host asks for client certificates (`auth-tls-*`): the
//! ClientHello's SNI picks the configuration — the host's client-certificate policy, else the
//! common one — and what the client presented is verified once, right after the handshake,
//! into a [`ClientCert`] the connection's requests are checked against
//! (`policy/client_cert.rs`).
//!
//! Tables without such hosts keep the plain handshake. A policy's rustls configuration is made
//! on its first handshake and reused while the policy stays the same (equal CA bundle and
//! settings), across table swaps.

use std::sync::{Arc, Mutex};

use http::HeaderValue;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake, TlsAcceptor};
use tracing::{debug, warn};

use crate::model::ClientAuth;
use crate::model::variables::escape_component;
use crate::state::Snapshot;
use crate::tls::{ClientCertPolicy, ServerConfigs};

/// What a client presented on a connection whose SNI named a host with client certificates.
#[derive(Debug)]
pub struct ClientCert {
    /// The host policy the handshake used.
    pub policy: Arc<ClientAuth>,
    /// The verification: `None` without a certificate, `Some(Err(why))` for one that did not
    /// verify.
    pub verdict: Option<Result<(), String>>,
    /// The certificate's subject (`CN=…,O=…`, RFC 2253), empty without one.
    pub subject: String,
    /// Its issuer, likewise.
    pub issuer: String,
    /// The certificate as URL-encoded PEM (`ssl-client-cert`), when the policy passes it on.
    pub escaped_pem: Option<HeaderValue>,
}

impl ClientCert {
    /// `ssl-client-verify`, as nginx's `$ssl_client_verify`: `SUCCESS`, `FAILED:why` or `NONE`.
    pub fn verify_header(&self) -> HeaderValue {
        match &self.verdict {
            None => HeaderValue::from_static("NONE"),
            Some(Ok(())) => HeaderValue::from_static("SUCCESS"),
            Some(Err(why)) => HeaderValue::try_from(format!("FAILED:{why}"))
                .unwrap_or(HeaderValue::from_static("FAILED")),
        }
    }
}

/// The HTTPS listener's configurations and the client-certificate policies made so far.
pub(super) struct TlsListener {
    configs: Arc<ServerConfigs>,
    policies: Mutex<Vec<(Arc<ClientAuth>, Arc<ClientCertPolicy>)>>,
}

/// The most policies kept; older ones no table uses any more are dropped beyond it.
const MAX_POLICIES: usize = 64;

impl TlsListener {
    pub(super) fn new(configs: Arc<ServerConfigs>) -> Self {
        TlsListener {
            configs,
            policies: Mutex::new(Vec::new()),
        }
    }

    /// The handshake on `stream`, with the client certificate when the SNI names a host of
    /// `snapshot`'s table that asks for one.
    pub(super) async fn accept(
        &self,
        snapshot: &Snapshot,
        stream: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<Arc<ClientCert>>)> {
        if !snapshot.table.has_client_auth() {
            let acceptor = TlsAcceptor::from(self.configs.default_config().clone());
            return Ok((acceptor.accept(stream).await?, None));
        }
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        self.finish(snapshot, start).await
    }

    /// The rest of a handshake whose ClientHello has been read (`start`), like
    /// [`TlsListener::accept`].
    pub(super) async fn finish(
        &self,
        snapshot: &Snapshot,
        start: StartHandshake<TcpStream>,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<Arc<ClientCert>>)> {
        if !snapshot.table.has_client_auth() {
            let stream = start
                .into_stream(self.configs.default_config().clone())
                .await?;
            return Ok((stream, None));
        }
        let sni = start
            .client_hello()
            .server_name()
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase());
        let auth = sni
            .as_deref()
            .and_then(|sni| snapshot.table.client_auth(sni))
            .and_then(|auth| auth.as_ref().ok())
            .cloned();
        let Some(auth) = auth else {
            let stream = start
                .into_stream(self.configs.default_config().clone())
                .await?;
            return Ok((stream, None));
        };
        let policy = self.policy(&auth).map_err(std::io::Error::other)?;
        let stream = start.into_stream(policy.config.clone()).await?;
        let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
        let cert = describe(auth, &policy, chain);
        debug!(sni = ?sni, verdict = ?cert.verdict, subject = %cert.subject, "client certificate");
        Ok((stream, Some(Arc::new(cert))))
    }

    /// The rustls policy of `auth`, made on first use.
    fn policy(
        &self,
        auth: &Arc<ClientAuth>,
    ) -> Result<Arc<ClientCertPolicy>, crate::tls::TlsError> {
        let mut policies = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, policy)) = policies
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, auth) || **known == **auth)
        {
            return Ok(policy.clone());
        }
        let policy = Arc::new(
            self.configs
                .client_cert_policy(&auth.ca, &auth.crl, auth.depth)
                .inspect_err(|error| warn!(secret = %auth.secret, %error, "cannot set up client certificates"))?,
        );
        if policies.len() >= MAX_POLICIES {
            // Keep the ones a table still holds (the list's own reference is the only other).
            policies.retain(|(known, _)| Arc::strong_count(known) > 1);
        }
        policies.push((auth.clone(), policy.clone()));
        Ok(policy)
    }
}

/// The verdict and names of what the client presented.
fn describe(
    auth: Arc<ClientAuth>,
    policy: &ClientCertPolicy,
    chain: &[CertificateDer<'_>],
) -> ClientCert {
    let Some(leaf) = chain.first() else {
        return ClientCert {
            policy: auth,
            verdict: None,
            subject: String::new(),
            issuer: String::new(),
            escaped_pem: None,
        };
    };
    let verdict = Some(policy.verify(chain));
    let (subject, issuer) = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, cert)) => (rfc2253(cert.subject()), rfc2253(cert.issuer())),
        Err(_) => (String::new(), String::new()),
    };
    let escaped_pem = auth.pass_certificate.then(|| {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(leaf.as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let mut escaped = String::new();
        escape_component(&pem, &mut escaped);
        HeaderValue::try_from(escaped).expect("escaped text is a valid header value")
    });
    ClientCert {
        policy: auth,
        verdict,
        subject,
        issuer,
        escaped_pem,
    }
}

/// A name as RFC 2253 writes it (nginx's `$ssl_client_s_dn`): the last RDN first, `,`
/// between them, `+` inside a multi-valued one.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let key = x509_parser::objects::oid2abbrev(oid, registry)
                        .map(str::to_owned)
                        .unwrap_or_else(|_| oid.to_id_string());
                    let value = atv.as_str().unwrap_or("");
                    format!("{key}={}", escape_dn_value(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

/// Escapes the characters RFC 2253 reserves in an attribute value.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_rfc_2253() {
        let mut params = rcgen::CertificateParams::new(vec!["a".to_owned()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "NL");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        assert_eq!(rfc2253(parsed.subject()), "CN=alice,O=Example\\, Inc.,C=NL");
    }
}

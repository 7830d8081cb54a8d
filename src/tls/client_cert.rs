//! Client certificates (mTLS): the rustls configuration for a host whose Ingress asks for them,
//! and the verification of what a client presented.
//!
//! The handshake asks for a certificate (naming the CA bundle's subjects, so that a browser
//! offers the right one) and checks that the client holds its key, but accepts any chain:
//! the chain is verified right after the handshake ([`ClientCertPolicy::verify`]). A client
//! without a valid certificate thus gets an HTTP answer (400, or the host's error page), as
//! from nginx, rather than a failed handshake it cannot explain.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use webpki::CertRevocationList;

use super::error::TlsError;

/// What the listener needs for one client-certificate policy.
pub struct ClientCertPolicy {
    /// The rustls configuration for handshakes whose SNI names a host of the policy.
    pub config: Arc<ServerConfig>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    depth: u8,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ClientCertPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertPolicy")
            .field("anchors", &self.anchors.len())
            .field("revocation_lists", &self.crls.len())
            .field("depth", &self.depth)
            .finish()
    }
}

impl ClientCertPolicy {
    /// Builds the policy for CA certificates `ca` and revocation lists `crl` (DER) and chains
    /// of at most `depth` certificates above the client's; `base` makes the rustls
    /// configuration (certificates, ALPN, resumption) with the verifier it is given.
    pub(super) fn new(
        ca: &[Vec<u8>],
        crl: &[Vec<u8>],
        depth: u8,
        base: impl FnOnce(Arc<dyn ClientCertVerifier>) -> Result<Arc<ServerConfig>, TlsError>,
    ) -> Result<ClientCertPolicy, TlsError> {
        let mut anchors = Vec::new();
        let mut subjects = Vec::new();
        for der in ca {
            let cert = CertificateDer::from(der.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| TlsError::InvalidCertificate(format!("a CA certificate: {e}")))?
                .to_owned();
            // webpki keeps the Name without its outer SEQUENCE; the CertificateRequest needs it.
            subjects.push(DistinguishedName::in_sequence(anchor.subject.as_ref()));
            anchors.push(anchor);
        }
        let crls = crl
            .iter()
            .map(|der| {
                webpki::OwnedCertRevocationList::from_der(der)
                    .map(CertRevocationList::from)
                    .map_err(|e| TlsError::InvalidCertificate(format!("a revocation list: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let algorithms =
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
        let verifier = Arc::new(AskForCertificate {
            subjects,
            algorithms,
        });
        Ok(ClientCertPolicy {
            config: base(verifier)?,
            anchors,
            crls,
            depth,
            algorithms,
        })
    }

    /// Verifies a chain a client presented (its certificate first): it must chain to a CA of
    /// the bundle within the depth, be valid now and allow client authentication; with
    /// revocation lists, every certificate of the chain must be covered by a current list and
    /// not revoked (OpenSSL's `CRL_CHECK_ALL`, which nginx's `ssl_crl` sets). `Err` says why
    /// not, as nginx's `$ssl_client_verify` would after `FAILED:`.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<(), String> {
        let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
        let leaf = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls)
            .ok()
            .map(|options| {
                options
                    .with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build()
            });
        let path = leaf
            .verify_for_usage(
                self.algorithms.all,
                &self.anchors,
                intermediates,
                UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|e| e.to_string())?;
        let above = path.intermediate_certificates().count() + 1;
        if above > usize::from(self.depth) {
            return Err(format!(
                "the chain has {above} certificates above the client's, more than \
                 auth-tls-verify-depth {}",
                self.depth
            ));
        }
        Ok(())
    }
}

/// Asks for a client certificate, verifies the handshake signature made with its key, and
/// leaves the chain to [`ClientCertPolicy::verify`].
#[derive(Debug)]
struct AskForCertificate {
    subjects: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertStore, self_signed_default};

    /// The acceptable issuers sent in the CertificateRequest are the CA's subject as DER
    /// (with its SEQUENCE), which OpenSSL clients (curl) insist on.
    #[test]
    fn the_certificate_request_names_the_ca_s_subject() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let der = ca.cert.der().to_vec();
        let mut hints = Vec::new();
        let store = Arc::new(CertStore::new(self_signed_default().unwrap()));
        ClientCertPolicy::new(std::slice::from_ref(&der), &[], 1, |verifier| {
            hints = verifier.root_hint_subjects().to_vec();
            super::super::config::server_config(store)
        })
        .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].as_ref(), parsed.subject().as_raw());
    }
}

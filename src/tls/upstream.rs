//! TLS towards endpoints (`backend-protocol: HTTPS`/`GRPCS` and `proxy-ssl-*`): the rustls
//! client configuration of a route's [`UpstreamTls`] settings, compiled once per table (and
//! carried over to the next table while the settings stay the same).
//!
//! With `proxy-ssl-verify: on` the endpoint's chain must lead to a CA of the Secret's `ca.crt`
//! (else of the system's trust store) within `proxy-ssl-verify-depth` certificates, be valid
//! now for server authentication, and name the verification name. With it off any certificate
//! is accepted, as nginx does, but the handshake's signatures are still checked.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tracing::debug;

use super::certs::certified_key_from_pem;
use super::error::TlsError;
use crate::model::{ObjectRef, UpstreamTls};

/// What connections to one route's endpoints need: the rustls configuration and the name
/// verified (and, with `proxy-ssl-server-name: on`, sent as SNI).
pub struct UpstreamTlsClient {
    /// The configuration.
    pub config: Arc<ClientConfig>,
    /// The server name.
    pub name: ServerName<'static>,
}

impl fmt::Debug for UpstreamTlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Compiles `tls` for connections to `service`'s endpoints.
pub fn upstream_client(
    tls: &UpstreamTls,
    service: &ObjectRef,
) -> Result<UpstreamTlsClient, TlsError> {
    let name = ServerName::try_from(tls.server_name(service).into_owned())
        .map_err(|e| TlsError::Config(format!("the server name: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls.versions.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if tls.versions.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let verifier: Arc<dyn ServerCertVerifier> = if !tls.verify {
        Arc::new(Verify {
            anchors: None,
            depth: tls.verify_depth,
            algorithms,
        })
    } else if tls.ca.is_empty() {
        system_verifier()?
    } else {
        let anchors = tls
            .ca
            .iter()
            .map(|der| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map(|a| a.to_owned())
                    .map_err(|e| TlsError::InvalidCertificate(format!("a CA certificate: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Arc::new(Verify {
            anchors: Some(anchors),
            depth: tls.verify_depth,
            algorithms,
        })
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.identity {
        Some(identity) => {
            let key = certified_key_from_pem(&identity.chain_pem, &identity.key_pem)?;
            builder.with_client_cert_resolver(Arc::new(Identity(key)))
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = tls.sni;
    config.alpn_protocols = if tls.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(UpstreamTlsClient {
        config: Arc::new(config),
        name,
    })
}

/// Whether a failed handshake failed on the endpoint's certificate (rather than on the
/// connection or the protocol).
pub fn is_certificate_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
            )
        })
}

/// `proxy-ssl-verify: on` without a CA: the system's trust store (loaded once).
fn system_verifier() -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        debug!(added, ignored, "system trust store for endpoints");
        Arc::new(roots)
    });
    let verifier = WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| TlsError::Config(format!("the system trust store: {e}")))?;
    Ok(verifier)
}

/// Presents the Secret's client certificate to endpoints that ask for one.
#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the endpoint's certificate: with `anchors` (`proxy-ssl-verify: on` and the
/// Secret's `ca.crt`) against them; without (`proxy-ssl-verify: off`) any certificate is
/// accepted. The handshake's signatures are verified either way.
struct Verify {
    anchors: Option<Vec<TrustAnchor<'static>>>,
    depth: u8,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("anchors", &self.anchors.as_ref().map(Vec::len))
            .field("depth", &self.depth)
            .finish()
    }
}

/// The rustls error for a webpki verification error.
fn certificate_error(error: webpki::Error) -> rustls::Error {
    let kind = match error {
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::CertNotValidForName(_) => CertificateError::NotValidForName,
        webpki::Error::CertExpired { .. } => CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(kind)
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(anchors) = &self.anchors else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(certificate_error)?;
        let path = cert
            .verify_for_usage(
                self.algorithms.all,
                anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(certificate_error)?;
        let above = path.intermediate_certificates().count() + 1;
        if above > usize::from(self.depth) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(certificate_error)?;
        Ok(ServerCertVerified::assertion())
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
    use crate::model::{ObjectKind, TlsVersions};

    fn settings() -> UpstreamTls {
        UpstreamTls {
            secret: None,
            verify: false,
            ca: Vec::new(),
            verify_depth: 1,
            identity: None,
            name: None,
            sni: false,
            versions: TlsVersions::default(),
            http2: true,
        }
    }

    #[test]
    fn compiles_the_settings() {
        let service = ObjectRef::new(ObjectKind::Service, "apps", "api");
        let client = upstream_client(&settings(), &service).unwrap();
        assert_eq!(client.name.to_str(), "api.apps.svc");
        assert!(!client.config.enable_sni);
        assert_eq!(client.config.alpn_protocols, [b"h2".to_vec()]);

        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        let tls = UpstreamTls {
            verify: true,
            ca: vec![ca.cert.der().to_vec()],
            identity: Some(crate::model::ClientIdentity {
                chain_pem: leaf.cert.pem().into_bytes(),
                key_pem: leaf.signing_key.serialize_pem().into_bytes(),
            }),
            name: Some("10.0.0.1".to_owned()),
            sni: true,
            http2: false,
            versions: TlsVersions {
                tls12: false,
                tls13: true,
            },
            ..settings()
        };
        let client = upstream_client(&tls, &service).unwrap();
        assert!(client.config.enable_sni && client.config.client_auth_cert_resolver.has_certs());
        assert_eq!(client.name.to_str(), "10.0.0.1");

        let mismatched = UpstreamTls {
            identity: Some(crate::model::ClientIdentity {
                chain_pem: leaf.cert.pem().into_bytes(),
                key_pem: ca.signing_key.serialize_pem().into_bytes(),
            }),
            ..tls
        };
        assert_eq!(
            upstream_client(&mismatched, &service).unwrap_err(),
            TlsError::KeyMismatch
        );
    }
}

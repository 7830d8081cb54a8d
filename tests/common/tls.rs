//! TLS clients and certificates for tests.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A certificate and its key, as a Secret would hold them.
pub struct Cert {
    pub der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn cert_for(names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    Cert {
        der: certified.cert.der().to_vec(),
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    }
}

/// Accepts any server certificate and keeps nothing: the tests look at which one was sent.
#[derive(Debug)]
pub struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny))
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Sending no SNI is what an IP-address name does.
    config.enable_sni = true;
    TlsConnector::from(Arc::new(config))
}

/// Handshakes with `sni` (an IP address sends none) and returns the stream and the leaf cert.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let stream = connector(alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (stream, leaf)
}

/// weir's data plane with an HTTPS listener, serving a table and the certificates of some
/// bindings (see [`start_tls_proxy`]).
pub struct TlsProxy {
    pub addr: SocketAddr,
    pub state: Arc<weir::state::State>,
    /// The self-signed default certificate (DER), served for hosts without one.
    pub default_der: Vec<u8>,
    _cancel: tokio_util::sync::DropGuard,
}

/// Starts weir's data plane on 127.0.0.1:0 with an HTTPS listener serving `routes` and the
/// certificates of `bindings` from `secrets`, as `main` wires it.
pub async fn start_tls_proxy(
    config: weir::proxy::ProxyConfig,
    routes: weir::model::RouteTable,
    bindings: &[weir::model::TlsBinding],
    secrets: &[Arc<k8s_openapi::api::core::v1::Secret>],
) -> TlsProxy {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let default = weir::tls::self_signed_default().unwrap();
    let default_der = default.cert[0].to_vec();
    let (certs, _diagnostics) = weir::tls::compile(bindings, secrets, default.clone());
    let state = Arc::new(weir::state::State::new(Arc::new(
        weir::tls::CertStore::new(default),
    )));
    state.publish(routes, Arc::new(certs));
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = weir::proxy::Proxy::new(state.clone(), config, tasks, cancel.clone());
    let current = state.clone();
    let resolver = weir::tls::LiveResolver::new(move || current.snapshot().certs.clone());
    let tls = Arc::new(weir::tls::ServerConfigs::new(Arc::new(resolver)).unwrap());
    tokio::spawn(proxy.serve_https(listener, tls, cancel.clone()));
    TlsProxy {
        addr,
        state,
        default_der,
        _cancel: cancel.drop_guard(),
    }
}

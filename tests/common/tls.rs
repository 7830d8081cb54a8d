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

/// A certificate authority for the tests: issues server and client certificates (and
/// intermediate CAs) whose chains the code under test verifies.
pub struct TestCa(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl TestCa {
    fn ca_params(name: &str) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
    }

    /// A self-signed root CA.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa(rcgen::CertifiedIssuer::self_signed(Self::ca_params(name), key).unwrap())
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa(rcgen::CertifiedIssuer::signed_by(Self::ca_params(name), key, &self.0).unwrap())
    }

    /// This CA's certificate (PEM), as a Secret's `ca.crt` holds it.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) issued by this CA.
    pub fn server(&self, names: &[&str]) -> Cert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate for common name `cn` issued by this CA.
    pub fn client(&self, cn: &str) -> Cert {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: rcgen::CertificateParams) -> Cert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Cert {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A rustls server configuration presenting `cert` (`cert_pem` may hold a chain, the server's
/// certificate first), offering `versions` (empty: TLS 1.2 and 1.3) and the ALPN protocols
/// `alpn`; with `client_ca` (PEM), it demands a client certificate issued by that CA.
pub fn server_config(
    cert: &Cert,
    client_ca: Option<&str>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(ca.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What a TLS server saw of one client's handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// The client's certificate (DER), if it presented one.
    pub client_cert: Option<Vec<u8>>,
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<Vec<u8>>,
    /// The TLS version agreed on.
    pub version: Option<rustls::ProtocolVersion>,
}

/// What a TLS server fixture saw: connections, completed handshakes, failed handshakes.
#[derive(Debug, Default)]
pub struct TlsSeen {
    pub connections: std::sync::atomic::AtomicUsize,
    pub failures: std::sync::atomic::AtomicUsize,
    handshakes: std::sync::Mutex<Vec<Handshake>>,
}

impl TlsSeen {
    /// Every completed handshake so far, in order.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }

    /// The last completed handshake; panics if there was none.
    pub fn last(&self) -> Handshake {
        let handshakes = self.handshakes();
        handshakes.last().cloned().unwrap_or_else(|| {
            panic!(
                "no completed handshake ({} failed)",
                self.failures.load(std::sync::atomic::Ordering::SeqCst)
            )
        })
    }

    /// Runs the server side of a handshake on `tcp` and records how it went.
    pub async fn accept(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        tcp: TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        use std::sync::atomic::Ordering;
        self.connections.fetch_add(1, Ordering::SeqCst);
        match acceptor.accept(tcp).await {
            Ok(stream) => {
                let session = stream.get_ref().1;
                self.handshakes.lock().unwrap().push(Handshake {
                    sni: session.server_name().map(str::to_owned),
                    client_cert: session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|c| c.to_vec()),
                    alpn: session.alpn_protocol().map(<[u8]>::to_vec),
                    version: session.protocol_version(),
                });
                Some(stream)
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
    }
}

/// An HTTPS endpoint (HTTP/1.1 over TLS) answering like [`super::TestBackend`] (the JSON
/// echo and its special paths), recording every handshake: the SNI it saw, the client
/// certificate presented, the version agreed on.
pub struct TlsBackend {
    pub addr: SocketAddr,
    pub seen: Arc<TlsSeen>,
    _cancel: tokio_util::sync::DropGuard,
}

impl TlsBackend {
    /// Serves as `name` with `config` (see [`server_config`]) on 127.0.0.1:0.
    pub async fn start(name: &str, config: Arc<rustls::ServerConfig>) -> TlsBackend {
        Self::start_on(name, config, [127, 0, 0, 1].into()).await
    }

    /// Like [`TlsBackend::start`], on `ip` (the end-to-end suite's endpoints may not be
    /// loopback addresses).
    pub async fn start_on(
        name: &str,
        config: Arc<rustls::ServerConfig>,
        ip: std::net::IpAddr,
    ) -> TlsBackend {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(TlsSeen::default());
        let cancel = tokio_util::sync::CancellationToken::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (stop, record, name) = (cancel.clone(), seen.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (acceptor, record, name, stop) =
                    (acceptor.clone(), record.clone(), name.clone(), stop.clone());
                tokio::spawn(async move {
                    let Some(stream) = record.accept(&acceptor, tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req| super::handle(name.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        TlsBackend {
            addr,
            seen,
            _cancel: cancel.drop_guard(),
        }
    }
}

use super::*;
use crate::tls::{CertStore, LiveResolver, certified_key_from_pem, self_signed_default, testutil};
use handshake::handshake;

/// An in-memory client handshake that records the certificate the server presents.
mod handshake {
    use std::sync::{Arc, Mutex};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{
        ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
        SignatureScheme, SupportedProtocolVersion,
    };

    /// Accepts any certificate (it records it), but checks the handshake signature, so
    /// the server must hold the certificate's key.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Option<CertificateDer<'static>>>);

    impl ServerCertVerifier for Recorder {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = Some(end_entity.clone().into_owned());
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = aws_lc_rs::default_provider().signature_verification_algorithms;
            verify_tls12_signature(message, cert, dss, &algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = aws_lc_rs::default_provider().signature_verification_algorithms;
            verify_tls13_signature(message, cert, dss, &algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// Runs a handshake with `sni`; returns the presented leaf and the negotiated ALPN.
    pub(super) fn handshake(
        server: &Arc<ServerConfig>,
        sni: &str,
        version: &'static SupportedProtocolVersion,
        alpn: &[&[u8]],
    ) -> (CertificateDer<'static>, Option<Vec<u8>>) {
        let recorder = Arc::new(Recorder::default());
        let mut client =
            ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(recorder.clone())
                .with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = ServerConnection::new(server.clone()).unwrap();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(client.protocol_version(), Some(version.version));
        let served = recorder.0.lock().unwrap().take().unwrap();
        (served, client.alpn_protocol().map(<[u8]>::to_vec))
    }
}

#[test]
fn builds_with_alpn_and_resumption() {
    let store = CertStore::new(self_signed_default().unwrap());
    let config = server_config(Arc::new(store)).unwrap();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(config.ticketer.enabled());
    assert!(config.session_storage.can_cache());
}

#[test]
fn handshakes_serve_the_certificate_of_the_sni_and_negotiate_h2() {
    let default = self_signed_default().unwrap();
    let exact = testutil::certified(&["a.example.com"]);
    let rsa = certified_key_from_pem(testutil::RSA_CRT, testutil::RSA_PKCS1_KEY).unwrap();
    let mut store = CertStore::new(default.clone());
    store.insert("a.example.com", exact.clone());
    store.insert("rsa.example.com", rsa.clone());
    let server = server_config(Arc::new(store)).unwrap();
    for (sni, want, version) in [
        ("a.example.com", &exact, &rustls::version::TLS13),
        ("A.EXAMPLE.com", &exact, &rustls::version::TLS12),
        ("rsa.example.com", &rsa, &rustls::version::TLS12),
        ("rsa.example.com", &rsa, &rustls::version::TLS13),
        ("other.example.com", &default, &rustls::version::TLS13),
    ] {
        let (served, alpn) = handshake(&server, sni, version, &[b"h2", b"http/1.1"]);
        assert_eq!(served, want.cert[0], "{sni}");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{sni}");
    }
    let (_, alpn) = handshake(
        &server,
        "a.example.com",
        &rustls::version::TLS13,
        &[b"http/1.1"],
    );
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn builds_with_a_live_resolver() {
    let store = Arc::new(CertStore::new(self_signed_default().unwrap()));
    let resolver = LiveResolver::new(move || store.clone());
    server_config(Arc::new(resolver)).unwrap();
}

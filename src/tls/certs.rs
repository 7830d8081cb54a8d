//! PEM → [`CertifiedKey`], and the self-signed default certificate.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{TlsError, describe_pem_error};

/// The notAfter of `key`'s leaf certificate, in Unix seconds.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#1 `RSA PRIVATE KEY`,
/// PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) into a rustls [`CertifiedKey`] signing with
/// the aws-lc-rs provider, and checks that the key belongs to the leaf certificate.
///
/// PEM blocks of other types (for example a key pasted into the certificate file) are skipped.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertificatePem(describe_pem_error(&e)))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            TlsError::PrivateKeyPem("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found")
        }
        e => TlsError::PrivateKeyPem(describe_pem_error(&e)),
    })?;
    // rustls' messages for unparsable keys are fixed strings, never the key bytes.
    let key = any_supported_type(&key_der).map_err(|e| TlsError::UnsupportedKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch)
        }
        // The aws-lc-rs signers all expose their public key, so this does not happen with them; a
        // key we cannot check is refused rather than served unchecked.
        Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Err(
            TlsError::UnsupportedKey("its public key cannot be derived to check it".to_owned()),
        ),
        Err(e) => Err(TlsError::InvalidCertificate(e.to_string())),
    }
}

/// Subject common name of the default certificate.
pub(crate) const DEFAULT_CN: &str = "weir default certificate";
/// The only subject alternative name of the default certificate: `.invalid` can never be a real
/// host (RFC 2606), so no client can mistake it for a site's certificate.
pub(crate) const DEFAULT_SAN: &str = "weir-default.invalid";
/// How long the default certificate is valid from start-up.
const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// How far before "now" the validity starts, for clients whose clocks run a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(60 * 60);

/// A self-signed certificate (ECDSA P-256, CN "weir default certificate", O "weir", SAN
/// `weir-default.invalid`, valid one year from now) generated at start-up. It is served when
/// no Ingress certificate matches the SNI, like ingress-nginx's "fake certificate": clients get
/// a handshake (and a certificate error) instead of a reset connection.
pub fn self_signed_default() -> Result<Arc<CertifiedKey>, TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key_pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let mut params =
        rcgen::CertificateParams::new(vec![DEFAULT_SAN.to_owned()]).map_err(generate)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, DEFAULT_CN);
    dn.push(rcgen::DnType::OrganizationName, "weir");
    params.distinguished_name = dn;
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + DEFAULT_VALIDITY).into();
    let cert = params.self_signed(&key_pair).map_err(generate)?;
    let key_der = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let key = any_supported_type(&key_der).map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testutil::{self, EC_CRT, EC_SEC1_KEY, RSA_CRT, RSA_PKCS1_KEY};

    #[test]
    fn parses_pkcs8_key() {
        let (cert, key) = testutil::self_signed(&["a.example.com"]);
        assert!(key.contains("BEGIN PRIVATE KEY"));
        let ck = certified_key_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn parses_pkcs1_rsa_key() {
        assert!(
            std::str::from_utf8(RSA_PKCS1_KEY)
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY")
        );
        certified_key_from_pem(RSA_CRT, RSA_PKCS1_KEY).unwrap();
    }

    #[test]
    fn parses_sec1_ec_key() {
        assert!(
            std::str::from_utf8(EC_SEC1_KEY)
                .unwrap()
                .contains("BEGIN EC PRIVATE KEY")
        );
        certified_key_from_pem(EC_CRT, EC_SEC1_KEY).unwrap();
    }

    #[test]
    fn keeps_the_whole_chain_leaf_first() {
        let (cert, key) = testutil::self_signed(&["a.example.com"]);
        let chain = format!("{cert}{}", std::str::from_utf8(EC_CRT).unwrap());
        let ck = certified_key_from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(ck.cert.len(), 2);
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (cert, _) = testutil::self_signed(&["a.example.com"]);
        let (_, other_key) = testutil::self_signed(&["a.example.com"]);
        let err = certified_key_from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert_eq!(err, TlsError::KeyMismatch);
        // Also across key types.
        let err = certified_key_from_pem(RSA_CRT, EC_SEC1_KEY).unwrap_err();
        assert_eq!(err, TlsError::KeyMismatch);
    }

    #[test]
    fn refuses_garbage() {
        let (cert, key) = testutil::self_signed(&["a.example.com"]);
        let err = certified_key_from_pem(b"not pem at all", key.as_bytes()).unwrap_err();
        assert_eq!(err, TlsError::NoCertificate);
        let err = certified_key_from_pem(cert.as_bytes(), b"garbage").unwrap_err();
        assert!(matches!(err, TlsError::PrivateKeyPem(_)), "{err}");
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = certified_key_from_pem(bad_base64.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::CertificatePem(_)), "{err}");
        let truncated = &key[..key.len() / 2];
        let err = certified_key_from_pem(cert.as_bytes(), truncated.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::PrivateKeyPem(_)), "{err}");
        let not_x509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = certified_key_from_pem(not_x509.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn errors_never_quote_the_key() {
        let (cert, key) = testutil::self_signed(&["a.example.com"]);
        // A key body with one bad base64 character in the middle.
        let mut lines: Vec<String> = key.lines().map(str::to_owned).collect();
        lines[1].replace_range(5..6, "*");
        let broken = lines.join("\n");
        let err = certified_key_from_pem(cert.as_bytes(), broken.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(&line[..8]), "{shown}");
        }
    }

    #[test]
    fn self_signed_default_works() {
        let ck = self_signed_default().unwrap();
        ck.keys_match().unwrap();
        let cert = webpki::EndEntityCert::try_from(&ck.cert[0]).unwrap();
        let san = rustls_pki_types::ServerName::try_from(DEFAULT_SAN).unwrap();
        cert.verify_is_valid_for_subject_name(&san).unwrap();
        // Debug output shows no key material (aws-lc-rs' key types print only the algorithm).
        assert!(!format!("{:?}", ck.key).contains("PRIVATE"));
    }
}

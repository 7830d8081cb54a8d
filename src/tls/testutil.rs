//! Test helpers: rcgen certificates and fixed openssl-made key pairs (`testdata/`, test-only
//! keys, never used outside tests).

/// `CN=rsa.example.com`, SAN `rsa.example.com`, RSA 2048, valid until 2125.
pub(crate) const RSA_CRT: &[u8] = include_bytes!("testdata/rsa.crt");
/// The PKCS#1 (`BEGIN RSA PRIVATE KEY`) key of [`RSA_CRT`].
pub(crate) const RSA_PKCS1_KEY: &[u8] = include_bytes!("testdata/rsa-pkcs1.key");
/// `CN=ec.example.com`, SAN `ec.example.com`, P-256, valid until 2125.
pub(crate) const EC_CRT: &[u8] = include_bytes!("testdata/ec.crt");
/// The SEC1 (`BEGIN EC PRIVATE KEY`) key of [`EC_CRT`].
pub(crate) const EC_SEC1_KEY: &[u8] = include_bytes!("testdata/ec-sec1.key");

/// A self-signed certificate for `names` and its PKCS#8 key, both PEM.
pub(crate) fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// A parsed [`self_signed`] certificate.
pub(crate) fn certified(names: &[&str]) -> std::sync::Arc<rustls::sign::CertifiedKey> {
    let (cert, key) = self_signed(names);
    super::certified_key_from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
}

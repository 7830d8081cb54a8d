//! [`TlsError`]: what can go wrong turning PEM into keys, generating the default certificate or
//! building the server configuration. Messages never contain key material.

/// Errors of the TLS module. The messages are safe to log and to put in Kubernetes Events: they
/// describe the problem, never the certificate or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate data holds no `CERTIFICATE` PEM block.
    #[error("no CERTIFICATE PEM block found in the certificate data")]
    NoCertificate,
    /// The certificate data is not well-formed PEM.
    #[error("the certificate PEM does not parse: {0}")]
    CertificatePem(&'static str),
    /// The leaf certificate is not a certificate rustls/webpki can read.
    #[error("the leaf certificate is not valid X.509: {0}")]
    InvalidCertificate(String),
    /// The key data is not well-formed PEM or holds no private key block.
    #[error("the private key PEM does not parse: {0}")]
    PrivateKeyPem(&'static str),
    /// The private key parsed as PEM but is not a key type weir can sign with.
    #[error("the private key is not a supported RSA, ECDSA or Ed25519 key: {0}")]
    UnsupportedKey(String),
    /// The private key does not belong to the leaf certificate.
    #[error("the private key does not match the public key of the (first) certificate")]
    KeyMismatch,
    /// rcgen could not generate the self-signed default certificate.
    #[error("generating the self-signed default certificate failed: {0}")]
    Generate(String),
    /// rustls refused the server configuration.
    #[error("building the TLS server configuration failed: {0}")]
    Config(String),
}

/// A description of a PEM parse error that carries none of the input: the pki-types errors can
/// quote a line or a byte of the input, which for a key file is secret.
pub(crate) fn describe_pem_error(err: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match err {
        Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        Error::Base64Decode(_) => "a PEM section is not valid base64",
        Error::NoItemsFound => "no matching PEM block found",
        Error::SectionTooLarge => "a PEM section is too large",
        _ => "the PEM data is malformed",
    }
}

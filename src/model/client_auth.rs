//! Client certificates (mTLS, the `auth-tls-*` annotations): the typed policy of a host, read
//! once per table. The TLS listener asks for a certificate when the SNI names a host with a
//! policy (`src/proxy/client_cert.rs`), and every request to that host is checked against it
//! (`src/proxy/policy/client_cert.rs`).

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use super::diagnostic::ObjectRef;

/// How a host treats client certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The Secret the CA bundle came from (`auth-tls-secret`).
    pub secret: ObjectRef,
    /// The CA certificates (DER) a client certificate must chain to (`ca.crt`).
    pub ca: Vec<Vec<u8>>,
    /// Certificate revocation lists (DER, `ca.crl`): when there are any, every certificate of
    /// a chain must be covered by a current one and not revoked.
    pub crl: Vec<Vec<u8>>,
    /// `auth-tls-verify-client`.
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: the longest chain from the client certificate to a CA, in
    /// certificates above the client's (1: issued by a CA of the bundle).
    pub depth: u8,
    /// `auth-tls-error-page`: where a request without a valid certificate is redirected
    /// (302) instead of getting 400.
    pub error_page: Option<HeaderValue>,
    /// `auth-tls-pass-certificate-to-upstream`: the endpoint gets the certificate (PEM,
    /// URL-encoded) in `ssl-client-cert`.
    pub pass_certificate: bool,
    /// `auth-tls-match-cn`: the certificate's subject must match this regex.
    pub match_cn: Option<MatchCn>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("secret", &self.secret)
            .field("ca_certificates", &self.ca.len())
            .field("revocation_lists", &self.crl.len())
            .field("verify", &self.verify)
            .field("depth", &self.depth)
            .field("error_page", &self.error_page)
            .field("pass_certificate", &self.pass_certificate)
            .field("match_cn", &self.match_cn)
            .finish()
    }
}

/// A host's client-certificate setting: the policy, or why the Ingress that asked for one
/// cannot have it (then every request to the host is refused with 503).
pub type HostClientAuth = Result<Arc<ClientAuth>, Arc<str>>;

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// A certificate signed by the CA is required (`on`, the default).
    On,
    /// A certificate is asked for; without one the request passes, with one it must be valid
    /// (`optional`).
    Optional,
    /// A certificate is asked for and passed on whatever it is; the endpoint decides
    /// (`optional_no_ca`).
    OptionalNoCa,
}

/// `auth-tls-match-cn`: a regex the certificate's subject (`CN=…,O=…`, RFC 2253) must match
/// somewhere, as nginx's `!~` tests it.
#[derive(Clone)]
pub struct MatchCn(regex::Regex);

impl MatchCn {
    /// Compiles `pattern`; `None` when it is not a regex.
    pub fn new(pattern: &str) -> Option<MatchCn> {
        regex::Regex::new(pattern).ok().map(MatchCn)
    }

    /// Whether `subject` matches.
    pub fn matches(&self, subject: &str) -> bool {
        self.0.is_match(subject)
    }
}

impl PartialEq for MatchCn {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for MatchCn {}

impl fmt::Debug for MatchCn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

/// The certificates of a PEM bundle as DER; `Err` says what is wrong (never quoting the
/// bytes). Every certificate must parse as X.509.
pub fn ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    pem_blocks(pem, "CERTIFICATE", "certificate", |der| {
        x509_parser::parse_x509_certificate(der).is_ok()
    })
}

/// The revocation lists of a PEM file (`X509 CRL` blocks) as DER; `Err` says what is wrong.
pub fn crl_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    pem_blocks(pem, "X509 CRL", "revocation list", |der| {
        x509_parser::parse_x509_crl(der).is_ok()
    })
}

/// The DER contents of the `label` blocks of `pem`, each of which `valid` must accept; at
/// least one.
fn pem_blocks(
    pem: &[u8],
    label: &str,
    what: &str,
    valid: impl Fn(&[u8]) -> bool,
) -> Result<Vec<Vec<u8>>, String> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|_| format!("it is not PEM ({label} blocks)"))?;
        if block.label != label {
            continue;
        }
        if !valid(&block.contents) {
            return Err(format!("{what} {} does not parse", blocks.len() + 1));
        }
        blocks.push(block.contents);
    }
    if blocks.is_empty() {
        return Err(format!("it holds no PEM {label} block"));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_must_hold_certificates() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let pem = ca.cert.pem();
        assert_eq!(ca_bundle(pem.as_bytes()).unwrap().len(), 1);
        let two = format!("{pem}{pem}");
        assert_eq!(ca_bundle(two.as_bytes()).unwrap().len(), 2);
        assert!(ca_bundle(b"").is_err());
        assert!(ca_bundle(b"not pem").is_err());
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ca_bundle(broken.as_bytes()).is_err());
    }

    #[test]
    fn match_cn_searches_the_subject() {
        let m = MatchCn::new("CN=(alice|bob)").unwrap();
        assert!(m.matches("CN=alice,O=Example"));
        assert!(!m.matches("CN=carol,O=Example"));
        assert!(MatchCn::new("CN=(").is_none());
    }
}

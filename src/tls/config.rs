//! The rustls [`ServerConfig`] of weir's HTTPS listener.

use std::fmt;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};

use super::client_cert::ClientCertPolicy;
use super::error::TlsError;

/// TLS sessions remembered for session-ID resumption (TLS 1.2 clients without ticket support).
/// A few hundred bytes each.
const SESSION_CACHE_SIZE: usize = 4096;

/// A rustls [`ServerConfig`] for the HTTPS listener: TLS 1.2 and 1.3 only, ALPN `h2` then
/// `http/1.1`, certificates from `resolver`, and session resumption on (an in-memory session
/// cache plus stateless tickets from aws-lc-rs' rotating [`aws_lc_rs::Ticketer`]).
///
/// The aws-lc-rs provider (chosen over ring for its faster RSA signing: full handshakes cost
/// ~40% less CPU) is named explicitly rather than taken from the process default, so the
/// listener's cipher suites do not depend on what else installed a provider. Ticket keys live in
/// this process only: a client resumes on the replica that issued its ticket and makes a full
/// handshake elsewhere.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    build(resolver, None)
}

/// [`server_config`], asking for client certificates through `verifier` when there is one.
fn build(
    resolver: Arc<dyn ResolvesServerCert>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(config_error)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = aws_lc_rs::Ticketer::new().map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The HTTPS listener's configurations: the one for every host, and the one of each
/// client-certificate policy ([`ServerConfigs::client_cert_policy`], made on demand; each has
/// session caches of its own, so that a session resumed on one never skips the other's
/// certificate).
pub struct ServerConfigs {
    resolver: Arc<dyn ResolvesServerCert>,
    default: Arc<ServerConfig>,
}

impl fmt::Debug for ServerConfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerConfigs")
    }
}

impl ServerConfigs {
    /// The configurations with certificates from `resolver`.
    pub fn new(resolver: Arc<dyn ResolvesServerCert>) -> Result<Self, TlsError> {
        Ok(ServerConfigs {
            default: server_config(resolver.clone())?,
            resolver,
        })
    }

    /// The configuration of hosts without client certificates.
    pub fn default_config(&self) -> &Arc<ServerConfig> {
        &self.default
    }

    /// The configuration and verifier for hosts whose certificates must chain to `ca` (DER)
    /// within `depth`, checked against the revocation lists `crl` (DER) when there are any.
    pub fn client_cert_policy(
        &self,
        ca: &[Vec<u8>],
        crl: &[Vec<u8>],
        depth: u8,
    ) -> Result<ClientCertPolicy, TlsError> {
        ClientCertPolicy::new(ca, crl, depth, |verifier| {
            build(self.resolver.clone(), Some(verifier))
        })
    }
}

#[cfg(test)]
mod tests;

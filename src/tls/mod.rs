//! TLS termination: PEM Secrets → rustls keys, the SNI certificate store and the listener's
//! rustls configuration.
//!
//! This is the only module that names rustls traits; the proxy gets a ready
//! [`rustls::ServerConfig`] from [`server_config`] and a resolver ([`CertStore`] or
//! [`LiveResolver`]), the controller calls [`compile`] with the model's TLS bindings.
//!
//! Key material never appears in logs, errors or `Debug` output: errors describe *what* is wrong
//! (never the bytes), and the types holding keys print only host names and counts.

mod certs;
mod client_cert;
mod compile;
mod config;
mod default;
mod error;
mod store;
mod upstream;

pub use certs::{certified_key_from_pem, self_signed_default};
pub use client_cert::ClientCertPolicy;
pub use compile::compile;
pub use config::{ServerConfigs, server_config};
pub use default::{Certified, default_certificate};
pub use error::TlsError;
pub use store::{CertStore, LiveResolver, ServedCertificate};
pub use upstream::{UpstreamTlsClient, is_certificate_error, upstream_client};

#[cfg(test)]
mod testutil;

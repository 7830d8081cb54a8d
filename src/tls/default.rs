//! The certificate served when no other matches: `--default-ssl-certificate`, else the
//! self-signed one made at start-up.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

use crate::model::{Diagnostic, ObjectRef, Reason};

/// A certificate with its key, ready for handshakes.
pub type Certified = Arc<CertifiedKey>;

/// The default certificate: the TLS Secret `secret` when given, present and valid, else
/// `generated`. A Secret that is missing or invalid is reported (on the Secret).
pub fn default_certificate(
    secret: Option<&ObjectRef>,
    secrets: &[Secret],
    generated: &Certified,
) -> (Certified, Option<Diagnostic>) {
    let Some(wanted) = secret else {
        return (generated.clone(), None);
    };
    let found = secrets.iter().find(|s| {
        s.metadata.name.as_deref() == Some(wanted.name.as_str())
            && s.metadata.namespace.as_deref().unwrap_or("default") == wanted.namespace
    });
    let problem = |reason, message: String| Some(Diagnostic::new(wanted.clone(), reason, message));
    let Some(found) = found.filter(|s| s.type_.as_deref() == Some("kubernetes.io/tls")) else {
        let message = format!(
            "the --default-ssl-certificate Secret {}/{} does not exist or is not of type kubernetes.io/tls; \
             the self-signed default certificate is served",
            wanted.namespace, wanted.name
        );
        return (
            generated.clone(),
            problem(Reason::TlsSecretNotFound, message),
        );
    };
    let field = |key: &str| {
        found
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .unwrap_or_default()
    };
    match super::certified_key_from_pem(field("tls.crt"), field("tls.key")) {
        Ok(key) => (key, None),
        Err(error) => {
            let message = format!(
                "the --default-ssl-certificate Secret {}/{} cannot be used ({error}); the self-signed default \
                 certificate is served",
                wanted.namespace, wanted.name
            );
            (
                generated.clone(),
                problem(Reason::InvalidTlsSecret, message),
            )
        }
    }
}

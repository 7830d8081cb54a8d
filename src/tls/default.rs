//! The certificate served when no other matches: `--default-ssl-certificate`, else the
//! self-signed one made at start-up.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;

use super::compile::load_secret;
use crate::model::{Diagnostic, ObjectRef};

/// A certificate with its key, ready for handshakes.
pub type Certified = Arc<CertifiedKey>;

/// The default certificate: the TLS Secret `secret` when given, present and valid, else
/// `generated`. A Secret that is missing or invalid is reported (on the Secret).
pub fn default_certificate(
    secret: Option<&ObjectRef>,
    secrets: &[Arc<Secret>],
    generated: &Certified,
) -> (Certified, Option<Diagnostic>) {
    let Some(wanted) = secret else {
        return (generated.clone(), None);
    };
    match load_secret(secrets, wanted) {
        Ok(key) => (key, None),
        Err(problem) => {
            let message = format!(
                "--default-ssl-certificate: {}; the self-signed default certificate is served",
                problem.message
            );
            (
                generated.clone(),
                Some(Diagnostic::new(wanted.clone(), problem.reason, message)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectKind, Reason};
    use crate::tls::testutil::{certified, self_signed};
    use k8s_openapi::ByteString;

    fn tls_secret(name: &str, cert: &str, key: &str) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ingress".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    ("tls.crt".to_owned(), ByteString(cert.as_bytes().to_vec())),
                    ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        })
    }

    #[test]
    fn the_flag_secret_when_valid_else_the_generated_certificate_and_a_diagnostic() {
        let generated = certified(&["weir-default.invalid"]);
        let wanted = ObjectRef::new(ObjectKind::Secret, "ingress", "default-cert");
        let (cert, key) = self_signed(&["example.com"]);
        let good = [tls_secret("default-cert", &cert, &key)];

        let (chosen, problem) = default_certificate(None, &good, &generated);
        assert!(Arc::ptr_eq(&chosen, &generated) && problem.is_none());

        let (chosen, problem) = default_certificate(Some(&wanted), &good, &generated);
        assert!(!Arc::ptr_eq(&chosen, &generated) && problem.is_none());

        let (chosen, problem) = default_certificate(Some(&wanted), &[], &generated);
        assert!(Arc::ptr_eq(&chosen, &generated));
        assert_eq!(problem.unwrap().reason, Reason::TlsSecretNotFound);

        let broken = [tls_secret("default-cert", &cert, "not a key")];
        let (chosen, problem) = default_certificate(Some(&wanted), &broken, &generated);
        assert!(Arc::ptr_eq(&chosen, &generated));
        let problem = problem.unwrap();
        assert_eq!(problem.reason, Reason::InvalidTlsSecret);
        assert_eq!(problem.object, wanted, "reported on the Secret");
    }
}

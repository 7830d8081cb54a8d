//! [`compile`]: the model's TLS bindings plus the Secrets they name → a [`CertStore`] and
//! diagnostics for the hosts that fall back to the default certificate.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;

use super::certs::{certified_key_from_pem, not_after};
use super::store::{CertStore, ServedCertificate};
use crate::model::{Diagnostic, ObjectRef, Reason, TlsBinding};

/// The Secret type whose `tls.crt`/`tls.key` weir reads.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The label put in front of a wildcard binding's suffix to check the certificate covers it.
const WILDCARD_PROBE: &str = "weir-check";

/// Compiles the bindings into a store over `default`.
///
/// Each Secret is parsed once however many hosts use it. A host whose Secret is missing or not
/// of type `kubernetes.io/tls` (`TlsSecretNotFound`), does not parse or has a key that does not
/// match the certificate (`InvalidTlsSecret`), or whose certificate does not name it
/// (`TlsHostNotCovered`) is left out, so it is served the default certificate; the diagnostic is
/// reported on the Ingress of the binding. Messages name the Secret and the problem, never key
/// material. Diagnostics are sorted and deduplicated.
///
/// Host coverage is checked like a client would (webpki): against the certificate's DNS
/// subject alternative names; the subject CN is ignored, as browsers do. A wildcard binding
/// `*.example.com` is covered when `weir-check.example.com` would be valid. Expiry is not
/// checked: an expired certificate is still the one the user asked for.
pub fn compile(
    bindings: &[TlsBinding],
    secrets: &[Arc<Secret>],
    default: Arc<CertifiedKey>,
) -> (CertStore, Vec<Diagnostic>) {
    let index = index_secrets(secrets);
    let mut parsed: HashMap<&ObjectRef, Result<Arc<CertifiedKey>, Problem>> = HashMap::new();
    let mut store = CertStore::new(default);
    let mut diagnostics = Vec::new();

    for binding in bindings {
        let loaded = parsed
            .entry(&binding.secret)
            .or_insert_with(|| load(&index, &binding.secret));
        let key = match loaded {
            Ok(key) => key,
            Err(problem) => {
                diagnostics.push(Diagnostic::new(
                    binding.ingress.clone(),
                    problem.reason,
                    format!(
                        "{}; its TLS hosts use the default certificate",
                        problem.message
                    ),
                ));
                continue;
            }
        };
        match covers(key, &binding.host) {
            Ok(()) => {
                store.insert(&binding.host, key.clone());
                store.record(ServedCertificate {
                    host: binding.host.clone(),
                    namespace: binding.secret.namespace.clone(),
                    secret: binding.secret.name.clone(),
                    not_after: not_after(key),
                });
            }
            Err(why) => diagnostics.push(Diagnostic::new(
                binding.ingress.clone(),
                Reason::TlsHostNotCovered,
                format!(
                    "the certificate of Secret {}/{} does not cover host {} ({why}); the host uses the default certificate",
                    binding.secret.namespace, binding.secret.name, binding.host
                ),
            )),
        }
    }
    diagnostics.sort();
    diagnostics.dedup();
    (store, diagnostics)
}

/// Why a Secret cannot be used: the reason and a message naming the Secret.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) reason: Reason,
    pub(super) message: String,
}

/// Loads the TLS Secret `secret` from `secrets`, as [`compile`] does for each binding.
pub(super) fn load_secret(
    secrets: &[Arc<Secret>],
    secret: &ObjectRef,
) -> Result<Arc<CertifiedKey>, Problem> {
    load(&index_secrets(secrets), secret)
}

/// Secrets by (namespace, name); a missing namespace means `default`, as in the model. Should
/// a manifests directory declare one Secret twice, the smaller JSON form wins (like the model's
/// index), so the choice does not depend on input order.
fn index_secrets(secrets: &[Arc<Secret>]) -> BTreeMap<(&str, &str), &Secret> {
    let mut index: BTreeMap<(&str, &str), &Secret> = BTreeMap::new();
    for secret in secrets.iter().map(Arc::as_ref) {
        let namespace = match secret.metadata.namespace.as_deref() {
            None | Some("") => "default",
            Some(ns) => ns,
        };
        let name = secret.metadata.name.as_deref().unwrap_or("");
        index
            .entry((namespace, name))
            .and_modify(|kept| {
                if json(secret) < json(kept) {
                    *kept = secret;
                }
            })
            .or_insert(secret);
    }
    index
}

fn json(secret: &Secret) -> String {
    serde_json::to_string(secret).unwrap_or_default()
}

/// Finds and parses one Secret.
fn load(
    index: &BTreeMap<(&str, &str), &Secret>,
    secret: &ObjectRef,
) -> Result<Arc<CertifiedKey>, Problem> {
    let (ns, name) = (secret.namespace.as_str(), secret.name.as_str());
    let not_found = |message: String| Problem {
        reason: Reason::TlsSecretNotFound,
        message,
    };
    let invalid = |message: String| Problem {
        reason: Reason::InvalidTlsSecret,
        message,
    };
    let Some(found) = index.get(&(ns, name)) else {
        return Err(not_found(format!("Secret {ns}/{name} does not exist")));
    };
    let kind = found.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(not_found(format!(
            "Secret {ns}/{name} is of type {kind:?}, not {TLS_SECRET_TYPE:?}"
        )));
    }
    let field = |key: &str| {
        data(found, key).ok_or_else(|| invalid(format!("Secret {ns}/{name} has no {key:?} data")))
    };
    let (cert, key) = (field("tls.crt")?, field("tls.key")?);
    certified_key_from_pem(cert, key)
        .map_err(|e| invalid(format!("Secret {ns}/{name} cannot be used: {e}")))
}

/// A data entry of a Secret: `data`, or `stringData` for hand-written manifests (the API
/// server folds `stringData` into `data` on write).
fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice());
    from_data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.as_bytes())
    })
}

/// Whether the leaf certificate of `key` is valid for `host` (exact or `*.` wildcard).
fn covers(key: &CertifiedKey, host: &str) -> Result<(), String> {
    let probe = match host.strip_prefix("*.") {
        Some(suffix) => format!("{WILDCARD_PROBE}.{suffix}"),
        None => host.to_owned(),
    };
    let name = ServerName::try_from(probe.as_str()).map_err(|e| e.to_string())?;
    let leaf = key.cert.first().ok_or("no certificate")?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|e| match e {
            webpki::Error::CertNotValidForName(context) => describe_names(&context.presented),
            e => e.to_string(),
        })
}

/// "its names are …" from webpki's list of presented names (`DnsName("a.example.com")`, …).
fn describe_names(presented: &[String]) -> String {
    let names: Vec<&str> = presented
        .iter()
        .map(|n| {
            n.strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .unwrap_or(n)
        })
        .collect();
    if names.is_empty() {
        "it has no subject alternative names; the subject CN is not used".to_owned()
    } else {
        format!("its names are {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests;

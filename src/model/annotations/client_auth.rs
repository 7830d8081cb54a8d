//! `auth-tls-secret`, `auth-tls-verify-client`, `auth-tls-verify-depth`,
//! `auth-tls-error-page`, `auth-tls-pass-certificate-to-upstream`, `auth-tls-match-cn`:
//! client certificates for the Ingress's hosts (see [`ClientAuth`]).
//!
//! As in ingress-nginx they apply to whole hosts (nginx's server block): when several
//! Ingresses name a host, the oldest one that sets them decides for every path of that host.
//! The Secret holds the CA bundle in `ca.crt` (same namespace; `namespace/name` elsewhere only
//! with `--allow-cross-namespace-resources`), and optionally revocation lists in `ca.crl`.
//! Whatever keeps the policy from being set up — a missing Secret or key, a bundle or list that
//! does not parse, an invalid value — makes the Ingress's routes refuse (503): a host never
//! serves without the certificates it asked for.

use std::sync::Arc;

use http::HeaderValue;

use super::{Key, OnInvalid, Reader, values};
use crate::model::client_auth::{
    ClientAuth, HostClientAuth, MatchCn, VerifyClient, ca_bundle, crl_bundle,
};

pub(super) const KEYS: &[Key] = &[
    Key::host("auth-tls-secret", OnInvalid::Refuse),
    Key::host("auth-tls-verify-client", OnInvalid::Refuse),
    Key::host("auth-tls-verify-depth", OnInvalid::Refuse),
    Key::host("auth-tls-error-page", OnInvalid::Refuse),
    Key::host("auth-tls-pass-certificate-to-upstream", OnInvalid::Refuse),
    Key::host("auth-tls-match-cn", OnInvalid::Refuse),
];

/// The client-certificate setting of the Ingress's hosts, when it asks for one: the policy, or
/// (reported, and the Ingress's routes refused) why it cannot be set up, which makes its hosts
/// refuse every request, other Ingresses' paths included.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<HostClientAuth> {
    let asked = r
        .get("auth-tls-secret")
        .is_some_and(|secret| !secret.trimmed().is_empty());
    match policy(r) {
        Some(policy) => Some(Ok(policy)),
        None if asked && r.refuses() => Some(Err(Arc::from(format!(
            "the auth-tls-* annotations of Ingress {}/{} cannot be used (see its Events)",
            r.object().namespace,
            r.object().name
        )))),
        None => None,
    }
}

/// The policy, when it is asked for and can be set up (else refused and reported).
fn policy(r: &mut Reader<'_>) -> Option<Arc<ClientAuth>> {
    let verify = match r.get("auth-tls-verify-client") {
        None => VerifyClient::On,
        Some(found) => match found.trimmed() {
            "on" | "" => VerifyClient::On,
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => VerifyClient::OptionalNoCa,
            "off" => return None,
            _ => {
                r.refuse(
                    found,
                    "it must be \"on\", \"off\", \"optional\" or \"optional_no_ca\"",
                );
                return None;
            }
        },
    };
    let Some(secret) = r.get("auth-tls-secret").filter(|s| !s.trimmed().is_empty()) else {
        // Without a Secret nothing is asked for (as in ingress-nginx); a companion alone is
        // unread and reported as such below.
        return None;
    };
    let depth = match r.get("auth-tls-verify-depth") {
        None => 1,
        Some(found) => match found.trimmed().parse::<u8>() {
            Ok(depth @ 1..=10) => depth,
            _ => {
                r.refuse(found, "it must be a whole number from 1 to 10");
                return None;
            }
        },
    };
    let error_page = match r.get("auth-tls-error-page") {
        None => None,
        Some(found) => {
            let page = found.trimmed();
            let valid = (page.starts_with("http://")
                || page.starts_with("https://")
                || page.starts_with('/'))
                && page.parse::<http::Uri>().is_ok();
            match valid.then(|| HeaderValue::from_str(page).ok()).flatten() {
                Some(page) => Some(page),
                None => {
                    r.refuse(found, "it must be an http(s) URL or a path");
                    return None;
                }
            }
        }
    };
    let pass_certificate = match r.get("auth-tls-pass-certificate-to-upstream") {
        None => false,
        Some(found) => match values::boolean(found.value) {
            Some(pass) => pass,
            None => {
                r.refuse(found, values::BOOLEAN);
                return None;
            }
        },
    };
    let match_cn = match r.get("auth-tls-match-cn") {
        None => None,
        Some(found) => {
            match MatchCn::new(found.trimmed()).filter(|_| found.trimmed().starts_with("CN=")) {
                Some(m) => Some(m),
                None => {
                    r.refuse(
                        found,
                        "it must be a regex starting with \"CN=\", e.g. \"CN=(alice|bob)\"",
                    );
                    return None;
                }
            }
        }
    };
    let (object, data) = r.secret(secret)?;
    let secret_data = (&object, data);
    let crl = r
        .secret_key(secret, secret_data, "ca.crl", crl_bundle)
        .ok()?
        .unwrap_or_default();
    let Some(ca) = r
        .secret_key(secret, secret_data, "ca.crt", ca_bundle)
        .ok()?
    else {
        let why = format!(
            "the Secret {}/{} has no key \"ca.crt\" (the CA bundle)",
            object.namespace, object.name
        );
        r.refuse(secret, &why);
        return None;
    };
    Some(Arc::new(ClientAuth {
        secret: object,
        ca,
        crl,
        verify,
        depth,
        error_page,
        pass_certificate,
        match_cn,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_in};
    use crate::model::client_auth::VerifyClient;
    use k8s_openapi::api::core::v1::Secret;
    use std::sync::Arc;

    fn ca_secret(name: &str, key: &str, pem: &str) -> Arc<Secret> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "d"},
                "data": {key: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem)},
            }))
            .unwrap(),
        )
    }

    fn crl_secret() -> Arc<Secret> {
        let encode =
            |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "ca", "namespace": "d"},
                "data": {"ca.crt": encode(&ca_pem()), "ca.crl": encode("a CRL")},
            }))
            .unwrap(),
        )
    }

    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn a_ca_secret_sets_up_verification_with_both_prefixes() {
        let secrets = [ca_secret("ca", "ca.crt", &ca_pem())];
        for key in both("auth-tls-secret") {
            let (parsed, diagnostics) = parse_in(&[(&key, "ca")], &secrets, false);
            assert!(diagnostics.is_empty(), "{diagnostics:#?}");
            let auth = parsed.host.client_auth.unwrap().unwrap();
            assert_eq!(auth.verify, VerifyClient::On);
            assert_eq!((auth.depth, auth.ca.len()), (1, 1));
        }
        let [_, prefix] = both("");
        let key = |name: &str| format!("{prefix}{name}");
        let (parsed, diagnostics) = parse_in(
            &[
                (&key("auth-tls-secret"), "ca"),
                (&key("auth-tls-verify-client"), "optional_no_ca"),
                (&key("auth-tls-verify-depth"), "3"),
                (&key("auth-tls-error-page"), "https://example.com/cert-help"),
                (&key("auth-tls-pass-certificate-to-upstream"), "true"),
                (&key("auth-tls-match-cn"), "CN=(alice|bob)"),
            ],
            &secrets,
            false,
        );
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let auth = parsed.host.client_auth.unwrap().unwrap();
        assert_eq!(auth.verify, VerifyClient::OptionalNoCa);
        assert_eq!(auth.depth, 3);
        assert!(auth.pass_certificate && auth.error_page.is_some());
        assert!(auth.match_cn.as_ref().unwrap().matches("CN=bob,O=x"));
        let (off, _) = parse_in(
            &[
                (&key("auth-tls-secret"), "ca"),
                (&key("auth-tls-verify-client"), "off"),
            ],
            &secrets,
            false,
        );
        assert!(off.host.client_auth.is_none() && off.policy.refused.is_none());
    }

    #[test]
    fn anything_unusable_refuses_the_routes() {
        let [_, prefix] = both("");
        let key = |name: &str| format!("{prefix}{name}");
        let good = ca_secret("ca", "ca.crt", &ca_pem());
        /// The annotations, the Secrets in the cluster.
        type Case<'a> = (Vec<(String, &'a str)>, Vec<Arc<Secret>>);
        let cases: Vec<Case<'_>> = vec![
            (vec![(key("auth-tls-secret"), "missing")], vec![]),
            (
                vec![(key("auth-tls-secret"), "ca")],
                vec![ca_secret("ca", "tls.crt", &ca_pem())],
            ),
            (
                vec![(key("auth-tls-secret"), "ca")],
                vec![ca_secret("ca", "ca.crt", "garbage")],
            ),
            (vec![(key("auth-tls-secret"), "ca")], vec![crl_secret()]),
            (
                vec![(key("auth-tls-secret"), "other/ca")],
                vec![good.clone()],
            ),
            (
                vec![(key("auth-tls-secret"), "Bad Name")],
                vec![good.clone()],
            ),
            (
                vec![
                    (key("auth-tls-secret"), "ca"),
                    (key("auth-tls-verify-client"), "require"),
                ],
                vec![good.clone()],
            ),
            (
                vec![
                    (key("auth-tls-secret"), "ca"),
                    (key("auth-tls-verify-depth"), "0"),
                ],
                vec![good.clone()],
            ),
            (
                vec![
                    (key("auth-tls-secret"), "ca"),
                    (key("auth-tls-match-cn"), "alice"),
                ],
                vec![good.clone()],
            ),
            (
                vec![
                    (key("auth-tls-secret"), "ca"),
                    (key("auth-tls-pass-certificate-to-upstream"), "yes"),
                ],
                vec![good.clone()],
            ),
            (
                vec![
                    (key("auth-tls-secret"), "ca"),
                    (key("auth-tls-error-page"), "not a url"),
                ],
                vec![good.clone()],
            ),
        ];
        for (pairs, secrets) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let (parsed, diagnostics) = parse_in(&pairs, &secrets, false);
            assert!(parsed.policy.refused.is_some(), "{pairs:?}");
            assert!(
                matches!(parsed.host.client_auth, Some(Err(_))),
                "{pairs:?}: the host fails closed"
            );
            assert!(
                diagnostics.iter().any(|d| d.message.contains("503")),
                "{pairs:?}"
            );
        }
    }
}

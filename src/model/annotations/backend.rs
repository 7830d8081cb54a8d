//! `backend-protocol`, `secure-backends` and the `proxy-ssl-*` annotations: how the Ingress's
//! routes talk to their endpoints (see [`Upstream`]).
//!
//! ingress-nginx's values: `HTTP` (the default), `HTTPS`, `GRPC`, `GRPCS`, `AUTO_HTTP` (HTTP to
//! the endpoint), `AJP`; weir adds `H2C` (HTTP/2 in cleartext). `FCGI` and `AJP` are not
//! spoken. An unknown or unsupported value, or TLS settings that cannot be set up (a Secret
//! that is missing, lacks `ca.crt` where verification needs it, or holds no usable client
//! certificate; a `proxy-ssl-name` that is not a DNS name), make the routes answer 503: weir
//! never talks to an endpoint in a way the Ingress did not ask for.
//!
//! Where weir differs from ingress-nginx:
//! - ingress-nginx ignores every `proxy-ssl-*` annotation unless `proxy-ssl-secret` is set;
//!   weir applies them without it, and `proxy-ssl-verify: "on"` without a Secret verifies
//!   against the system's trust store.
//! - Without `proxy-ssl-name`, the name verified is the Service's DNS name
//!   (`service.namespace.svc`); nginx verifies its upstream's internal name, which no
//!   certificate carries.
//! - `proxy-ssl-protocols` offers TLS 1.2 and 1.3 (rustls has nothing older); the default is
//!   both. `proxy-ssl-ciphers` is read and ignored with a Diagnostic: rustls's suites are all
//!   modern AEAD suites.

use std::sync::Arc;

use super::{Found, Key, OnInvalid, Reader, values};
use crate::model::client_auth::ca_bundle;
use crate::model::diagnostic::Reason;
use crate::model::upstream::{ClientIdentity, Protocol, TlsVersions, Upstream, UpstreamTls};

pub(super) const KEYS: &[Key] = &[
    Key::route("backend-protocol", OnInvalid::Refuse),
    Key::route("secure-backends", OnInvalid::Refuse),
    Key::route("proxy-ssl-secret", OnInvalid::Refuse),
    Key::route("proxy-ssl-verify", OnInvalid::Refuse),
    Key::route("proxy-ssl-verify-depth", OnInvalid::Refuse),
    Key::route("proxy-ssl-name", OnInvalid::Refuse),
    Key::route("proxy-ssl-server-name", OnInvalid::Refuse),
    Key::route("proxy-ssl-protocols", OnInvalid::Default),
    Key::route("proxy-ssl-ciphers", OnInvalid::Default),
];

const PROTOCOLS: &str = "it must be one of HTTP, HTTPS, GRPC, GRPCS, H2C (AUTO_HTTP is HTTP)";
const ON_OFF: &str = "it must be \"on\" or \"off\"";
const VERSIONS: &str = "it must list TLS versions: TLSv1.2, TLSv1.3";

/// How the Ingress's routes reach their endpoints; the default when the annotations ask for
/// nothing or for something weir refuses (reported, the routes answer 503).
pub(super) fn parse(r: &mut Reader<'_>) -> Upstream {
    let protocol = protocol(r);
    let ciphers = r.get("proxy-ssl-ciphers");
    if let Some(found) = ciphers.filter(|f| !f.trimmed().eq_ignore_ascii_case("DEFAULT")) {
        r.report(
            Reason::UnsupportedAnnotation,
            format!(
                "annotation {:?} is ignored: weir offers rustls's cipher suites (AEAD only, \
                 with forward secrecy)",
                found.key
            ),
        );
    }
    let tls = tls(r, protocol);
    match protocol {
        Some(protocol) if protocol.is_tls() => match tls {
            Some(tls) => Upstream {
                protocol,
                tls: Some(Arc::new(tls)),
            },
            None => Upstream::default(),
        },
        Some(protocol) => Upstream {
            protocol,
            tls: None,
        },
        None => Upstream::default(),
    }
}

/// The protocol asked for; `None` when refused.
fn protocol(r: &mut Reader<'_>) -> Option<Protocol> {
    let secure = match r.get("secure-backends") {
        None => false,
        Some(found) => match values::boolean(found.value) {
            Some(secure) => secure,
            None => {
                r.refuse(found, values::BOOLEAN);
                return None;
            }
        },
    };
    let Some(found) = r.get("backend-protocol") else {
        return Some(if secure {
            Protocol::Https
        } else {
            Protocol::Http
        });
    };
    let protocol = match found.trimmed().to_ascii_uppercase().as_str() {
        "HTTP" | "AUTO_HTTP" | "" => Protocol::Http,
        "HTTPS" => Protocol::Https,
        "GRPC" => Protocol::Grpc,
        "GRPCS" => Protocol::Grpcs,
        "H2C" => Protocol::H2c,
        "AJP" | "FCGI" => {
            r.refuse(
                found,
                "weir does not speak AJP or FastCGI to endpoints; put an HTTP server in front \
                 of the application",
            );
            return None;
        }
        _ => {
            r.refuse(found, PROTOCOLS);
            return None;
        }
    };
    Some(protocol)
}

/// The TLS settings; `None` when they cannot be set up (refused and reported) or when the
/// protocol is not TLS (then any `proxy-ssl-*` annotation is reported as without effect).
fn tls(r: &mut Reader<'_>, protocol: Option<Protocol>) -> Option<UpstreamTls> {
    let verify = on_off(r, "proxy-ssl-verify")?.unwrap_or(false);
    let sni = on_off(r, "proxy-ssl-server-name")?.unwrap_or(false);
    let verify_depth = match r.get("proxy-ssl-verify-depth") {
        None => 1,
        Some(found) => match found.trimmed().parse::<u8>() {
            Ok(0) => 1,
            Ok(depth) => depth,
            Err(_) => {
                r.refuse(found, "it must be a whole number from 0 to 255");
                return None;
            }
        },
    };
    let name = match r.get("proxy-ssl-name") {
        None => None,
        Some(found) if is_server_name(found.trimmed()) => {
            Some(found.trimmed().trim_end_matches('.').to_ascii_lowercase())
        }
        Some(found) => {
            r.refuse(found, "it must be a DNS name or an IP address");
            return None;
        }
    };
    let versions = versions(r);
    let secret = r.get("proxy-ssl-secret");
    let is_tls = protocol.is_some_and(Protocol::is_tls);
    if !is_tls {
        if protocol.is_some() {
            let set: Vec<&str> = ["proxy-ssl-secret", "proxy-ssl-verify", "proxy-ssl-name"]
                .into_iter()
                .filter_map(|name| r.get(name).map(|f| f.key))
                .collect();
            if !set.is_empty() {
                r.report(
                    Reason::InvalidAnnotationValue,
                    format!(
                        "{} {} no effect: the endpoints are not reached over TLS (set \
                         backend-protocol to HTTPS or GRPCS)",
                        set.join(", "),
                        if set.len() == 1 { "has" } else { "have" }
                    ),
                );
            }
        }
        return None;
    }
    let (secret, ca, identity) = match secret {
        None => (None, Vec::new(), None),
        Some(found) => {
            let (object, data) = r.secret(found)?;
            let secret_data = (&object, data);
            let ca = match r.secret_key(found, secret_data, "ca.crt", ca_bundle).ok()? {
                Some(ca) => ca,
                None if verify => {
                    let why = format!(
                        "the Secret {}/{} has no key \"ca.crt\", which proxy-ssl-verify needs",
                        object.namespace, object.name
                    );
                    r.refuse(found, &why);
                    return None;
                }
                None => Vec::new(),
            };
            let chain = r
                .secret_key(found, secret_data, "tls.crt", ca_bundle)
                .ok()?;
            let identity = match (chain, data.get("tls.key")) {
                (Some(_), Some(key)) => Some(ClientIdentity {
                    chain_pem: data["tls.crt"].0.clone(),
                    key_pem: key.0.clone(),
                }),
                (None, None) => None,
                _ => {
                    let why = format!(
                        "the Secret {}/{} has only one of \"tls.crt\" and \"tls.key\"",
                        object.namespace, object.name
                    );
                    r.refuse(found, &why);
                    return None;
                }
            };
            if ca.is_empty() && identity.is_none() {
                let why = format!(
                    "the Secret {}/{} has neither \"ca.crt\" nor \"tls.crt\"/\"tls.key\"",
                    object.namespace, object.name
                );
                r.refuse(found, &why);
                return None;
            }
            (Some(object), ca, identity)
        }
    };
    Some(UpstreamTls {
        secret,
        verify,
        ca,
        verify_depth,
        identity,
        name,
        sni,
        versions,
        http2: protocol.is_some_and(Protocol::is_http2),
    })
}

/// An `on`/`off` annotation: `Ok(None)` when absent; `None` when refused.
fn on_off(r: &mut Reader<'_>, name: &str) -> Option<Option<bool>> {
    let Some(found) = r.get(name) else {
        return Some(None);
    };
    match found.trimmed() {
        "on" => Some(Some(true)),
        "off" => Some(Some(false)),
        _ => {
            r.refuse(found, ON_OFF);
            None
        }
    }
}

/// `proxy-ssl-protocols`: the TLS versions weir can offer among those listed; the default
/// (both) when none is left (reported).
fn versions(r: &mut Reader<'_>) -> TlsVersions {
    let Some(found) = r.get("proxy-ssl-protocols") else {
        return TlsVersions::default();
    };
    let mut versions = TlsVersions {
        tls12: false,
        tls13: false,
    };
    let mut old = Vec::new();
    for token in found.value.split_ascii_whitespace() {
        match token {
            "TLSv1.2" => versions.tls12 = true,
            "TLSv1.3" => versions.tls13 = true,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => old.push(token),
            _ => {
                invalid_versions(r, found);
                return TlsVersions::default();
            }
        }
    }
    if !versions.tls12 && !versions.tls13 {
        invalid_versions(r, found);
        return TlsVersions::default();
    }
    if !old.is_empty() {
        r.report(
            Reason::InvalidAnnotationValue,
            format!(
                "annotation {:?} lists {}, which weir never offers (only TLSv1.2 and TLSv1.3)",
                found.key,
                old.join(", ")
            ),
        );
    }
    versions
}

fn invalid_versions(r: &mut Reader<'_>, found: Found<'_>) {
    r.invalid(found, VERSIONS, "\"TLSv1.2 TLSv1.3\"");
}

/// A DNS name (letters, digits, `-`, labels of 1 to 63 characters, an optional final dot)
/// or an IP address.
fn is_server_name(value: &str) -> bool {
    if value.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = value.strip_suffix('.').unwrap_or(value);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_in, parse_pairs};
    use super::*;
    use crate::model::Diagnostic;
    use k8s_openapi::api::core::v1::Secret;

    fn upstream(pairs: &[(&str, &str)], secrets: &[Arc<Secret>]) -> (Upstream, Vec<Diagnostic>) {
        let (parsed, diagnostics) = parse_in(pairs, secrets, false);
        let refused = parsed.policy.refused.is_some();
        let upstream = parsed.policy.upstream.clone();
        assert!(
            !refused || upstream == Upstream::default(),
            "a refused route keeps the default upstream"
        );
        (upstream, diagnostics)
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Arc<Secret> {
        let encode =
            |v: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), encode(v).into()))
            .collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "d", "name": name},
                "data": data,
            }))
            .unwrap(),
        )
    }

    fn cert_pem(name: &str) -> (String, String) {
        let key = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (key.cert.pem(), key.signing_key.serialize_pem())
    }

    #[test]
    fn protocols_by_value_and_prefix() {
        for (value, protocol) in [
            ("HTTP", Protocol::Http),
            ("auto_http", Protocol::Http),
            ("grpc", Protocol::Grpc),
            (" GRPC ", Protocol::Grpc),
            ("H2C", Protocol::H2c),
        ] {
            for key in both("backend-protocol") {
                let (up, diagnostics) = upstream(&[(&key, value)], &[]);
                assert_eq!(up.protocol, protocol, "{key}: {value}");
                assert!(up.tls.is_none());
                assert!(diagnostics.is_empty(), "{diagnostics:?}");
            }
        }
        for (value, protocol) in [("HTTPS", Protocol::Https), ("GRPCS", Protocol::Grpcs)] {
            let (up, _) = upstream(
                &[("nginx.ingress.kubernetes.io/backend-protocol", value)],
                &[],
            );
            assert_eq!(up.protocol, protocol);
            let tls = up.tls.unwrap();
            assert!(!tls.verify && !tls.sni && tls.identity.is_none());
            assert_eq!(tls.http2, protocol == Protocol::Grpcs);
            assert_eq!(tls.verify_depth, 1);
            assert_eq!(tls.versions, TlsVersions::default());
        }
        let (up, _) = upstream(
            &[("nginx.ingress.kubernetes.io/secure-backends", "true")],
            &[],
        );
        assert_eq!(up.protocol, Protocol::Https);
        // weir's key wins.
        let (up, _) = upstream(
            &[
                ("nginx.ingress.kubernetes.io/backend-protocol", "GRPC"),
                ("weir.dev/backend-protocol", "H2C"),
            ],
            &[],
        );
        assert_eq!(up.protocol, Protocol::H2c);
    }

    #[test]
    fn what_weir_cannot_speak_fails_closed() {
        for (key, value) in [
            ("backend-protocol", "FCGI"),
            ("backend-protocol", "ajp"),
            ("backend-protocol", "QUIC"),
            ("secure-backends", "maybe"),
        ] {
            let [_, key] = both(key);
            let (parsed, diagnostics) = parse_pairs(&[(&key, value)]);
            assert!(parsed.policy.refused.is_some(), "{key}: {value}");
            assert!(
                diagnostics[0].message.contains("answer 503"),
                "{diagnostics:?}"
            );
        }
    }

    #[test]
    fn tls_settings() {
        let (crt, key) = cert_pem("client");
        let (ca, _) = cert_pem("ca");
        let secrets = [
            secret(
                "full",
                &[("ca.crt", &ca), ("tls.crt", &crt), ("tls.key", &key)],
            ),
            secret("ca-only", &[("ca.crt", &ca)]),
            secret("client-only", &[("tls.crt", &crt), ("tls.key", &key)]),
            secret("half", &[("tls.crt", &crt)]),
            secret("empty", &[("other", "x")]),
            secret("bad-ca", &[("ca.crt", "not pem")]),
        ];
        let https = ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS");
        let (up, diagnostics) = upstream(
            &[
                https,
                ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "d/full"),
                ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
                (
                    "nginx.ingress.kubernetes.io/proxy-ssl-name",
                    "API.example.com.",
                ),
                ("nginx.ingress.kubernetes.io/proxy-ssl-server-name", "on"),
                ("nginx.ingress.kubernetes.io/proxy-ssl-verify-depth", "3"),
                ("nginx.ingress.kubernetes.io/proxy-ssl-protocols", "TLSv1.3"),
            ],
            &secrets,
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let tls = up.tls.unwrap();
        assert!(tls.verify && tls.sni && tls.identity.is_some());
        assert_eq!(tls.ca.len(), 1);
        assert_eq!(tls.name.as_deref(), Some("api.example.com"));
        assert_eq!(tls.verify_depth, 3);
        assert_eq!(
            tls.versions,
            TlsVersions {
                tls12: false,
                tls13: true
            }
        );
        let service = crate::model::ObjectRef::new(crate::model::ObjectKind::Service, "d", "s");
        assert_eq!(tls.server_name(&service), "api.example.com");
        let (up, _) = upstream(&[https], &secrets);
        assert_eq!(up.tls.unwrap().server_name(&service), "s.d.svc");

        // A client certificate alone is enough without verification.
        let (up, _) = upstream(
            &[
                https,
                (
                    "nginx.ingress.kubernetes.io/proxy-ssl-secret",
                    "client-only",
                ),
            ],
            &secrets,
        );
        assert!(up.tls.unwrap().identity.is_some());
        // Verification without a Secret: the system's trust store.
        let (up, _) = upstream(
            &[
                https,
                ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
            ],
            &secrets,
        );
        assert!(up.tls.unwrap().ca.is_empty());

        for (pairs, needle) in [
            (
                vec![
                    ("proxy-ssl-secret", "client-only"),
                    ("proxy-ssl-verify", "on"),
                ],
                "ca.crt",
            ),
            (vec![("proxy-ssl-secret", "half")], "only one of"),
            (vec![("proxy-ssl-secret", "empty")], "neither"),
            (vec![("proxy-ssl-secret", "bad-ca")], "unusable"),
            (vec![("proxy-ssl-secret", "missing")], "does not exist"),
            (
                vec![("proxy-ssl-secret", "other/full")],
                "another namespace",
            ),
            (vec![("proxy-ssl-verify", "yes")], "\"on\" or \"off\""),
            (vec![("proxy-ssl-server-name", "true")], "\"on\" or \"off\""),
            (vec![("proxy-ssl-name", "a b")], "DNS name"),
            (vec![("proxy-ssl-name", "-x.example")], "DNS name"),
            (vec![("proxy-ssl-verify-depth", "deep")], "whole number"),
        ] {
            let mut all = vec![https];
            let keys: Vec<(String, &str)> = pairs
                .iter()
                .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v))
                .collect();
            all.extend(keys.iter().map(|(k, v)| (k.as_str(), *v)));
            let (parsed, diagnostics) = parse_in(&all, &secrets, false);
            assert!(parsed.policy.refused.is_some(), "{pairs:?}");
            assert!(
                diagnostics.iter().any(|d| d.message.contains(needle)),
                "{pairs:?}: {diagnostics:#?}"
            );
        }
    }

    #[test]
    fn tuning_knobs_fall_back_and_settings_without_tls_are_reported() {
        let https = ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS");
        for (value, expected, reported) in [
            ("TLSv1 TLSv1.1 TLSv1.2", (true, false), true),
            ("TLSv1.2 TLSv1.3", (true, true), false),
            ("TLSv1", (true, true), true),
            ("TLSv9", (true, true), true),
        ] {
            let (up, diagnostics) = upstream(
                &[
                    https,
                    ("nginx.ingress.kubernetes.io/proxy-ssl-protocols", value),
                ],
                &[],
            );
            let versions = up.tls.unwrap().versions;
            assert_eq!((versions.tls12, versions.tls13), expected, "{value}");
            assert_eq!(
                !diagnostics.is_empty(),
                reported,
                "{value}: {diagnostics:?}"
            );
        }
        let (up, diagnostics) = upstream(
            &[
                https,
                (
                    "nginx.ingress.kubernetes.io/proxy-ssl-ciphers",
                    "HIGH:!aNULL",
                ),
            ],
            &[],
        );
        assert!(up.tls.is_some());
        assert!(diagnostics[0].message.contains("ignored"));
        let (up, diagnostics) = upstream(
            &[("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")],
            &[],
        );
        assert_eq!(up, Upstream::default());
        assert!(
            diagnostics[0].message.contains("no effect"),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn server_names() {
        for good in [
            "a",
            "api.example.com",
            "api.example.com.",
            "10.0.0.1",
            "::1",
            "x-1.y",
        ] {
            assert!(is_server_name(good), "{good}");
        }
        for bad in ["", ".", "a..b", "-a", "a-", "a_b", "a b", "*.example.com"] {
            assert!(!is_server_name(bad), "{bad}");
        }
    }
}

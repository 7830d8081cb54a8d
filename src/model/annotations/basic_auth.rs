//! `auth-type: basic`, `auth-secret`, `auth-secret-type`, `auth-realm`: HTTP basic
//! authentication against users in a Secret, as ingress-nginx reads them.
//!
//! The Secret is in the Ingress's namespace; `namespace/name` elsewhere only with
//! `--allow-cross-namespace-resources`. `auth-secret-type: auth-file` (the default) reads an
//! htpasswd file from the key `auth`; `auth-map` reads one key per user whose value is the
//! hash. Whatever keeps the users from being read — no `auth-secret`, a Secret that does not
//! exist (yet), a missing key, a line that is not `user:hash`, `auth-type: digest` (not
//! implemented) — makes the routes refuse (503) until it is fixed; they never serve without
//! authentication. An `auth-secret` without `auth-type` does nothing, as in ingress-nginx,
//! and is reported.

use std::sync::Arc;

use http::HeaderValue;

use super::{Key, OnInvalid, Reader};
use crate::model::access::{BasicAuth, Users};
use crate::model::diagnostic::Reason;

pub(super) const KEYS: &[Key] = &[
    Key::route("auth-type", OnInvalid::Refuse),
    Key::route("auth-secret", OnInvalid::Refuse),
    Key::route("auth-secret-type", OnInvalid::Refuse),
    Key::route("auth-realm", OnInvalid::Default),
];

/// Basic authentication, when `auth-type` asks for it and it can be set up.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<BasicAuth> {
    let secret = r.get("auth-secret");
    let Some(auth_type) = r.get("auth-type").filter(|f| !f.trimmed().is_empty()) else {
        if let Some(secret) = secret {
            r.report(
                Reason::InvalidAnnotationValue,
                format!(
                    "annotation {:?} does nothing without auth-type: \"basic\" (as in \
                     ingress-nginx); the routes are served without authentication",
                    secret.key
                ),
            );
        }
        return None;
    };
    match auth_type.trimmed() {
        "basic" => {}
        "digest" => {
            r.refuse(
                auth_type,
                "weir does not implement digest authentication (use \"basic\" over HTTPS)",
            );
            return None;
        }
        _ => {
            r.refuse(auth_type, "it must be \"basic\"");
            return None;
        }
    }
    let realm = realm(r);
    let Some(secret) = secret else {
        r.refuse(auth_type, "it needs auth-secret: the Secret of the users");
        return None;
    };
    let map = match r.get("auth-secret-type") {
        None => false,
        Some(found) => match found.trimmed() {
            "auth-file" => false,
            "auth-map" => true,
            _ => {
                r.refuse(found, "it must be \"auth-file\" or \"auth-map\"");
                return None;
            }
        },
    };
    let (object, data) = r.secret(secret)?;
    let users = if map {
        Users::from_map(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
    } else {
        match data.get("auth") {
            Some(file) => Users::from_htpasswd(&file.0),
            None => {
                let why = format!(
                    "the Secret {}/{} has no key \"auth\" (an htpasswd file)",
                    object.namespace, object.name
                );
                r.refuse(secret, &why);
                return None;
            }
        }
    };
    match users {
        Ok((users, skipped)) => {
            for left_out in skipped {
                r.report(
                    Reason::InvalidAnnotationValue,
                    format!(
                        "in the Secret {}/{} of annotation {:?}, {left_out}; the other users \
                         can log in",
                        object.namespace, object.name, secret.key
                    ),
                );
            }
            Some(BasicAuth {
                challenge: realm,
                users: Arc::new(users),
            })
        }
        Err(error) => {
            let why = format!(
                "the users in Secret {}/{} cannot be read: {error}",
                object.namespace, object.name
            );
            r.refuse(secret, &why);
            None
        }
    }
}

/// The `WWW-Authenticate` value for `auth-realm` (default `""`, as in ingress-nginx).
fn realm(r: &mut Reader<'_>) -> HeaderValue {
    let challenge = |realm: &str| {
        let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
        HeaderValue::try_from(format!("Basic realm=\"{escaped}\"")).ok()
    };
    let default = || challenge("").expect("a valid header value");
    let Some(found) = r.get("auth-realm") else {
        return default();
    };
    challenge(found.value).unwrap_or_else(|| {
        r.invalid(found, "it must be printable text", "an empty realm");
        default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;

    use super::super::tests::{both, parse_in};
    use super::*;

    const HTPASSWD: &str = "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n";

    fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Arc<Secret> {
        let data: BTreeMap<String, ByteString> = data
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Arc::new(Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        })
    }

    /// The basic auth and whether the routes refuse, for `pairs` with these Secrets.
    fn read(
        pairs: &[(&str, &str)],
        secrets: &[Arc<Secret>],
        cross: bool,
    ) -> (Option<BasicAuth>, bool, Vec<String>) {
        let (parsed, diagnostics) = parse_in(pairs, secrets, cross);
        let basic = parsed.policy.access.as_ref().and_then(|a| a.basic.clone());
        let messages = diagnostics.into_iter().map(|d| d.message).collect();
        (basic, parsed.policy.refused.is_some(), messages)
    }

    #[test]
    fn users_come_from_the_secret_under_both_prefixes() {
        let secrets = [secret("d", "users", &[("auth", HTPASSWD)])];
        for prefix in ["weir.dev/", "nginx.ingress.kubernetes.io/"] {
            let key = |k: &str| format!("{prefix}{k}");
            let pairs = [
                (key("auth-type"), "basic"),
                (key("auth-secret"), "users"),
                (key("auth-realm"), "Team \"ops\""),
            ];
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let (basic, refused, messages) = read(&pairs, &secrets, false);
            let basic = basic.expect("basic auth");
            assert!(!refused && messages.is_empty(), "{messages:?}");
            assert!(basic.users.verify("alice", b"secret"));
            assert_eq!(basic.challenge, "Basic realm=\"Team \\\"ops\\\"\"");
        }
        let [_, kind] = both("auth-type");
        let [_, name] = both("auth-secret");
        let (basic, _, _) = read(&[(&kind, "basic"), (&name, "users")], &secrets, false);
        assert_eq!(basic.unwrap().challenge, "Basic realm=\"\"");
    }

    #[test]
    fn an_auth_map_has_a_key_per_user() {
        let (_, hash) = HTPASSWD.trim().split_once(':').unwrap();
        let secrets = [secret("d", "map", &[("alice", hash)])];
        let [_, kind] = both("auth-type");
        let [_, name] = both("auth-secret");
        let [_, secret_type] = both("auth-secret-type");
        let pairs = [
            (&*kind, "basic"),
            (&*name, "map"),
            (&*secret_type, "auth-map"),
        ];
        let (basic, refused, _) = read(&pairs, &secrets, false);
        assert!(!refused && basic.unwrap().users.verify("alice", b"secret"));
    }

    #[test]
    fn whatever_keeps_the_users_from_being_read_fails_closed() {
        let good = secret("d", "users", &[("auth", HTPASSWD)]);
        let other_ns = secret("elsewhere", "users", &[("auth", HTPASSWD)]);
        let no_key = secret("d", "nokey", &[("htpasswd", HTPASSWD)]);
        let bad = secret("d", "bad", &[("auth", "alice\n")]);
        let plain = secret("d", "plain", &[("auth", "alice:secret\n")]);
        let secrets = [good, other_ns, no_key, bad, plain];
        let [_, kind] = both("auth-type");
        let [_, name] = both("auth-secret");
        let [_, secret_type] = both("auth-secret-type");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(&kind, "basic")], "needs auth-secret"),
            (&[(&kind, "basic"), (&name, "missing")], "does not exist"),
            (&[(&kind, "basic"), (&name, "nokey")], "no key \"auth\""),
            (&[(&kind, "basic"), (&name, "bad")], "no user"),
            (&[(&kind, "basic"), (&name, "plain")], "no user"),
            (
                &[(&kind, "basic"), (&name, "Bad_Name")],
                "must name a Secret",
            ),
            (
                &[(&kind, "basic"), (&name, "elsewhere/users")],
                "another namespace",
            ),
            (&[(&kind, "digest"), (&name, "users")], "digest"),
            (&[(&kind, "BASIC"), (&name, "users")], "must be \"basic\""),
            (
                &[(&kind, "basic"), (&name, "users"), (&secret_type, "file")],
                "auth-map",
            ),
        ];
        for (pairs, expected) in cases {
            let (basic, refused, messages) = read(pairs, &secrets, false);
            assert!(basic.is_none() && refused, "{pairs:?}");
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "{pairs:?}: {messages:?}"
            );
        }
        let cross = [(&*kind, "basic"), (&*name, "elsewhere/users")];
        let (basic, refused, _) = read(&cross, &secrets, true);
        assert!(basic.is_some() && !refused, "allowed by the flag");
    }

    #[test]
    fn users_weir_cannot_verify_are_reported_and_the_others_log_in() {
        let file = format!("{HTPASSWD}plain:secret\n");
        let secrets = [secret("d", "users", &[("auth", &file)])];
        let [_, kind] = both("auth-type");
        let [_, name] = both("auth-secret");
        let (basic, refused, messages) =
            read(&[(&kind, "basic"), (&name, "users")], &secrets, false);
        assert!(!refused && basic.unwrap().users.verify("alice", b"secret"));
        assert!(
            messages[0].contains("user \"plain\" cannot log in"),
            "{messages:?}"
        );
    }

    #[test]
    fn a_secret_without_auth_type_does_nothing_and_is_reported() {
        let [_, name] = both("auth-secret");
        let (basic, refused, messages) = read(&[(&name, "users")], &[], false);
        assert!(basic.is_none() && !refused);
        assert!(messages[0].contains("does nothing"), "{messages:?}");
    }
}

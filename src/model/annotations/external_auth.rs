//! `auth-url` and its companions (`auth-method`, `auth-signin`, `auth-signin-redirect-param`,
//! `auth-response-headers`, `auth-request-redirect`, `auth-cache-key`, `auth-cache-duration`,
//! `auth-always-set-cookie`, `auth-proxy-set-headers`), and `enable-global-auth`: external
//! authentication as ingress-nginx's `auth_request` does it (see [`ExternalAuth`]).
//!
//! `auth-proxy-set-headers` names a ConfigMap (`name`, or `namespace/name` with
//! `--allow-cross-namespace-resources`) whose data are the headers set on the sub-request; a
//! missing ConfigMap refuses, as ingress-nginx denies the location.
//!
//! An Ingress without `auth-url` gets the ConfigMap's `global-auth-*` service unless it sets
//! `enable-global-auth: "false"`. Anything invalid makes the routes refuse (503): a route
//! never serves without the authentication its Ingress asked for.

use std::sync::Arc;

use super::{Key, OnInvalid, Reader, values};
use crate::model::diagnostic::Reason;
use crate::model::external_auth::{ExternalAuth, Settings};
use crate::model::policy::Global;

pub(super) const KEYS: &[Key] = &[
    Key::route("auth-url", OnInvalid::Refuse),
    Key::route("auth-method", OnInvalid::Refuse),
    Key::route("auth-signin", OnInvalid::Refuse),
    Key::route("auth-signin-redirect-param", OnInvalid::Refuse),
    Key::route("auth-response-headers", OnInvalid::Refuse),
    Key::route("auth-request-redirect", OnInvalid::Refuse),
    Key::route("auth-cache-key", OnInvalid::Refuse),
    Key::route("auth-cache-duration", OnInvalid::Refuse),
    Key::route("auth-always-set-cookie", OnInvalid::Default),
    Key::route("auth-proxy-set-headers", OnInvalid::Refuse),
    Key::route("enable-global-auth", OnInvalid::Refuse),
];

/// The companions of `auth-url`, which do nothing without it.
const COMPANIONS: &[&str] = &[
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
    "auth-proxy-set-headers",
];

/// The external authentication of the Ingress's routes: its own `auth-url`, else the global
/// one (unless disabled). `Err(())`: refused (reported).
pub(super) fn parse(r: &mut Reader<'_>) -> Result<Option<Arc<ExternalAuth>>, ()> {
    let global_enabled = match r.get("enable-global-auth") {
        None => true,
        Some(found) => match values::boolean(found.value) {
            Some(enabled) => enabled,
            None => {
                r.refuse(found, values::BOOLEAN);
                return Err(());
            }
        },
    };
    let Some(url) = r.get("auth-url").filter(|u| !u.trimmed().is_empty()) else {
        for name in COMPANIONS {
            if let Some(found) = r.get(name) {
                r.report(
                    Reason::InvalidAnnotationValue,
                    format!(
                        "annotation {:?} does nothing without auth-url (as in ingress-nginx)",
                        found.key
                    ),
                );
            }
        }
        return match (&r.context().defaults.global_auth, global_enabled) {
            (Global::On(global), true) => Ok(Some(global.clone())),
            (Global::Invalid(why), true) => {
                let why = format!(
                    "the controller ConfigMap's global authentication is invalid ({why}); set \
                     enable-global-auth: \"false\" to serve this Ingress without it"
                );
                r.refuse_for(&why);
                Err(())
            }
            _ => Ok(None),
        };
    };
    fn value<'a>(r: &Reader<'a>, name: &str) -> Option<&'a str> {
        r.get(name).map(|found| found.value)
    }
    let proxy_set_headers = match r.get("auth-proxy-set-headers") {
        Some(found) if !found.trimmed().is_empty() => Some(r.config_map(found).ok_or(())?.1),
        _ => None,
    };
    let settings = Settings {
        url: url.value,
        method: value(r, "auth-method"),
        signin: value(r, "auth-signin"),
        signin_redirect_param: value(r, "auth-signin-redirect-param"),
        response_headers: value(r, "auth-response-headers"),
        request_redirect: value(r, "auth-request-redirect"),
        cache_key: value(r, "auth-cache-key"),
        cache_duration: value(r, "auth-cache-duration"),
        always_set_cookie: r.flag("auth-always-set-cookie", false),
        proxy_set_headers,
    };
    match ExternalAuth::parse(&settings, false) {
        Ok((auth, ignored)) => {
            for (setting, name) in ignored {
                let found = r.get(setting).expect("an ignored header was read");
                let message = if setting == "auth-response-headers" {
                    format!(
                        "annotation {:?} names {name:?}, which weir never takes from an \
                         authentication service (Host, Content-Length and hop-by-hop headers); \
                         the other headers are copied",
                        found.key
                    )
                } else {
                    format!(
                        "the ConfigMap that annotation {:?} names ({:?}) has the key \
                         {name:?}, a header weir never sets on the authentication sub-request \
                         (its Host is auth-url's, and it has no body and no hop-by-hop \
                         headers); the other headers are set",
                        found.key, found.value
                    )
                };
                r.report(Reason::InvalidAnnotationValue, message);
            }
            Ok(Some(Arc::new(auth)))
        }
        Err(invalid) => {
            let found = r.get(invalid.key).expect("an invalid setting was read");
            r.refuse(found, &invalid.why);
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with, parse_with_config_maps};
    use crate::model::Defaults;
    use crate::model::external_auth::Settings;
    use crate::model::policy::Global;
    use crate::model::{ExternalAuth, Reason};
    use std::sync::Arc;

    fn external(annotations: &[(&str, &str)]) -> (Option<Arc<ExternalAuth>>, bool, Vec<Reason>) {
        let (parsed, diagnostics) = parse_pairs(annotations);
        let policy = &parsed.policy;
        (
            policy.access.as_ref().and_then(|a| a.external.clone()),
            policy.refused.is_some(),
            diagnostics.iter().map(|d| d.reason).collect(),
        )
    }

    #[test]
    fn auth_url_with_both_prefixes_and_weir_s_key_wins() {
        for prefix in ["nginx.ingress.kubernetes.io/", "weir.dev/"] {
            let key = format!("{prefix}auth-url");
            let (auth, refused, reasons) =
                external(&[(&key, "http://auth.ns.svc:4180/oauth2/auth")]);
            assert_eq!(
                auth.unwrap().url.source(),
                "http://auth.ns.svc:4180/oauth2/auth"
            );
            assert!(!refused && reasons.is_empty(), "{reasons:?}");
        }
        let (auth, _, _) = external(&[
            ("nginx.ingress.kubernetes.io/auth-url", "http://nginx/"),
            ("weir.dev/auth-url", "http://weir/"),
        ]);
        assert_eq!(auth.unwrap().url.source(), "http://weir/");
    }

    #[test]
    fn every_invalid_setting_refuses_the_routes() {
        let url = ("nginx.ingress.kubernetes.io/auth-url", "http://auth/");
        let table: &[(&str, &str)] = &[
            ("auth-url", "not a url"),
            ("auth-url", "http://$unknown/"),
            ("auth-method", "get"),
            ("auth-signin-redirect-param", "a b"),
            ("auth-response-headers", "X User"),
            ("auth-request-redirect", "$nope"),
            ("auth-cache-key", "$nope"),
            ("enable-global-auth", "maybe"),
        ];
        for (name, value) in table {
            let key = format!("nginx.ingress.kubernetes.io/{name}");
            let mut annotations = vec![url, (key.as_str(), *value)];
            if *name == "auth-url" {
                annotations.remove(0);
            }
            let (_, refused, reasons) = external(&annotations);
            assert!(refused, "{name}: {value}");
            assert_eq!(reasons, [Reason::InvalidAnnotationValue], "{name}");
        }
        // An invalid duration refuses only with a cache key (without one it is unused).
        let (_, refused, _) = external(&[
            url,
            ("nginx.ingress.kubernetes.io/auth-cache-key", "$remote_user"),
            ("nginx.ingress.kubernetes.io/auth-cache-duration", "5x"),
        ]);
        assert!(refused);
    }

    #[test]
    fn proxy_set_headers_come_from_a_config_map_of_the_ingress_s_namespace() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let config_map = |namespace: &str, data: &[(&str, &str)]| {
            Arc::new(ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("auth-headers".into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            })
        };
        let config_maps = [
            config_map("d", &[("X-Tenant", "blue"), ("Connection", "close")]),
            config_map("other", &[("X-Tenant", "red")]),
            config_map("bad", &[("X Tenant", "red")]),
        ];
        let url = ("nginx.ingress.kubernetes.io/auth-url", "http://auth/");
        let read = |value: &str, cross: bool| {
            let key = "nginx.ingress.kubernetes.io/auth-proxy-set-headers";
            let (parsed, diagnostics) =
                parse_with_config_maps(&[url, (key, value)], &config_maps, cross);
            let set = parsed
                .policy
                .access
                .as_ref()
                .and_then(|a| a.external.as_ref())
                .map(|e| {
                    e.proxy_set_headers
                        .iter()
                        .map(|(n, v)| format!("{n}: {}", v.source()))
                        .collect::<Vec<_>>()
                });
            let messages: Vec<String> = diagnostics.into_iter().map(|d| d.message).collect();
            (set, parsed.policy.refused.is_some(), messages)
        };
        let (set, refused, messages) = read("auth-headers", false);
        assert_eq!(set.unwrap(), ["x-tenant: blue"]);
        assert!(!refused);
        assert!(messages[0].contains("\"Connection\""), "{messages:?}");
        let (set, refused, _) = read("d/auth-headers", false);
        assert!(set.is_some() && !refused);
        // Another namespace's only with the flag; a missing one, a bad name or a bad header
        // refuse (ingress-nginx denies the location).
        let (set, refused, messages) = read("other/auth-headers", false);
        assert!(set.is_none() && refused);
        assert!(messages[0].contains("another namespace"), "{messages:?}");
        assert_eq!(
            read("other/auth-headers", true).0.unwrap(),
            ["x-tenant: red"]
        );
        for (value, why) in [
            ("missing", "does not exist"),
            ("Not_A_Name", "must name a ConfigMap"),
            ("bad/auth-headers", "not a header name"),
        ] {
            let (set, refused, messages) = read(value, true);
            assert!(set.is_none() && refused, "{value}");
            assert!(messages[0].contains(why), "{value}: {messages:?}");
        }
        // Both prefixes are read.
        for key in both("auth-proxy-set-headers") {
            let (parsed, _) =
                parse_with_config_maps(&[url, (&key, "missing")], &config_maps, false);
            assert!(parsed.policy.refused.is_some(), "{key}");
        }
    }

    #[test]
    fn companions_without_auth_url_are_reported_and_do_nothing() {
        let (auth, refused, reasons) = external(&[(
            "nginx.ingress.kubernetes.io/auth-signin",
            "https://auth/start",
        )]);
        assert!(auth.is_none() && !refused);
        assert_eq!(reasons, [Reason::InvalidAnnotationValue]);
    }

    #[test]
    fn global_auth_covers_ingresses_unless_they_opt_out_or_have_their_own() {
        let (global, _) = ExternalAuth::parse(
            &Settings {
                url: "http://global/auth",
                ..Settings::default()
            },
            true,
        )
        .unwrap();
        let defaults = Defaults {
            global_auth: Global::On(Arc::new(global)),
            ..Defaults::default()
        };
        let read = |annotations: &[(&str, &str)]| {
            let (parsed, _) = parse_with(annotations, &defaults);
            parsed
                .policy
                .access
                .as_ref()
                .and_then(|a| a.external.as_ref())
                .map(|e| e.url.source().to_owned())
        };
        assert_eq!(read(&[]).as_deref(), Some("http://global/auth"));
        for off in ["false", "0", "False"] {
            assert_eq!(
                read(&[("nginx.ingress.kubernetes.io/enable-global-auth", off)]),
                None
            );
        }
        assert_eq!(
            read(&[("nginx.ingress.kubernetes.io/auth-url", "http://own/")]).as_deref(),
            Some("http://own/")
        );
        let broken = Defaults {
            global_auth: Global::Invalid(Arc::from("global-auth-url is not a URL")),
            ..Defaults::default()
        };
        let (parsed, _) = parse_with(&[], &broken);
        assert!(parsed.policy.refused.is_some(), "fails closed");
        let (parsed, _) = parse_with(
            &[("nginx.ingress.kubernetes.io/enable-global-auth", "false")],
            &broken,
        );
        assert!(parsed.policy.refused.is_none());
    }
}

//! `load-balance`, `upstream-hash-by` (+ `-subset`, `-subset-size`), and cookie affinity
//! (`affinity`, `affinity-mode`, `affinity-canary-behavior`, `session-cookie-*`): how a route
//! chooses among its backend's endpoints, read with ingress-nginx's syntax.
//!
//! Every bad value is a tuning knob gone wrong, not a widening of access: it is reported and
//! its default is used (an unknown algorithm: the ConfigMap's; a hash key with an unknown
//! variable: no hashing; a bad cookie attribute: none), and the route keeps serving.

use std::num::NonZeroU32;
use std::sync::Arc;

use super::{Found, Key, OnInvalid, Reader};
use crate::model::balance::{
    Affinity, AffinityMode, Balance, CanaryBehavior, HashBy, LOAD_BALANCE, LoadBalance, SameSite,
    SessionCookie,
};
use crate::model::diagnostic::Reason;
use crate::model::variables::Expr;

pub(super) const KEYS: &[Key] = &[
    Key::route("load-balance", OnInvalid::Default),
    Key::route("upstream-hash-by", OnInvalid::Default),
    Key::route("upstream-hash-by-subset", OnInvalid::Default),
    Key::route("upstream-hash-by-subset-size", OnInvalid::Default),
    Key::route("affinity", OnInvalid::Default),
    Key::route("affinity-mode", OnInvalid::Default),
    Key::route("affinity-canary-behavior", OnInvalid::Default),
    Key::route("session-cookie-name", OnInvalid::Default),
    Key::route("session-cookie-path", OnInvalid::Default),
    Key::route("session-cookie-domain", OnInvalid::Default),
    Key::route("session-cookie-expires", OnInvalid::Default),
    Key::route("session-cookie-max-age", OnInvalid::Default),
    Key::route("session-cookie-samesite", OnInvalid::Default),
    Key::route(
        "session-cookie-conditional-samesite-none",
        OnInvalid::Default,
    ),
    Key::route("session-cookie-secure", OnInvalid::Default),
    Key::route("session-cookie-change-on-failure", OnInvalid::Default),
];

/// The default `upstream-hash-by-subset-size`.
const SUBSET_SIZE: NonZeroU32 = NonZeroU32::new(3).expect("3 is not zero");

/// The balance of the Ingress's routes; `regex`: its paths are regexes (the cookie path then
/// needs `session-cookie-path`, as ingress-nginx documents).
pub(super) fn parse(r: &mut Reader<'_>, regex: bool) -> Balance {
    let default_load = r.context().defaults.load_balance;
    let load = match r.get("load-balance") {
        None => default_load,
        Some(found) => LoadBalance::parse(found.value).unwrap_or_else(|| {
            r.invalid(found, LOAD_BALANCE, format_args!("{default_load:?}"));
            default_load
        }),
    };
    Balance {
        load,
        hash_by: hash_by(r),
        affinity: affinity(r, regex).map(Arc::new),
    }
}

/// `upstream-hash-by` and its subsets.
fn hash_by(r: &mut Reader<'_>) -> Option<HashBy> {
    let found = r
        .get("upstream-hash-by")
        .filter(|f| !f.trimmed().is_empty())?;
    let key = match Expr::parse(found.trimmed()) {
        Ok(key) => key,
        Err(why) => {
            let accepted = format!("it must be text and nginx variables ({why})");
            r.invalid(found, &accepted, "the load-balance algorithm");
            return None;
        }
    };
    let subset = r.flag("upstream-hash-by-subset", false).then(|| {
        let Some(found) = r.get("upstream-hash-by-subset-size") else {
            return SUBSET_SIZE;
        };
        found.trimmed().parse::<NonZeroU32>().unwrap_or_else(|_| {
            r.invalid(found, "it must be a whole number from 1", SUBSET_SIZE);
            SUBSET_SIZE
        })
    });
    Some(HashBy { key, subset })
}

/// `affinity: cookie` and the cookie's settings.
fn affinity(r: &mut Reader<'_>, regex: bool) -> Option<Affinity> {
    let found = r.get("affinity").filter(|f| !f.trimmed().is_empty())?;
    if found.trimmed() != "cookie" {
        r.invalid(found, "it must be \"cookie\"", "no affinity");
        return None;
    }
    let mode = choice(
        r,
        "affinity-mode",
        &[
            ("balanced", AffinityMode::Balanced),
            ("persistent", AffinityMode::Persistent),
        ],
    );
    let canary = choice(
        r,
        "affinity-canary-behavior",
        &[
            ("sticky", CanaryBehavior::Sticky),
            ("legacy", CanaryBehavior::Legacy),
        ],
    );
    let mut cookie = SessionCookie::default();
    if let Some(name) = text(r, "session-cookie-name", is_cookie_name, TOKEN) {
        cookie.name = name;
    }
    cookie.path = text(r, "session-cookie-path", is_cookie_path, PATH);
    if regex && cookie.path.is_none() {
        r.report(
            Reason::InvalidAnnotationValue,
            "the Ingress's paths are regexes and it sets affinity: cookie without \
             session-cookie-path (ingress-nginx requires one); the cookie's Path is \"/\""
                .to_owned(),
        );
    }
    cookie.domain = text(r, "session-cookie-domain", is_cookie_domain, DOMAIN);
    cookie.expires = seconds(r, "session-cookie-expires");
    cookie.max_age = seconds(r, "session-cookie-max-age");
    cookie.same_site = r.get("session-cookie-samesite").and_then(|found| {
        let value = found.trimmed();
        let same_site = [SameSite::None, SameSite::Lax, SameSite::Strict]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value));
        if same_site.is_none() && !value.is_empty() {
            r.invalid(found, "it must be \"None\", \"Lax\" or \"Strict\"", "none");
        }
        same_site
    });
    cookie.conditional_same_site_none = r.flag("session-cookie-conditional-samesite-none", false);
    cookie.secure = r.flag("session-cookie-secure", false);
    cookie.change_on_failure = r.flag("session-cookie-change-on-failure", false);
    Some(Affinity {
        mode,
        canary,
        cookie,
    })
}

/// One of `options` (the first is the default), by its exact name.
fn choice<T: Copy>(r: &mut Reader<'_>, name: &str, options: &[(&str, T)]) -> T {
    let default = options[0];
    let Some(found) = r.get(name) else {
        return default.1;
    };
    match options
        .iter()
        .find(|(option, _)| *option == found.trimmed())
    {
        Some((_, value)) => *value,
        None => {
            let names: Vec<String> = options.iter().map(|(o, _)| format!("{o:?}")).collect();
            let accepted = format!("it must be one of {}", names.join(", "));
            r.invalid(found, &accepted, default.0);
            default.1
        }
    }
}

const TOKEN: &str = "it must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)";
const PATH: &str = "it must be a path starting with \"/\", without spaces, \";\" or \",\"";
const DOMAIN: &str = "it must be a domain name (letters, digits, \".\" and \"-\")";

/// A text attribute that `valid` accepts; `None` (reported) otherwise.
fn text(r: &mut Reader<'_>, name: &str, valid: fn(&str) -> bool, accepted: &str) -> Option<String> {
    let found: Found<'_> = r.get(name)?;
    let value = found.trimmed();
    if valid(value) {
        return Some(value.to_owned());
    }
    r.invalid(found, accepted, "no such attribute");
    None
}

/// `session-cookie-expires`, `session-cookie-max-age`: whole seconds (ingress-nginx accepts
/// negative ones, which expire the cookie at once).
fn seconds(r: &mut Reader<'_>, name: &str) -> Option<i64> {
    let found = r.get(name)?;
    let value = found.trimmed();
    let parsed = value
        .parse::<i64>()
        .ok()
        .filter(|_| !value.starts_with('+'));
    if parsed.is_none() {
        r.invalid(
            found,
            "it must be a whole number of seconds",
            "no such attribute",
        );
    }
    parsed
}

/// An RFC 6265 cookie name (an RFC 9110 token).
pub(crate) fn is_cookie_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_cookie_path(value: &str) -> bool {
    value.starts_with('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

fn is_cookie_domain(value: &str) -> bool {
    let name = value.strip_prefix('.').unwrap_or(value);
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Whether the values are a cookie attribute weir can send (for the property tests).
#[cfg(test)]
fn attribute_is_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with};
    use super::*;
    use crate::model::Defaults;
    use proptest::prelude::*;

    fn balance(pairs: &[(&str, &str)]) -> (Balance, usize) {
        let (parsed, diagnostics) = parse_pairs(pairs);
        assert!(parsed.policy.refused.is_none(), "never fails closed");
        (parsed.policy.balance.clone(), diagnostics.len())
    }

    fn key(name: &str) -> String {
        both(name)[1].clone()
    }

    #[test]
    fn load_balance_from_the_annotation_else_the_configmap() {
        let [weir, nginx] = both("load-balance");
        assert_eq!(balance(&[]).0.load, LoadBalance::RoundRobin);
        for key in [&weir, &nginx] {
            assert_eq!(
                balance(&[(key, "ewma")]),
                (Balance::with_load(LoadBalance::Ewma), 0)
            );
        }
        let ewma = Defaults {
            load_balance: LoadBalance::Ewma,
            ..Defaults::default()
        };
        let (parsed, _) = parse_with(&[], &ewma);
        assert_eq!(parsed.policy.balance.load, LoadBalance::Ewma);
        let (parsed, _) = parse_with(&[(&nginx, "round_robin")], &ewma);
        assert_eq!(parsed.policy.balance.load, LoadBalance::RoundRobin);
        // Unknown: reported, the ConfigMap's algorithm.
        let (parsed, diagnostics) = parse_with(&[(&nginx, "least_conn")], &ewma);
        assert_eq!(parsed.policy.balance.load, LoadBalance::Ewma);
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains("round_robin"));
    }

    #[test]
    fn hash_by_expressions_and_subsets() {
        /// The annotations, then the key's source and the subset size (`None`: no hashing).
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            Option<(&'a str, Option<u32>)>,
            usize,
        );
        let by = key("upstream-hash-by");
        let subset = key("upstream-hash-by-subset");
        let size = key("upstream-hash-by-subset-size");
        let table: &[Row<'_>] = &[
            (&[(&by, "$request_uri")], Some(("$request_uri", None)), 0),
            (
                &[(&by, " $host$request_uri ")],
                Some(("$host$request_uri", None)),
                0,
            ),
            (
                &[(&by, "$binary_remote_addr")],
                Some(("$binary_remote_addr", None)),
                0,
            ),
            (
                &[(&by, "user-$http_x_user-$cookie_sid-$arg_id")],
                Some(("user-$http_x_user-$cookie_sid-$arg_id", None)),
                0,
            ),
            (
                &[(&by, "$request_uri"), (&subset, "true")],
                Some(("$request_uri", Some(3))),
                0,
            ),
            (
                &[(&by, "$request_uri"), (&subset, "true"), (&size, "5")],
                Some(("$request_uri", Some(5))),
                0,
            ),
            (
                &[(&by, "$request_uri"), (&subset, "true"), (&size, "0")],
                Some(("$request_uri", Some(3))),
                1,
            ),
            (
                &[(&by, "$request_uri"), (&size, "5")],
                Some(("$request_uri", None)),
                0,
            ),
            (&[(&by, "")], None, 0),
            (&[(&by, "$upstream_addr")], None, 1),
            (&[(&by, "$")], None, 1),
            (&[(&subset, "true")], None, 0),
        ];
        for (pairs, expected, diagnostics) in table {
            let (balance, reported) = balance(pairs);
            let got = balance
                .hash_by
                .as_ref()
                .map(|h| (h.key.source(), h.subset.map(NonZeroU32::get)));
            assert_eq!(got, *expected, "{pairs:?}");
            assert_eq!(reported, *diagnostics, "{pairs:?}");
            assert_eq!(balance.load, LoadBalance::RoundRobin);
        }
    }

    #[test]
    fn cookie_affinity_and_its_attributes() {
        let (plain, _) = balance(&[(&key("affinity"), "cookie")]);
        assert_eq!(*plain.affinity.unwrap(), Affinity::default());
        let pairs = [
            (key("affinity"), "cookie"),
            (key("affinity-mode"), "persistent"),
            (key("affinity-canary-behavior"), "legacy"),
            (key("session-cookie-name"), "route"),
            (key("session-cookie-path"), "/app"),
            (key("session-cookie-domain"), ".example.com"),
            (key("session-cookie-expires"), "172800"),
            (key("session-cookie-max-age"), "-1"),
            (key("session-cookie-samesite"), "none"),
            (key("session-cookie-conditional-samesite-none"), "true"),
            (key("session-cookie-secure"), "true"),
            (key("session-cookie-change-on-failure"), "true"),
        ];
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let (full, diagnostics) = balance(&pairs);
        assert_eq!(diagnostics, 0);
        assert_eq!(
            *full.affinity.unwrap(),
            Affinity {
                mode: AffinityMode::Persistent,
                canary: CanaryBehavior::Legacy,
                cookie: SessionCookie {
                    name: "route".to_owned(),
                    path: Some("/app".to_owned()),
                    domain: Some(".example.com".to_owned()),
                    expires: Some(172_800),
                    max_age: Some(-1),
                    same_site: Some(SameSite::None),
                    conditional_same_site_none: true,
                    secure: true,
                    change_on_failure: true,
                },
            }
        );
    }

    #[test]
    fn bad_affinity_values_are_reported_and_defaulted() {
        let affinity = key("affinity");
        // One bad annotation beside `affinity: cookie`.
        let table: &[(&str, &str)] = &[
            ("affinity-mode", "sticky"),
            ("affinity-canary-behavior", "always"),
            ("session-cookie-name", "my cookie"),
            ("session-cookie-path", "app"),
            ("session-cookie-path", "/a;b"),
            ("session-cookie-domain", "a b"),
            ("session-cookie-expires", "1d"),
            ("session-cookie-max-age", "+5"),
            ("session-cookie-samesite", "sometimes"),
            ("session-cookie-secure", "yes"),
            ("session-cookie-change-on-failure", "maybe"),
        ];
        for (name, value) in table {
            let bad = key(name);
            let (balance, reported) = balance(&[(&affinity, "cookie"), (&bad, value)]);
            assert_eq!(reported, 1, "{name}: {value}");
            assert_eq!(*balance.affinity.unwrap(), Affinity::default(), "{name}");
        }
        // Another affinity type: reported, none.
        assert_eq!(balance(&[(&affinity, "header")]).1, 1);
        assert!(balance(&[(&affinity, "header")]).0.affinity.is_none());
        // Cookie settings without affinity change nothing.
        let (none, reported) = balance(&[(&key("session-cookie-name"), "x")]);
        assert!(none.affinity.is_none() && reported == 0);
    }

    #[test]
    fn regex_paths_want_a_cookie_path() {
        let (parsed, diagnostics) =
            parse_pairs(&[(&key("affinity"), "cookie"), (&key("use-regex"), "true")]);
        assert!(parsed.policy.balance.affinity.is_some());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert!(diagnostics[0].message.contains("session-cookie-path"));
        let (_, diagnostics) = parse_pairs(&[
            (&key("affinity"), "cookie"),
            (&key("use-regex"), "true"),
            (&key("session-cookie-path"), "/"),
        ]);
        assert!(diagnostics.is_empty());
    }

    proptest! {
        /// Whatever the values, parsing reports at most one Diagnostic per annotation, never
        /// fails closed, and whatever cookie attribute it keeps is safe to send.
        #[test]
        fn cookie_settings_are_total_and_safe(
            name in "\\PC{0,12}",
            path in "[/a-z;, %]{0,12}",
            domain in "[.a-z0-9 -]{0,12}",
            expires in "[-+0-9a]{0,6}",
            same_site in "(?i)(none|lax|strict|x)?",
        ) {
            let pairs = [
                (key("affinity"), "cookie".to_owned()),
                (key("session-cookie-name"), name),
                (key("session-cookie-path"), path),
                (key("session-cookie-domain"), domain),
                (key("session-cookie-expires"), expires),
                (key("session-cookie-samesite"), same_site),
            ];
            let pairs: Vec<(&str, &str)> =
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (balance, reported) = balance(&pairs);
            prop_assert!(reported <= 5);
            let affinity = balance.affinity.unwrap();
            let cookie = &affinity.cookie;
            prop_assert!(is_cookie_name(&cookie.name));
            for attribute in [&cookie.path, &cookie.domain].into_iter().flatten() {
                prop_assert!(attribute_is_safe(attribute), "{attribute:?}");
            }
        }

        /// A hash key parses exactly when its variables are known; what parses keeps its text.
        #[test]
        fn hash_keys_parse_or_are_reported(text in "[a-z$_{}/-]{1,24}") {
            let by = key("upstream-hash-by");
            let (balance, reported) = balance(&[(&by, &text)]);
            match Expr::parse(text.trim()) {
                Ok(expr) => {
                    prop_assert_eq!(reported, 0);
                    prop_assert_eq!(balance.hash_by.unwrap().key, expr);
                }
                Err(_) => {
                    prop_assert_eq!(reported, 1);
                    prop_assert!(balance.hash_by.is_none());
                }
            }
        }
    }
}

//! `whitelist-source-range` (and its newer name `allowlist-source-range`),
//! `denylist-source-range`, `satisfy`: which client addresses may use a route, and how that
//! combines with authentication.
//!
//! An empty value is no list, as in ingress-nginx; a list with an item that is neither a CIDR
//! nor an address makes the routes refuse (503): serving without the list would open them.

use super::{Key, OnInvalid, Reader};
use crate::model::access::{IpList, Satisfy};
use crate::model::policy::Global;

pub(super) const KEYS: &[Key] = &[
    Key::route("whitelist-source-range", OnInvalid::Refuse),
    Key::route("allowlist-source-range", OnInvalid::Refuse),
    Key::route("denylist-source-range", OnInvalid::Refuse),
    Key::route("satisfy", OnInvalid::Default),
];

const CIDRS: &str = "it must be a comma-separated list of CIDRs or IP addresses \
                     (e.g. \"10.0.0.0/8, 192.168.0.1, 2001:db8::/32\")";

/// The source lists of a route.
#[derive(Debug, Default)]
pub(super) struct SourceRanges {
    /// Only these addresses.
    pub allow: Option<IpList>,
    /// Never these addresses.
    pub deny: Option<IpList>,
    /// How the allowlist combines with authentication.
    pub satisfy: Satisfy,
}

/// The list `found` holds; an item that is neither a CIDR nor an address makes the routes
/// refuse (also for `limit-whitelist`).
pub(super) fn ip_list(r: &mut Reader<'_>, found: super::Found<'_>) -> Option<IpList> {
    IpList::parse(found.value)
        .map_err(|_| r.refuse(found, CIDRS))
        .ok()
}

/// The ConfigMap's list for an Ingress without its own (an invalid one refuses).
fn global(r: &mut Reader<'_>, list: &Global<IpList>) -> Option<IpList> {
    match list {
        Global::Off => None,
        Global::On(list) => Some(list.clone()),
        Global::Invalid(why) => {
            r.refuse_for(why);
            None
        }
    }
}

/// Reads the lists; `allowlist-source-range` wins over `whitelist-source-range`, and the
/// ConfigMap's `whitelist-source-range`/`denylist-source-range` apply where the Ingress sets
/// none.
pub(super) fn parse(r: &mut Reader<'_>) -> SourceRanges {
    let allow = ["allowlist-source-range", "whitelist-source-range"]
        .into_iter()
        .find_map(|name| r.get(name).filter(|f| !f.trimmed().is_empty()));
    let deny = r
        .get("denylist-source-range")
        .filter(|f| !f.trimmed().is_empty());
    let defaults = r.context().defaults;
    let allow = match allow {
        Some(found) => ip_list(r, found),
        None => global(r, &defaults.allow_sources),
    };
    let deny = match deny {
        Some(found) => ip_list(r, found),
        None => global(r, &defaults.deny_sources),
    };
    let satisfy = match r.get("satisfy") {
        None => Satisfy::All,
        Some(found) => match found.trimmed() {
            "all" | "" => Satisfy::All,
            "any" => Satisfy::Any,
            _ => {
                r.invalid(found, "it must be \"all\" or \"any\"", "\"all\"");
                Satisfy::All
            }
        },
    };
    SourceRanges {
        allow,
        deny,
        satisfy,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with};
    use crate::model::Defaults;
    use crate::model::access::{IpList, Satisfy};
    use crate::model::policy::Global;
    use std::sync::Arc;

    #[test]
    fn the_configmap_s_lists_apply_where_the_ingress_sets_none() {
        let defaults = Defaults {
            allow_sources: Global::On(IpList::parse("10.0.0.0/8").unwrap()),
            deny_sources: Global::On(IpList::parse("10.6.6.6").unwrap()),
            ..Defaults::default()
        };
        let access = |pairs: &[(&str, &str)]| {
            let (parsed, _) = parse_with(pairs, &defaults);
            parsed.policy.access.clone().unwrap()
        };
        let global = access(&[]);
        assert_eq!(global.allow.as_ref().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(global.deny.as_ref().unwrap().to_string(), "10.6.6.6/32");
        let [_, own] = both("whitelist-source-range");
        let overridden = access(&[(own.as_str(), "192.168.0.0/16")]);
        assert_eq!(
            overridden.allow.as_ref().unwrap().to_string(),
            "192.168.0.0/16"
        );
        assert!(
            overridden.deny.is_some(),
            "the denylist stays the ConfigMap's"
        );
        let broken = Defaults {
            deny_sources: Global::Invalid(Arc::from("the ConfigMap's denylist is invalid")),
            ..Defaults::default()
        };
        let (parsed, _) = parse_with(&[], &broken);
        assert!(parsed.policy.refused.is_some(), "fails closed");
        let [_, deny] = both("denylist-source-range");
        let (parsed, _) = parse_with(&[(deny.as_str(), "10.0.0.1")], &broken);
        assert!(
            parsed.policy.refused.is_none(),
            "its own list replaces the broken one"
        );
    }

    fn allowed(pairs: &[(&str, &str)], ip: &str) -> Option<bool> {
        let (parsed, _) = parse_pairs(pairs);
        let access = parsed.policy.access.clone()?;
        let ip = ip.parse().unwrap();
        Some(
            access.allow.as_ref().is_none_or(|l| l.contains(ip))
                && !access.deny.as_ref().is_some_and(|l| l.contains(ip)),
        )
    }

    #[test]
    fn lists_under_every_name_and_prefix() {
        for name in ["whitelist-source-range", "allowlist-source-range"] {
            for key in both(name) {
                let pairs = [(key.as_str(), "10.0.0.0/8,2001:db8::/32")];
                assert_eq!(allowed(&pairs, "10.1.1.1"), Some(true), "{key}");
                assert_eq!(allowed(&pairs, "2001:db8::5"), Some(true), "{key}");
                assert_eq!(allowed(&pairs, "11.1.1.1"), Some(false), "{key}");
                assert!(parse_pairs(&pairs).1.is_empty());
            }
        }
        for key in both("denylist-source-range") {
            let pairs = [(key.as_str(), "10.0.0.1")];
            assert_eq!(allowed(&pairs, "10.0.0.1"), Some(false));
            assert_eq!(allowed(&pairs, "10.0.0.2"), Some(true));
        }
        let [weir, nginx] = both("whitelist-source-range");
        let precedence = [(weir.as_str(), "10.0.0.1"), (nginx.as_str(), "10.0.0.2")];
        assert_eq!(allowed(&precedence, "10.0.0.1"), Some(true));
        assert_eq!(allowed(&precedence, "10.0.0.2"), Some(false));
        let [_, allowlist] = both("allowlist-source-range");
        let newer = [
            (allowlist.as_str(), "10.0.0.1"),
            (nginx.as_str(), "10.0.0.2"),
        ];
        assert_eq!(allowed(&newer, "10.0.0.1"), Some(true), "allowlist wins");
        assert_eq!(allowed(&[], "10.0.0.1"), None, "no lists, no access rules");
        assert_eq!(allowed(&[(nginx.as_str(), " ")], "1.1.1.1"), None);
    }

    #[test]
    fn a_bad_list_fails_closed() {
        for value in [
            "10.0.0.0/8,bogus",
            "10.0.0.0/33",
            "10.0.0.0/8;10.1.0.0/16",
            "*",
        ] {
            for name in [
                "whitelist-source-range",
                "allowlist-source-range",
                "denylist-source-range",
            ] {
                let [_, key] = both(name);
                let (parsed, diagnostics) = parse_pairs(&[(&key, value)]);
                assert!(parsed.policy.refused.is_some(), "{key}={value}");
                assert!(diagnostics[0].message.contains(value), "{diagnostics:?}");
            }
        }
    }

    #[test]
    fn satisfy_any_or_all() {
        let [_, key] = both("satisfy");
        let list = (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8",
        );
        let satisfy = |value: &str| {
            let (parsed, diagnostics) = parse_pairs(&[(&key, value), list]);
            (
                parsed.policy.access.clone().unwrap().satisfy,
                diagnostics.len(),
            )
        };
        assert_eq!(satisfy("any"), (Satisfy::Any, 0));
        assert_eq!(satisfy("all"), (Satisfy::All, 0));
        assert_eq!(satisfy("either"), (Satisfy::All, 1), "the stricter default");
    }
}

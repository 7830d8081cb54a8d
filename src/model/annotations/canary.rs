//! `canary` and `canary-*`: the Ingress is a canary of the Ingress that routes the same host
//! and path (its *main* Ingress), and takes the requests its rule picks (see
//! [`CanaryRule`](crate::model::CanaryRule)).
//!
//! As in ingress-nginx, a canary Ingress never competes with its main Ingress for a route: it
//! adds a second backend to the main Ingress's route, whose annotations apply to both backends
//! (except balancing and session affinity, which each backend has its own). An invalid canary
//! value is reported, and the canary then takes no traffic until it is fixed: its main Ingress
//! keeps serving every request. `canary-*` without `canary: "true"` is reported and ignored.

use http::header::HeaderName;
use regex::Regex;

use super::{Found, Key, OnInvalid, Reader, values};
use crate::model::Reason;
use crate::model::canary::{CanaryRule, HeaderRule};

pub(super) const KEYS: &[Key] = &[
    Key::route("canary", OnInvalid::Default),
    Key::route("canary-weight", OnInvalid::Default),
    Key::route("canary-weight-total", OnInvalid::Default),
    Key::route("canary-by-header", OnInvalid::Default),
    Key::route("canary-by-header-value", OnInvalid::Default),
    Key::route("canary-by-header-pattern", OnInvalid::Default),
    Key::route("canary-by-cookie", OnInvalid::Default),
];

/// The keys that shape a canary's traffic (everything but `canary`).
const RULE_KEYS: &[&str] = &[
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// What `canary*` make of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CanaryAnnotation {
    /// Not a canary: an Ingress like any other.
    No,
    /// A canary with this rule; `None` when a value is invalid (reported): it takes no traffic.
    Yes(Option<CanaryRule>),
}

impl CanaryAnnotation {
    /// Whether the Ingress is a canary (routed only as a second backend of its main Ingress).
    pub fn is_canary(&self) -> bool {
        matches!(self, CanaryAnnotation::Yes(_))
    }
}

pub(super) fn parse(r: &mut Reader<'_>) -> CanaryAnnotation {
    let enabled = match r.get("canary") {
        None => false,
        Some(found) => match values::boolean(found.value) {
            Some(enabled) => enabled,
            None => {
                // Unreadable: safer as a canary that takes nothing than as an Ingress that
                // claims its main Ingress's paths.
                invalid(r, found, values::BOOLEAN);
                return CanaryAnnotation::Yes(None);
            }
        },
    };
    if !enabled {
        let set: Vec<&str> = RULE_KEYS
            .iter()
            .filter_map(|name| r.get(name))
            .map(|found| found.key)
            .collect();
        if !set.is_empty() {
            let message = format!(
                "annotation(s) {set:?} are ignored: the Ingress is not a canary (set \
                 \"nginx.ingress.kubernetes.io/canary\": \"true\" to make it one)"
            );
            r.report(Reason::InvalidAnnotationValue, message);
        }
        return CanaryAnnotation::No;
    }
    CanaryAnnotation::Yes(rule(r))
}

/// The canary's rule, or `None` (reported) when a value is invalid.
fn rule(r: &mut Reader<'_>) -> Option<CanaryRule> {
    let mut rule = CanaryRule::none();
    let mut valid = true;
    if let Some(found) = r.get("canary-weight") {
        match count(found.value) {
            Some(weight) => rule.weight = weight,
            None => valid = invalid(r, found, "it must be a whole number from 0"),
        }
    }
    if let Some(found) = r.get("canary-weight-total") {
        match count(found.value).filter(|&total| total > 0) {
            Some(total) => rule.total = total,
            None => valid = invalid(r, found, "it must be a whole number from 1"),
        }
    }
    if valid
        && rule.weight > rule.total
        && let Some(found) = r.get("canary-weight")
    {
        let accepted = format!("it must not exceed canary-weight-total ({})", rule.total);
        valid = invalid(r, found, &accepted);
    }
    if let Some(found) = r
        .get("canary-by-header")
        .filter(|f| !f.trimmed().is_empty())
    {
        match HeaderName::from_bytes(found.trimmed().as_bytes()) {
            Ok(name) => match header_rule(r) {
                Some(header_rule) => rule.header = Some((name, header_rule)),
                None => valid = false,
            },
            Err(_) => valid = invalid(r, found, "it must be a header name"),
        }
    }
    if let Some(found) = r.get("canary-by-cookie") {
        let name = found.trimmed();
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b";=,\"".contains(&b)) {
            valid = invalid(r, found, "it must be a cookie name");
        } else {
            rule.cookie = Some(name.to_owned());
        }
    }
    valid.then_some(rule)
}

/// How the `canary-by-header` value is read: `-value`, else `-pattern`, else always/never.
fn header_rule(r: &mut Reader<'_>) -> Option<HeaderRule> {
    if let Some(found) = r
        .get("canary-by-header-value")
        .filter(|f| !f.value.is_empty())
    {
        return Some(HeaderRule::Value(found.value.to_owned()));
    }
    if let Some(found) = r
        .get("canary-by-header-pattern")
        .filter(|f| !f.value.is_empty())
    {
        return match Regex::new(found.value) {
            Ok(regex) => Some(HeaderRule::Pattern(regex)),
            Err(_) => {
                invalid(r, found, "it must be a regular expression");
                None
            }
        };
    }
    Some(HeaderRule::AlwaysNever)
}

/// A whole number as ingress-nginx's `GetIntAnnotation` reads it (no sign, no spaces inside).
fn count(value: &str) -> Option<u32> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reports an invalid canary value: the canary takes no traffic. Returns false (not valid).
fn invalid(r: &mut Reader<'_>, found: Found<'_>, accepted: &str) -> bool {
    r.report(
        Reason::InvalidAnnotationValue,
        format!(
            "annotation {:?} has the value {:?}, but {accepted}; this canary Ingress takes no \
             traffic until it is fixed (its main Ingress serves every request)",
            found.key, found.value
        ),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use super::*;
    use proptest::prelude::*;

    fn canary(pairs: &[(&str, &str)]) -> (CanaryAnnotation, Vec<Reason>) {
        let mut all = vec![("nginx.ingress.kubernetes.io/canary", "true")];
        all.extend_from_slice(pairs);
        let (parsed, diagnostics) = parse_pairs(&all);
        (
            parsed.canary,
            diagnostics.into_iter().map(|d| d.reason).collect(),
        )
    }

    fn valid(pairs: &[(&str, &str)]) -> CanaryRule {
        match canary(pairs) {
            (CanaryAnnotation::Yes(Some(rule)), reasons) if reasons.is_empty() => rule,
            other => panic!("{pairs:?}: {other:?}"),
        }
    }

    #[test]
    fn reads_both_prefixes_and_defaults_to_no_traffic() {
        for key in both("canary") {
            let (parsed, diagnostics) = parse_pairs(&[(&key, "true")]);
            assert_eq!(
                parsed.canary,
                CanaryAnnotation::Yes(Some(CanaryRule::none()))
            );
            assert!(diagnostics.is_empty(), "{diagnostics:?}");
            assert_eq!(
                parse_pairs(&[(&key, "false")]).0.canary,
                CanaryAnnotation::No
            );
        }
        assert_eq!(parse_pairs(&[]).0.canary, CanaryAnnotation::No);
        for key in both("canary-weight") {
            assert_eq!(valid(&[(&key, "20")]).weight, 20);
        }
    }

    #[test]
    fn reads_every_rule_key() {
        let rule = valid(&[
            ("nginx.ingress.kubernetes.io/canary-weight", " 5 "),
            ("nginx.ingress.kubernetes.io/canary-weight-total", "1000"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
            ("nginx.ingress.kubernetes.io/canary-by-header-value", "v2"),
            (
                "nginx.ingress.kubernetes.io/canary-by-header-pattern",
                "ignored(",
            ),
            ("nginx.ingress.kubernetes.io/canary-by-cookie", "beta"),
        ]);
        assert_eq!((rule.weight, rule.total), (5, 1000));
        assert_eq!(
            rule.header,
            Some((
                HeaderName::from_static("x-canary"),
                HeaderRule::Value("v2".into())
            ))
        );
        assert_eq!(rule.cookie.as_deref(), Some("beta"));
        let pattern = valid(&[
            ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
            (
                "nginx.ingress.kubernetes.io/canary-by-header-pattern",
                "^v[0-9]+$",
            ),
        ]);
        assert!(matches!(pattern.header, Some((_, HeaderRule::Pattern(_)))));
        let plain = valid(&[("nginx.ingress.kubernetes.io/canary-by-header", "x-canary")]);
        assert_eq!(plain.header.map(|(_, r)| r), Some(HeaderRule::AlwaysNever));
    }

    /// Bad input: a Diagnostic, and the canary takes no traffic.
    #[test]
    fn an_invalid_value_leaves_the_main_ingress_every_request() {
        for pairs in [
            vec![("nginx.ingress.kubernetes.io/canary-weight", "ten")],
            vec![("nginx.ingress.kubernetes.io/canary-weight", "-1")],
            vec![("nginx.ingress.kubernetes.io/canary-weight-total", "0")],
            vec![
                ("nginx.ingress.kubernetes.io/canary-weight", "50"),
                ("nginx.ingress.kubernetes.io/canary-weight-total", "40"),
            ],
            vec![("nginx.ingress.kubernetes.io/canary-by-header", "bad header")],
            vec![
                ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary"),
                ("nginx.ingress.kubernetes.io/canary-by-header-pattern", "("),
            ],
            vec![("nginx.ingress.kubernetes.io/canary-by-cookie", "a;b")],
        ] {
            let (annotation, reasons) = canary(&pairs);
            assert_eq!(annotation, CanaryAnnotation::Yes(None), "{pairs:?}");
            assert_eq!(reasons, [Reason::InvalidAnnotationValue], "{pairs:?}");
        }
        let (parsed, diagnostics) = parse_pairs(&[("nginx.ingress.kubernetes.io/canary", "yes")]);
        assert_eq!(parsed.canary, CanaryAnnotation::Yes(None));
        assert_eq!(diagnostics.len(), 1);
        assert!(
            parsed.policy.refused.is_none(),
            "the main Ingress is untouched"
        );
    }

    #[test]
    fn rule_keys_without_canary_are_reported_and_ignored() {
        let (parsed, diagnostics) = parse_pairs(&[
            ("nginx.ingress.kubernetes.io/canary", "false"),
            ("nginx.ingress.kubernetes.io/canary-weight", "50"),
        ]);
        assert_eq!(parsed.canary, CanaryAnnotation::No);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(diagnostics[0].message.contains("not a canary"));
    }

    proptest! {
        /// Any weight text is read as ingress-nginx's integers or reported; never a panic.
        #[test]
        fn weights_parse_or_are_reported(weight in ".{0,12}", total in "[0-9]{0,4}") {
            let (annotation, reasons) = canary(&[
                ("nginx.ingress.kubernetes.io/canary-weight", &weight),
                ("nginx.ingress.kubernetes.io/canary-weight-total", &total),
            ]);
            match annotation {
                CanaryAnnotation::Yes(Some(rule)) => {
                    prop_assert!(reasons.is_empty());
                    prop_assert_eq!(rule.weight, weight.trim().parse::<u32>().unwrap());
                    prop_assert!(rule.total >= 1 && rule.weight <= rule.total);
                }
                CanaryAnnotation::Yes(None) => prop_assert!(!reasons.is_empty()),
                CanaryAnnotation::No => prop_assert!(false, "still a canary"),
            }
        }
    }
}

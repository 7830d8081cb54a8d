//! Canary releases: a second backend for a route, from a canary Ingress
//! (`canary: "true"`) for the same host and path as the route's main Ingress, and the rule that
//! sends a request to it.
//!
//! The rule is ingress-nginx's (its `balancer.lua`): the header first, then the cookie, then the
//! weight. A header or cookie that says neither yes nor no leaves the choice to the next one.

use std::sync::Arc;

use http::HeaderMap;
use http::header::HeaderName;
use regex::Regex;

use super::balance::Balance;
use super::diagnostic::ObjectRef;
use super::table::Backend;
use super::variables::cookie;

/// A route's second backend and when a request goes to it.
#[derive(Debug)]
pub struct Canary {
    /// The canary Ingress.
    pub ingress: ObjectRef,
    /// Its backend (the canary Service's port and ready endpoints).
    pub backend: Arc<Backend>,
    /// Which requests go to it.
    pub rule: CanaryRule,
    /// How its endpoints are balanced: the canary Ingress's own `load-balance` and
    /// `upstream-hash-by`, and the main Ingress's cookie affinity unless the canary says
    /// `affinity-canary-behavior: legacy` (then its own), as ingress-nginx merges them.
    pub balance: Balance,
}

impl PartialEq for Canary {
    fn eq(&self, other: &Self) -> bool {
        self.ingress == other.ingress
            && self.backend == other.backend
            && self.rule == other.rule
            && self.balance == other.balance
    }
}

impl Eq for Canary {}

/// Which requests a canary takes (`canary-by-header*`, `canary-by-cookie`, `canary-weight*`).
#[derive(Debug, Clone)]
pub struct CanaryRule {
    /// `canary-by-header`, and how its value is read.
    pub header: Option<(HeaderName, HeaderRule)>,
    /// `canary-by-cookie`: a cookie whose value `always` or `never` decides.
    pub cookie: Option<String>,
    /// `canary-weight`: this many of every `total` requests go to the canary.
    pub weight: u32,
    /// `canary-weight-total` (default 100).
    pub total: u32,
}

impl PartialEq for CanaryRule {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.cookie == other.cookie
            && self.weight == other.weight
            && self.total == other.total
    }
}

impl Eq for CanaryRule {}

/// How the value of the `canary-by-header` header is read.
#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// `always` sends to the canary, `never` to the main backend; other values decide nothing.
    AlwaysNever,
    /// `canary-by-header-value`: this value sends to the canary; others decide nothing.
    Value(String),
    /// `canary-by-header-pattern`: a value the regex matches sends to the canary; others decide
    /// nothing.
    Pattern(Regex),
}

impl PartialEq for HeaderRule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderRule::AlwaysNever, HeaderRule::AlwaysNever) => true,
            (HeaderRule::Value(a), HeaderRule::Value(b)) => a == b,
            (HeaderRule::Pattern(a), HeaderRule::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for HeaderRule {}

/// What decided a request's backend (for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The `canary-by-header` header.
    Header(bool),
    /// The `canary-by-cookie` cookie.
    Cookie(bool),
    /// The weight.
    Weight(bool),
}

impl Decision {
    /// Whether the request goes to the canary.
    pub fn to_canary(self) -> bool {
        match self {
            Decision::Header(yes) | Decision::Cookie(yes) | Decision::Weight(yes) => yes,
        }
    }
}

impl CanaryRule {
    /// The rule that sends no request to the canary (a canary Ingress without rules of its own,
    /// as ingress-nginx has it: weight 0).
    pub fn none() -> Self {
        CanaryRule {
            header: None,
            cookie: None,
            weight: 0,
            total: 100,
        }
    }

    /// Decides for a request with `headers`. `roll` is called (at most once) for a number
    /// drawn uniformly from `0..total` when the weight decides.
    pub fn decide(&self, headers: &HeaderMap, roll: impl FnOnce(u32) -> u32) -> Decision {
        if let Some((name, rule)) = &self.header
            && let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
        {
            let decided = match rule {
                HeaderRule::Value(wanted) => (value == wanted).then_some(true),
                HeaderRule::Pattern(regex) => regex.is_match(value).then_some(true),
                HeaderRule::AlwaysNever => always_never(value),
            };
            if let Some(yes) = decided {
                return Decision::Header(yes);
            }
        }
        if let Some(name) = &self.cookie
            && let Some(yes) = cookie(headers, name).and_then(always_never)
        {
            return Decision::Cookie(yes);
        }
        let yes = match self.weight {
            0 => false,
            w if w >= self.total => true,
            w => roll(self.total) < w,
        };
        Decision::Weight(yes)
    }
}

fn always_never(value: &str) -> Option<bool> {
    match value {
        "always" => Some(true),
        "never" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn rule(header: Option<HeaderRule>, cookie: bool, weight: u32) -> CanaryRule {
        CanaryRule {
            header: header.map(|r| (HeaderName::from_static("x-canary"), r)),
            cookie: cookie.then(|| "canary".to_owned()),
            weight,
            total: 100,
        }
    }

    /// ingress-nginx's precedence: header, then cookie, then weight; a value that is neither
    /// yes nor no passes the decision on.
    #[test]
    fn precedence_is_header_then_cookie_then_weight() {
        use Decision::*;
        let value = || Some(HeaderRule::Value("v2".into()));
        let pattern = || Some(HeaderRule::Pattern(Regex::new("^v[2-9]$").unwrap()));
        let plain = || Some(HeaderRule::AlwaysNever);
        type Case = (CanaryRule, Vec<(&'static str, &'static str)>, Decision);
        let cases: Vec<Case> = vec![
            // header always/never beat the cookie and the weight
            (
                rule(plain(), true, 100),
                vec![("x-canary", "never")],
                Header(false),
            ),
            (
                rule(plain(), true, 0),
                vec![("x-canary", "always")],
                Header(true),
            ),
            (
                rule(plain(), true, 0),
                vec![("x-canary", "never"), ("cookie", "canary=always")],
                Header(false),
            ),
            // another header value: the cookie decides, else the weight
            (
                rule(plain(), true, 0),
                vec![("x-canary", "maybe"), ("cookie", "canary=always")],
                Cookie(true),
            ),
            (
                rule(plain(), true, 100),
                vec![("x-canary", "maybe")],
                Weight(true),
            ),
            // header value: only the value says yes; "never" is just another value
            (
                rule(value(), false, 0),
                vec![("x-canary", "v2")],
                Header(true),
            ),
            (
                rule(value(), false, 100),
                vec![("x-canary", "never")],
                Weight(true),
            ),
            (
                rule(value(), false, 0),
                vec![("x-canary", "always")],
                Weight(false),
            ),
            // pattern
            (
                rule(pattern(), false, 0),
                vec![("x-canary", "v7")],
                Header(true),
            ),
            (
                rule(pattern(), false, 0),
                vec![("x-canary", "v1")],
                Weight(false),
            ),
            // cookie never beats the weight; other cookie values pass on
            (
                rule(None, true, 100),
                vec![("cookie", "a=1; canary=never")],
                Cookie(false),
            ),
            (
                rule(None, true, 0),
                vec![("cookie", "canary=always")],
                Cookie(true),
            ),
            (
                rule(None, true, 100),
                vec![("cookie", "canary=yes")],
                Weight(true),
            ),
            // no header rule: the header is not looked at
            (
                rule(None, false, 0),
                vec![("x-canary", "always")],
                Weight(false),
            ),
        ];
        for (rule, pairs, want) in cases {
            let got = rule.decide(&headers(&pairs), |_| 0);
            assert_eq!(got, want, "{rule:?} {pairs:?}");
        }
    }

    #[test]
    fn the_weight_compares_a_roll_below_the_total() {
        let mut r = rule(None, false, 20);
        r.total = 1000;
        let decide = |roll: u32| {
            r.decide(&HeaderMap::new(), |total| {
                assert_eq!(total, 1000);
                roll
            })
        };
        assert_eq!(decide(19), Decision::Weight(true));
        assert_eq!(decide(20), Decision::Weight(false));
        assert_eq!(decide(999), Decision::Weight(false));
    }

    proptest! {
        /// Over every roll, exactly `weight` of `total` go to the canary (the weight can
        /// exceed the total: then all of them).
        #[test]
        fn the_weight_sends_its_share(weight in 0u32..300, total in 1u32..300) {
            let r = CanaryRule { header: None, cookie: None, weight, total };
            let sent = (0..total)
                .filter(|&roll| r.decide(&HeaderMap::new(), |_| roll).to_canary())
                .count() as u32;
            prop_assert_eq!(sent, weight.min(total));
        }
    }
}

//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-whitelist` (and its newer name
//! `limit-allowlist`): request rate limits per client address, as ingress-nginx sets nginx's
//! `limit_req` (burst = rate × multiplier, default 5, `nodelay`; 503 beyond).
//!
//! A value that is not a whole number, or an exemption list with an item that is not a CIDR,
//! makes the routes refuse (503): serving without the limit, or exempting everyone, would
//! remove a protection the Ingress asks for.

use std::sync::Arc;
use std::time::Duration;

use super::{Key, OnInvalid, Reader};
use crate::model::access::{Rate, RateLimits};

pub(super) const KEYS: &[Key] = &[
    Key::route("limit-rps", OnInvalid::Refuse),
    Key::route("limit-rpm", OnInvalid::Refuse),
    Key::route("limit-burst-multiplier", OnInvalid::Refuse),
    Key::route("limit-whitelist", OnInvalid::Refuse),
    Key::route("limit-allowlist", OnInvalid::Refuse),
];

const WHOLE: &str = "it must be a whole number (0: no limit)";

/// The limits, when `limit-rps` or `limit-rpm` sets one.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<Arc<RateLimits>> {
    let mut number = |name: &str| -> Result<Option<u32>, ()> {
        let Some(found) = r.get(name) else {
            return Ok(None);
        };
        match found.trimmed().parse::<u32>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => {
                r.refuse(found, WHOLE);
                Err(())
            }
        }
    };
    let rps = number("limit-rps").ok()?.filter(|n| *n > 0);
    let rpm = number("limit-rpm").ok()?.filter(|n| *n > 0);
    let multiplier = number("limit-burst-multiplier").ok()?.unwrap_or(5).max(1);
    if rps.is_none() && rpm.is_none() {
        return None;
    }
    let exempt = ["limit-allowlist", "limit-whitelist"]
        .into_iter()
        .find_map(|name| r.get(name).filter(|f| !f.trimmed().is_empty()));
    let exempt = match exempt {
        None => None,
        Some(found) => Some(super::source_ranges::ip_list(r, found)?),
    };
    let rate = |count: u32, period: Duration| Rate {
        count,
        period,
        burst: count.saturating_mul(multiplier),
    };
    let status = r.context().defaults.limit_req_status;
    Some(Arc::new(RateLimits {
        status,
        per_second: rps.map(|n| rate(n, Duration::from_secs(1))),
        per_minute: rpm.map(|n| rate(n, Duration::from_secs(60))),
        exempt,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{both, parse_pairs};

    #[test]
    fn rates_bursts_and_exemptions() {
        let [weir, nginx] = both("limit-rps");
        assert!(parse_pairs(&[]).0.policy.rate_limits.is_none());
        assert!(parse_pairs(&[(&nginx, "0")]).0.policy.rate_limits.is_none());
        for key in [&weir, &nginx] {
            let (parsed, diagnostics) = parse_pairs(&[(key, "10")]);
            let limits = parsed.policy.rate_limits.clone().unwrap();
            let rps = limits.per_second.unwrap();
            assert_eq!(
                (rps.count, rps.period, rps.burst),
                (10, Duration::from_secs(1), 50)
            );
            assert!(limits.per_minute.is_none() && limits.exempt.is_none());
            assert!(diagnostics.is_empty());
        }
        let [_, rpm] = both("limit-rpm");
        let [_, multiplier] = both("limit-burst-multiplier");
        let [_, allow] = both("limit-allowlist");
        let (parsed, _) = parse_pairs(&[(&rpm, "120"), (&multiplier, "2"), (&allow, "10.0.0.0/8")]);
        let limits = parsed.policy.rate_limits.clone().unwrap();
        assert_eq!(limits.per_minute.unwrap().burst, 240);
        assert!(
            limits
                .exempt
                .as_ref()
                .unwrap()
                .contains("10.1.1.1".parse().unwrap())
        );
    }

    #[test]
    fn a_limit_that_cannot_be_read_fails_closed() {
        let [_, rps] = both("limit-rps");
        let [_, whitelist] = both("limit-whitelist");
        for pairs in [
            vec![(rps.as_str(), "ten")],
            vec![(rps.as_str(), "-1")],
            vec![(rps.as_str(), "5"), (whitelist.as_str(), "10.0.0.0/8,all")],
        ] {
            let (parsed, diagnostics) = parse_pairs(&pairs);
            assert!(parsed.policy.refused.is_some(), "{pairs:?}");
            assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        }
    }
}

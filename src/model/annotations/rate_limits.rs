//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-whitelist` (and its newer name
//! `limit-allowlist`): request rate limits per client address, as ingress-nginx sets nginx's
//! `limit_req` (burst = rate × multiplier, default 5, `nodelay`; 503 beyond);
//! `limit-connections` (nginx's `limit_conn`: requests in progress per client address); and
//! `limit-rate`/`limit-rate-after`, the speed at which responses are sent.
//!
//! A value that is not a whole number, or an exemption list with an item that is not a CIDR,
//! makes the routes refuse (503): serving without the limit, or exempting everyone, would
//! remove a protection the Ingress asks for.

use std::sync::Arc;
use std::time::Duration;

use super::{Key, OnInvalid, Reader};
use crate::model::access::{Rate, RateLimits};
use crate::model::policy::ResponseRate;

pub(super) const KEYS: &[Key] = &[
    Key::route("limit-rps", OnInvalid::Refuse),
    Key::route("limit-rpm", OnInvalid::Refuse),
    Key::route("limit-burst-multiplier", OnInvalid::Refuse),
    Key::route("limit-whitelist", OnInvalid::Refuse),
    Key::route("limit-allowlist", OnInvalid::Refuse),
    Key::route("limit-connections", OnInvalid::Refuse),
    Key::route("limit-rate", OnInvalid::Default),
    Key::route("limit-rate-after", OnInvalid::Default),
];

const WHOLE: &str = "it must be a whole number (0: no limit)";

/// The limits, when `limit-rps`, `limit-rpm` or `limit-connections` sets one.
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
    let connections = number("limit-connections").ok()?.filter(|n| *n > 0);
    if rps.is_none() && rpm.is_none() && connections.is_none() {
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
    let defaults = r.context().defaults;
    Some(Arc::new(RateLimits {
        status: defaults.limit_req_status,
        connections,
        connections_status: defaults.limit_conn_status,
        per_second: rps.map(|n| rate(n, Duration::from_secs(1))),
        per_minute: rpm.map(|n| rate(n, Duration::from_secs(60))),
        exempt,
    }))
}

/// `limit-rate` and `limit-rate-after` (kilobytes, as ingress-nginx writes them into nginx's
/// `limit_rate`/`limit_rate_after`): how fast each response is sent once past its first bytes.
pub(super) fn response_rate(r: &mut Reader<'_>) -> Option<ResponseRate> {
    let mut kilobytes = |name: &str| -> u64 {
        let Some(found) = r.get(name) else {
            return 0;
        };
        found.trimmed().parse::<u64>().unwrap_or_else(|_| {
            r.invalid(found, "it must be a whole number of kilobytes", "no limit");
            0
        })
    };
    let rate = kilobytes("limit-rate");
    let after = kilobytes("limit-rate-after");
    (rate > 0).then(|| ResponseRate {
        bytes_per_second: rate.saturating_mul(1024),
        after: after.saturating_mul(1024),
    })
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
    fn connections_and_the_response_rate() {
        let [weir, nginx] = both("limit-connections");
        for key in [&weir, &nginx] {
            let (parsed, diagnostics) = parse_pairs(&[(key, "3")]);
            let limits = parsed.policy.rate_limits.clone().unwrap();
            assert_eq!(limits.connections, Some(3));
            assert!(limits.per_second.is_none() && diagnostics.is_empty());
        }
        let (refused, _) = parse_pairs(&[(&nginx, "many")]);
        assert!(refused.policy.refused.is_some());
        let [_, rate] = both("limit-rate");
        let [_, after] = both("limit-rate-after");
        let (parsed, _) = parse_pairs(&[(&rate, "100"), (&after, "50")]);
        let paced = parsed.policy.response_rate.unwrap();
        assert_eq!(
            (paced.bytes_per_second, paced.after),
            (100 * 1024, 50 * 1024)
        );
        assert!(
            parse_pairs(&[(&after, "50")])
                .0
                .policy
                .response_rate
                .is_none()
        );
        let (parsed, diagnostics) = parse_pairs(&[(&rate, "fast")]);
        assert!(parsed.policy.response_rate.is_none() && parsed.policy.refused.is_none());
        assert_eq!(diagnostics.len(), 1);
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

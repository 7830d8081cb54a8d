//! `mirror-target`, `mirror-request-body` and `mirror-host`: a copy of each request goes to
//! another URL ([`Mirror`]). An invalid value is reported and the route is not mirrored; it
//! keeps serving (a copy never decides what the client gets).

use std::sync::Arc;

use super::{Key, OnInvalid, Reader};
use crate::model::mirror::Mirror;

pub(super) const KEYS: &[Key] = &[
    Key::route("mirror-target", OnInvalid::Default),
    Key::route("mirror-request-body", OnInvalid::Default),
    Key::route("mirror-host", OnInvalid::Default),
];

/// The route's mirror, when `mirror-target` is set and the three values are usable.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<Arc<Mirror>> {
    let target = r.get("mirror-target");
    let body = r.get("mirror-request-body");
    let host = r.get("mirror-host");
    let target = target.filter(|t| !t.trimmed().is_empty())?;
    match Mirror::parse(target.value, body.map(|b| b.value), host.map(|h| h.value)) {
        Ok(mirror) => Some(Arc::new(mirror)),
        Err(invalid) => {
            let found = [Some(target), body, host]
                .into_iter()
                .flatten()
                .find(|f| f.name == invalid.key)
                .unwrap_or(target);
            r.invalid(found, &invalid.why, "no mirroring");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use crate::model::Reason;

    #[test]
    fn a_target_mirrors_and_a_bad_value_is_reported_without_refusing() {
        assert_eq!(parse_pairs(&[]).0.policy.mirror, None);
        for [target, body, host] in [0, 1].map(|i| {
            [
                both("mirror-target")[i].clone(),
                both("mirror-request-body")[i].clone(),
                both("mirror-host")[i].clone(),
            ]
        }) {
            let (parsed, diagnostics) =
                parse_pairs(&[(&target, "http://shadow.test$request_uri"), (&body, "off")]);
            assert!(diagnostics.is_empty(), "{diagnostics:#?}");
            let mirror = parsed.policy.mirror.clone().unwrap();
            assert_eq!(mirror.target.source(), "http://shadow.test$request_uri");
            assert!(!mirror.request_body);
            assert_eq!(mirror.host.as_ref().unwrap(), "shadow.test");

            let bad: &[&[(&str, &str)]] = &[
                &[(&target, "shadow.test/no-scheme")],
                &[(&target, "http://x/$unknown_var")],
                &[(&target, "http://x/"), (&body, "sometimes")],
                &[(&target, "http://x/"), (&host, "not a host")],
            ];
            for pairs in bad {
                let (parsed, diagnostics) = parse_pairs(pairs);
                assert_eq!(parsed.policy.mirror, None, "{pairs:?}");
                assert!(parsed.policy.refused.is_none(), "{pairs:?}");
                assert_eq!(diagnostics.len(), 1, "{pairs:?}: {diagnostics:#?}");
                assert_eq!(diagnostics[0].reason, Reason::InvalidAnnotationValue);
                let key = pairs.last().unwrap().0;
                assert!(diagnostics[0].message.contains(key), "{diagnostics:#?}");
            }
            // Companions without a target do nothing (and are not reported).
            let (parsed, diagnostics) = parse_pairs(&[(&body, "off"), (&host, "h")]);
            assert_eq!(parsed.policy.mirror, None);
            assert!(diagnostics.is_empty());
        }
    }
}

//! `enable-access-log`, `enable-rewrite-log`.

use super::{Key, OnInvalid, Reader};

pub(super) const KEYS: &[Key] = &[
    Key::route("enable-access-log", OnInvalid::Default),
    Key::route("enable-rewrite-log", OnInvalid::Default),
];

/// Whether the Ingress's requests go to the access log (`enable-access-log`, default true).
/// `enable-rewrite-log` is checked and otherwise has no effect: weir logs rewrites at debug
/// level.
pub(super) fn parse(r: &mut Reader<'_>) -> bool {
    r.flag("enable-rewrite-log", false);
    r.flag("enable-access-log", true)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};

    #[test]
    fn access_log_can_be_turned_off() {
        assert!(parse_pairs(&[]).0.policy.access_log);
        for key in both("enable-access-log") {
            let (parsed, diagnostics) = parse_pairs(&[(&key, "false")]);
            assert!(!parsed.policy.access_log && diagnostics.is_empty());
        }
        let [_, nginx] = both("enable-rewrite-log");
        let (_, diagnostics) = parse_pairs(&[(&nginx, "true")]);
        assert!(diagnostics.is_empty());
        let (_, diagnostics) = parse_pairs(&[(&nginx, "sometimes")]);
        assert_eq!(diagnostics.len(), 1);
    }
}

//! `service-upstream`: send to the Service's cluster IP and port instead of its endpoints.
//!
//! As in ingress-nginx, the route's one endpoint is then `clusterIP:port` (the Service port,
//! found by the number or the name the Ingress gives), and kube-proxy (or the service mesh)
//! picks the pod. It takes effect per Ingress: another Ingress to the same Service without it
//! still goes to the endpoints. A Service without a cluster IP (headless, ExternalName) falls
//! back to its endpoints with a Diagnostic (`NoClusterIp`), as ingress-nginx falls back with
//! an error in its log. An invalid value is a tuning knob's: reported, and the endpoints are
//! used (both ways reach the same pods).

use super::{Key, OnInvalid, Reader};

pub(super) const KEYS: &[Key] = &[Key::route("service-upstream", OnInvalid::Default)];

/// Whether the Ingress's routes send to their Services' cluster IPs (default false).
pub(super) fn parse(r: &mut Reader<'_>) -> bool {
    r.flag("service-upstream", false)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs};
    use crate::model::Reason;

    #[test]
    fn reads_both_prefixes_and_falls_back_on_a_bad_value() {
        assert!(!parse_pairs(&[]).0.service_upstream);
        for key in both("service-upstream") {
            for (value, want) in [
                ("true", true),
                ("True", true),
                ("1", true),
                ("false", false),
            ] {
                let (parsed, diagnostics) = parse_pairs(&[(&key, value)]);
                assert_eq!(parsed.service_upstream, want, "{key}: {value}");
                assert!(diagnostics.is_empty(), "{key}: {value}: {diagnostics:?}");
            }
            let (parsed, diagnostics) = parse_pairs(&[(&key, "yes please")]);
            assert!(!parsed.service_upstream);
            assert!(parsed.policy.refused.is_none());
            assert_eq!(diagnostics[0].reason, Reason::InvalidAnnotationValue);
        }
    }
}

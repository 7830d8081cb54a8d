//! `proxy-connect-timeout`, `proxy-send-timeout`, `proxy-read-timeout`.

use std::time::Duration;

use super::values::{self, SECONDS};
use super::{Key, OnInvalid, Reader};
use crate::model::policy::Timeouts;

pub(super) const KEYS: &[Key] = &[
    Key::route("proxy-connect-timeout", OnInvalid::Default),
    Key::route("proxy-send-timeout", OnInvalid::Default),
    Key::route("proxy-read-timeout", OnInvalid::Default),
];

/// A timeout annotation in seconds, else `None` (the default applies).
fn timeout(r: &mut Reader<'_>, name: &str, default: Duration) -> Option<Duration> {
    let found = r.get(name)?;
    let parsed = values::seconds(found.value);
    if parsed.is_none() {
        r.invalid(
            found,
            SECONDS,
            format_args!("the default ({}s)", default.as_secs()),
        );
    }
    parsed
}

/// The Ingress's timeouts: each annotation, else its default. `proxy-read-timeout` also
/// sets how long a WebSocket may stay idle, as in ingress-nginx.
pub(super) fn parse(r: &mut Reader<'_>, defaults: &Timeouts) -> Timeouts {
    let read = timeout(r, "proxy-read-timeout", defaults.read);
    Timeouts {
        connect: timeout(r, "proxy-connect-timeout", defaults.connect).unwrap_or(defaults.connect),
        send: timeout(r, "proxy-send-timeout", defaults.send).unwrap_or(defaults.send),
        read: read.unwrap_or(defaults.read),
        tunnel_idle: read.unwrap_or(defaults.tunnel_idle),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{both, parse_pairs, parse_with};
    use crate::model::Reason;
    use crate::model::policy::{Defaults, Timeouts};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn each_timeout_weir_first_then_nginx() {
        let read = |pairs: &[(&str, &str)]| parse_pairs(pairs).0.policy.timeouts;
        assert_eq!(read(&[]), Timeouts::default());
        for (name, pick) in [
            (
                "proxy-connect-timeout",
                (|t: Timeouts| t.connect) as fn(Timeouts) -> Duration,
            ),
            ("proxy-send-timeout", |t| t.send),
            ("proxy-read-timeout", |t| t.read),
        ] {
            let [weir, nginx] = both(name);
            assert_eq!(pick(read(&[(&nginx, "3600")])), secs(3600), "{name}");
            assert_eq!(pick(read(&[(&weir, " 120 ")])), secs(120), "{name}");
            assert_eq!(
                pick(read(&[(&weir, "30"), (&nginx, "3600")])),
                secs(30),
                "{name}: weir wins"
            );
            for bad in ["abc", "", "0", "-5", "604801", "1.5", "60m"] {
                for key in [&weir, &nginx] {
                    let (parsed, diagnostics) = parse_pairs(&[(key, bad)]);
                    assert_eq!(
                        pick(parsed.policy.timeouts),
                        pick(Timeouts::default()),
                        "{key}: {bad:?}"
                    );
                    let reasons: Vec<Reason> = diagnostics.iter().map(|d| d.reason).collect();
                    assert_eq!(reasons, [Reason::InvalidAnnotationValue], "{key}: {bad:?}");
                    let message = &diagnostics[0].message;
                    assert!(message.contains(key.as_str()), "{message}");
                    assert!(message.contains(&format!("{bad:?}")), "{message}");
                    assert!(message.contains("whole number of seconds"), "{message}");
                    assert!(parsed.policy.refused.is_none(), "a knob never refuses");
                }
            }
        }
    }

    #[test]
    fn read_timeout_also_bounds_idle_tunnels_and_defaults_come_from_the_configmap() {
        let [_, nginx] = both("proxy-read-timeout");
        let t = parse_pairs(&[(&nginx, "90")]).0.policy.timeouts;
        assert_eq!((t.read, t.tunnel_idle), (secs(90), secs(90)));
        let defaults = Defaults {
            timeouts: Timeouts {
                connect: secs(2),
                send: secs(3),
                read: secs(4),
                tunnel_idle: secs(5),
            },
            ..Defaults::default()
        };
        let t = parse_with(&[], &defaults).0.policy.timeouts;
        assert_eq!(t, defaults.timeouts);
        let [_, connect] = both("proxy-connect-timeout");
        let (parsed, _) = parse_with(&[(&connect, "0")], &defaults);
        assert_eq!(
            parsed.policy.timeouts.connect,
            secs(2),
            "invalid: the ConfigMap's default"
        );
    }
}

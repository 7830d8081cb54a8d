//! `proxy-next-upstream`, `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`: when a
//! request goes on to another endpoint (see [`crate::model::retry`]).

use super::{Key, OnInvalid, Reader};
use crate::model::policy::Defaults;
use crate::model::retry::{self, Retry, RetryOn};

pub(super) const KEYS: &[Key] = &[
    Key::route("proxy-next-upstream", OnInvalid::Default),
    Key::route("proxy-next-upstream-tries", OnInvalid::Default),
    Key::route("proxy-next-upstream-timeout", OnInvalid::Default),
];

/// The annotation `name` read by `parse`, else `default` (also when invalid: reported, with
/// the default as `shown` writes it; formatted only then, as every Ingress reads these).
fn read<T: Copy>(
    r: &mut Reader<'_>,
    name: &str,
    accepted: &str,
    parse: fn(&str) -> Option<T>,
    (default, shown): (T, impl FnOnce() -> String),
) -> T {
    let Some(found) = r.get(name) else {
        return default;
    };
    parse(found.value).unwrap_or_else(|| {
        let shown = shown();
        r.invalid(found, accepted, format_args!("the default ({shown})"));
        default
    })
}

/// The Ingress's retry settings: each annotation, else the ConfigMap's (else ingress-nginx's
/// default). The ConfigMap's `retry-non-idempotent` adds `non_idempotent` to an annotation's
/// conditions too.
pub(super) fn parse(r: &mut Reader<'_>, defaults: &Defaults) -> Retry {
    let d = defaults.retry;
    let mut on = read(
        r,
        "proxy-next-upstream",
        retry::TOKENS,
        RetryOn::parse,
        (d.on, || format!("{:?}", d.on.to_string())),
    );
    if defaults.retry_non_idempotent {
        on = on.union(RetryOn::NON_IDEMPOTENT);
    }
    let tries = read(
        r,
        "proxy-next-upstream-tries",
        retry::TRIES,
        retry::tries,
        (d.tries, || d.tries.to_string()),
    );
    let timeout = read(
        r,
        "proxy-next-upstream-timeout",
        retry::TIMEOUT,
        retry::timeout,
        (d.timeout, || {
            format!("{}s", d.timeout.map_or(0, |t| t.as_secs()))
        }),
    );
    Retry { on, tries, timeout }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{both, parse_pairs, parse_with};
    use crate::model::Reason;
    use crate::model::policy::Defaults;
    use crate::model::retry::{Retry, RetryOn};

    fn retry(pairs: &[(&str, &str)]) -> (Retry, Vec<String>) {
        let (parsed, diagnostics) = parse_pairs(pairs);
        assert!(parsed.policy.refused.is_none(), "a knob never refuses");
        for d in &diagnostics {
            assert_eq!(d.reason, Reason::InvalidAnnotationValue, "{}", d.message);
        }
        let messages = diagnostics.into_iter().map(|d| d.message).collect();
        (parsed.policy.retry, messages)
    }

    #[test]
    fn each_annotation_under_both_prefixes_weir_first() {
        let default = Retry::default();
        assert_eq!(retry(&[]), (default, vec![]));
        let [weir, nginx] = both("proxy-next-upstream");
        let cases: &[(&str, &str, Retry)] = &[
            (
                &nginx,
                "error timeout http_502",
                Retry {
                    on: RetryOn::parse("error timeout http_502").unwrap(),
                    ..default
                },
            ),
            (
                &weir,
                "off",
                Retry {
                    on: RetryOn::OFF,
                    ..default
                },
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream-tries",
                "0",
                Retry {
                    tries: 0,
                    ..default
                },
            ),
            (
                "weir.dev/proxy-next-upstream-tries",
                " 5 ",
                Retry {
                    tries: 5,
                    ..default
                },
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                "10",
                Retry {
                    timeout: Some(Duration::from_secs(10)),
                    ..default
                },
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
                "0",
                default,
            ),
        ];
        for (key, value, want) in cases {
            assert_eq!(retry(&[(key, value)]), (*want, vec![]), "{key}: {value:?}");
        }
        let (got, _) = retry(&[(&weir, "http_503"), (&nginx, "http_504")]);
        assert_eq!(got.on, RetryOn::HTTP_503, "weir wins");
    }

    #[test]
    fn invalid_values_are_reported_and_the_default_used() {
        let cases: &[(&str, &str, &str)] = &[
            ("proxy-next-upstream", "error bogus", "\"error timeout\""),
            ("proxy-next-upstream", "", "\"error timeout\""),
            ("proxy-next-upstream", "error,timeout", "\"error timeout\""),
            ("proxy-next-upstream-tries", "-1", "the default (3)"),
            ("proxy-next-upstream-tries", "three", "the default (3)"),
            ("proxy-next-upstream-timeout", "10s", "the default (0s)"),
        ];
        for (name, value, fallback) in cases {
            for key in both(name) {
                let (got, messages) = retry(&[(&key, value)]);
                assert_eq!(got, Retry::default(), "{key}: {value:?}");
                assert_eq!(messages.len(), 1, "{key}: {value:?}");
                let message = &messages[0];
                assert!(
                    message.contains(&key) && message.contains(fallback),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn defaults_come_from_the_configmap_and_retry_non_idempotent_adds_to_annotations() {
        let defaults = Defaults {
            retry: Retry {
                on: RetryOn::parse("error http_503").unwrap(),
                tries: 2,
                timeout: Some(Duration::from_secs(4)),
            },
            ..Defaults::default()
        };
        assert_eq!(parse_with(&[], &defaults).0.policy.retry, defaults.retry);
        let [_, nginx] = both("proxy-next-upstream");
        let (parsed, _) = parse_with(&[(&nginx, "nonsense")], &defaults);
        assert_eq!(
            parsed.policy.retry, defaults.retry,
            "invalid: the ConfigMap's"
        );
        let non_idempotent = Defaults {
            retry_non_idempotent: true,
            ..defaults
        };
        let (parsed, _) = parse_with(&[(&nginx, "http_502")], &non_idempotent);
        assert_eq!(
            parsed.policy.retry.on,
            RetryOn::parse("http_502 non_idempotent").unwrap()
        );
    }
}

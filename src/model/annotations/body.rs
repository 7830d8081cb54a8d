//! `proxy-body-size`, and the buffering annotations weir reads but does not need because it
//! always streams: `client-body-buffer-size`, `proxy-buffering`, `proxy-request-buffering`,
//! `proxy-buffer-size`, `proxy-buffers-number`, `proxy-busy-buffers-size`,
//! `proxy-max-temp-file-size`, `proxy-http-version`.

use super::values::{self, SIZE};
use super::{Key, OnInvalid, Reader};

pub(super) const KEYS: &[Key] = &[
    Key::route("proxy-body-size", OnInvalid::Default),
    Key::route("client-body-buffer-size", OnInvalid::Default),
    Key::route("proxy-buffering", OnInvalid::Default),
    Key::route("proxy-request-buffering", OnInvalid::Default),
    Key::route("proxy-buffer-size", OnInvalid::Default),
    Key::route("proxy-buffers-number", OnInvalid::Default),
    Key::route("proxy-busy-buffers-size", OnInvalid::Default),
    Key::route("proxy-max-temp-file-size", OnInvalid::Default),
    Key::route("proxy-http-version", OnInvalid::Default),
];

/// An annotation name, its value check and what it accepts.
type Checked = (&'static str, fn(&str) -> bool, &'static str);

/// How the buffering annotations' values are checked: the syntax ingress-nginx passes to
/// nginx, and what weir says about a bad one.
const STREAMING: &[Checked] = &[
    (
        "client-body-buffer-size",
        |v| values::size(v).is_some(),
        SIZE,
    ),
    ("proxy-buffering", on_off, ON_OFF),
    ("proxy-request-buffering", on_off, ON_OFF),
    ("proxy-buffer-size", |v| values::size(v).is_some(), SIZE),
    (
        "proxy-buffers-number",
        |v| v.trim().parse::<u32>().is_ok_and(|n| n > 0),
        "it must be a positive whole number",
    ),
    (
        "proxy-busy-buffers-size",
        |v| values::size(v).is_some(),
        SIZE,
    ),
    (
        "proxy-max-temp-file-size",
        |v| values::size(v).is_some(),
        SIZE,
    ),
    (
        "proxy-http-version",
        |v| matches!(v.trim(), "1.0" | "1.1"),
        "it must be \"1.0\" or \"1.1\"",
    ),
];

const ON_OFF: &str = "it must be \"on\" or \"off\"";

fn on_off(value: &str) -> bool {
    matches!(value.trim(), "on" | "off")
}

/// The largest request body (`proxy-body-size`; `None`: unlimited), else `default`. The
/// buffering annotations are checked so that a typo is reported, and change nothing else.
pub(super) fn parse(r: &mut Reader<'_>, default: Option<u64>) -> Option<u64> {
    for (name, valid, accepted) in STREAMING {
        if let Some(found) = r.get(name).filter(|f| !valid(f.value)) {
            r.invalid(found, accepted, "nothing (weir always streams)");
        }
    }
    let Some(found) = r.get("proxy-body-size") else {
        return default;
    };
    values::size(found.value).unwrap_or_else(|| {
        r.invalid(found, SIZE, describe(default));
        default
    })
}

/// A body size limit for messages.
fn describe(limit: Option<u64>) -> String {
    match limit {
        None => "the default (no limit)".to_owned(),
        Some(bytes) => format!("the default ({bytes} bytes)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{both, parse_pairs, parse_with};
    use crate::model::policy::Defaults;

    #[test]
    fn body_size_uses_nginx_units_and_zero_is_unlimited() {
        let read = |pairs: &[(&str, &str)]| {
            let (parsed, diagnostics) = parse_pairs(pairs);
            (parsed.policy.max_body_size, diagnostics.len())
        };
        assert_eq!(
            read(&[]),
            (Some(1024 * 1024), 0),
            "ingress-nginx's default: 1m"
        );
        let [weir, nginx] = both("proxy-body-size");
        assert_eq!(read(&[(&nginx, "8m")]), (Some(8 << 20), 0));
        assert_eq!(read(&[(&nginx, "512k")]), (Some(512 << 10), 0));
        assert_eq!(read(&[(&weir, "1g"), (&nginx, "1k")]), (Some(1 << 30), 0));
        assert_eq!(read(&[(&nginx, "0")]), (None, 0));
        assert_eq!(read(&[(&nginx, "10 MB")]), (Some(1024 * 1024), 1));
        let (_, diagnostics) = parse_pairs(&[(&weir, "10 MB")]);
        let message = &diagnostics[0].message;
        assert!(
            message.contains("\"10 MB\"") && message.contains("8m"),
            "{message}"
        );
        let defaults = Defaults {
            max_body_size: None,
            ..Defaults::default()
        };
        assert_eq!(parse_with(&[], &defaults).0.policy.max_body_size, None);
    }

    #[test]
    fn buffering_annotations_are_read_not_reported_unless_invalid() {
        let [_, nginx_buffering] = both("proxy-buffering");
        let [_, version] = both("proxy-http-version");
        let [_, number] = both("proxy-buffers-number");
        let [_, size] = both("proxy-buffer-size");
        let (_, diagnostics) = parse_pairs(&[
            (&nginx_buffering, "off"),
            (&version, "1.1"),
            (&number, "4"),
            (&size, "16k"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let (_, diagnostics) = parse_pairs(&[
            (&nginx_buffering, "maybe"),
            (&version, "2"),
            (&number, "-1"),
        ]);
        assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
        assert!(
            diagnostics
                .iter()
                .all(|d| d.message.contains("weir always streams"))
        );
    }
}

//! Value syntaxes shared by annotations and ConfigMap keys, as ingress-nginx accepts them.
//! Each parser returns the typed value or `None`; the caller reports what is accepted.

use std::time::Duration;

use http::StatusCode;

/// What [`boolean`] accepts, for messages.
pub(crate) const BOOLEAN: &str = "it must be \"true\" or \"false\"";

/// A boolean as Go's `strconv.ParseBool` reads it (ingress-nginx's parser): `true`, `True`,
/// `TRUE`, `t`, `T`, `1` and the same for false; surrounding spaces are ignored.
pub(crate) fn boolean(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "True" | "TRUE" => Some(true),
        "0" | "f" | "F" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// The longest timeout accepted, in seconds (7 days).
pub(crate) const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 60 * 60;

/// What [`seconds`] accepts, for messages.
pub(crate) const SECONDS: &str =
    "it must be a whole number of seconds from 1 to 604800, without a unit (e.g. \"60\")";

/// A timeout as ingress-nginx reads them: whole seconds without a unit (`"60"`), from 1 to
/// [`MAX_TIMEOUT_SECS`]. ingress-nginx ignores `"60s"` (and uses its default), so weir
/// reports it rather than read it differently.
pub(crate) fn seconds(value: &str) -> Option<Duration> {
    let digits = value.trim();
    match digits.parse::<u64>() {
        Ok(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) && !digits.starts_with('+') => {
            Some(Duration::from_secs(secs))
        }
        _ => None,
    }
}

/// What [`size`] accepts, for messages.
pub(crate) const SIZE: &str = "it must be an nginx size: a whole number of bytes with an \
                               optional unit k, m or g (e.g. \"8m\", \"512k\"; \"0\" means \
                               no limit)";

/// An nginx size (`client_max_body_size` syntax): digits with an optional unit `k`/`K`
/// (KiB), `m`/`M` (MiB) or `g`/`G` (GiB). `Some(None)` is `0`: no limit.
pub(crate) fn size(value: &str) -> Option<Option<u64>> {
    let value = value.trim();
    let (digits, unit) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1024),
        b'm' | b'M' => (&value[..value.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&value[..value.len() - 1], 1024 * 1024 * 1024),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    Some((bytes != 0).then_some(bytes))
}

/// An HTTP status code between `min` and `max` (inclusive), written as digits.
pub(crate) fn status(value: &str, min: u16, max: u16) -> Option<StatusCode> {
    let code = value.trim().parse::<u16>().ok()?;
    (min..=max)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
}

/// What [`go_duration`] accepts, for messages.
pub(crate) const GO_DURATION: &str =
    "it must be a Go duration: numbers with a unit h, m, s, ms, us or ns (e.g. \"5s\", \"1m30s\")";

/// A duration as Go's `time.ParseDuration` reads it (ingress-nginx's ConfigMap durations):
/// decimal numbers, each with a unit (`h`, `m`, `s`, `ms`, `us`, `µs`, `ns`), added up; `0`
/// alone is zero. Negative durations and ones over [`MAX_TIMEOUT_SECS`] are refused.
pub(crate) fn go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    (total <= MAX_TIMEOUT_SECS as f64).then(|| Duration::from_secs_f64(total))
}

/// A comma-separated list with empty items and surrounding spaces dropped.
pub(crate) fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn booleans_as_go_reads_them() {
        for t in ["true", "True", "TRUE", "t", "1", " true "] {
            assert_eq!(boolean(t), Some(true), "{t}");
        }
        for f in ["false", "False", "FALSE", "f", "0"] {
            assert_eq!(boolean(f), Some(false), "{f}");
        }
        for bad in ["yes", "no", "on", "tRue", "", "2"] {
            assert_eq!(boolean(bad), None, "{bad}");
        }
    }

    #[test]
    fn seconds_are_whole_numbers_in_range() {
        assert_eq!(seconds("60"), Some(Duration::from_secs(60)));
        assert_eq!(seconds(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(seconds("604800"), Some(Duration::from_secs(604_800)));
        for bad in [
            "0",
            "-1",
            "+5",
            "1.5",
            "5s",
            "60m",
            "abc",
            "",
            "604801",
            "s",
            "99999999999999999999",
        ] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations_as_go_reads_them() {
        let ms = |n: u64| Some(Duration::from_millis(n));
        assert_eq!(go_duration("5s"), ms(5000));
        assert_eq!(go_duration(" 1m30s "), ms(90_000));
        assert_eq!(go_duration("1h"), ms(3_600_000));
        assert_eq!(go_duration("1.5s"), ms(1500));
        assert_eq!(go_duration(".5s"), ms(500));
        assert_eq!(go_duration("300ms"), ms(300));
        assert_eq!(go_duration("2us"), Some(Duration::from_micros(2)));
        assert_eq!(go_duration("2µs"), Some(Duration::from_micros(2)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        for bad in [
            "5", "", "s", "-5s", "5x", "1..5s", ".s", "5s5", "1e3s", "200h",
        ] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Whatever the text, the parser answers without panicking, and what it accepts is
        /// within bounds; a duration written as Go writes whole milliseconds reads back.
        #[test]
        fn go_durations_never_panic_and_round_trip(text in "\\PC{0,12}", ms in 0u64..86_400_000) {
            if let Some(d) = go_duration(&text) {
                prop_assert!(d.as_secs() <= MAX_TIMEOUT_SECS);
            }
            let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
            let written = format!("{h}h{m}m{s}s{rest}ms");
            let read = go_duration(&written).unwrap();
            prop_assert!(read.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(1));
        }
    }

    #[test]
    fn sizes_use_nginx_units() {
        assert_eq!(size("8m"), Some(Some(8 * 1024 * 1024)));
        assert_eq!(size("8M"), Some(Some(8 * 1024 * 1024)));
        assert_eq!(size("512k"), Some(Some(512 * 1024)));
        assert_eq!(size("1g"), Some(Some(1 << 30)));
        assert_eq!(size("1024"), Some(Some(1024)));
        assert_eq!(size("0"), Some(None));
        assert_eq!(size("0m"), Some(None));
        for bad in [
            "10 MB",
            "10mb",
            "1.5m",
            "-1",
            "",
            "m",
            "1t",
            "99999999999999999999g",
        ] {
            assert_eq!(size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_codes_in_range() {
        assert_eq!(status("301", 300, 308), Some(StatusCode::MOVED_PERMANENTLY));
        assert_eq!(status("299", 300, 308), None);
        assert_eq!(status("abc", 300, 308), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_sizes_round_trip(value in ".{0,24}", n in 0u64..1_000_000) {
            let _ = (boolean(&value), seconds(&value), size(&value), status(&value, 100, 599));
            prop_assert_eq!(size(&format!("{n}k")), Some((n != 0).then_some(n * 1024)));
        }
    }
}

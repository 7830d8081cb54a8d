//! When a request goes on to another endpoint: nginx's `proxy_next_upstream`,
//! `proxy_next_upstream_tries` and `proxy_next_upstream_timeout`, as ingress-nginx sets them
//! from the annotations and ConfigMap keys of the same names (`proxy-next-upstream`,
//! `proxy-next-upstream-tries`, `proxy-next-upstream-timeout`, and the ConfigMap's
//! `retry-non-idempotent`).
//!
//! The value syntaxes live here so that the annotation group and the ConfigMap read them alike.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// The conditions of `proxy-next-upstream`: a set of [`RetryOn`] tokens (a bit each).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn(u16);

impl RetryOn {
    /// `error`: the connection failed while connecting, sending the request or reading the
    /// response head.
    pub const ERROR: RetryOn = RetryOn(1);
    /// `timeout`: connecting, sending the request or reading the response head timed out.
    pub const TIMEOUT: RetryOn = RetryOn(1 << 1);
    /// `invalid_header`: the endpoint's response head could not be parsed.
    pub const INVALID_HEADER: RetryOn = RetryOn(1 << 2);
    /// `http_500`.
    pub const HTTP_500: RetryOn = RetryOn(1 << 3);
    /// `http_502`.
    pub const HTTP_502: RetryOn = RetryOn(1 << 4);
    /// `http_503`.
    pub const HTTP_503: RetryOn = RetryOn(1 << 5);
    /// `http_504`.
    pub const HTTP_504: RetryOn = RetryOn(1 << 6);
    /// `http_403`.
    pub const HTTP_403: RetryOn = RetryOn(1 << 7);
    /// `http_404`.
    pub const HTTP_404: RetryOn = RetryOn(1 << 8);
    /// `http_429`.
    pub const HTTP_429: RetryOn = RetryOn(1 << 9);
    /// `non_idempotent`: POST, LOCK and PATCH go on too once they were sent.
    pub const NON_IDEMPOTENT: RetryOn = RetryOn(1 << 10);
    /// Nothing: `off`.
    pub const OFF: RetryOn = RetryOn(0);
    /// nginx's and ingress-nginx's default: `error timeout`.
    pub const DEFAULT: RetryOn = RetryOn(Self::ERROR.0 | Self::TIMEOUT.0);

    /// Every token and its bit, in nginx's order.
    pub const TOKENS: &[(&str, RetryOn)] = &[
        ("error", Self::ERROR),
        ("timeout", Self::TIMEOUT),
        ("invalid_header", Self::INVALID_HEADER),
        ("http_500", Self::HTTP_500),
        ("http_502", Self::HTTP_502),
        ("http_503", Self::HTTP_503),
        ("http_504", Self::HTTP_504),
        ("http_403", Self::HTTP_403),
        ("http_404", Self::HTTP_404),
        ("http_429", Self::HTTP_429),
        ("non_idempotent", Self::NON_IDEMPOTENT),
    ];

    /// Whether every condition of `other` is in `self`.
    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Whether nothing makes a request go on (`off`, or only `non_idempotent`).
    pub const fn is_off(self) -> bool {
        self.0 & !Self::NON_IDEMPOTENT.0 == 0
    }

    /// The condition of a response with `status`, when it is one `proxy-next-upstream` can
    /// name.
    pub fn of_status(status: StatusCode) -> Option<RetryOn> {
        Some(match status.as_u16() {
            500 => Self::HTTP_500,
            502 => Self::HTTP_502,
            503 => Self::HTTP_503,
            504 => Self::HTTP_504,
            403 => Self::HTTP_403,
            404 => Self::HTTP_404,
            429 => Self::HTTP_429,
            _ => return None,
        })
    }

    /// The token of a single condition (`"error"`, `"http_502"`…), `"off"` for none.
    pub fn token(self) -> &'static str {
        Self::TOKENS
            .iter()
            .find(|(_, bit)| *bit == self)
            .map_or("off", |(token, _)| token)
    }

    /// Reads a `proxy-next-upstream` value: tokens separated by white space, `off` anywhere
    /// turning everything off (as in nginx, where `off` wins over the other tokens). `None`
    /// for an empty value or an unknown token.
    pub fn parse(value: &str) -> Option<RetryOn> {
        let mut on = RetryOn::OFF;
        let mut off = false;
        let mut any = false;
        for token in value.split_ascii_whitespace() {
            any = true;
            if token == "off" {
                off = true;
                continue;
            }
            let (_, bit) = Self::TOKENS.iter().find(|(name, _)| *name == token)?;
            on = on.union(*bit);
        }
        match (any, off) {
            (false, _) => None,
            (true, true) => Some(RetryOn::OFF),
            (true, false) => Some(on),
        }
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn::DEFAULT
    }
}

impl fmt::Display for RetryOn {
    /// The tokens, as `proxy-next-upstream` writes them (`off` for none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tokens = Self::TOKENS.iter().filter(|(_, bit)| self.contains(*bit));
        match tokens.next() {
            None => f.write_str("off"),
            Some((first, _)) => {
                f.write_str(first)?;
                tokens.try_for_each(|(token, _)| write!(f, " {token}"))
            }
        }
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryOn({self})")
    }
}

/// What [`RetryOn::parse`] accepts, for messages.
pub(crate) const TOKENS: &str = "it must be tokens separated by spaces, each one of error, \
                                 timeout, invalid_header, http_500, http_502, http_503, \
                                 http_504, http_403, http_404, http_429, non_idempotent, off";

/// What [`tries`] accepts, for messages.
pub(crate) const TRIES: &str = "it must be a whole number of tries (0: as many as there are \
                                endpoints)";

/// A `proxy-next-upstream-tries` value: a whole number, 0 for no limit but the endpoints.
pub(crate) fn tries(value: &str) -> Option<u32> {
    let digits = value.trim();
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())
        .flatten()
}

/// What [`timeout`] accepts, for messages.
pub(crate) const TIMEOUT: &str = "it must be a whole number of seconds from 0 (no limit) to \
                                  604800, without a unit";

/// A `proxy-next-upstream-timeout` value: whole seconds, `Some(None)` for 0 (no limit).
pub(crate) fn timeout(value: &str) -> Option<Option<Duration>> {
    match value.trim() {
        "0" => Some(None),
        other => super::annotations::values::seconds(other).map(Some),
    }
}

/// When a request goes on to another endpoint (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The conditions (`proxy-next-upstream`, default `error timeout`).
    pub on: RetryOn,
    /// How many attempts a request gets in all, the first one included
    /// (`proxy-next-upstream-tries`, default 3); 0: one per endpoint.
    pub tries: u32,
    /// How long after its first attempt a request may still go on to another endpoint
    /// (`proxy-next-upstream-timeout`, default none).
    pub timeout: Option<Duration>,
}

impl Default for Retry {
    /// ingress-nginx's defaults: `error timeout`, 3 tries, no time limit.
    fn default() -> Self {
        Retry {
            on: RetryOn::DEFAULT,
            tries: 3,
            timeout: None,
        }
    }
}

impl Retry {
    /// Whether a request to a backend of `endpoints` endpoints can ever get a second attempt:
    /// some condition is on, tries allow two, and there is another endpoint.
    pub fn possible(&self, endpoints: usize) -> bool {
        endpoints > 1 && self.tries != 1 && !self.on.is_off()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_parse_as_nginx_reads_them() {
        let cases: &[(&str, Option<&str>)] = &[
            ("error timeout", Some("error timeout")),
            ("  http_502\thttp_503 ", Some("http_502 http_503")),
            (
                "timeout error invalid_header http_500 http_502 http_503 http_504 http_403 \
                 http_404 http_429 non_idempotent",
                Some(
                    "error timeout invalid_header http_500 http_502 http_503 http_504 \
                     http_403 http_404 http_429 non_idempotent",
                ),
            ),
            ("error error", Some("error")),
            ("off", Some("off")),
            ("error off http_502", Some("off")),
            ("non_idempotent", Some("non_idempotent")),
            ("", None),
            ("   ", None),
            ("error, timeout", None),
            ("errortimeout", None),
            ("http_501", None),
            ("Error", None),
            ("error timeout bogus", None),
        ];
        for (value, want) in cases {
            let got = RetryOn::parse(value).map(|on| on.to_string());
            assert_eq!(got.as_deref(), *want, "{value:?}");
        }
        assert!(RetryOn::parse("non_idempotent").unwrap().is_off());
        assert!(!RetryOn::parse("http_404").unwrap().is_off());
    }

    #[test]
    fn statuses_tries_and_timeouts() {
        for (status, token) in [
            (500, "http_500"),
            (502, "http_502"),
            (503, "http_503"),
            (504, "http_504"),
            (403, "http_403"),
            (404, "http_404"),
            (429, "http_429"),
        ] {
            let on = RetryOn::of_status(StatusCode::from_u16(status).unwrap()).unwrap();
            assert_eq!(on.token(), token);
        }
        for status in [200, 301, 400, 401, 501, 505] {
            assert_eq!(
                RetryOn::of_status(StatusCode::from_u16(status).unwrap()),
                None
            );
        }
        assert_eq!(tries(" 5 "), Some(5));
        assert_eq!(tries("0"), Some(0));
        for bad in ["", "-1", "+2", "1.5", "three", "99999999999"] {
            assert_eq!(tries(bad), None, "{bad:?}");
        }
        assert_eq!(timeout("0"), Some(None));
        assert_eq!(timeout(" 10 "), Some(Some(Duration::from_secs(10))));
        for bad in ["", "-1", "10s", "604801"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        let retry = Retry::default();
        assert!(!retry.possible(1) && retry.possible(2));
        assert!(!Retry { tries: 1, ..retry }.possible(5));
        assert!(Retry { tries: 0, ..retry }.possible(2));
        let off = Retry {
            on: RetryOn::OFF,
            ..retry
        };
        assert!(!off.possible(5));
    }

    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(
            RetryOn::TOKENS
                .iter()
                .map(|(t, _)| *t)
                .chain(["off"])
                .collect::<Vec<_>>(),
        )
    }

    proptest! {
        /// Any list of known tokens, separated by any white space, parses; its display parses
        /// back to the same set; `off` anywhere means off.
        #[test]
        fn known_tokens_round_trip(
            tokens in prop::collection::vec(token(), 1..8),
            gaps in prop::collection::vec(prop::sample::select(vec![" ", "  ", "\t", "\n "]), 8),
        ) {
            let value: String = tokens
                .iter()
                .zip(&gaps)
                .map(|(t, gap)| format!("{gap}{t}"))
                .collect();
            let on = RetryOn::parse(&value).expect("known tokens parse");
            prop_assert_eq!(RetryOn::parse(&on.to_string()), Some(on));
            if tokens.contains(&"off") {
                prop_assert_eq!(on, RetryOn::OFF);
            } else {
                for t in &tokens {
                    prop_assert!(on.to_string().split(' ').any(|s| s == *t));
                }
            }
        }

        /// Any text is either refused or made of known tokens only; the parser never panics.
        #[test]
        fn anything_else_is_refused(value in "\\PC{0,40}") {
            let all_known = value
                .split_ascii_whitespace()
                .all(|t| t == "off" || RetryOn::TOKENS.iter().any(|(name, _)| *name == t));
            let has_token = value.split_ascii_whitespace().next().is_some();
            prop_assert_eq!(RetryOn::parse(&value).is_some(), all_known && has_token);
        }
    }
}

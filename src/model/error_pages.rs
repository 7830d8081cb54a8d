//! Custom error pages: `custom-http-errors` (annotation, or the controller ConfigMap's key of
//! the same name), `default-backend` (annotation) and `--default-backend-service`, as
//! ingress-nginx has them (`proxy_intercept_errors` and its `@custom_*` locations).
//!
//! A route's [`ErrorPages`] say which statuses are not sent to the client as they are but
//! replaced by the error backend's answer to a request that describes them (`X-Code`,
//! `X-Format`, `X-Original-URI`, …; see `src/proxy/policy/custom_errors.rs`). The error backend
//! is the `default-backend` Service of the route's Ingress when it has one, else the
//! controller's default backend; a route with neither has none (its errors are sent as they
//! are). With `default-backend`, a request the route cannot serve because its Service has no
//! ready endpoints goes there too (as `X-Code: 503`), listed or not.

use std::sync::Arc;

use super::table::Backend;

/// Where a route's error responses go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPages {
    /// The statuses replaced by the error backend's answer, sorted, without duplicates.
    pub codes: Vec<u16>,
    /// The error backend (a Service's endpoints).
    pub backend: Arc<Backend>,
    /// `default-backend` is set: a request refused because the route's Service has no ready
    /// endpoints goes to the error backend too, whatever `codes` says (ingress-nginx sends such
    /// a location's requests to that Service).
    pub when_no_endpoints: bool,
}

impl ErrorPages {
    /// Whether a response with `status` goes to the error backend.
    pub fn intercepts(&self, status: u16) -> bool {
        self.codes.binary_search(&status).is_ok()
    }
}

/// What [`parse_codes`] accepts (annotation), for messages.
pub const CODES: &str =
    "it must be a comma-separated list of status codes from 400 to 599 (e.g. \"404,503\")";

/// What [`parse_codes`] accepts (ConfigMap), for messages.
pub const GLOBAL_CODES: &str =
    "it must be a comma-separated list of status codes from 300 to 599 (e.g. \"404,503\")";

/// A comma-separated list of status codes from `lowest` to 599 (spaces around items are
/// ignored; an empty item is not a code), sorted and without duplicates. ingress-nginx accepts
/// 400–599 in the annotation and 300–599 in the ConfigMap.
pub fn parse_codes(value: &str, lowest: u16) -> Option<Vec<u16>> {
    let mut codes = value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let valid = item.len() == 3 && item.bytes().all(|b| b.is_ascii_digit());
            valid
                .then(|| item.parse::<u16>().ok())
                .flatten()
                .filter(|code| (lowest..=599).contains(code))
        })
        .collect::<Option<Vec<u16>>>()?;
    codes.sort_unstable();
    codes.dedup();
    Some(codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn code_lists() {
        let table: &[(&str, u16, Option<&[u16]>)] = &[
            ("404", 400, Some(&[404])),
            ("503,404", 400, Some(&[404, 503])),
            (" 404 , 503 ,404", 400, Some(&[404, 503])),
            ("599,400", 400, Some(&[400, 599])),
            ("302", 300, Some(&[302])),
            ("302", 400, None),
            ("600", 400, None),
            ("200", 400, None),
            ("", 400, None),
            ("404,", 400, None),
            ("404;503", 400, None),
            ("+404", 400, None),
            ("4040", 400, None),
            ("four", 400, None),
        ];
        for (value, lowest, want) in table {
            assert_eq!(
                parse_codes(value, *lowest).as_deref(),
                *want,
                "{value:?} from {lowest}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_to_sorted_codes_in_range_or_nothing(text in ".{0,40}") {
            if let Some(codes) = parse_codes(&text, 400) {
                prop_assert!(!codes.is_empty());
                prop_assert!(codes.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(codes.iter().all(|c| (400..=599).contains(c)));
            }
        }

        #[test]
        fn lists_of_codes_read_back(codes in proptest::collection::vec(400u16..600, 1..8)) {
            let text = codes.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            let mut want = codes.clone();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(parse_codes(&text, 400), Some(want));
        }
    }
}

//! External authentication (`auth-url` and its companions, or the ConfigMap's `global-auth-*`
//! keys): the typed settings of ingress-nginx's `auth_request` sub-request, checked once per
//! table. The proxy sends the sub-request (`src/proxy/policy/external_auth.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri};

use super::variables::{Expr, InvalidExpr};

/// How a route asks an authentication service whether a request may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAuth {
    /// `auth-url`: where the sub-request goes (`http` or `https`; may hold nginx variables such
    /// as `$host`).
    pub url: Expr,
    /// `auth-method`: the sub-request's method; `None`: GET (nginx's `auth_request`), and
    /// then no `X-Original-URI`/`X-Scheme` headers, as in ingress-nginx.
    pub method: Option<Method>,
    /// `auth-signin` with its redirect parameter: where a 401 from the service is redirected
    /// (302).
    pub signin: Option<Expr>,
    /// `auth-response-headers`: headers of the service's 2xx answer the endpoint receives
    /// (replacing any the client sent).
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent (default: the request URI).
    pub request_redirect: Option<Expr>,
    /// `auth-cache-key` and `auth-cache-duration`: answers are reused per key.
    pub cache: Option<AuthCache>,
    /// `auth-always-set-cookie`: the service's `Set-Cookie` goes on every response, not only
    /// on successful ones.
    pub always_set_cookie: bool,
    /// `auth-proxy-set-headers`: headers set on the sub-request (the data of a ConfigMap,
    /// nginx variables expanded), replacing any of the same name; one whose value expands to
    /// nothing is not sent (nginx's `proxy_set_header`).
    pub proxy_set_headers: Vec<(HeaderName, Expr)>,
    /// It comes from the ConfigMap's `global-auth-*` keys.
    pub global: bool,
}

/// Which answers of the service are reused, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCache {
    /// `auth-cache-key`: what identifies a caller (e.g. `$remote_user$http_authorization`).
    pub key: Expr,
    /// `auth-cache-duration`: how long an answer with each status is reused.
    pub durations: Vec<CacheDuration>,
}

impl AuthCache {
    /// How long an answer with `status` may be reused; `None`: not at all.
    pub fn ttl(&self, status: u16) -> Option<Duration> {
        self.durations
            .iter()
            .find(|d| d.codes.contains(&status))
            .map(|d| d.ttl)
    }
}

/// One item of `auth-cache-duration`: `200 202 401 5m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDuration {
    /// The statuses (nginx's default without codes: 200, 301, 302).
    pub codes: Vec<u16>,
    /// How long.
    pub ttl: Duration,
}

/// ingress-nginx's default `auth-cache-duration`.
pub const DEFAULT_CACHE_DURATION: &str = "200 202 401 5m";

/// The external authentication settings as written, before checking (annotation values or
/// ConfigMap keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings<'a> {
    /// `auth-url`.
    pub url: &'a str,
    /// `auth-method`.
    pub method: Option<&'a str>,
    /// `auth-signin`.
    pub signin: Option<&'a str>,
    /// `auth-signin-redirect-param`.
    pub signin_redirect_param: Option<&'a str>,
    /// `auth-response-headers`.
    pub response_headers: Option<&'a str>,
    /// `auth-request-redirect`.
    pub request_redirect: Option<&'a str>,
    /// `auth-cache-key`.
    pub cache_key: Option<&'a str>,
    /// `auth-cache-duration`.
    pub cache_duration: Option<&'a str>,
    /// `auth-always-set-cookie`.
    pub always_set_cookie: bool,
    /// The data of the ConfigMap `auth-proxy-set-headers` names.
    pub proxy_set_headers: Option<&'a BTreeMap<String, String>>,
}

/// What is wrong with one setting: the key (annotation name without prefix, e.g. `auth-url`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The annotation name of the setting.
    pub key: &'static str,
    /// What is accepted.
    pub why: String,
}

/// Headers the service's answer may never set on the request to the endpoint, beside the
/// hop-by-hop ones ([`HOP_BY_HOP`]).
const NEVER_COPIED: &[&str] = &["host", "content-length", "proxy-authorization"];

/// Headers `auth-proxy-set-headers` may not set on the sub-request, beside the hop-by-hop
/// ones: its host is the `auth-url`'s and it has no body.
const NEVER_SET: &[&str] = &["host", "content-length"];

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones: the proxy removes them in both
/// directions, and an authentication service's answer never sets them.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// What [`ExternalAuth::parse`] leaves out without failing: headers that may never be copied
/// (`auth-response-headers`) or set (`auth-proxy-set-headers`), each with its setting's key.
pub type Ignored = Vec<(&'static str, String)>;

impl ExternalAuth {
    /// Checks `settings` as ingress-nginx does (plus weir's rules for variables and the
    /// headers it never copies).
    pub fn parse(
        settings: &Settings<'_>,
        global: bool,
    ) -> Result<(ExternalAuth, Ignored), Invalid> {
        let invalid = |key: &'static str, why: String| Invalid { key, why };
        let url = parse_url(settings.url).map_err(|why| invalid("auth-url", why))?;
        let method = match settings.method.map(str::trim).filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(
                [
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                    Method::OPTIONS,
                    Method::TRACE,
                ]
                .into_iter()
                .find(|known| known.as_str() == m)
                .ok_or_else(|| {
                    invalid(
                        "auth-method",
                        "it must be an HTTP method in capitals: GET, HEAD, POST, PUT, PATCH, \
                         DELETE, OPTIONS or TRACE"
                            .to_owned(),
                    )
                })?,
            ),
        };
        let param = match settings.signin_redirect_param.map(str::trim) {
            None | Some("") => "rd",
            Some(p) if is_token(p) => p,
            Some(_) => {
                return Err(invalid(
                    "auth-signin-redirect-param",
                    "it must be a query parameter name (letters, digits, '-', '_', '.')".to_owned(),
                ));
            }
        };
        let signin = match settings.signin.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(signin) => Some(
                signin_location(signin, param)
                    .map_err(|e| invalid("auth-signin", e.to_string()))?,
            ),
        };
        let mut response_headers = Vec::new();
        let mut ignored = Vec::new();
        for name in settings
            .response_headers
            .into_iter()
            .flat_map(|v| v.split(','))
        {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            match header_name(name) {
                Some(h)
                    if NEVER_COPIED.contains(&h.as_str()) || HOP_BY_HOP.contains(&h.as_str()) =>
                {
                    ignored.push(("auth-response-headers", name.to_owned()))
                }
                Some(h) => response_headers.push(h),
                None => {
                    return Err(invalid(
                        "auth-response-headers",
                        format!(
                            "{name:?} is not a header name (a comma-separated list of names \
                             of letters, digits, '-' and '_')"
                        ),
                    ));
                }
            }
        }
        let mut proxy_set_headers = Vec::new();
        for (name, value) in settings.proxy_set_headers.into_iter().flatten() {
            let header = header_name(name).ok_or_else(|| {
                invalid(
                    "auth-proxy-set-headers",
                    format!(
                        "its ConfigMap has the key {name:?}, which is not a header name \
                         (letters, digits, '-' and '_')"
                    ),
                )
            })?;
            if NEVER_SET.contains(&header.as_str()) || HOP_BY_HOP.contains(&header.as_str()) {
                ignored.push(("auth-proxy-set-headers", name.clone()));
                continue;
            }
            let value = Expr::parse(value.trim()).map_err(|e| {
                invalid(
                    "auth-proxy-set-headers",
                    format!("its ConfigMap's value of {name:?} is invalid: {e}"),
                )
            })?;
            proxy_set_headers.push((header, value));
        }
        let request_redirect = match settings.request_redirect.map(str::trim) {
            None | Some("") => None,
            Some(value) => Some(
                Expr::parse(value).map_err(|e| invalid("auth-request-redirect", e.to_string()))?,
            ),
        };
        let cache = match settings.cache_key.map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => Some(AuthCache {
                key: Expr::parse(key).map_err(|e| invalid("auth-cache-key", e.to_string()))?,
                durations: cache_durations(settings.cache_duration.unwrap_or(""))
                    .map_err(|why| invalid("auth-cache-duration", why))?,
            }),
        };
        Ok((
            ExternalAuth {
                url,
                method,
                signin,
                response_headers,
                request_redirect,
                cache,
                always_set_cookie: settings.always_set_cookie,
                proxy_set_headers,
                global,
            },
            ignored,
        ))
    }
}

/// A header name as ingress-nginx accepts one (letters, digits, `-` and `_`).
fn header_name(name: &str) -> Option<HeaderName> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid
        .then(|| HeaderName::from_bytes(name.as_bytes()).ok())
        .flatten()
}

fn is_token(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// An absolute `http`/`https` URL with a host, once its variables are filled in.
fn parse_url(text: &str) -> Result<Expr, String> {
    let text = text.trim();
    let expr = Expr::parse(text).map_err(|e| e.to_string())?;
    let sample = expr.sample("x");
    let uri: Uri = sample
        .parse()
        .map_err(|_| "it must be an absolute http or https URL".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(expr),
        _ => Err("it must be an absolute http or https URL (http://… or https://…)".to_owned()),
    }
}

/// The sign-in location: `signin` with `param=$pass_access_scheme://$http_host$escaped_request_uri`
/// appended unless its query already sets `param` (ingress-nginx's `buildAuthSignURL`).
fn signin_location(signin: &str, param: &str) -> Result<Expr, InvalidExpr> {
    let mut expr = Expr::parse(signin)?;
    let query = signin.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has_param = query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == param && !value.is_empty()
    });
    if !has_param {
        expr.push_text(if query.is_empty() { "?" } else { "&" });
        expr.push_text(param);
        expr.push_text("=");
        expr.push_expr(&Expr::parse(
            "$pass_access_scheme://$http_host$escaped_request_uri",
        )?);
    }
    Ok(expr)
}

/// `auth-cache-duration`: comma-separated items of status codes then durations
/// (`200 202 401 5m, 403 30s`); empty: [`DEFAULT_CACHE_DURATION`].
fn cache_durations(value: &str) -> Result<Vec<CacheDuration>, String> {
    let value = if value.trim().is_empty() {
        DEFAULT_CACHE_DURATION
    } else {
        value
    };
    let accepted = "it must be comma-separated items of status codes followed by nginx \
                    durations, e.g. \"200 202 401 5m, 403 30s\"";
    let mut items = Vec::new();
    for item in super::annotations::values::list(value) {
        let mut codes = Vec::new();
        let mut ttl = Duration::ZERO;
        let mut seen_time = false;
        for word in item.split_whitespace() {
            if word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) && !seen_time {
                codes.push(word.parse::<u16>().expect("three digits"));
            } else {
                ttl += nginx_duration(word).ok_or_else(|| accepted.to_owned())?;
                seen_time = true;
            }
        }
        if !seen_time {
            return Err(accepted.to_owned());
        }
        if codes.is_empty() {
            codes = vec![200, 301, 302];
        }
        items.push(CacheDuration { codes, ttl });
    }
    Ok(items)
}

/// One nginx time value: digits and a unit (`ms`, `s`, `m`, `h`, `d`, `w`, `M`, `y`).
fn nginx_duration(word: &str) -> Option<Duration> {
    let split = word.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = word.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(seconds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(settings: Settings<'_>) -> Result<ExternalAuth, Invalid> {
        ExternalAuth::parse(&settings, false).map(|(auth, _)| auth)
    }

    fn url(url: &str) -> Settings<'_> {
        Settings {
            url,
            ..Settings::default()
        }
    }

    #[test]
    fn urls_must_be_absolute_http_urls() {
        for good in [
            "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth",
            "https://$host/oauth2/auth",
            " https://auth.example.com/verify?scope=read%3Aall ",
        ] {
            assert!(parse(url(good)).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/oauth2/auth",
            "ftp://auth/x",
            "https://",
            "http://$nope/x",
            "auth.svc:4180",
        ] {
            assert_eq!(parse(url(bad)).unwrap_err().key, "auth-url", "{bad}");
        }
    }

    #[test]
    fn the_method_is_one_of_ingress_nginx_s_list() {
        let with = |m| Settings {
            method: Some(m),
            ..url("http://a/")
        };
        assert_eq!(parse(with("POST")).unwrap().method, Some(Method::POST));
        assert_eq!(parse(with("")).unwrap().method, None);
        for bad in ["post", "CONNECT", "FOO", "GET POST"] {
            assert_eq!(parse(with(bad)).unwrap_err().key, "auth-method", "{bad}");
        }
    }

    #[test]
    fn the_signin_url_gets_the_redirect_parameter() {
        let table = [
            (
                "https://auth/start",
                None,
                "https://auth/start?rd=$pass_access_scheme://$http_host$escaped_request_uri",
            ),
            (
                "https://auth/start?x=1",
                Some("next"),
                "https://auth/start?x=1&next=$pass_access_scheme://$http_host$escaped_request_uri",
            ),
            (
                "https://$host/oauth2/start?rd=$escaped_request_uri",
                None,
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
        ];
        for (signin, param, expected) in table {
            let auth = parse(Settings {
                signin: Some(signin),
                signin_redirect_param: param,
                ..url("http://a/")
            })
            .unwrap();
            assert_eq!(auth.signin.unwrap().source(), expected, "{signin}");
        }
        let bad = parse(Settings {
            signin: Some("https://auth/start"),
            signin_redirect_param: Some("r d"),
            ..url("http://a/")
        });
        assert_eq!(bad.unwrap_err().key, "auth-signin-redirect-param");
    }

    #[test]
    fn response_headers_are_names_and_never_hop_by_hop_or_host() {
        let (auth, ignored) = ExternalAuth::parse(
            &Settings {
                response_headers: Some(
                    "X-Auth-Request-User, X-Auth-Request-Email,,Host,Transfer-Encoding",
                ),
                ..url("http://a/")
            },
            false,
        )
        .unwrap();
        assert_eq!(
            auth.response_headers,
            ["x-auth-request-user", "x-auth-request-email"]
        );
        assert_eq!(
            ignored,
            [
                ("auth-response-headers", "Host".to_owned()),
                ("auth-response-headers", "Transfer-Encoding".to_owned())
            ]
        );
        for bad in ["X User", "X:User", "é"] {
            let result = parse(Settings {
                response_headers: Some(bad),
                ..url("http://a/")
            });
            assert_eq!(result.unwrap_err().key, "auth-response-headers", "{bad}");
        }
    }

    #[test]
    fn proxy_set_headers_are_names_with_nginx_values_and_never_host_or_hop_by_hop() {
        let data: BTreeMap<String, String> = [
            ("X-Tenant", "blue"),
            ("X-Original-Host", " $host "),
            ("X_Legacy", ""),
            ("Host", "elsewhere"),
            ("Connection", "close"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (auth, ignored) = ExternalAuth::parse(
            &Settings {
                proxy_set_headers: Some(&data),
                ..url("http://a/")
            },
            false,
        )
        .unwrap();
        let set: Vec<(&str, &str)> = auth
            .proxy_set_headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.source()))
            .collect();
        assert_eq!(
            set,
            [
                ("x-original-host", "$host"),
                ("x-tenant", "blue"),
                ("x_legacy", "")
            ]
        );
        assert_eq!(
            ignored,
            [
                ("auth-proxy-set-headers", "Connection".to_owned()),
                ("auth-proxy-set-headers", "Host".to_owned())
            ]
        );
        for (name, value) in [
            ("X Tenant", "a"),
            ("X:Tenant", "a"),
            ("", "a"),
            ("X-Tenant", "$nope"),
        ] {
            let data = BTreeMap::from([(name.to_owned(), value.to_owned())]);
            let result = parse(Settings {
                proxy_set_headers: Some(&data),
                ..url("http://a/")
            });
            assert_eq!(
                result.unwrap_err().key,
                "auth-proxy-set-headers",
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn cache_durations_read_as_ingress_nginx_writes_them() {
        let cache = |duration: Option<&str>| {
            parse(Settings {
                cache_key: Some("$remote_user$http_authorization"),
                cache_duration: duration,
                ..url("http://a/")
            })
        };
        let default = cache(None).unwrap().cache.unwrap();
        assert_eq!(default.ttl(200), Some(Duration::from_secs(300)));
        assert_eq!(default.ttl(401), Some(Duration::from_secs(300)));
        assert_eq!(default.ttl(403), None);
        let custom = cache(Some("200 1h 30m, 403 10s, 1m"))
            .unwrap()
            .cache
            .unwrap();
        assert_eq!(custom.ttl(200), Some(Duration::from_secs(5400)));
        assert_eq!(custom.ttl(403), Some(Duration::from_secs(10)));
        assert_eq!(custom.ttl(302), Some(Duration::from_secs(60)));
        for bad in ["200", "200 5x", "5m 200", "abc"] {
            assert_eq!(
                cache(Some(bad)).unwrap_err().key,
                "auth-cache-duration",
                "{bad}"
            );
        }
        assert!(
            parse(Settings {
                cache_duration: Some("garbage"),
                ..url("http://a/")
            })
            .unwrap()
            .cache
            .is_none(),
            "without a key there is no cache"
        );
        assert_eq!(
            parse(Settings {
                cache_key: Some("$nope"),
                ..url("http://a/")
            })
            .unwrap_err()
            .key,
            "auth-cache-key"
        );
    }

    proptest::proptest! {
        /// Whatever a ConfigMap and auth-response-headers hold, parsing never panics; when it
        /// succeeds, every header is accounted for (kept or reported as ignored), none kept is
        /// one weir never sets or copies, and values keep their text.
        #[test]
        fn header_settings_are_total(
            data in proptest::collection::btree_map(
                "[A-Za-z_ :-]{0,12}",
                "[a-z $:/_-]{0,16}",
                0..6,
            ),
            names in "[A-Za-z, _:-]{0,40}",
        ) {
            let settings = Settings {
                proxy_set_headers: Some(&data),
                response_headers: Some(&names),
                ..url("http://a/")
            };
            if let Ok((auth, ignored)) = ExternalAuth::parse(&settings, false) {
                let set_ignored = ignored
                    .iter()
                    .filter(|(key, _)| *key == "auth-proxy-set-headers")
                    .count();
                proptest::prop_assert_eq!(auth.proxy_set_headers.len() + set_ignored, data.len());
                for (name, value) in &auth.proxy_set_headers {
                    let name = name.as_str();
                    proptest::prop_assert!(!NEVER_SET.contains(&name) && !HOP_BY_HOP.contains(&name));
                    let written = data
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.trim() == value.source());
                    proptest::prop_assert!(written, "{name}");
                }
                for name in &auth.response_headers {
                    let name = name.as_str();
                    proptest::prop_assert!(!NEVER_COPIED.contains(&name) && !HOP_BY_HOP.contains(&name));
                }
            }
        }
    }
}

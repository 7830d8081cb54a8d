//! The ingress-nginx-style controller ConfigMap (`--configmap NAMESPACE/NAME`): global defaults
//! for what annotations can change, read with ingress-nginx's key names and value syntax.
//!
//! weir reads the keys of the features it has ([`KEYS`]), accepts the buffering keys (weir
//! always streams) without effect, refuses the snippet keys (configuration text is never
//! interpreted) and reports every other key. A bad value is reported and the flag's default
//! kept; the other keys still apply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use k8s_openapi::api::core::v1::ConfigMap;

use super::Input;
use super::access::IpList;
use super::annotations::values;
use super::balance::{LOAD_BALANCE, LoadBalance};
use super::client_address::ClientAddress;
use super::connection::ConnectionLimits;
use super::diagnostic::{Diagnostic, ObjectRef, Reason};
use super::error_pages;
use super::external_auth::{ExternalAuth, Settings};
use super::objects::index_by_name;
use super::policy::{Defaults, Global, Hsts};
use super::retry::{self, Retry, RetryOn};

/// What weir does with a ConfigMap key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySupport {
    /// A typed global default.
    Read,
    /// Accepted without effect (the sentence says why).
    Accepted(&'static str),
    /// Refused: configuration text.
    Never,
}

const STREAMS: &str = "weir always streams bodies; the key has no effect";

/// Every key weir knows, and what it does with it.
pub const KEYS: &[(&str, KeySupport)] = &[
    ("proxy-connect-timeout", KeySupport::Read),
    ("proxy-send-timeout", KeySupport::Read),
    ("proxy-read-timeout", KeySupport::Read),
    ("proxy-body-size", KeySupport::Read),
    ("ssl-redirect", KeySupport::Read),
    ("force-ssl-redirect", KeySupport::Read),
    ("preserve-trailing-slash", KeySupport::Read),
    ("http-redirect-code", KeySupport::Read),
    ("hsts", KeySupport::Read),
    ("hsts-max-age", KeySupport::Read),
    ("hsts-include-subdomains", KeySupport::Read),
    ("hsts-preload", KeySupport::Read),
    ("use-port-in-redirects", KeySupport::Read),
    ("relative-redirects", KeySupport::Read),
    ("use-proxy-protocol", KeySupport::Read),
    ("proxy-protocol-header-timeout", KeySupport::Read),
    ("use-forwarded-headers", KeySupport::Read),
    ("forwarded-for-header", KeySupport::Read),
    ("compute-full-forwarded-for", KeySupport::Read),
    ("proxy-real-ip-cidr", KeySupport::Read),
    ("whitelist-source-range", KeySupport::Read),
    ("denylist-source-range", KeySupport::Read),
    ("limit-req-status-code", KeySupport::Read),
    ("limit-conn-status-code", KeySupport::Read),
    ("global-auth-url", KeySupport::Read),
    ("global-auth-method", KeySupport::Read),
    ("global-auth-signin", KeySupport::Read),
    ("global-auth-signin-redirect-param", KeySupport::Read),
    ("global-auth-response-headers", KeySupport::Read),
    ("global-auth-request-redirect", KeySupport::Read),
    ("global-auth-cache-key", KeySupport::Read),
    ("global-auth-cache-duration", KeySupport::Read),
    ("global-auth-always-set-cookie", KeySupport::Read),
    ("no-auth-locations", KeySupport::Read),
    ("load-balance", KeySupport::Read),
    ("custom-http-errors", KeySupport::Read),
    ("proxy-next-upstream", KeySupport::Read),
    ("proxy-next-upstream-tries", KeySupport::Read),
    ("proxy-next-upstream-timeout", KeySupport::Read),
    ("retry-non-idempotent", KeySupport::Read),
    ("keep-alive-requests", KeySupport::Read),
    ("http2-max-concurrent-streams", KeySupport::Read),
    (
        "max-worker-connections",
        KeySupport::Accepted(
            "weir caps the client connections of the whole process with --max-connections \
             (default half the open-files limit); nginx's cap is per worker and counts \
             connections to endpoints too",
        ),
    ),
    ("global-auth-snippet", KeySupport::Never),
    ("client-body-buffer-size", KeySupport::Accepted(STREAMS)),
    ("proxy-buffering", KeySupport::Accepted(STREAMS)),
    ("proxy-request-buffering", KeySupport::Accepted(STREAMS)),
    ("proxy-buffer-size", KeySupport::Accepted(STREAMS)),
    ("proxy-buffers-number", KeySupport::Accepted(STREAMS)),
    ("proxy-busy-buffers-size", KeySupport::Accepted(STREAMS)),
    ("proxy-max-temp-file-size", KeySupport::Accepted(STREAMS)),
    (
        "proxy-http-version",
        KeySupport::Accepted("weir always speaks HTTP/1.1 to endpoints"),
    ),
    (
        "allow-snippet-annotations",
        KeySupport::Accepted("weir never reads snippets, whatever the value"),
    ),
    (
        "annotations-risk-level",
        KeySupport::Accepted("no annotation weir reads carries configuration text"),
    ),
    ("main-snippet", KeySupport::Never),
    ("http-snippet", KeySupport::Never),
    ("server-snippet", KeySupport::Never),
    ("location-snippet", KeySupport::Never),
    ("stream-snippet", KeySupport::Never),
];

/// The global defaults: the flags' `defaults`, overridden by the keys of the ConfigMap named
/// `config_map` (when it is set and exists in `input`). Problems are reported on the ConfigMap.
pub(crate) fn defaults(
    input: &Input,
    config_map: Option<&ObjectRef>,
    flags: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Defaults {
    let Some(wanted) = config_map else {
        return flags.clone();
    };
    let index = index_by_name(&input.config_maps, |c| &c.metadata);
    let Some(found) = index.get(&(wanted.namespace.as_str(), wanted.name.as_str())) else {
        diagnostics.push(Diagnostic::new(
            wanted.clone(),
            Reason::ConfigMapNotFound,
            "the controller ConfigMap (--configmap) does not exist; the flags' defaults apply \
             until it does",
        ));
        return flags.clone();
    };
    read(wanted, found, flags, diagnostics)
}

fn read(
    object: &ObjectRef,
    config_map: &ConfigMap,
    flags: &Defaults,
    diagnostics: &mut Vec<Diagnostic>,
) -> Defaults {
    let empty = BTreeMap::new();
    let data = config_map.data.as_ref().unwrap_or(&empty);
    let mut reader = Reader {
        object,
        data,
        diagnostics,
    };
    for key in data.keys() {
        reader.check_known(key);
    }
    let t = &flags.timeouts;
    let read_timeout = reader.get("proxy-read-timeout", values::SECONDS, values::seconds);
    let mut timeouts = *t;
    timeouts.connect = reader
        .get("proxy-connect-timeout", values::SECONDS, values::seconds)
        .unwrap_or(t.connect);
    timeouts.send = reader
        .get("proxy-send-timeout", values::SECONDS, values::seconds)
        .unwrap_or(t.send);
    if let Some(read) = read_timeout {
        timeouts.read = read;
        timeouts.tunnel_idle = read;
    }
    let flag = |reader: &mut Reader<'_>, key: &str, default: bool| {
        reader
            .get(key, values::BOOLEAN, values::boolean)
            .unwrap_or(default)
    };
    let hsts = Hsts {
        enabled: flag(&mut reader, "hsts", flags.hsts.enabled),
        max_age: reader
            .get(
                "hsts-max-age",
                "it must be a whole number of seconds",
                |v: &str| v.trim().parse::<u64>().ok().map(Duration::from_secs),
            )
            .unwrap_or(flags.hsts.max_age),
        include_subdomains: flag(
            &mut reader,
            "hsts-include-subdomains",
            flags.hsts.include_subdomains,
        ),
        preload: flag(&mut reader, "hsts-preload", flags.hsts.preload),
    };
    Defaults {
        timeouts,
        max_body_size: reader
            .get("proxy-body-size", values::SIZE, values::size)
            .unwrap_or(flags.max_body_size),
        ssl_redirect: flag(&mut reader, "ssl-redirect", flags.ssl_redirect),
        force_ssl_redirect: flag(&mut reader, "force-ssl-redirect", flags.force_ssl_redirect),
        preserve_trailing_slash: flag(
            &mut reader,
            "preserve-trailing-slash",
            flags.preserve_trailing_slash,
        ),
        https_redirect_code: reader
            .get(
                "http-redirect-code",
                "it must be 301, 302, 307 or 308",
                |v: &str| {
                    values::status(v, 301, 308)
                        .filter(|c| matches!(c.as_u16(), 301 | 302 | 307 | 308))
                },
            )
            .unwrap_or(flags.https_redirect_code),
        hsts,
        use_port_in_redirects: flag(
            &mut reader,
            "use-port-in-redirects",
            flags.use_port_in_redirects,
        ),
        relative_redirects: flag(&mut reader, "relative-redirects", flags.relative_redirects),
        client_address: client_address(&mut reader, &flags.client_address),
        connection_limits: connection_limits(&mut reader, flags.connection_limits),
        global_auth: global_auth(&mut reader),
        allow_sources: source_list(&mut reader, "whitelist-source-range"),
        deny_sources: source_list(&mut reader, "denylist-source-range"),
        limit_req_status: error_status(&mut reader, "limit-req-status-code")
            .unwrap_or(flags.limit_req_status),
        limit_conn_status: error_status(&mut reader, "limit-conn-status-code")
            .unwrap_or(flags.limit_conn_status),
        no_auth_locations: match data.get("no-auth-locations") {
            Some(list) => values::list(list).map(str::to_owned).collect(),
            None => flags.no_auth_locations.clone(),
        },
        load_balance: reader
            .get("load-balance", LOAD_BALANCE, LoadBalance::parse)
            .unwrap_or(flags.load_balance),
        custom_http_errors: reader
            .get(
                "custom-http-errors",
                error_pages::GLOBAL_CODES,
                |v: &str| error_pages::parse_codes(v, 300),
            )
            .unwrap_or_else(|| flags.custom_http_errors.clone()),
        retry: retry(&mut reader, flags),
        retry_non_idempotent: flag(
            &mut reader,
            "retry-non-idempotent",
            flags.retry_non_idempotent,
        ),
    }
}

/// The client-address keys over the flags' values (see
/// [`client_address`](super::client_address)). An invalid `proxy-real-ip-cidr` trusts nobody:
/// a balancer list that cannot be read must not let every client choose its address.
fn client_address(reader: &mut Reader<'_>, flags: &ClientAddress) -> ClientAddress {
    let real_ip_cidr = reader.data.get("proxy-real-ip-cidr").map(|value| {
        IpList::parse(value).unwrap_or_else(|_| {
            reader.diagnostics.push(Diagnostic::new(
                reader.object.clone(),
                Reason::InvalidConfigMapValue,
                format!(
                    "key \"proxy-real-ip-cidr\" has the value {value:?}, but it must be a \
                     comma-separated list of CIDRs or IP addresses; no balancer's PROXY protocol \
                     header or forwarded headers are believed until it is fixed"
                ),
            ));
            IpList::from_nets(&[])
        })
    });
    let boolean =
        |reader: &mut Reader<'_>, key: &str| reader.get(key, values::BOOLEAN, values::boolean);
    let forwarded_from = match boolean(reader, "use-forwarded-headers") {
        // ingress-nginx's default list is 0.0.0.0/0; weir's "everyone" includes IPv6.
        Some(true) => real_ip_cidr.clone().unwrap_or_else(IpList::everyone),
        Some(false) => IpList::from_nets(&[]),
        None => flags.forwarded_from.clone(),
    };
    ClientAddress {
        // `--proxy-protocol` turns it on whatever the ConfigMap says.
        proxy_protocol: boolean(reader, "use-proxy-protocol").unwrap_or(false)
            || flags.proxy_protocol,
        proxy_protocol_header_timeout: reader
            .get(
                "proxy-protocol-header-timeout",
                values::GO_DURATION,
                values::go_duration,
            )
            .filter(|d| !d.is_zero())
            .unwrap_or(flags.proxy_protocol_header_timeout),
        proxy_protocol_from: real_ip_cidr.unwrap_or_else(|| flags.proxy_protocol_from.clone()),
        forwarded_from,
        forwarded_for_header: reader
            .get(
                "forwarded-for-header",
                "it must be a header name (e.g. \"X-Forwarded-For\")",
                |v: &str| HeaderName::from_bytes(v.trim().as_bytes()).ok(),
            )
            .unwrap_or_else(|| flags.forwarded_for_header.clone()),
        full_forwarded_for: boolean(reader, "compute-full-forwarded-for")
            .unwrap_or(flags.full_forwarded_for),
    }
}

/// `keep-alive-requests` (0: no cap) and `http2-max-concurrent-streams` (1 to 65,536) over
/// the flags' values.
fn connection_limits(reader: &mut Reader<'_>, flags: ConnectionLimits) -> ConnectionLimits {
    ConnectionLimits {
        keepalive_requests: reader
            .get(
                "keep-alive-requests",
                "it must be a whole number of requests (0: no cap)",
                |v: &str| v.trim().parse::<u64>().ok(),
            )
            .unwrap_or(flags.keepalive_requests),
        http2_max_concurrent_streams: reader
            .get(
                "http2-max-concurrent-streams",
                "it must be a whole number from 1 to 65536",
                |v: &str| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=65_536).contains(n))
                },
            )
            .unwrap_or(flags.http2_max_concurrent_streams),
    }
}

/// `proxy-next-upstream`, `-tries`, `-timeout`, with `non_idempotent` added by
/// `retry-non-idempotent`.
fn retry(reader: &mut Reader<'_>, flags: &Defaults) -> Retry {
    let d = flags.retry;
    let mut on = reader
        .get("proxy-next-upstream", retry::TOKENS, RetryOn::parse)
        .unwrap_or(d.on);
    let non_idempotent = reader.data.get("retry-non-idempotent");
    if non_idempotent.and_then(|v| values::boolean(v)) == Some(true) {
        on = on.union(RetryOn::NON_IDEMPOTENT);
    }
    Retry {
        on,
        tries: reader
            .get("proxy-next-upstream-tries", retry::TRIES, retry::tries)
            .unwrap_or(d.tries),
        timeout: reader
            .get(
                "proxy-next-upstream-timeout",
                retry::TIMEOUT,
                retry::timeout,
            )
            .unwrap_or(d.timeout),
    }
}

/// A status code from 400 to 599 (`limit-req-status-code`, `limit-conn-status-code`).
fn error_status(reader: &mut Reader<'_>, key: &str) -> Option<http::StatusCode> {
    reader.get(
        key,
        "it must be a status code from 400 to 599",
        |v: &str| values::status(v, 400, 599),
    )
}

/// A global source list (`whitelist-source-range`, `denylist-source-range`): `Invalid`
/// (reported) when an item is not a CIDR, which makes the routes it would cover refuse.
fn source_list(reader: &mut Reader<'_>, key: &str) -> Global<IpList> {
    let Some(value) = reader.data.get(key).filter(|v| !v.trim().is_empty()) else {
        return Global::Off;
    };
    match IpList::parse(value) {
        Ok(list) => Global::On(list),
        Err(_) => {
            reader.diagnostics.push(Diagnostic::new(
                reader.object.clone(),
                Reason::InvalidConfigMapValue,
                format!(
                    "key {key:?} has the value {value:?}, but it must be a comma-separated list \
                     of CIDRs or IP addresses; every route without a list of its own answers \
                     503 until it is fixed (fail closed)"
                ),
            ));
            Global::Invalid(Arc::from(format!(
                "the controller ConfigMap's {key} is invalid"
            )))
        }
    }
}

/// The `global-auth-*` keys: `Off` without `global-auth-url`; `Invalid` (reported) when one of
/// them cannot be used, which makes the routes it would cover refuse.
fn global_auth(reader: &mut Reader<'_>) -> Global<Arc<ExternalAuth>> {
    let data = reader.data;
    let value = |name: &str| data.get(&format!("global-{name}")).map(String::as_str);
    let Some(url) = value("auth-url").filter(|u| !u.trim().is_empty()) else {
        return Global::Off;
    };
    let always_set_cookie = reader
        .get(
            "global-auth-always-set-cookie",
            values::BOOLEAN,
            values::boolean,
        )
        .unwrap_or(false);
    let settings = Settings {
        url,
        method: value("auth-method"),
        signin: value("auth-signin"),
        signin_redirect_param: value("auth-signin-redirect-param"),
        response_headers: value("auth-response-headers"),
        request_redirect: value("auth-request-redirect"),
        cache_key: value("auth-cache-key"),
        cache_duration: value("auth-cache-duration"),
        always_set_cookie,
        proxy_set_headers: None,
    };
    match ExternalAuth::parse(&settings, true) {
        Ok((auth, ignored)) => {
            for (_, name) in ignored {
                reader.diagnostics.push(Diagnostic::new(
                    reader.object.clone(),
                    Reason::InvalidConfigMapValue,
                    format!(
                        "key \"global-auth-response-headers\" names {name:?}, which weir never \
                         takes from an authentication service; the other headers are copied"
                    ),
                ));
            }
            Global::On(Arc::new(auth))
        }
        Err(invalid) => {
            let key = format!("global-{}", invalid.key);
            let shown = data.get(&key).map(String::as_str).unwrap_or("");
            reader.diagnostics.push(Diagnostic::new(
                reader.object.clone(),
                Reason::InvalidConfigMapValue,
                format!(
                    "key {key:?} has the value {shown:?}, but {}; every route global \
                     authentication covers answers 503 until it is fixed (fail closed)",
                    invalid.why
                ),
            ));
            Global::Invalid(Arc::from(format!("key {key:?} is invalid")))
        }
    }
}

struct Reader<'a> {
    object: &'a ObjectRef,
    data: &'a BTreeMap<String, String>,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    /// The typed value of `key`, or `None` when it is not set or not valid (reported).
    fn get<T>(
        &mut self,
        key: &str,
        accepted: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.data.get(key)?;
        let parsed = parse(value);
        if parsed.is_none() {
            self.diagnostics.push(Diagnostic::new(
                self.object.clone(),
                Reason::InvalidConfigMapValue,
                format!(
                    "key {key:?} has the value {value:?}, but {accepted}; the flag's default is \
                     used instead"
                ),
            ));
        }
        parsed
    }

    /// Reports a key weir does not read.
    fn check_known(&mut self, key: &str) {
        let message = match KEYS.iter().find(|(k, _)| *k == key).map(|(_, s)| *s) {
            Some(KeySupport::Read | KeySupport::Accepted(_)) => return,
            Some(KeySupport::Never) => format!(
                "key {key:?} is refused: snippets are nginx configuration text, which weir never \
                 interprets"
            ),
            None => format!("weir does not support key {key:?} (yet); it is ignored"),
        };
        self.diagnostics.push(Diagnostic::new(
            self.object.clone(),
            Reason::UnsupportedConfigMapKey,
            message,
        ));
    }
}

/// Whether `key` is one weir reads or accepts.
pub fn is_known(key: &str) -> bool {
    KEYS.iter()
        .any(|(k, s)| *k == key && *s != KeySupport::Never)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::diagnostic::ObjectKind;
    use crate::model::fixtures::config_map;
    use http::StatusCode;

    fn object() -> ObjectRef {
        ObjectRef::new(ObjectKind::ConfigMap, "ingress", "weir")
    }

    fn read_pairs(pairs: &[(&str, &str)]) -> (Defaults, Vec<Diagnostic>) {
        read_with_flags(pairs, &Defaults::default())
    }

    #[test]
    fn typed_keys_override_the_flags() {
        let (d, diagnostics) = read_pairs(&[
            ("proxy-connect-timeout", "2"),
            ("proxy-send-timeout", "30"),
            ("proxy-read-timeout", "120"),
            ("proxy-body-size", "8m"),
            ("ssl-redirect", "false"),
            ("force-ssl-redirect", "true"),
            ("http-redirect-code", "301"),
            ("hsts-max-age", "600"),
            ("hsts-include-subdomains", "true"),
            ("hsts-preload", "true"),
            ("use-port-in-redirects", "true"),
            ("proxy-buffering", "on"),
            ("allow-snippet-annotations", "true"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(d.timeouts.connect, Duration::from_secs(2));
        assert_eq!(d.timeouts.send, Duration::from_secs(30));
        assert_eq!(
            (d.timeouts.read, d.timeouts.tunnel_idle),
            (Duration::from_secs(120), Duration::from_secs(120))
        );
        assert_eq!(d.max_body_size, Some(8 << 20));
        assert!(!d.ssl_redirect && d.force_ssl_redirect && d.use_port_in_redirects);
        assert_eq!(d.https_redirect_code, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            d.hsts.header().unwrap(),
            "max-age=600; includeSubDomains; preload"
        );
    }

    #[test]
    fn use_proxy_protocol_turns_it_on_and_the_flag_keeps_it_on() {
        let on = |pairs: &[(&str, &str)]| read_pairs(pairs).0.client_address.proxy_protocol;
        assert!(on(&[("use-proxy-protocol", "true")]));
        assert!(!on(&[]));
        let (d, diagnostics) = read_pairs(&[("use-proxy-protocol", "yes")]);
        assert!(!d.client_address.proxy_protocol);
        assert!(
            diagnostics[0].message.contains("use-proxy-protocol"),
            "{diagnostics:?}"
        );
        let mut flags = Defaults::default();
        flags.client_address.proxy_protocol = true;
        let d = read_with_flags(&[("use-proxy-protocol", "false")], &flags).0;
        assert!(d.client_address.proxy_protocol, "--proxy-protocol wins");
    }

    fn read_with_flags(pairs: &[(&str, &str)], flags: &Defaults) -> (Defaults, Vec<Diagnostic>) {
        let input = Input {
            config_maps: vec![std::sync::Arc::new(config_map("ingress", "weir", pairs))],
            ..Input::default()
        };
        let mut diagnostics = Vec::new();
        let d = defaults(&input, Some(&object()), flags, &mut diagnostics);
        (d, diagnostics)
    }

    #[test]
    fn forwarded_headers_trust_the_real_ip_cidr_or_everyone() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let (d, diagnostics) = read_pairs(&[
            ("use-forwarded-headers", "true"),
            ("forwarded-for-header", "CF-Connecting-IP"),
            ("compute-full-forwarded-for", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8, 192.0.2.1"),
            ("proxy-protocol-header-timeout", "1m30s"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let c = &d.client_address;
        assert!(c.forwarded_from.contains(ip("10.1.2.3")));
        assert!(c.forwarded_from.contains(ip("192.0.2.1")));
        assert!(!c.forwarded_from.contains(ip("192.0.2.2")));
        assert_eq!(c.proxy_protocol_from, c.forwarded_from, "one list for both");
        assert_eq!(c.forwarded_for_header.as_str(), "cf-connecting-ip");
        assert!(c.full_forwarded_for);
        assert_eq!(c.proxy_protocol_header_timeout, Duration::from_secs(90));

        // Without a list: every peer, IPv6 too; without the key: the flags' (nobody).
        let c = read_pairs(&[("use-forwarded-headers", "true")])
            .0
            .client_address;
        assert!(c.forwarded_from.contains(ip("2001:db8::1")));
        assert!(c.forwarded_from.contains(ip("203.0.113.9")));
        let c = read_pairs(&[]).0.client_address;
        assert_eq!(c, ClientAddress::default());
        assert!(!c.forwarded_from.contains(ip("127.0.0.1")));
        assert!(c.proxy_protocol_from.contains(ip("2001:db8::1")));

        // The ConfigMap's "false" overrides --trust-forwarded-from.
        let mut flags = Defaults::default();
        flags.client_address.forwarded_from = IpList::everyone();
        let c = read_with_flags(&[("use-forwarded-headers", "false")], &flags).0;
        assert!(!c.client_address.forwarded_from.contains(ip("127.0.0.1")));
        let c = read_with_flags(&[], &flags).0;
        assert!(c.client_address.forwarded_from.contains(ip("127.0.0.1")));
    }

    #[test]
    fn an_unreadable_real_ip_cidr_trusts_nobody() {
        let (d, diagnostics) = read_pairs(&[
            ("use-forwarded-headers", "true"),
            ("proxy-real-ip-cidr", "10.0.0.0/8, the-balancer"),
            ("forwarded-for-header", "bad header"),
            ("proxy-protocol-header-timeout", "5"),
        ]);
        let c = &d.client_address;
        let ip = "10.1.2.3".parse().unwrap();
        assert!(!c.forwarded_from.contains(ip) && !c.proxy_protocol_from.contains(ip));
        assert_eq!(c.forwarded_for_header.as_str(), "x-forwarded-for");
        assert_eq!(c.proxy_protocol_header_timeout, Duration::from_secs(5));
        let keys: Vec<&str> = [
            "proxy-real-ip-cidr",
            "forwarded-for-header",
            "proxy-protocol-header-timeout",
        ]
        .into_iter()
        .filter(|key| diagnostics.iter().any(|d| d.message.contains(key)))
        .collect();
        assert_eq!(keys.len(), 3, "{diagnostics:#?}");
    }

    #[test]
    fn retry_keys() {
        use crate::model::retry::{Retry, RetryOn};
        let (d, diagnostics) = read_pairs(&[
            ("proxy-next-upstream", "error http_503"),
            ("proxy-next-upstream-tries", "0"),
            ("proxy-next-upstream-timeout", "7"),
            ("retry-non-idempotent", "true"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let want = Retry {
            on: RetryOn::parse("error http_503 non_idempotent").unwrap(),
            tries: 0,
            timeout: Some(Duration::from_secs(7)),
        };
        assert_eq!((d.retry, d.retry_non_idempotent), (want, true));
        let (d, diagnostics) = read_pairs(&[
            ("proxy-next-upstream", "error sometimes"),
            ("proxy-next-upstream-tries", "-2"),
            ("proxy-next-upstream-timeout", "5s"),
            ("retry-non-idempotent", "maybe"),
        ]);
        assert_eq!((d.retry, d.retry_non_idempotent), (Retry::default(), false));
        assert_eq!(diagnostics.len(), 4, "{diagnostics:#?}");
        assert!(
            diagnostics
                .iter()
                .all(|d| d.reason == Reason::InvalidConfigMapValue)
        );
    }

    #[test]
    fn connection_limits_override_the_flags_and_bad_values_keep_them() {
        let flags = Defaults {
            connection_limits: ConnectionLimits {
                keepalive_requests: 50,
                http2_max_concurrent_streams: 20,
            },
            ..Defaults::default()
        };
        let (d, diagnostics) = read_with_flags(
            &[
                ("keep-alive-requests", "0"),
                ("http2-max-concurrent-streams", "1000"),
                ("max-worker-connections", "65536"),
            ],
            &flags,
        );
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(
            d.connection_limits,
            ConnectionLimits {
                keepalive_requests: 0,
                http2_max_concurrent_streams: 1000,
            }
        );
        for (requests, streams) in [("-1", "0"), ("many", "65537"), ("1.5", "")] {
            let (d, diagnostics) = read_with_flags(
                &[
                    ("keep-alive-requests", requests),
                    ("http2-max-concurrent-streams", streams),
                ],
                &flags,
            );
            assert_eq!(d.connection_limits, flags.connection_limits);
            assert_eq!(
                diagnostics.len(),
                2,
                "{requests:?} {streams:?}: {diagnostics:#?}"
            );
        }
    }

    #[test]
    fn bad_values_keep_the_flag_and_others_still_apply() {
        let (d, diagnostics) = read_pairs(&[
            ("proxy-read-timeout", "60m"),
            ("proxy-body-size", "10 MB"),
            ("http-redirect-code", "303"),
            ("hsts", "yes"),
            ("proxy-connect-timeout", "3"),
            ("server-snippet", "return 200;"),
            ("use-gzip", "true"),
        ]);
        let flags = Defaults::default();
        assert_eq!(d.timeouts.read, flags.timeouts.read);
        assert_eq!(d.max_body_size, flags.max_body_size);
        assert_eq!(d.https_redirect_code, flags.https_redirect_code);
        assert_eq!(d.hsts, flags.hsts);
        assert_eq!(d.timeouts.connect, Duration::from_secs(3));
        let reasons: Vec<Reason> = diagnostics.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons
                .iter()
                .filter(|r| **r == Reason::InvalidConfigMapValue)
                .count(),
            4,
            "{diagnostics:#?}"
        );
        let snippet = diagnostics
            .iter()
            .find(|d| d.message.contains("server-snippet"))
            .unwrap();
        assert!(snippet.message.contains("refused"));
        assert!(diagnostics.iter().any(|d| d.message.contains("use-gzip")));
        assert!(diagnostics.iter().all(|d| d.object == object()));
    }

    #[test]
    fn load_balance_sets_the_default_algorithm() {
        let (d, diagnostics) = read_pairs(&[("load-balance", "ewma")]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(d.load_balance, LoadBalance::Ewma);
        // ingress-nginx falls back to round robin on an unknown algorithm; weir says so.
        let (d, diagnostics) = read_pairs(&[("load-balance", "least_conn")]);
        assert_eq!(d.load_balance, LoadBalance::RoundRobin);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    }

    #[test]
    fn custom_http_errors_from_300() {
        let (d, diagnostics) = read_pairs(&[("custom-http-errors", "503, 404,302")]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(d.custom_http_errors, [302, 404, 503]);
        let (d, diagnostics) = read_pairs(&[("custom-http-errors", "404,200")]);
        assert!(d.custom_http_errors.is_empty());
        assert_eq!(diagnostics[0].reason, Reason::InvalidConfigMapValue);
    }

    #[test]
    fn global_source_lists_and_the_rate_limit_status() {
        let (d, diagnostics) = read_pairs(&[
            ("whitelist-source-range", "10.0.0.0/8, 2001:db8::/32"),
            ("denylist-source-range", "10.6.6.6"),
            ("limit-req-status-code", "429"),
            ("limit-conn-status-code", "429"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert!(
            matches!(&d.allow_sources, Global::On(l) if l.contains("10.1.1.1".parse().unwrap()))
        );
        assert!(
            matches!(&d.deny_sources, Global::On(l) if l.contains("10.6.6.6".parse().unwrap()))
        );
        assert_eq!(d.limit_req_status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(d.limit_conn_status, StatusCode::TOO_MANY_REQUESTS);
        let (d, diagnostics) = read_pairs(&[
            ("whitelist-source-range", "10.0.0.0/8, office"),
            ("limit-req-status-code", "200"),
        ]);
        assert!(matches!(d.allow_sources, Global::Invalid(_)));
        assert_eq!(d.limit_req_status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
    }

    #[test]
    fn global_auth_keys_make_one_service_and_an_invalid_one_fails_closed() {
        let (d, diagnostics) = read_pairs(&[
            (
                "global-auth-url",
                "http://oauth2-proxy.auth.svc:4180/oauth2/auth",
            ),
            ("global-auth-method", "GET"),
            (
                "global-auth-signin",
                "https://auth.example.com/oauth2/start",
            ),
            ("global-auth-response-headers", "X-Auth-Request-User"),
            ("global-auth-cache-key", "$cookie__oauth2_proxy"),
            ("global-auth-always-set-cookie", "true"),
            ("no-auth-locations", "/.well-known/acme-challenge, /healthz"),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let Global::On(auth) = &d.global_auth else {
            panic!("{:?}", d.global_auth)
        };
        assert!(auth.global && auth.always_set_cookie && auth.cache.is_some());
        assert_eq!(auth.response_headers, ["x-auth-request-user"]);
        assert_eq!(
            d.no_auth_locations,
            ["/.well-known/acme-challenge", "/healthz"]
        );

        let (d, diagnostics) = read_pairs(&[
            ("global-auth-url", "http://auth/"),
            ("global-auth-method", "get"),
            ("global-auth-snippet", "proxy_set_header X 1;"),
        ]);
        assert!(
            matches!(d.global_auth, Global::Invalid(_)),
            "{:?}",
            d.global_auth
        );
        let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("global-auth-method") && m.contains("503")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("global-auth-snippet") && m.contains("refused"))
        );
        let (d, _) = read_pairs(&[("global-auth-url", "")]);
        assert_eq!(d.global_auth, Global::Off);
        assert_eq!(d.no_auth_locations, ["/.well-known/acme-challenge"]);
    }

    #[test]
    fn a_missing_configmap_is_reported_and_the_flags_apply() {
        let mut diagnostics = Vec::new();
        let flags = Defaults {
            ssl_redirect: false,
            ..Defaults::default()
        };
        let d = defaults(&Input::default(), Some(&object()), &flags, &mut diagnostics);
        assert_eq!(d, flags);
        assert_eq!(diagnostics[0].reason, Reason::ConfigMapNotFound);
        let mut none = Vec::new();
        assert_eq!(defaults(&Input::default(), None, &flags, &mut none), flags);
        assert!(none.is_empty());
    }
}

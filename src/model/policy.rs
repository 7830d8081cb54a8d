//! The typed behaviour of a route beyond "forward to the backend": what its Ingress's
//! annotations, the controller's ConfigMap and the flags say, resolved once per table so that
//! the data plane reads final values and parses nothing per request.
//!
//! Precedence, resolved by the model: the annotation (weir's `weir.dev/` key, else
//! ingress-nginx's), else the ConfigMap key of the same name, else the flag's default
//! ([`Defaults`]).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use super::access::{Access, Cors, IpList, RateLimits};
use super::balance::{Balance, LoadBalance};
use super::client_address::ClientAddress;
use super::connection::ConnectionLimits;
use super::error_pages::ErrorPages;
use super::external_auth::ExternalAuth;
use super::mirror::Mirror;
use super::paths::Template;
use super::retry::Retry;
use super::upstream::Upstream;

/// Controller-wide defaults for what annotations can change: the flags' values, overridden by
/// the ingress-nginx-style ConfigMap (see [`configmap`](super::configmap)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// The route timeouts (`proxy-connect-timeout`, `proxy-send-timeout`,
    /// `proxy-read-timeout`).
    pub timeouts: Timeouts,
    /// The largest request body (`proxy-body-size`); `None`: unlimited.
    pub max_body_size: Option<u64>,
    /// `ssl-redirect`: redirect plain HTTP to HTTPS on hosts with TLS.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect plain HTTP to HTTPS even on hosts without TLS.
    pub force_ssl_redirect: bool,
    /// The status of HTTP→HTTPS redirects (`http-redirect-code`).
    pub https_redirect_code: StatusCode,
    /// `preserve-trailing-slash`: HTTPS redirects keep a trailing slash.
    pub preserve_trailing_slash: bool,
    /// `Strict-Transport-Security` on HTTPS responses of TLS hosts.
    pub hsts: Hsts,
    /// `use-port-in-redirects`: redirects weir makes keep the port the client used.
    pub use_port_in_redirects: bool,
    /// `relative-redirects`: redirects weir makes itself name only the path.
    pub relative_redirects: bool,
    /// The ConfigMap's `global-auth-*` keys: external authentication for every Ingress that
    /// has no `auth-url` of its own and does not set `enable-global-auth: "false"`.
    pub global_auth: Global<Arc<ExternalAuth>>,
    /// The ConfigMap's `whitelist-source-range`: the allowlist of every Ingress without one
    /// of its own.
    pub allow_sources: Global<IpList>,
    /// The ConfigMap's `denylist-source-range`: the denylist of every Ingress without one of
    /// its own.
    pub deny_sources: Global<IpList>,
    /// The status of a request over a rate limit (`limit-req-status-code`, default 503).
    pub limit_req_status: StatusCode,
    /// The status of a request over `limit-connections` (`limit-conn-status-code`, default
    /// 503).
    pub limit_conn_status: StatusCode,
    /// Who the client is behind load balancers (PROXY protocol, forwarded headers).
    pub client_address: ClientAddress,
    /// How many requests a client connection may carry.
    pub connection_limits: ConnectionLimits,
    /// `no-auth-locations`: Ingress paths starting with one of these skip global auth.
    pub no_auth_locations: Vec<String>,
    /// `load-balance`: the algorithm of routes without their own (default round robin).
    pub load_balance: LoadBalance,
    /// The ConfigMap's `custom-http-errors`: the statuses of every route without the
    /// annotation that go to the error backend (sorted; empty: none).
    pub custom_http_errors: Vec<u16>,
    /// `proxy-next-upstream`, `-tries`, `-timeout` (and `retry-non-idempotent`): when a
    /// request goes on to another endpoint.
    pub retry: Retry,
    /// The ConfigMap's `retry-non-idempotent`: `non_idempotent` is added to every route's
    /// `proxy-next-upstream`, its annotation's too (as ingress-nginx's template does).
    pub retry_non_idempotent: bool,
}

/// A ConfigMap setting about access that applies to every Ingress without its own (global
/// authentication, source lists).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Global<T> {
    /// Not set.
    #[default]
    Off,
    /// Set to this.
    On(T),
    /// Set but invalid (the message says why): the routes it would cover answer 503 rather
    /// than serve without it.
    Invalid(Arc<str>),
}

/// The `Strict-Transport-Security` settings (`hsts*` flags and ConfigMap keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    /// Send it at all.
    pub enabled: bool,
    /// `max-age`.
    pub max_age: Duration,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
    /// `preload`.
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Hsts {
            enabled: true,
            max_age: Duration::from_secs(31_536_000),
            include_subdomains: false,
            preload: false,
        }
    }
}

impl Hsts {
    /// The header value, `None` when off.
    pub fn header(&self) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let mut value = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        Some(HeaderValue::try_from(value).expect("digits and ASCII are a valid header value"))
    }
}

impl Default for Defaults {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        Defaults {
            timeouts: Timeouts::default(),
            max_body_size: Some(1024 * 1024),
            ssl_redirect: true,
            force_ssl_redirect: false,
            https_redirect_code: StatusCode::PERMANENT_REDIRECT,
            preserve_trailing_slash: false,
            hsts: Hsts::default(),
            use_port_in_redirects: false,
            relative_redirects: false,
            global_auth: Global::Off,
            allow_sources: Global::Off,
            deny_sources: Global::Off,
            limit_req_status: StatusCode::SERVICE_UNAVAILABLE,
            limit_conn_status: StatusCode::SERVICE_UNAVAILABLE,
            client_address: ClientAddress::default(),
            connection_limits: ConnectionLimits::default(),
            no_auth_locations: vec!["/.well-known/acme-challenge".to_owned()],
            load_balance: LoadBalance::RoundRobin,
            custom_http_errors: Vec::new(),
            retry: Retry::default(),
            retry_non_idempotent: false,
        }
    }
}

/// How long each step of talking to an endpoint may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection (`proxy-connect-timeout`; then the next endpoint, or 504).
    pub connect: Duration,
    /// Each write of the request body to the endpoint (`proxy-send-timeout`; then 504).
    pub send: Duration,
    /// The endpoint's silence: from the end of the request body to its response head (then
    /// 504), and between reads of its response body (then the response is cut off)
    /// (`proxy-read-timeout`).
    pub read: Duration,
    /// How long an upgraded connection (WebSocket) may carry nothing in either direction:
    /// `proxy-read-timeout` when an annotation or the ConfigMap sets it, else
    /// `--tunnel-idle-timeout`.
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            send: Duration::from_secs(60),
            read: Duration::from_secs(60),
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

/// How a route treats plain HTTP and HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsPolicy {
    /// The route's host has a `spec.tls` entry.
    pub tls_host: bool,
    /// Plain-HTTP requests are redirected to HTTPS: the host has TLS and `ssl-redirect` is not
    /// false, or `force-ssl-redirect` is true.
    pub redirect: bool,
    /// The status of that redirect (`http-redirect-code`, default 308).
    pub redirect_code: StatusCode,
    /// `Strict-Transport-Security` for this route's HTTPS responses (only on TLS hosts).
    pub hsts: Option<HeaderValue>,
    /// `preserve-trailing-slash`: the redirect keeps a trailing slash of the request target;
    /// without it one is removed, as ingress-nginx does (`/foo/` → `https://host/foo`).
    pub preserve_trailing_slash: bool,
}

impl Default for HttpsPolicy {
    /// A host without TLS, no redirect.
    fn default() -> Self {
        HttpsPolicy {
            tls_host: false,
            redirect: false,
            redirect_code: StatusCode::PERMANENT_REDIRECT,
            hsts: None,
            preserve_trailing_slash: false,
        }
    }
}

/// A redirect that replaces forwarding (`permanent-redirect`, `temporal-redirect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 3xx.
    pub code: StatusCode,
    /// The `Location`, as written in the annotation (an absolute URL).
    pub location: HeaderValue,
}

/// Changes to the request on its way to the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `rewrite-target`: the path the endpoint receives, with `$1`…`$9` standing for the
    /// capture groups of the route's path regex.
    pub target: Option<Template>,
    /// `x-forwarded-prefix`: sent as `X-Forwarded-Prefix` with a rewritten request (`$1`…`$9`
    /// expanded like the target's).
    pub forwarded_prefix: Option<Template>,
    /// `upstream-vhost`: the `Host` the endpoint receives.
    pub upstream_vhost: Option<HeaderValue>,
}

impl Rewrite {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.forwarded_prefix.is_none() && self.upstream_vhost.is_none()
    }
}

/// Everything a route does beyond forwarding, shared by the routes of one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Why the route refuses every request with 503, when one of its access-relevant
    /// annotations is invalid (fail closed). The message names the annotation.
    pub refused: Option<Arc<str>>,
    /// `permanent-redirect` / `temporal-redirect`: answer with this redirect, never forward.
    pub redirect: Option<Redirect>,
    /// Path and header changes on the way to the endpoint.
    pub rewrite: Rewrite,
    /// Timeouts towards the endpoint.
    pub timeouts: Timeouts,
    /// The largest request body accepted (413 above); `None`: unlimited.
    pub max_body_size: Option<u64>,
    /// `use-port-in-redirects`: redirects weir makes itself keep the port of the client's
    /// `Host` (and HTTPS redirects name the HTTPS port even when it is 443).
    pub use_port_in_redirects: bool,
    /// `relative-redirects`: redirects weir makes itself (trailing slash) name only the path.
    pub relative_redirects: bool,
    /// `enable-access-log`: requests of this route are written to the access log.
    pub access_log: bool,
    /// Who may use the route (source lists, authentication); `None`: everybody.
    pub access: Option<Arc<Access>>,
    /// `enable-cors`: preflights answered and CORS headers on responses.
    pub cors: Option<Arc<Cors>>,
    /// `limit-rps`, `limit-rpm`, `limit-connections`: requests per client address.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// `limit-rate`, `limit-rate-after`: how fast responses are sent.
    pub response_rate: Option<ResponseRate>,
    /// `backend-protocol` and `proxy-ssl-*`: how the endpoints are reached.
    pub upstream: Upstream,
    /// `load-balance`, `upstream-hash-by`, `affinity`: how the endpoint is chosen.
    pub balance: Balance,
    /// `custom-http-errors` and `default-backend`: error responses replaced by the error
    /// backend's page.
    pub custom_errors: Option<Arc<ErrorPages>>,
    /// `mirror-target`: a copy of each request goes there.
    pub mirror: Option<Arc<Mirror>>,
    /// `proxy-next-upstream*`: when a request goes on to another endpoint.
    pub retry: Retry,
}

/// `limit-rate` and `limit-rate-after`: each response is sent at most this fast once its first
/// `after` bytes are out (nginx's `limit_rate`, per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseRate {
    /// Bytes per second.
    pub bytes_per_second: u64,
    /// Bytes sent at full speed first.
    pub after: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_defaults(&Defaults::default())
    }
}

impl Policy {
    /// The policy of a route without annotations.
    pub fn from_defaults(defaults: &Defaults) -> Self {
        Policy {
            refused: None,
            redirect: None,
            rewrite: Rewrite::default(),
            timeouts: defaults.timeouts,
            max_body_size: defaults.max_body_size,
            use_port_in_redirects: defaults.use_port_in_redirects,
            relative_redirects: defaults.relative_redirects,
            access_log: true,
            access: None,
            cors: None,
            rate_limits: None,
            response_rate: None,
            upstream: Upstream::default(),
            balance: Balance::with_load(defaults.load_balance),
            custom_errors: None,
            mirror: None,
            retry: defaults.retry,
        }
    }
}

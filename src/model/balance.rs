//! How a route chooses among its backend's endpoints, as ingress-nginx's Lua balancer does
//! (`balancer.lua`'s choice of implementation): cookie affinity (`affinity: cookie`) first,
//! else consistent hashing (`upstream-hash-by`, over subsets with `upstream-hash-by-subset`),
//! else the `load-balance` algorithm (`round_robin`, `ewma`).
//!
//! These are the typed settings, parsed once per table (annotation, else the ConfigMap's
//! `load-balance`, else round robin); the balancers themselves live beside the table
//! (`state::Balancer`).

use std::num::NonZeroU32;
use std::sync::Arc;

use super::variables::Expr;

/// The `load-balance` algorithm of a backend without affinity or hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalance {
    /// `round_robin`: each endpoint in turn.
    #[default]
    RoundRobin,
    /// `ewma`: the better of two random endpoints by peak-EWMA latency and requests in flight.
    Ewma,
}

impl LoadBalance {
    /// The algorithm named `value` (`round_robin`, `ewma`), as ingress-nginx writes them.
    pub fn parse(value: &str) -> Option<LoadBalance> {
        match value.trim() {
            "round_robin" => Some(LoadBalance::RoundRobin),
            "ewma" => Some(LoadBalance::Ewma),
            _ => None,
        }
    }
}

/// What [`LoadBalance::parse`] accepts, for messages.
pub const LOAD_BALANCE: &str = "it must be \"round_robin\" or \"ewma\"";

/// `upstream-hash-by`: the key whose consistent hash chooses the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashBy {
    /// The key: text and nginx variables (`$request_uri`, `$host$request_uri`, …).
    pub key: Expr,
    /// `upstream-hash-by-subset`: the key chooses a subset of this many endpoints, and the
    /// endpoint is a random one of it (`upstream-hash-by-subset-size`, default 3).
    pub subset: Option<NonZeroU32>,
}

/// `affinity-mode`: what happens to sessions when endpoints are added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AffinityMode {
    /// `balanced`: the cookie holds a key on a consistent-hash ring; adding endpoints moves
    /// some sessions to them.
    #[default]
    Balanced,
    /// `persistent`: the cookie names its endpoint (as an opaque hash); a session stays on it
    /// for as long as it exists.
    Persistent,
}

/// `affinity-canary-behavior`: whether a session on a canary stays there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CanaryBehavior {
    /// `sticky`: requests whose affinity cookie names the canary's backend keep going to it.
    #[default]
    Sticky,
    /// `legacy`: the canary keeps its own affinity settings (often none), so a request the
    /// canary served does not come back to it for its cookie.
    Legacy,
}

/// The `SameSite` attribute of the affinity cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// `SameSite=None`.
    None,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

impl SameSite {
    /// The attribute's value as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// The affinity cookie's name and attributes (`session-cookie-*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionCookie {
    /// `session-cookie-name` (default `INGRESSCOOKIE`).
    pub name: String,
    /// `session-cookie-path`; without it the route's rule path (`/` for a regex path).
    pub path: Option<String>,
    /// `session-cookie-domain`.
    pub domain: Option<String>,
    /// `session-cookie-expires`: `Expires` this many seconds after the response.
    pub expires: Option<i64>,
    /// `session-cookie-max-age`: `Max-Age`.
    pub max_age: Option<i64>,
    /// `session-cookie-samesite`.
    pub same_site: Option<SameSite>,
    /// `session-cookie-conditional-samesite-none`: no `SameSite=None` for the browsers that
    /// reject such cookies.
    pub conditional_same_site_none: bool,
    /// `session-cookie-secure`: `Secure` even on plain HTTP (it is always set on HTTPS).
    pub secure: bool,
    /// `session-cookie-change-on-failure`: a retry after a failed endpoint gets a new cookie
    /// for the endpoint that answered.
    pub change_on_failure: bool,
}

impl Default for SessionCookie {
    fn default() -> Self {
        SessionCookie {
            name: "INGRESSCOOKIE".to_owned(),
            path: None,
            domain: None,
            expires: None,
            max_age: None,
            same_site: None,
            conditional_same_site_none: false,
            secure: false,
            change_on_failure: false,
        }
    }
}

/// `affinity: cookie` and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Affinity {
    /// `affinity-mode`.
    pub mode: AffinityMode,
    /// `affinity-canary-behavior`.
    pub canary: CanaryBehavior,
    /// The cookie.
    pub cookie: SessionCookie,
}

/// How a route chooses its endpoint: the first of affinity, hashing and the algorithm that
/// is set, as in ingress-nginx.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Balance {
    /// `load-balance` (annotation, else ConfigMap, else round robin).
    pub load: LoadBalance,
    /// `upstream-hash-by`.
    pub hash_by: Option<HashBy>,
    /// `affinity: cookie`.
    pub affinity: Option<Arc<Affinity>>,
}

impl Balance {
    /// A balance of the algorithm `load` only.
    pub fn with_load(load: LoadBalance) -> Self {
        Balance {
            load,
            ..Balance::default()
        }
    }
}

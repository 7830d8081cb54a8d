//! The routing table: an immutable map from (host, path) to a [`Route`].
//!
//! Matching follows `networking.k8s.io/v1` Ingress semantics, with ingress-nginx's behaviours
//! where they differ from the bare specification:
//! - Hosts: an exact host (or a `server-alias` of one) wins over a wildcard (`*.example.com`
//!   covers exactly one extra leftmost label), which wins over rules without a host. Hosts
//!   compare case-insensitively; the caller strips `:port` with [`normalize_host`].
//! - Paths, within the chosen host: `Exact` is byte-equal; `Prefix` compares `/`-separated
//!   elements, ignoring a trailing slash on the rule. The longest match wins and on equal length
//!   Exact beats Prefix, whatever the order of the rules. `ImplementationSpecific` is Prefix.
//!   A request for `/app` that only a Prefix rule written `/app/` covers is redirected to
//!   `/app/` ([`PathMatch::AddSlash`]), as nginx does for such locations.
//! - A host with a regex rule (`use-regex`, `rewrite-target`) has all its paths matched as
//!   regexes ([`PathRegex`]: case-insensitive, anchored at the start), longest path string
//!   first, the first match winning — ingress-nginx's order.
//! - A host that matches with no matching path falls back to the default backend of the
//!   Ingress that defined that host, then to the controller's default backend
//!   (`--default-backend-service`), else no route (404). A host no rule names goes to the rules
//!   without a host, then to the `spec.defaultBackend` of a rule-less Ingress, then to the
//!   controller's default backend.
//!
//! Lookups are hash probes: one for the exact path, then one per path element for prefixes, so
//! the cost does not grow with the number of rules (regex hosts test their regexes in order).
//!
//! A TLS client's SNI finds its host the same way as a request's Host does (exact, then a
//! wildcard covering one more label): [`RouteTable::client_auth`] and
//! [`RouteTable::passthrough`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;

use super::canary::Canary;
use super::client_address::ClientAddress;
use super::client_auth::HostClientAuth;
use super::connection::{Connection, ConnectionLimits};
use super::diagnostic::ObjectRef;
use super::paths::PathRegex;
pub use super::policy::{HttpsPolicy, Policy};

/// The maps looked up on every request: foldhash instead of SipHash (the keys come from the
/// table, so flooding them is not the client's to do).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which hosts a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// One host, lower-case, e.g. `foo.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the lower-case suffix after `*.` (`example.com`).
    Wildcard(String),
    /// A rule without a host: every host.
    Any,
}

impl HostMatch {
    /// Classifies a rule host as written in an Ingress (`""` means every host). Does not
    /// validate it; the builder does.
    pub fn from_rule_host(host: &str) -> HostMatch {
        if host.is_empty() {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Wildcard(suffix.to_ascii_lowercase())
        } else {
            HostMatch::Exact(host.to_ascii_lowercase())
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*.{s}"),
            HostMatch::Any => f.write_str("*"),
        }
    }
}

/// How a rule path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// Byte-equal, case-sensitive.
    Exact,
    /// Element-wise prefix on `/`-separated paths (also used for ImplementationSpecific).
    Prefix,
    /// A regex on a host whose paths are regexes (see [`PathRegex`]).
    Regex,
}

/// A rule path in its matching form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathRule {
    /// Exact, Prefix or Regex.
    pub kind: PathKind,
    /// The path; for Prefix without its trailing slash (`/` stays `/`).
    pub path: String,
    /// A Prefix rule written with a trailing slash (`/app/`): a request for the path without
    /// it is redirected to it.
    pub trailing_slash: bool,
}

impl PathRule {
    /// An Exact rule.
    pub fn exact(path: impl Into<String>) -> Self {
        PathRule {
            kind: PathKind::Exact,
            path: path.into(),
            trailing_slash: false,
        }
    }

    /// A Prefix rule; a trailing slash is ignored for matching, as the Ingress specification
    /// says, and remembered for the trailing-slash redirect.
    pub fn prefix(path: &str) -> Self {
        let trimmed = trim_trailing_slashes(path);
        PathRule {
            kind: PathKind::Prefix,
            path: trimmed.to_owned(),
            trailing_slash: trimmed != "/" && path.ends_with('/'),
        }
    }

    /// A regex rule (the path as written; the route carries its compiled [`PathRegex`]).
    pub fn regex(path: impl Into<String>) -> Self {
        PathRule {
            kind: PathKind::Regex,
            path: path.into(),
            trailing_slash: false,
        }
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::Regex => "Regex",
        };
        write!(f, "{} {}", kind, self.path)
    }
}

/// Where requests of a route go: one Service port and its ready endpoints. A backend with no
/// endpoints is still a backend: requests to it are answered 503. Which endpoint serves a
/// request is the data plane's choice (its balancer state lives beside the table, not in it).
#[derive(Debug, PartialEq, Eq)]
pub struct Backend {
    /// The Service (namespace and name).
    pub service: ObjectRef,
    /// The Service port as the Ingress named it (a number or a name), for logs and metrics.
    pub port: String,
    /// Ready endpoint addresses, sorted and without duplicates.
    pub endpoints: Vec<SocketAddr>,
}

impl Backend {
    /// A backend for `service` port `port` with the given endpoints (sorted and deduplicated
    /// here so that equal inputs give equal backends).
    pub fn new(
        service: ObjectRef,
        port: impl Into<String>,
        mut endpoints: Vec<SocketAddr>,
    ) -> Self {
        endpoints.sort_unstable();
        endpoints.dedup();
        Backend {
            service,
            port: port.into(),
            endpoints,
        }
    }
}

/// What a matched request is served by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The Ingress that defined this route (for the controller's default backend: its
    /// Service).
    pub ingress: ObjectRef,
    /// The backend that serves it.
    pub backend: Arc<Backend>,
    /// Redirect and HSTS behaviour on this route's host.
    pub https: HttpsPolicy,
    /// What the Ingress's annotations ask for, shared by its routes.
    pub policy: Arc<Policy>,
    /// The rule path as a regex, on hosts whose paths are regexes (`rewrite-target` expands
    /// its capture groups).
    pub regex: Option<PathRegex>,
    /// The rule it was made for (its host and path; empty for default backends): what keeps
    /// per-route state apart where routes of one Ingress must not share it (the external
    /// authentication cache).
    pub location: Arc<str>,
    /// A second backend from a canary Ingress for the same host and path, and which requests
    /// go to it.
    pub canary: Option<Arc<Canary>>,
}

impl Route {
    /// A route of `ingress` to `backend` without annotations (ingress-nginx's defaults).
    pub fn new(ingress: ObjectRef, backend: Arc<Backend>) -> Self {
        Route {
            ingress,
            backend,
            https: HttpsPolicy::default(),
            policy: Arc::new(Policy::default()),
            regex: None,
            location: Arc::from(""),
            canary: None,
        }
    }

    /// The name of the Ingress that defined the route; empty for the controller's default
    /// backend (`--default-backend-service`), which no Ingress defined.
    pub fn ingress_name(&self) -> &str {
        match self.ingress.kind {
            super::ObjectKind::Ingress => &self.ingress.name,
            _ => "",
        }
    }
}

/// Settings of a whole host (from host-scope annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// `app-root`: requests for `/` are redirected (302) to this path.
    pub app_root: Option<HeaderValue>,
    /// `from-to-www-redirect`: every request for this host is redirected to another host
    /// name (the host has no rules of its own).
    pub redirect_to: Option<HostRedirect>,
    /// `auth-tls-*`: client certificates, asked for in the handshake when the SNI names this
    /// host and checked on every request to it; or, when they cannot be set up, every request
    /// refused.
    pub client_auth: Option<HostClientAuth>,
    /// `ssl-passthrough`: TLS connections whose SNI names this host go, unopened, to a
    /// backend (with `--enable-ssl-passthrough`).
    pub passthrough: Option<Passthrough>,
}

/// Where the TLS connections of a host with `ssl-passthrough` go: weir reads the SNI of their
/// ClientHello and splices the connection, unterminated, to one endpoint of the backend.
/// Nothing about HTTP applies to them; plain-HTTP requests to the host are routed as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// The Ingress that asked for it (the oldest Ingress that names the host).
    pub ingress: ObjectRef,
    /// The route whose backend gets the connections: the Ingress's rule for path `/` on the
    /// host, else its `spec.defaultBackend`. `None` when it has neither: the connections are
    /// closed (never terminated by weir in its place).
    pub route: Option<Arc<Route>>,
}

impl Passthrough {
    /// The backend the connections go to, when there is one.
    pub fn backend(&self) -> Option<&Arc<Backend>> {
        self.route.as_ref().map(|route| &route.backend)
    }
}

/// Where a host redirects every request (`from-to-www-redirect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRedirect {
    /// The host name to redirect to.
    pub host: String,
    /// The status (`http-redirect-code`, default 308).
    pub code: http::StatusCode,
}

impl HostSettings {
    /// True when the host has no settings.
    pub fn is_empty(&self) -> bool {
        self.app_root.is_none()
            && self.redirect_to.is_none()
            && self.client_auth.is_none()
            && self.passthrough.is_none()
    }
}

/// A Prefix route and whether its rule was written with a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrefixRoute {
    route: Arc<Route>,
    trailing_slash: bool,
}

/// The routes of one host (or of the wildcard or any-host rules). Cloned only to change a host
/// that an earlier table shares (copy on write): a build reuses the `Arc` of each host whose
/// Ingresses did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRoutes {
    exact: FastMap<String, Arc<Route>>,
    prefix: FastMap<String, PrefixRoute>,
    /// On a host whose paths are regexes: all of them, in matching order.
    regex: Vec<(PathRegex, Arc<Route>)>,
    fallback: Option<Arc<Route>>,
    settings: HostSettings,
}

/// What a request path matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch<'a> {
    /// Serve the request with this route.
    Route(&'a Arc<Route>),
    /// The path lacks the trailing slash of the Prefix rule of this route (`/app` for a rule
    /// written `/app/`): redirect (301) to the path with the slash.
    AddSlash(&'a Arc<Route>),
}

impl<'a> PathMatch<'a> {
    /// The route, whatever the match.
    pub fn route(self) -> &'a Arc<Route> {
        match self {
            PathMatch::Route(route) | PathMatch::AddSlash(route) => route,
        }
    }
}

impl HostRoutes {
    fn route(&self, path: &str) -> Option<PathMatch<'_>> {
        if !self.regex.is_empty() {
            return self
                .regex
                .iter()
                .find(|(regex, _)| regex.is_match(path))
                .map(|(_, route)| PathMatch::Route(route))
                .or_else(|| self.fallback.as_ref().map(PathMatch::Route));
        }
        if let Some(route) = self.exact.get(path) {
            return Some(PathMatch::Route(route));
        }
        if !self.prefix.is_empty() {
            // Candidates from the longest to the shortest: the path without trailing slashes,
            // then the path cut before each earlier `/`, then `/`.
            let mut candidate = trim_trailing_slashes(path);
            loop {
                if let Some(found) = self.prefix.get(candidate) {
                    if found.trailing_slash && candidate.len() == path.len() {
                        return Some(PathMatch::AddSlash(&found.route));
                    }
                    return Some(PathMatch::Route(&found.route));
                }
                match candidate.rfind('/') {
                    Some(0) | None if candidate == "/" => break,
                    Some(0) | None => candidate = "/",
                    Some(i) => candidate = trim_trailing_slashes(&candidate[..i]),
                }
            }
        }
        self.fallback.as_ref().map(PathMatch::Route)
    }
}

/// What the table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// The settings of the host the request is for (`None`: a host no rule names, or one
    /// without settings).
    pub host: Option<&'a HostSettings>,
    /// What the path matched, if anything.
    pub path: Option<PathMatch<'a>>,
}

/// An immutable routing table. Build one with [`RouteTableBuilder`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    exact_hosts: FastMap<String, Arc<HostRoutes>>,
    wildcard_hosts: FastMap<String, Arc<HostRoutes>>,
    /// The names in `exact_hosts` and `wildcard_hosts` that are aliases of another host.
    aliases: Vec<HostMatch>,
    any_host: HostRoutes,
    /// The `spec.defaultBackend` of a rule-less Ingress: for hosts no rule names.
    catch_all: Option<Arc<Route>>,
    /// `--default-backend-service`: for whatever nothing else serves.
    default_backend: Option<Arc<Route>>,
    route_count: usize,
    /// Some host has a client-certificate policy.
    client_auth: bool,
    /// Some host passes its TLS connections through.
    passthrough: bool,
    /// What each client connection takes from the table when it is accepted.
    connection: Arc<Connection>,
}

impl RouteTable {
    /// What a client connection takes from the table when it is accepted: how its client is
    /// found (PROXY protocol, forwarded headers), how many requests it may carry.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// This table with connections' clients found by `rules` (a table is otherwise built with
    /// the controller's [`Defaults`](super::Defaults)).
    pub fn with_client_address(mut self, rules: ClientAddress) -> Self {
        Arc::make_mut(&mut self.connection).client_address = Arc::new(rules);
        self
    }

    /// This table with client connections limited by `limits`.
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        Arc::make_mut(&mut self.connection).limits = limits;
        self
    }

    /// An empty table: every request gets no route.
    pub fn empty() -> Self {
        RouteTable::default()
    }

    /// Whether some host asks for client certificates (the TLS listener then reads each
    /// ClientHello's SNI before choosing its configuration).
    pub fn has_client_auth(&self) -> bool {
        self.client_auth
    }

    /// The client-certificate setting of the host a TLS client names in its SNI (normalised,
    /// as for [`RouteTable::lookup`]).
    pub fn client_auth(&self, host: &str) -> Option<&HostClientAuth> {
        if !self.client_auth {
            return None;
        }
        self.named_host(host)?.settings.client_auth.as_ref()
    }

    /// Whether some host passes its TLS connections through (the TLS listener then reads each
    /// ClientHello's SNI itself before handing the connection to rustls).
    pub fn has_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Where the TLS connections go whose SNI names `host` (lower-case, without a trailing
    /// dot), when that host passes them through: the host a request for `host` would be
    /// routed to, exact name first, then a wildcard covering one more label (so an exact host
    /// without `ssl-passthrough` keeps its connections though a wildcard above it has it).
    pub fn passthrough(&self, host: &str) -> Option<&Passthrough> {
        if !self.passthrough {
            return None;
        }
        self.named_host(host)?.settings.passthrough.as_ref()
    }

    /// The routes of the host that serves requests for `host` (normalised): its exact entry,
    /// else the wildcard covering it.
    fn named_host(&self, host: &str) -> Option<&Arc<HostRoutes>> {
        self.exact_hosts.get(host).or_else(|| {
            let (first, suffix) = host.split_once('.')?;
            if first.is_empty() {
                return None;
            }
            self.wildcard_hosts.get(suffix)
        })
    }

    /// What the table says about a request. `host` must already be normalized
    /// ([`normalize_host`]); `path` is the request's [`routing_path`](super::routing_path),
    /// without the query string.
    pub fn lookup(&self, host: &str, path: &str) -> Lookup<'_> {
        match self.named_host(host) {
            Some(routes) => Lookup {
                host: (!routes.settings.is_empty()).then_some(&routes.settings),
                path: routes
                    .route(path)
                    .or_else(|| self.default_backend.as_ref().map(PathMatch::Route)),
            },
            None => Lookup {
                host: None,
                path: self.any_host.route(path).or_else(|| {
                    self.catch_all
                        .as_ref()
                        .or(self.default_backend.as_ref())
                        .map(PathMatch::Route)
                }),
            },
        }
    }

    /// The route that serves a request (after a trailing-slash redirect, if the path needs
    /// one). `host` and `path` as for [`RouteTable::lookup`].
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.lookup(host, path).path.map(PathMatch::route)
    }

    /// How many (host, path) rules the table holds, default backends not counted.
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    /// The routes of an exact or wildcard `host` as the table holds them (`None` for
    /// [`HostMatch::Any`] and hosts no rule names): a host that did not change between two
    /// tables is the same `Arc` in both.
    #[cfg(test)]
    pub(crate) fn host_routes(&self, host: &HostMatch) -> Option<&Arc<HostRoutes>> {
        match host {
            HostMatch::Exact(h) => self.exact_hosts.get(h),
            HostMatch::Wildcard(s) => self.wildcard_hosts.get(s),
            HostMatch::Any => None,
        }
    }

    /// Every entry of the table with the rule host and path it is reached by (`""` for rules
    /// without a host and for default backends), so that data kept per route (metrics) can be
    /// prepared once per table. A route shared by several entries (an Ingress's default backend
    /// serving each of its hosts) comes once per entry. Aliases are not listed again.
    pub fn entries(&self) -> impl Iterator<Item = TableEntry<'_>> {
        let is_alias = |host: HostMatch| self.aliases.contains(&host);
        let exact = self
            .exact_hosts
            .iter()
            .filter(move |(host, _)| {
                self.aliases.is_empty() || !is_alias(HostMatch::Exact((*host).clone()))
            })
            .flat_map(|(host, routes)| routes.entries(RuleHost::Exact(host)));
        let wildcard = self
            .wildcard_hosts
            .iter()
            .filter(move |(suffix, _)| {
                self.aliases.is_empty() || !is_alias(HostMatch::Wildcard((*suffix).clone()))
            })
            .flat_map(|(suffix, routes)| routes.entries(RuleHost::Wildcard(suffix)));
        let defaults = self
            .catch_all
            .iter()
            .chain(&self.default_backend)
            .map(|route| TableEntry {
                host: RuleHost::Any,
                path: "",
                kind: None,
                route,
            });
        exact
            .chain(wildcard)
            .chain(self.any_host.entries(RuleHost::Any))
            .chain(defaults)
    }

    /// The settings of every host that has some, with the host.
    pub fn host_settings(&self) -> impl Iterator<Item = (HostMatch, &HostSettings)> {
        let exact = self
            .exact_hosts
            .iter()
            .map(|(h, r)| (HostMatch::Exact(h.clone()), &r.settings));
        let wildcard = self
            .wildcard_hosts
            .iter()
            .map(|(h, r)| (HostMatch::Wildcard(h.clone()), &r.settings));
        exact
            .chain(wildcard)
            .filter(|(host, settings)| !settings.is_empty() && !self.aliases.contains(host))
    }
}

/// The host of a [`TableEntry`]; displays as written in the rule (`foo.example.com`,
/// `*.example.com`), or `""` for every host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleHost<'a> {
    /// One host.
    Exact(&'a str),
    /// `*.` and this suffix.
    Wildcard(&'a str),
    /// Every host (also default backends).
    Any,
}

impl fmt::Display for RuleHost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleHost::Exact(host) => f.write_str(host),
            RuleHost::Wildcard(suffix) => write!(f, "*.{suffix}"),
            RuleHost::Any => Ok(()),
        }
    }
}

/// One entry of a [`RouteTable`]: a rule (or default backend) and its route.
#[derive(Debug)]
pub struct TableEntry<'a> {
    /// The rule's host.
    pub host: RuleHost<'a>,
    /// The rule path (without a Prefix rule's trailing slash), `""` for a default backend.
    pub path: &'a str,
    /// How the path matches; `None` for a default backend.
    pub kind: Option<PathKind>,
    /// The route it leads to.
    pub route: &'a Arc<Route>,
}

impl HostRoutes {
    fn entries<'a>(&'a self, host: RuleHost<'a>) -> impl Iterator<Item = TableEntry<'a>> {
        let exact = self
            .exact
            .iter()
            .map(|(path, route)| (path.as_str(), Some(PathKind::Exact), route));
        let prefix = self
            .prefix
            .iter()
            .map(|(path, found)| (path.as_str(), Some(PathKind::Prefix), &found.route));
        let regex = self
            .regex
            .iter()
            .map(|(regex, route)| (regex.as_str(), Some(PathKind::Regex), route));
        let fallback = self.fallback.iter().map(|route| ("", None, route));
        exact
            .chain(prefix)
            .chain(regex)
            .chain(fallback)
            .map(move |(path, kind, route)| TableEntry {
                host,
                path,
                kind,
                route,
            })
    }
}

/// Collects routes into a [`RouteTable`]. The first route inserted for a key wins; insert in
/// precedence order (oldest Ingress first) and report the returned conflicts.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    /// Already in the `Arc`s the table keeps them in, so that building the table does not
    /// move every host again: the builder's own, or shared with an earlier table (adopted
    /// hosts, copied before a change: see [`own`]).
    exact_hosts: FastMap<String, Arc<HostRoutes>>,
    wildcard_hosts: FastMap<String, Arc<HostRoutes>>,
    any_host: HostRoutes,
    aliases: Vec<(HostMatch, HostMatch)>,
    catch_all: Option<Arc<Route>>,
    default_backend: Option<Arc<Route>>,
    route_count: usize,
    client_auth: bool,
    passthrough: bool,
    connection: Arc<Connection>,
    /// The hosts a regex rule was inserted into (their regexes are put in matching order when
    /// the table is built; adopted hosts are in order already).
    regex_inserted: Vec<HostMatch>,
}

impl RouteTableBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        RouteTableBuilder::default()
    }

    /// An empty builder with room for `hosts` exact hosts.
    pub fn with_capacity(hosts: usize) -> Self {
        RouteTableBuilder {
            exact_hosts: FastMap::with_capacity_and_hasher(hosts, Default::default()),
            ..RouteTableBuilder::default()
        }
    }

    fn host_routes(&mut self, host: &HostMatch) -> &mut HostRoutes {
        match host {
            HostMatch::Exact(h) => own(self.exact_hosts.entry(h.clone()).or_default()),
            HostMatch::Wildcard(s) => own(self.wildcard_hosts.entry(s.clone()).or_default()),
            HostMatch::Any => &mut self.any_host,
        }
    }

    /// Puts `host` in the table with routes an earlier build made (`routes` of them, as
    /// [`RouteTableBuilder::route_count`] counted them), shared until something changes
    /// them. `host` must not be in the builder yet, and must not be [`HostMatch::Any`].
    pub fn adopt_host(&mut self, host: &HostMatch, routes: Arc<HostRoutes>, count: usize) {
        let previous = match host {
            HostMatch::Exact(h) => self.exact_hosts.insert(h.clone(), routes),
            HostMatch::Wildcard(s) => self.wildcard_hosts.insert(s.clone(), routes),
            HostMatch::Any => unreachable!("the routes for all hosts are not adopted"),
        };
        debug_assert!(previous.is_none(), "host {host} adopted twice");
        self.route_count += count;
    }

    /// The routes of `host` as filled in so far, to keep for a later build (see
    /// [`RouteTableBuilder::adopt_host`]): their regex paths in matching order. `None` for a
    /// host not in the builder and for [`HostMatch::Any`].
    pub fn host_to_keep(&mut self, host: &HostMatch) -> Option<Arc<HostRoutes>> {
        let routes = match host {
            HostMatch::Exact(h) => self.exact_hosts.get_mut(h)?,
            HostMatch::Wildcard(s) => self.wildcard_hosts.get_mut(s)?,
            HostMatch::Any => return None,
        };
        sort_regexes(routes);
        Some(routes.clone())
    }

    /// How many rules were inserted so far (adopted hosts' included).
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    /// Puts `host` in the table, with or without routes: a host some rule names is never
    /// served by the catch-all of hosts no rule names.
    pub fn declare_host(&mut self, host: &HostMatch) {
        self.host_routes(host);
    }

    /// Whether some rule or setting names `host`.
    pub fn has_host(&self, host: &HostMatch) -> bool {
        match host {
            HostMatch::Exact(h) => self.exact_hosts.contains_key(h),
            HostMatch::Wildcard(s) => self.wildcard_hosts.contains_key(s),
            HostMatch::Any => true,
        }
    }

    /// Adds a rule. If the key is taken, nothing changes and the route holding it is returned.
    /// A [`PathKind::Regex`] rule needs a route with its [`Route::regex`].
    pub fn insert(
        &mut self,
        host: &HostMatch,
        path: &PathRule,
        route: Arc<Route>,
    ) -> Result<(), Arc<Route>> {
        let routes = self.host_routes(host);
        match path.kind {
            PathKind::Exact => match routes.exact.entry(path.path.clone()) {
                Entry::Occupied(taken) => return Err(taken.get().clone()),
                Entry::Vacant(slot) => {
                    slot.insert(route);
                }
            },
            PathKind::Prefix => match routes.prefix.entry(path.path.clone()) {
                Entry::Occupied(taken) => return Err(taken.get().route.clone()),
                Entry::Vacant(slot) => {
                    slot.insert(PrefixRoute {
                        route,
                        trailing_slash: path.trailing_slash,
                    });
                }
            },
            PathKind::Regex => {
                if let Some((_, taken)) = routes.regex.iter().find(|(r, _)| r.as_str() == path.path)
                {
                    return Err(taken.clone());
                }
                let regex = route
                    .regex
                    .clone()
                    .expect("a regex rule's route carries its regex");
                routes.regex.push((regex, route));
                if self.regex_inserted.last() != Some(host) {
                    self.regex_inserted.push(host.clone());
                }
            }
        }
        self.route_count += 1;
        Ok(())
    }

    /// The route of the rule `path` on `host` as filled in so far.
    pub fn rule_route(&self, host: &HostMatch, path: &PathRule) -> Option<&Arc<Route>> {
        let routes = self.filled(host)?;
        match path.kind {
            PathKind::Exact => routes.exact.get(&path.path),
            PathKind::Prefix => routes.prefix.get(&path.path).map(|p| &p.route),
            PathKind::Regex => routes
                .regex
                .iter()
                .find(|(r, _)| r.as_str() == path.path)
                .map(|(_, route)| route),
        }
    }

    /// The route of the rule `path` on `host`, to change it before the table is built (a
    /// canary is added to the route of its main Ingress). Makes the host the builder's own (a
    /// copy, when an earlier table shares it): look with [`RouteTableBuilder::rule_route`]
    /// first when nothing may be written.
    pub fn rule_route_mut(&mut self, host: &HostMatch, path: &PathRule) -> Option<&mut Arc<Route>> {
        let routes = match host {
            HostMatch::Exact(h) => self.exact_hosts.get_mut(h).map(own),
            HostMatch::Wildcard(s) => self.wildcard_hosts.get_mut(s).map(own),
            HostMatch::Any => Some(&mut self.any_host),
        }?;
        match path.kind {
            PathKind::Exact => routes.exact.get_mut(&path.path),
            PathKind::Prefix => routes.prefix.get_mut(&path.path).map(|p| &mut p.route),
            PathKind::Regex => routes
                .regex
                .iter_mut()
                .find(|(r, _)| r.as_str() == path.path)
                .map(|(_, route)| route),
        }
    }

    /// Sets the route for requests to `host` that match no path (an Ingress's
    /// `spec.defaultBackend` for the hosts it defines). The first one set wins.
    pub fn set_host_fallback(
        &mut self,
        host: &HostMatch,
        route: Arc<Route>,
    ) -> Result<(), Arc<Route>> {
        let routes = self.host_routes(host);
        match &routes.fallback {
            Some(taken) => Err(taken.clone()),
            None => {
                routes.fallback = Some(route);
                Ok(())
            }
        }
    }

    /// Sets `host`'s `app-root` unless it has one already (the first one set wins). Returns
    /// whether it was set.
    pub fn set_app_root(&mut self, host: &HostMatch, app_root: HeaderValue) -> bool {
        if self.has_setting(host, |s| s.app_root.is_some()) {
            return false;
        }
        let settings = &mut self.host_routes(host).settings;
        settings.app_root = Some(app_root);
        true
    }

    /// Sets the client-certificate policy of `host`; false (unchanged) when it has one already.
    pub fn set_client_auth(&mut self, host: &HostMatch, auth: HostClientAuth) -> bool {
        if self.has_setting(host, |s| s.client_auth.is_some()) {
            return false;
        }
        let settings = &mut self.host_routes(host).settings;
        settings.client_auth = Some(auth);
        self.client_auth = true;
        true
    }

    /// Makes `host` pass its TLS connections through; false (unchanged) when it does already.
    pub fn set_passthrough(&mut self, host: &HostMatch, passthrough: Passthrough) -> bool {
        if self.has_setting(host, |s| s.passthrough.is_some()) {
            return false;
        }
        let settings = &mut self.host_routes(host).settings;
        settings.passthrough = Some(passthrough);
        self.passthrough = true;
        true
    }

    /// Whether `host` is in the builder with a setting `set` says is there (checked before the
    /// host is made the builder's own, which copies a shared one).
    fn has_setting(&self, host: &HostMatch, set: impl Fn(&HostSettings) -> bool) -> bool {
        self.filled(host)
            .is_some_and(|routes| set(&routes.settings))
    }

    /// The routes filled in so far for `host`, if some rule or setting names it.
    fn filled(&self, host: &HostMatch) -> Option<&HostRoutes> {
        match host {
            HostMatch::Exact(h) => self.exact_hosts.get(h).map(|r| &**r),
            HostMatch::Wildcard(s) => self.wildcard_hosts.get(s).map(|r| &**r),
            HostMatch::Any => Some(&self.any_host),
        }
    }

    /// The passthrough setting of `host`, if it has one.
    pub fn passthrough(&self, host: &HostMatch) -> Option<&Passthrough> {
        self.filled(host)?.settings.passthrough.as_ref()
    }

    /// The route of `ingress` that serves path `/` on `host` (exact, `/` prefix or regex, in
    /// that order), else its default backend for the host (`spec.defaultBackend`): what
    /// `ssl-passthrough` sends the host's TLS connections to, as ingress-nginx sends them to
    /// its `/` location.
    pub fn root_route(&self, host: &HostMatch, ingress: &ObjectRef) -> Option<Arc<Route>> {
        let routes = self.filled(host)?;
        let regex = routes
            .regex
            .iter()
            .filter(|(regex, _)| regex.as_str() == "/")
            .map(|(_, route)| route);
        routes
            .exact
            .get("/")
            .into_iter()
            .chain(routes.prefix.get("/").map(|p| &p.route))
            .chain(regex)
            .chain(&routes.fallback)
            .find(|route| route.ingress == *ingress)
            .cloned()
    }

    /// Makes `from` (a host no rule names) redirect every request to host `to` with `code`.
    pub fn set_redirect_host(&mut self, from: &str, to: &str, code: http::StatusCode) {
        self.host_routes(&HostMatch::Exact(from.to_owned()))
            .settings
            .redirect_to = Some(HostRedirect {
            host: to.to_owned(),
            code,
        });
    }

    /// Makes `alias` serve exactly what `host` serves (`server-alias`). Call after every rule
    /// is inserted; `alias` must be a host no rule names ([`RouteTableBuilder::has_host`]).
    pub fn add_alias(&mut self, alias: HostMatch, host: HostMatch) {
        self.aliases.push((alias, host));
    }

    /// Sets the `spec.defaultBackend` of a rule-less Ingress, for hosts no rule names. The
    /// first one set wins.
    pub fn set_catch_all(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        match &self.catch_all {
            Some(taken) => Err(taken.clone()),
            None => {
                self.catch_all = Some(route);
                Ok(())
            }
        }
    }

    /// Sets the controller's default backend (`--default-backend-service`).
    pub fn set_default_backend(&mut self, route: Arc<Route>) {
        self.default_backend = Some(route);
    }

    /// The finished table.
    pub fn build(self) -> RouteTable {
        let (mut exact_hosts, mut wildcard_hosts) = (self.exact_hosts, self.wildcard_hosts);
        for host in &self.regex_inserted {
            let routes = match host {
                HostMatch::Exact(h) => exact_hosts.get_mut(h),
                HostMatch::Wildcard(s) => wildcard_hosts.get_mut(s),
                HostMatch::Any => None,
            };
            routes.into_iter().for_each(sort_regexes);
        }
        let mut any_host = self.any_host;
        any_host.regex.sort_by(regex_order);
        let mut aliases = Vec::new();
        for (alias, host) in self.aliases {
            let target = match &host {
                HostMatch::Exact(h) => exact_hosts.get(h),
                HostMatch::Wildcard(s) => wildcard_hosts.get(s),
                HostMatch::Any => None,
            };
            let Some(target) = target.cloned() else {
                continue;
            };
            let slot = match &alias {
                HostMatch::Exact(a) => exact_hosts.entry(a.clone()),
                HostMatch::Wildcard(a) => wildcard_hosts.entry(a.clone()),
                HostMatch::Any => continue,
            };
            if let Entry::Vacant(slot) = slot {
                slot.insert(target);
                aliases.push(alias);
            }
        }
        RouteTable {
            exact_hosts,
            wildcard_hosts,
            aliases,
            any_host,
            catch_all: self.catch_all,
            default_backend: self.default_backend,
            route_count: self.route_count,
            client_auth: self.client_auth,
            passthrough: self.passthrough,
            connection: self.connection,
        }
    }

    /// Sets what client connections take from the table.
    pub fn set_connection(&mut self, connection: Connection) {
        self.connection = Arc::new(connection);
    }
}

/// The host routes a builder is filling: its own, or a copy of them when an earlier table
/// shares them (an adopted host that a later step changes).
fn own(routes: &mut Arc<HostRoutes>) -> &mut HostRoutes {
    Arc::make_mut(routes)
}

/// ingress-nginx's order of regex paths: the longest path string first, then the greater
/// string; equal paths keep their insertion (age) order.
fn regex_order(a: &(PathRegex, Arc<Route>), b: &(PathRegex, Arc<Route>)) -> std::cmp::Ordering {
    let (a, b) = (a.0.as_str(), b.0.as_str());
    b.len().cmp(&a.len()).then_with(|| b.cmp(a))
}

/// Puts the regex paths of `routes` in matching order (copying them only when they are not).
fn sort_regexes(routes: &mut Arc<HostRoutes>) {
    let sorted = routes
        .regex
        .is_sorted_by(|a, b| regex_order(a, b) != std::cmp::Ordering::Greater);
    if !sorted {
        own(routes).regex.sort_by(regex_order);
    }
}

fn trim_trailing_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// Normalizes a request's Host header or `:authority` for [`RouteTable::route`]: strips a
/// `:port` (IPv6 literals keep their brackets), a trailing dot, and lower-cases ASCII.
/// Returns `None` for a value that is not a host name (letters, digits, `-`, `.`, `_`) or a
/// bracketed IPv6 address: the result goes into `Location` headers weir makes, so `?`, `#`,
/// `@`, `%` or `\` must never pass (open redirects through a crafted Host).
pub fn normalize_host(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let bytes = raw.as_bytes();
    let (host, upper) = if bytes.first() == Some(&b'[') {
        let end = raw.find(']')?;
        let rest = &bytes[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(b":").is_some_and(is_port)) {
            return None;
        }
        let host = &raw[..=end];
        host[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        (host, host.bytes().any(|b| b.is_ascii_uppercase()))
    } else {
        // One pass over the name (this runs for every request): its characters, then an
        // optional `:port`.
        let mut upper = false;
        let mut end = bytes.len();
        for (i, &b) in bytes.iter().enumerate() {
            match HOST_BYTES[usize::from(b)] {
                NAME => {}
                UPPER => upper = true,
                COLON => {
                    end = i;
                    break;
                }
                _ => return None,
            }
        }
        if end < bytes.len() && !is_port(&bytes[end + 1..]) {
            return None;
        }
        let host = &raw[..end];
        (host.strip_suffix('.').unwrap_or(host), upper)
    };
    // One trailing dot is the root; what is left must not end in another (`..`, `a..`).
    if host.is_empty() || host.ends_with('.') {
        return None;
    }
    Some(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// The class of each byte in a host name, for [`normalize_host`]'s one pass (a table lookup per
/// byte instead of a chain of range tests).
const HOST_BYTES: [u8; 256] = {
    let mut classes = [INVALID; 256];
    let mut b = 0;
    while b < 256 {
        classes[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => NAME,
            b'A'..=b'Z' => UPPER,
            b':' => COLON,
            _ => INVALID,
        };
        b += 1;
    }
    classes
};
const INVALID: u8 = 0;
const NAME: u8 = 1;
const UPPER: u8 = 2;
const COLON: u8 = 3;

fn is_port(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 5 && s.iter().all(u8::is_ascii_digit)
}

/// For tests across the crate: a route of Ingress `namespace/ingress` to Service
/// `namespace/service` port `port`, without endpoints, without annotations.
#[cfg(test)]
pub(crate) fn test_route(namespace: &str, ingress: &str, service: &str, port: &str) -> Arc<Route> {
    use super::diagnostic::ObjectKind;
    Arc::new(Route::new(
        ObjectRef::new(ObjectKind::Ingress, namespace, ingress),
        Arc::new(Backend::new(
            ObjectRef::new(ObjectKind::Service, namespace, service),
            port,
            vec![],
        )),
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn route(name: &str) -> Arc<Route> {
        test_route("default", name, name, "80")
    }

    fn regex_route(path: &str, name: &str) -> Arc<Route> {
        let mut route = (*route(name)).clone();
        route.regex = Some(PathRegex::new(path).unwrap());
        Arc::new(route)
    }

    fn served_by(table: &RouteTable, host: &str, path: &str) -> Option<String> {
        let host = normalize_host(host)?;
        table.route(&host, path).map(|r| r.ingress.name.clone())
    }

    /// Builds a table for `host` from rules `(kind, path, name)`.
    fn table(host: &str, rules: &[(PathKind, &str, &str)]) -> RouteTable {
        let mut b = RouteTableBuilder::new();
        let host = HostMatch::from_rule_host(host);
        for (kind, path, name) in rules {
            let (rule, route) = match kind {
                PathKind::Exact => (PathRule::exact(*path), route(name)),
                PathKind::Prefix => (PathRule::prefix(path), route(name)),
                PathKind::Regex => (PathRule::regex(*path), regex_route(path, name)),
            };
            b.insert(&host, &rule, route).unwrap();
        }
        b.build()
    }

    use PathKind::{Exact as E, Prefix as P};

    /// Every row of the Kubernetes documentation's pathType examples table.
    #[test]
    fn kubernetes_path_type_examples() {
        #[allow(clippy::type_complexity)]
        let rows: &[(&[(PathKind, &str, &str)], &str, Option<&str>)] = &[
            (&[(P, "/", "root")], "/", Some("root")),
            (&[(P, "/", "root")], "/anything/at/all", Some("root")),
            (&[(E, "/foo", "foo")], "/foo", Some("foo")),
            (&[(E, "/foo", "foo")], "/bar", None),
            (&[(E, "/foo", "foo")], "/foo/", None),
            (&[(E, "/foo/", "foo")], "/foo", None),
            (&[(P, "/foo", "foo")], "/foo", Some("foo")),
            (&[(P, "/foo", "foo")], "/foo/", Some("foo")),
            (&[(P, "/foo/", "foo")], "/foo", Some("foo")),
            (&[(P, "/foo/", "foo")], "/foo/", Some("foo")),
            (&[(P, "/aaa/bb", "bb")], "/aaa/bbb", None),
            (&[(P, "/aaa/bbb", "bbb")], "/aaa/bbb", Some("bbb")),
            (&[(P, "/aaa/bbb/", "bbb")], "/aaa/bbb", Some("bbb")),
            (&[(P, "/aaa/bbb", "bbb")], "/aaa/bbb/", Some("bbb")),
            (&[(P, "/aaa/bbb", "bbb")], "/aaa/bbb/ccc", Some("bbb")),
            (&[(P, "/aaa/bbb", "bbb")], "/aaa/bbbxyz", None),
            (
                &[(P, "/", "root"), (P, "/aaa", "aaa")],
                "/aaa/ccc",
                Some("aaa"),
            ),
            (
                &[(P, "/", "root"), (P, "/aaa", "aaa"), (P, "/aaa/bbb", "bbb")],
                "/aaa/bbb",
                Some("bbb"),
            ),
            (
                &[(P, "/", "root"), (P, "/aaa", "aaa"), (P, "/aaa/bbb", "bbb")],
                "/ccc",
                Some("root"),
            ),
            (&[(P, "/aaa", "aaa")], "/ccc", None),
            (
                &[(P, "/foo", "prefix"), (E, "/foo", "exact")],
                "/foo",
                Some("exact"),
            ),
            (
                &[(E, "/foo", "exact"), (P, "/foo", "prefix")],
                "/foo",
                Some("exact"),
            ),
        ];
        for (rules, path, want) in rows {
            let t = table("", rules);
            assert_eq!(
                served_by(&t, "any.host", path).as_deref(),
                *want,
                "rules {rules:?}, request {path}"
            );
        }
    }

    #[test]
    fn prefix_is_case_sensitive_and_element_wise() {
        let t = table("", &[(P, "/foo/bar", "fb"), (E, "/Exact", "ex")]);
        assert_eq!(served_by(&t, "h", "/foo/bar/baz").as_deref(), Some("fb"));
        assert_eq!(served_by(&t, "h", "/foo/barbaz"), None);
        assert_eq!(served_by(&t, "h", "/FOO/bar"), None);
        assert_eq!(served_by(&t, "h", "/exact"), None);
        assert_eq!(served_by(&t, "h", "/Exact").as_deref(), Some("ex"));
        assert_eq!(served_by(&t, "h", "/foo/bar//"), Some("fb".into()));
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_prefix_only_on_equal_path() {
        let t = table(
            "",
            &[
                (E, "/a", "exact-a"),
                (P, "/a/b", "prefix-ab"),
                (P, "/a", "prefix-a"),
            ],
        );
        assert_eq!(served_by(&t, "h", "/a").as_deref(), Some("exact-a"));
        assert_eq!(served_by(&t, "h", "/a/").as_deref(), Some("prefix-a"));
        assert_eq!(served_by(&t, "h", "/a/b/c").as_deref(), Some("prefix-ab"));
    }

    /// The Kubernetes documentation's host wildcard table, plus case and `:port`.
    #[test]
    fn kubernetes_host_examples() {
        let t = table("*.foo.com", &[(P, "/", "wild")]);
        assert_eq!(served_by(&t, "bar.foo.com", "/").as_deref(), Some("wild"));
        assert_eq!(served_by(&t, "baz.bar.foo.com", "/"), None);
        assert_eq!(served_by(&t, "foo.com", "/"), None);
        assert_eq!(served_by(&t, ".foo.com", "/"), None);
        assert_eq!(
            served_by(&t, "BAR.Foo.COM:8080", "/").as_deref(),
            Some("wild")
        );

        let t = table("Foo.Example.com", &[(P, "/", "exact")]);
        assert_eq!(
            served_by(&t, "foo.example.com", "/").as_deref(),
            Some("exact")
        );
        assert_eq!(
            served_by(&t, "FOO.EXAMPLE.COM:443", "/").as_deref(),
            Some("exact")
        );
        assert_eq!(
            served_by(&t, "foo.example.com.", "/").as_deref(),
            Some("exact")
        );
        assert_eq!(served_by(&t, "bar.example.com", "/"), None);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let mut b = RouteTableBuilder::new();
        let root = PathRule::prefix("/");
        b.insert(&HostMatch::from_rule_host("a.x.com"), &root, route("exact"))
            .unwrap();
        b.insert(&HostMatch::from_rule_host("*.x.com"), &root, route("wild"))
            .unwrap();
        b.insert(&HostMatch::Any, &root, route("any")).unwrap();
        let t = b.build();
        assert_eq!(served_by(&t, "a.x.com", "/").as_deref(), Some("exact"));
        assert_eq!(served_by(&t, "b.x.com", "/").as_deref(), Some("wild"));
        assert_eq!(served_by(&t, "x.com", "/").as_deref(), Some("any"));
        assert_eq!(t.route_count(), 3);
    }

    #[test]
    fn host_without_matching_path_uses_its_fallback_then_the_controller_default() {
        let h = HostMatch::from_rule_host("a.com");
        let builder = || {
            let mut b = RouteTableBuilder::new();
            b.insert(&h, &PathRule::prefix("/api"), route("api"))
                .unwrap();
            b.insert(&HostMatch::Any, &PathRule::prefix("/"), route("any"))
                .unwrap();
            b
        };
        let without_defaults = builder().build();
        assert_eq!(
            served_by(&without_defaults, "a.com", "/web"),
            None,
            "no fall-through to other hosts"
        );
        assert_eq!(
            served_by(&without_defaults, "b.com", "/web").as_deref(),
            Some("any")
        );

        // A rule-less Ingress's defaultBackend serves only hosts no rule names.
        let mut b = RouteTableBuilder::new();
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.set_catch_all(route("catch-all")).unwrap();
        assert!(b.set_catch_all(route("second")).is_err());
        let t = b.build();
        assert_eq!(
            served_by(&t, "a.com", "/web"),
            None,
            "never another Ingress's catch-all"
        );
        assert_eq!(
            served_by(&t, "other.com", "/").as_deref(),
            Some("catch-all")
        );

        let mut b = builder();
        b.set_host_fallback(&h, route("host-default")).unwrap();
        b.set_catch_all(route("catch-all")).unwrap();
        b.set_default_backend(route("controller"));
        let t = b.build();
        assert_eq!(
            served_by(&t, "a.com", "/web").as_deref(),
            Some("host-default")
        );
        assert_eq!(served_by(&t, "b.com", "/web").as_deref(), Some("any"));

        let mut b = RouteTableBuilder::new();
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.set_catch_all(route("catch-all")).unwrap();
        b.set_default_backend(route("controller"));
        let t = b.build();
        assert_eq!(
            served_by(&t, "a.com", "/web").as_deref(),
            Some("controller")
        );
        assert_eq!(served_by(&t, "b.com", "/web").as_deref(), Some("catch-all"));
        let mut b = RouteTableBuilder::new();
        b.set_default_backend(route("controller"));
        assert_eq!(
            served_by(&b.build(), "b.com", "/").as_deref(),
            Some("controller")
        );
    }

    #[test]
    fn a_prefix_written_with_a_slash_redirects_the_path_without_it() {
        let mut b = RouteTableBuilder::new();
        let h = HostMatch::from_rule_host("a.com");
        b.insert(&h, &PathRule::prefix("/app/"), route("app"))
            .unwrap();
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.insert(&h, &PathRule::prefix("/both/"), route("both-prefix"))
            .unwrap();
        b.insert(&h, &PathRule::exact("/both"), route("both-exact"))
            .unwrap();
        b.insert(&h, &PathRule::exact("/exact/"), route("exact"))
            .unwrap();
        let t = b.build();
        let m = |path: &str| {
            t.lookup("a.com", path).path.map(|m| match m {
                PathMatch::Route(r) => format!("route {}", r.ingress.name),
                PathMatch::AddSlash(r) => format!("add slash {}", r.ingress.name),
            })
        };
        assert_eq!(m("/app").as_deref(), Some("add slash app"));
        assert_eq!(m("/app/").as_deref(), Some("route app"));
        assert_eq!(m("/app/x").as_deref(), Some("route app"));
        assert_eq!(
            m("/api").as_deref(),
            Some("route api"),
            "written without a slash"
        );
        assert_eq!(
            m("/both").as_deref(),
            Some("route both-exact"),
            "an exact match wins"
        );
        assert_eq!(
            m("/exact"),
            None,
            "Exact rules never redirect (conformance)"
        );
        assert_eq!(t.route("a.com", "/app").unwrap().ingress.name, "app");
    }

    #[test]
    fn regex_hosts_match_longest_path_first_case_insensitively() {
        use PathKind::Regex as R;
        let t = table(
            "r.com",
            &[
                (R, "/", "root"),
                (R, "/foo/bar/bar", "literal"),
                (R, "/foo/bar/[a-z]{3}", "regex"),
                (R, "/Header", "header"),
            ],
        );
        assert_eq!(
            served_by(&t, "r.com", "/foo/bar/bar").as_deref(),
            Some("regex"),
            "the longer string first"
        );
        assert_eq!(
            served_by(&t, "r.com", "/headers").as_deref(),
            Some("header")
        );
        assert_eq!(served_by(&t, "r.com", "/HEADER").as_deref(), Some("header"));
        assert_eq!(served_by(&t, "r.com", "/other").as_deref(), Some("root"));
        let conflict = {
            let mut b = RouteTableBuilder::new();
            let h = HostMatch::from_rule_host("r.com");
            b.insert(&h, &PathRule::regex("/a"), regex_route("/a", "old"))
                .unwrap();
            b.insert(&h, &PathRule::regex("/a"), regex_route("/a", "new"))
                .unwrap_err()
        };
        assert_eq!(conflict.ingress.name, "old");
    }

    #[test]
    fn aliases_serve_their_host_and_settings_belong_to_hosts() {
        let mut b = RouteTableBuilder::new();
        let h = HostMatch::from_rule_host("a.com");
        b.insert(&h, &PathRule::prefix("/"), route("a")).unwrap();
        b.insert(
            &HostMatch::from_rule_host("taken.com"),
            &PathRule::prefix("/"),
            route("taken"),
        )
        .unwrap();
        assert!(b.set_app_root(&h, HeaderValue::from_static("/app")));
        assert!(!b.set_app_root(&h, HeaderValue::from_static("/second")));
        b.set_redirect_host("www.a.com", "a.com", http::StatusCode::PERMANENT_REDIRECT);
        b.add_alias(HostMatch::from_rule_host("alias.com"), h.clone());
        b.add_alias(HostMatch::from_rule_host("*.alias.com"), h.clone());
        assert!(b.has_host(&HostMatch::from_rule_host("taken.com")));
        let t = b.build();
        assert_eq!(served_by(&t, "alias.com", "/x").as_deref(), Some("a"));
        assert_eq!(served_by(&t, "w.alias.com", "/x").as_deref(), Some("a"));
        let settings = t.lookup("alias.com", "/").host.unwrap();
        assert_eq!(settings.app_root.as_ref().unwrap(), "/app");
        let www = t.lookup("www.a.com", "/x");
        assert_eq!(
            www.host.unwrap().redirect_to.as_ref().unwrap().host,
            "a.com"
        );
        assert_eq!(www.path, None);
        assert_eq!(
            t.entries().filter(|e| e.route.ingress.name == "a").count(),
            1,
            "aliases are not listed again"
        );
        assert_eq!(t.host_settings().count(), 2);
    }

    #[test]
    fn first_insert_wins_a_conflict() {
        let mut b = RouteTableBuilder::new();
        let h = HostMatch::from_rule_host("a.com");
        b.insert(&h, &PathRule::prefix("/x/"), route("old"))
            .unwrap();
        let taken = b
            .insert(&h, &PathRule::prefix("/x"), route("new"))
            .unwrap_err();
        assert_eq!(taken.ingress.name, "old");
        // Exact and Prefix on the same path do not conflict.
        b.insert(&h, &PathRule::exact("/x"), route("exact"))
            .unwrap();
    }

    #[test]
    fn sni_finds_the_passthrough_host_as_a_request_finds_its_host() {
        let mut b = RouteTableBuilder::new();
        let wildcard = HostMatch::from_rule_host("*.example.com");
        let exact = HostMatch::from_rule_host("own.example.com");
        b.insert(&wildcard, &PathRule::prefix("/"), route("wild"))
            .unwrap();
        b.insert(&exact, &PathRule::prefix("/api"), route("own"))
            .unwrap();
        let owner = route("wild").ingress.clone();
        let root = b.root_route(&wildcard, &owner).unwrap();
        assert_eq!(root.ingress.name, "wild");
        assert!(
            b.root_route(&exact, &owner).is_none(),
            "another Ingress's host"
        );
        let passthrough = Passthrough {
            ingress: owner.clone(),
            route: Some(root),
        };
        assert!(b.set_passthrough(&wildcard, passthrough.clone()));
        assert!(
            !b.set_passthrough(&wildcard, passthrough.clone()),
            "first one wins"
        );
        let t = b.build();
        assert!(t.has_passthrough());
        assert_eq!(t.passthrough("a.example.com"), Some(&passthrough));
        assert_eq!(
            t.passthrough("own.example.com"),
            None,
            "an exact host keeps its TLS though a wildcard above it passes through"
        );
        assert_eq!(t.passthrough("a.b.example.com"), None);
        assert_eq!(t.passthrough("example.com"), None);
        assert_eq!(t.passthrough(".example.com"), None);
        assert!(!table("a.com", &[(PathKind::Prefix, "/", "a")]).has_passthrough());
    }

    #[test]
    fn normalize_host_strips_ports_and_rejects_garbage() {
        assert_eq!(
            normalize_host("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalize_host("example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("example.com:http"), None);
        assert_eq!(normalize_host(":80"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host(""), None);
        for crafted in [
            "evil%2ecom?.w.test",
            "evil.com#.w.test",
            "user@evil.com",
            "evil.com\\.w.test",
            "[not-v6]",
            "a/b",
        ] {
            assert_eq!(normalize_host(crafted), None, "{crafted}");
        }
        assert_eq!(
            normalize_host("my_host.internal").as_deref(),
            Some("my_host.internal")
        );
    }

    proptest! {
        #[test]
        fn normalized_hosts_are_safe_and_stable(
            raw in "(\\[[0-9a-fA-F:]{0,12}\\]|[a-zA-Z0-9._-]{0,10}|[?#@%/\\\\ é]|:[0-9]{0,6})*"
        ) {
            if let Some(host) = normalize_host(&raw) {
                let host = host.into_owned();
                prop_assert!(!host.is_empty());
                let bracketed = host.starts_with('[') && host.ends_with(']');
                prop_assert!(
                    bracketed || host.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit() || b"-._".contains(&b)),
                    "only DNS characters or an IPv6 literal: {host}"
                );
                if bracketed {
                    prop_assert!(host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok());
                }
                prop_assert!(!host.ends_with('.'), "{host}");
                prop_assert_eq!(normalize_host(&host).map(|h| h.into_owned()), Some(host.clone()), "stable");
                // What `raw` had before its port is the host, up to case and a trailing dot.
                prop_assert!(raw.to_ascii_lowercase().starts_with(&host), "{raw} -> {host}");
            }
        }
    }
}

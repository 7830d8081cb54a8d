//! The routing table: an immutable map from (host, path) to a [`Route`].
//!
//! Matching follows `networking.k8s.io/v1` Ingress semantics:
//! - Hosts: an exact host wins over a wildcard (`*.example.com` covers exactly one extra
//!   leftmost label), which wins over rules without a host. Hosts compare case-insensitively;
//!   the caller strips `:port` with [`normalize_host`].
//! - Paths, within the chosen host: `Exact` is byte-equal; `Prefix` compares `/`-separated
//!   elements, ignoring a trailing slash on the rule. The longest match wins and on equal length
//!   Exact beats Prefix, whatever the order of the rules. `ImplementationSpecific` is Prefix.
//! - A host that matches with no matching path falls back to the default backend of the Ingress
//!   that defined that host, then to the table's catch-all default backend, else no route (404).
//!
//! Lookups are hash probes: one for the exact path, then one per path element for prefixes, so
//! the cost does not grow with the number of rules.

use std::collections::HashMap;

/// The maps looked up on every request: foldhash instead of SipHash (the keys come from the
/// table, so flooding them is not the client's to do).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::diagnostic::ObjectRef;

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
}

/// A rule path in its matching form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathRule {
    /// Exact or Prefix.
    pub kind: PathKind,
    /// The path; for Prefix without its trailing slash (`/` stays `/`).
    pub path: String,
}

impl PathRule {
    /// An Exact rule.
    pub fn exact(path: impl Into<String>) -> Self {
        PathRule {
            kind: PathKind::Exact,
            path: path.into(),
        }
    }

    /// A Prefix rule; a trailing slash is ignored, as the Ingress specification says.
    pub fn prefix(path: &str) -> Self {
        PathRule {
            kind: PathKind::Prefix,
            path: trim_trailing_slashes(path).to_owned(),
        }
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
        };
        write!(f, "{} {}", kind, self.path)
    }
}

/// Where requests of a route go: one Service port and its ready endpoints.
///
/// Endpoints are picked round-robin per request, starting at endpoint 0 unless
/// [`Backend::with_start`] says otherwise. A backend with no endpoints is still a backend:
/// requests to it are answered 503.
///
/// Equality compares the service, port and endpoints only, not the round-robin position.
#[derive(Debug)]
pub struct Backend {
    /// The Service (namespace and name).
    pub service: ObjectRef,
    /// The Service port as the Ingress named it (a number or a name), for logs and metrics.
    pub port: String,
    /// Ready endpoint addresses, sorted and without duplicates.
    pub endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
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
            next: AtomicUsize::new(0),
        }
    }

    /// The same backend with its round-robin order starting at endpoint `offset` (modulo the
    /// number of endpoints), so that tables built with different offsets spread their first
    /// requests over different endpoints.
    #[must_use]
    pub fn with_start(self, offset: usize) -> Self {
        let start = offset.checked_rem(self.endpoints.len()).unwrap_or(0);
        self.next.store(start, Ordering::Relaxed);
        self
    }

    /// The next endpoint in round-robin order, or `None` when there is none.
    pub fn pick(&self) -> Option<SocketAddr> {
        match self.endpoints.len() {
            0 => None,
            1 => Some(self.endpoints[0]),
            n => Some(self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % n]),
        }
    }
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.service == other.service
            && self.port == other.port
            && self.endpoints == other.endpoints
    }
}

impl Eq for Backend {}

/// How a route treats plain HTTP and HTTPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpsPolicy {
    /// The route's host has a `spec.tls` entry (HSTS goes on its HTTPS responses).
    pub tls_host: bool,
    /// Plain-HTTP requests are redirected to HTTPS: the host has TLS and `ssl-redirect` is not
    /// false, or `force-ssl-redirect` is true.
    pub redirect: bool,
}

/// What a matched request is served by.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// The Ingress that defined this route.
    pub ingress: ObjectRef,
    /// The backend that serves it.
    pub backend: Arc<Backend>,
    /// Redirect and HSTS behaviour.
    pub https: HttpsPolicy,
    /// From `proxy-read-timeout`: how long the endpoint may stay silent (before its response
    /// head and between body reads), and how long an upgraded connection (WebSocket) may stay
    /// idle in both directions. `None`: the data plane's defaults.
    pub read_timeout: Option<std::time::Duration>,
}

/// The routes of one host (or of the wildcard or any-host rules).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostRoutes {
    exact: FastMap<String, Arc<Route>>,
    prefix: FastMap<String, Arc<Route>>,
    fallback: Option<Arc<Route>>,
}

impl HostRoutes {
    fn route(&self, path: &str) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact.get(path) {
            return Some(route);
        }
        if !self.prefix.is_empty() {
            // Candidates from the longest to the shortest: the path without trailing slashes,
            // then the path cut before each earlier `/`, then `/`.
            let mut candidate = trim_trailing_slashes(path);
            loop {
                if let Some(route) = self.prefix.get(candidate) {
                    return Some(route);
                }
                match candidate.rfind('/') {
                    Some(0) | None if candidate == "/" => break,
                    Some(0) | None => candidate = "/",
                    Some(i) => candidate = trim_trailing_slashes(&candidate[..i]),
                }
            }
        }
        self.fallback.as_ref()
    }
}

/// An immutable routing table. Build one with [`RouteTableBuilder`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    exact_hosts: FastMap<String, HostRoutes>,
    wildcard_hosts: FastMap<String, HostRoutes>,
    any_host: HostRoutes,
    default_backend: Option<Arc<Route>>,
    route_count: usize,
}

impl RouteTable {
    /// An empty table: every request gets no route.
    pub fn empty() -> Self {
        RouteTable::default()
    }

    /// The route for a request. `host` must already be normalized ([`normalize_host`]);
    /// `path` is the request path without the query string.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let host_routes = self
            .exact_hosts
            .get(host)
            .or_else(|| {
                let (first, suffix) = host.split_once('.')?;
                if first.is_empty() {
                    return None;
                }
                self.wildcard_hosts.get(suffix)
            })
            .unwrap_or(&self.any_host);
        host_routes.route(path).or(self.default_backend.as_ref())
    }

    /// How many (host, path) rules the table holds, default backends not counted.
    pub fn route_count(&self) -> usize {
        self.route_count
    }

    /// Every entry of the table with the rule host and path it is reached by (`""` for rules
    /// without a host and for default backends), so that data kept per route (metrics) can be
    /// prepared once per table. A route shared by several entries (an Ingress's default backend
    /// serving each of its hosts) comes once per entry.
    pub fn entries(&self) -> impl Iterator<Item = TableEntry<'_>> {
        let exact = self
            .exact_hosts
            .iter()
            .flat_map(|(host, routes)| routes.entries(RuleHost::Exact(host)));
        let wildcard = self
            .wildcard_hosts
            .iter()
            .flat_map(|(suffix, routes)| routes.entries(RuleHost::Wildcard(suffix)));
        let default = self.default_backend.iter().map(|route| TableEntry {
            host: RuleHost::Any,
            path: "",
            route,
        });
        exact
            .chain(wildcard)
            .chain(self.any_host.entries(RuleHost::Any))
            .chain(default)
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
    /// The route it leads to.
    pub route: &'a Arc<Route>,
}

impl HostRoutes {
    fn entries<'a>(&'a self, host: RuleHost<'a>) -> impl Iterator<Item = TableEntry<'a>> {
        let paths = self.exact.iter().chain(&self.prefix);
        let fallback = self.fallback.iter().map(|route| ("", route));
        paths
            .map(|(path, route)| (path.as_str(), route))
            .chain(fallback)
            .map(move |(path, route)| TableEntry { host, path, route })
    }
}

/// Collects routes into a [`RouteTable`]. The first route inserted for a key wins; insert in
/// precedence order (oldest Ingress first) and report the returned conflicts.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    table: RouteTable,
}

impl RouteTableBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        RouteTableBuilder::default()
    }

    fn host_routes(&mut self, host: &HostMatch) -> &mut HostRoutes {
        match host {
            HostMatch::Exact(h) => self.table.exact_hosts.entry(h.clone()).or_default(),
            HostMatch::Wildcard(s) => self.table.wildcard_hosts.entry(s.clone()).or_default(),
            HostMatch::Any => &mut self.table.any_host,
        }
    }

    /// Adds a rule. If the key is taken, nothing changes and the route holding it is returned.
    pub fn insert(
        &mut self,
        host: &HostMatch,
        path: &PathRule,
        route: Arc<Route>,
    ) -> Result<(), Arc<Route>> {
        let routes = self.host_routes(host);
        let map = match path.kind {
            PathKind::Exact => &mut routes.exact,
            PathKind::Prefix => &mut routes.prefix,
        };
        match map.entry(path.path.clone()) {
            Entry::Occupied(taken) => Err(taken.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(route);
                self.table.route_count += 1;
                Ok(())
            }
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

    /// Sets the catch-all default backend (requests that match nothing else). First one wins.
    pub fn set_default_backend(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        match &self.table.default_backend {
            Some(taken) => Err(taken.clone()),
            None => {
                self.table.default_backend = Some(route);
                Ok(())
            }
        }
    }

    /// The finished table.
    pub fn build(self) -> RouteTable {
        self.table
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
/// Returns `None` for a value that is not a plausible host.
pub fn normalize_host(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let host = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &raw[..=end]
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == b'/' || b == 0x7f) {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(host))
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// For tests across the crate: a route of Ingress `namespace/ingress` to Service
/// `namespace/service` port `port`, without endpoints, with the default HTTPS policy.
#[cfg(test)]
pub(crate) fn test_route(namespace: &str, ingress: &str, service: &str, port: &str) -> Arc<Route> {
    use super::diagnostic::ObjectKind;
    Arc::new(Route {
        https: HttpsPolicy::default(),
        ingress: ObjectRef::new(ObjectKind::Ingress, namespace, ingress),
        backend: Arc::new(Backend::new(
            ObjectRef::new(ObjectKind::Service, namespace, service),
            port,
            vec![],
        )),
        read_timeout: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::diagnostic::ObjectKind;

    fn route(name: &str) -> Arc<Route> {
        test_route("default", name, name, "80")
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
            let rule = match kind {
                PathKind::Exact => PathRule::exact(*path),
                PathKind::Prefix => PathRule::prefix(path),
            };
            b.insert(&host, &rule, route(name)).unwrap();
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
    fn host_without_matching_path_uses_its_fallback_then_the_default_backend() {
        let mut b = RouteTableBuilder::new();
        let h = HostMatch::from_rule_host("a.com");
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.insert(&HostMatch::Any, &PathRule::prefix("/"), route("any"))
            .unwrap();
        let without_defaults = b.build();
        assert_eq!(
            served_by(&without_defaults, "a.com", "/web"),
            None,
            "no fall-through to other hosts"
        );

        let mut b = RouteTableBuilder::new();
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.set_default_backend(route("default")).unwrap();
        assert!(b.set_default_backend(route("second")).is_err());
        let t = b.build();
        assert_eq!(served_by(&t, "a.com", "/web").as_deref(), Some("default"));
        assert_eq!(served_by(&t, "other.com", "/").as_deref(), Some("default"));

        let mut b = RouteTableBuilder::new();
        b.insert(&h, &PathRule::prefix("/api"), route("api"))
            .unwrap();
        b.set_host_fallback(&h, route("host-default")).unwrap();
        b.set_default_backend(route("default")).unwrap();
        let t = b.build();
        assert_eq!(
            served_by(&t, "a.com", "/web").as_deref(),
            Some("host-default")
        );
        assert_eq!(served_by(&t, "b.com", "/web").as_deref(), Some("default"));
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
    }

    #[test]
    fn round_robin_cycles_through_endpoints() {
        let eps: Vec<SocketAddr> = vec![
            "10.0.0.2:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        ];
        let b = Backend::new(ObjectRef::new(ObjectKind::Service, "d", "s"), "80", eps);
        let picks: Vec<_> = (0..4).map(|_| b.pick().unwrap().to_string()).collect();
        assert_eq!(
            picks,
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", "10.0.0.2:80"]
        );
        let empty = Backend::new(ObjectRef::new(ObjectKind::Service, "d", "s"), "80", vec![]);
        assert_eq!(empty.pick(), None);
        assert_eq!(empty.with_start(7).pick(), None);
    }

    #[test]
    fn round_robin_can_start_anywhere() {
        let eps: Vec<SocketAddr> = (1..=3)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        let svc = || ObjectRef::new(ObjectKind::Service, "d", "s");
        let b = Backend::new(svc(), "80", eps.clone()).with_start(4);
        let picks: Vec<_> = (0..4).map(|_| b.pick().unwrap().to_string()).collect();
        assert_eq!(
            picks,
            ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80"]
        );
        // The position is not part of equality.
        assert_eq!(b, Backend::new(svc(), "80", eps));
    }
}

//! `build`: Input → RouteTable + diagnostics.
//!
//! Steps: read the controller ConfigMap into the global defaults, pick weir's Ingresses
//! ([`Classes`]) and order them oldest first, read each one's annotations once, find the hosts
//! whose paths are regexes, then for each Ingress validate its rules, resolve their backends
//! ([`Backends`]) and insert the routes host by host (the first insert of a host+path wins, so
//! the oldest Ingress wins a conflict; a host whose Ingresses' routes did not change since the
//! last build is reused whole: `hosts`). Last, the canaries, the host-scope settings (aliases,
//! www redirects), the catch-all of rule-less Ingresses and the controller's default backend.

use std::cell::{OnceCell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::access::Access;
use super::annotations::{self, IngressAnnotations};
use super::classes::Classes;
use super::configmap;
use super::connection::Connection;
use super::diagnostic::{Diagnostic, ObjectKind, ObjectRef, Reason};
use super::endpoints::{Backends, Upstream};
use super::objects::index_by_name;
use super::paths::PathRegex;
use super::policy::{Defaults, HttpsPolicy, Policy, Rewrite};
use super::table::{HostMatch, Passthrough, PathKind, PathRule, Route, RouteTableBuilder};
use super::validate;
use super::{BuildConfig, Built, Input, TlsBinding};
use hosts::HostChanges;
pub use memo::IncrementalBuild;
use memo::{IngressMemo, Op, RoutesMemo};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Builds the routing table for `input`. Never fails and never panics: objects that cannot be
/// used become [`Diagnostic`]s and everything else is routed. The result does not depend on
/// the order of the objects in `input`.
///
/// Precedence is by age: Ingresses are processed by `metadata.creationTimestamp` (an Ingress
/// without one comes after all that have one), then namespace, then name. The first Ingress
/// to claim a host+path keeps it; later ones get a `RouteConflict`. The same order decides
/// which `spec.defaultBackend` serves a host's unmatched paths, which Ingress's host-scope
/// annotations apply to a host and, among Ingresses without rules, which one is the catch-all.
///
/// [`IncrementalBuild`] gives the same result for a sequence of inputs, computing again only
/// what changed.
pub fn build(input: &Input, config: &BuildConfig) -> Built {
    IncrementalBuild::default().build(input, config)
}

impl IncrementalBuild {
    /// Builds the routing table for `input`, exactly as [`build`] does, reusing what the
    /// previous call computed for every Ingress whose objects are the same `Arc`s as then.
    pub fn build(&mut self, input: &Input, config: &BuildConfig) -> Built {
        let mut diagnostics = Vec::new();
        let defaults = configmap::defaults(
            input,
            config.config_map.as_ref(),
            &config.defaults,
            &mut diagnostics,
        );
        let config_maps = index_by_name(&input.config_maps, |c| &c.metadata);
        // The one `configmap::defaults` read (of two with its name, the same one).
        let controller_map = config.config_map.as_ref().and_then(|wanted| {
            let key = (wanted.namespace.as_str(), wanted.name.as_str());
            config_maps.get(&key).copied()
        });
        self.check_global(config, controller_map);
        let classes = Classes::new(&input.ingress_classes, &config.classes);
        self.order
            .update(&input.ingresses, &input.ingress_classes, &classes);
        let ours = self.order.ours();
        let secrets = index_by_name(&input.secrets, |s| &s.metadata);
        let context = annotations::Context {
            defaults: &defaults,
            secrets: &secrets,
            config_maps: &config_maps,
            allow_cross_namespace: config.allow_cross_namespace,
            ssl_passthrough: config.ssl_passthrough,
            reads: RefCell::default(),
        };
        // The annotations of each Ingress: parsed again when it or what they read changed. The
        // hosts of routes that go away are noted in `changes`, to be assembled again.
        let mut changes = HostChanges::default();
        self.generation += 1;
        let generation = self.generation;
        // The Ingresses whose annotations can make their hosts regex hosts.
        let mut regex_candidates = Vec::new();
        for o in &ours {
            let memo = match self.ingresses.entry(address(o.ingress)) {
                Entry::Occupied(kept) => {
                    let memo = kept.into_mut();
                    if !memo.parsed_for(o.ingress, &context) {
                        changes.removed(memo.routes.as_ref());
                        **memo = parse_ingress(o, &context);
                    }
                    memo
                }
                Entry::Vacant(slot) => slot.insert(Box::new(parse_ingress(o, &context))),
            };
            memo.generation = generation;
            if may_make_regex_host(&memo.parsed) {
                regex_candidates.push(o);
            }
        }
        if self.ingresses.len() > ours.len() {
            self.ingresses.retain(|_, memo| {
                let live = memo.generation == generation;
                if !live {
                    changes.removed(memo.routes.as_ref());
                }
                live
            });
        }
        let regex_hosts = regex_hosts(
            regex_candidates
                .into_iter()
                .map(|o| (o, &self.ingresses[&address(o.ingress)].parsed)),
        );
        let mut builder = Builder {
            table: RouteTableBuilder::with_capacity(ours.len()),
            backends: Backends::new(
                input,
                config.external_names,
                std::mem::take(&mut self.backends),
            ),
            diagnostics,
            ours: &ours,
            created: OnceCell::new(),
            tls_hosts: tls_hosts(&ours),
            regex_hosts,
            hsts: defaults.hsts.header(),
            defaults,
        };
        // The routes of each Ingress: computed again when they or what they read changed.
        let controller_backend = config.default_backend_service.as_ref();
        for (&address, memo) in &mut self.ingresses {
            let holds = memo.routes.as_ref().is_some_and(|routes| {
                routes.holds(&builder.backends, |host| builder.host_kind(host))
            });
            if !holds {
                let ours = self.order.our(address);
                let routes = builder.compute(&ours, &memo.parsed, controller_backend);
                changes.removed(memo.routes.as_ref());
                changes.added(address, &routes);
                memo.routes = Some(routes);
            }
        }
        let memos: Vec<&IngressMemo> = ours
            .iter()
            .map(|o| &*self.ingresses[&address(o.ingress)])
            .collect();
        let routes: Vec<&RoutesMemo> = memos
            .iter()
            .map(|memo| {
                memo.routes
                    .as_ref()
                    .expect("every memo's routes were computed")
            })
            .collect();
        let annotations: Vec<&IngressAnnotations> = routes.iter().map(|r| &r.annotations).collect();

        let mut catch_all = Vec::new();
        for ((ours, memo), routes) in ours.iter().zip(&memos).zip(&routes) {
            builder
                .diagnostics
                .extend(memo.parse_diagnostics.iter().cloned());
            builder
                .diagnostics
                .extend(routes.diagnostics.iter().cloned());
            if routes.annotations.canary.is_canary() {
                continue;
            }
            if let Some(route) = &routes.catch_all {
                catch_all.push((ours.has_rules, ours.object.clone(), route.clone()));
            }
        }
        let (order, ingresses) = (&self.order, &self.ingresses);
        builder.apply_all(order, ingresses, changes, &mut self.hosts, generation);
        for (ours, annotations) in ours.iter().zip(&annotations) {
            if let annotations::CanaryAnnotation::Yes(Some(rule)) = &annotations.canary {
                builder.add_canary(ours, annotations, rule);
            }
        }
        builder.set_host_settings(&ours, &annotations);
        builder.set_catch_all(catch_all);
        builder.set_default_backend(controller_backend);
        let connection = Connection {
            client_address: Arc::new(builder.defaults.client_address.clone()),
            limits: builder.defaults.connection_limits,
        };
        builder.table.set_connection(connection);
        let tls = tls_bindings(&ours, &mut builder.diagnostics);

        let Builder {
            table,
            mut diagnostics,
            backends,
            ..
        } = builder;
        self.backends = backends.keep();
        diagnostics.sort();
        diagnostics.dedup();
        drop((memos, routes, annotations, ours));
        let ingresses = self.order.sorted();
        Built {
            table: table.build(),
            diagnostics,
            tls,
            ingresses,
        }
    }
}

/// The address of an Ingress object: what its memos and its place in the order are kept by.
fn address(ingress: &Arc<Ingress>) -> usize {
    Arc::as_ptr(ingress) as usize
}

/// Parses the annotations of one of weir's Ingresses, noting what they read.
fn parse_ingress(ours: &OurIngress<'_>, context: &annotations::Context<'_>) -> IngressMemo {
    let mut diagnostics = Vec::new();
    context.take_reads();
    let annotations = ours.ingress.metadata.annotations.as_ref();
    let parsed = annotations::parse(ours.object, annotations, context, &mut diagnostics);
    IngressMemo {
        ingress: ours.ingress.clone(),
        reads: context.take_reads(),
        parsed,
        parse_diagnostics: diagnostics,
        routes: None,
        generation: 0,
    }
}

/// Whether an Ingress with `annotations` can make its hosts regex hosts (`use-regex`, or a
/// `rewrite-target`).
fn may_make_regex_host(annotations: &IngressAnnotations) -> bool {
    annotations.regex || annotations.policy.rewrite.target.is_some()
}

/// The hosts whose paths are all matched as regexes: those with a path of an Ingress that sets
/// `use-regex`, or a `rewrite-target` other than that path (ingress-nginx's rule, which applies
/// to every Ingress of the host).
fn regex_hosts<'a>(
    ingresses: impl Iterator<Item = (&'a OurIngress<'a>, &'a IngressAnnotations)>,
) -> BTreeSet<HostMatch> {
    let mut hosts = BTreeSet::new();
    for (ours, annotations) in ingresses {
        if !may_make_regex_host(annotations) {
            continue;
        }
        let target = annotations.policy.rewrite.target.as_ref();
        let rules = ours.ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            let host = rule.host.as_deref().unwrap_or("");
            if validate::check_host(host).is_err() {
                continue;
            }
            let rewrites = rule.http.iter().flat_map(|h| &h.paths).any(|path| {
                let raw = validate::rule_path(path.path.as_deref());
                target.is_some_and(|t| t.as_str() != raw)
            });
            if annotations.regex || rewrites {
                hosts.insert(HostMatch::from_rule_host(host));
            }
        }
    }
    hosts
}

/// Every valid host named in the `spec.tls` of weir's Ingresses, lower-case (with or without a
/// Secret: hosts without one are served the default certificate, and are still TLS hosts).
fn tls_hosts(ours: &[OurIngress<'_>]) -> FastSet<String> {
    ours.iter()
        .filter_map(|o| o.ingress.spec.as_ref()?.tls.as_ref())
        .flatten()
        .flat_map(|entry| entry.hosts.iter().flatten())
        .filter(|host| validate::check_host(host).is_ok())
        .map(|host| host.to_ascii_lowercase())
        .collect()
}

/// The TLS hosts of weir's Ingresses (oldest first) and the Secrets that serve them. A host
/// claimed by an older Ingress with another Secret stays with it (`TlsConflict` for the newer);
/// an entry without `secretName` or without hosts binds nothing (such hosts get the default
/// certificate).
fn tls_bindings(ours: &[OurIngress<'_>], diagnostics: &mut Vec<Diagnostic>) -> Vec<TlsBinding> {
    let mut bound: BTreeMap<String, TlsBinding> = BTreeMap::new();
    for ours in ours {
        let me = ours.object;
        let entries = ours.ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
        for entry in entries.into_iter().flatten() {
            let Some(secret) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let secret = ObjectRef::new(ObjectKind::Secret, me.namespace.clone(), secret);
            for raw_host in entry.hosts.iter().flatten() {
                if let Err(why) = validate::check_host(raw_host) {
                    diagnostics.push(Diagnostic::new(
                        me.clone(),
                        Reason::InvalidHost,
                        format!("TLS {why}; it is ignored"),
                    ));
                    continue;
                }
                let host = raw_host.to_ascii_lowercase();
                match bound.get(&host) {
                    Some(existing) if existing.secret != secret => diagnostics.push(Diagnostic::new(
                        me.clone(),
                        Reason::TlsConflict,
                        format!(
                            "TLS host {host:?} is already served with Secret {:?} by {}; Secret {:?} is not used for it",
                            format!("{}/{}", existing.secret.namespace, existing.secret.name),
                            existing.ingress,
                            format!("{}/{}", secret.namespace, secret.name),
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        bound.insert(host.clone(), TlsBinding { host, secret: secret.clone(), ingress: me.clone() });
                    }
                }
            }
        }
    }
    bound.into_values().collect()
}

/// One of weir's Ingresses, with what the build needs to know about it.
struct OurIngress<'a> {
    object: &'a ObjectRef,
    created: Option<&'a Time>,
    has_rules: bool,
    ingress: &'a Arc<Ingress>,
}

/// Where a backend is referenced from, for messages.
enum Site<'a> {
    Rule { host: &'a str, path: &'a str },
    DefaultBackend,
}

impl fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Rule { host: "", path } => write!(f, "the rule for all hosts, path {path:?}"),
            Site::Rule { host, path } => write!(f, "rule host {host:?} path {path:?}"),
            Site::DefaultBackend => f.write_str("spec.defaultBackend"),
        }
    }
}

/// What the routes of one Ingress on one host share; the backend is added per path.
#[derive(Clone)]
struct RouteParts {
    https: HttpsPolicy,
    policy: Arc<Policy>,
    regex: Option<PathRegex>,
    /// Where the backend sends (`service-upstream`: the Service's cluster IP).
    upstream: Upstream,
}

struct Builder<'a> {
    table: RouteTableBuilder,
    backends: Backends<'a>,
    diagnostics: Vec<Diagnostic>,
    /// weir's Ingresses, in build order.
    ours: &'a [OurIngress<'a>],
    /// The creation time of each of weir's Ingresses, by (namespace, name): made when a
    /// conflict is first reported.
    created: OnceCell<FastMap<(&'a str, &'a str), Option<&'a Time>>>,
    /// Every valid host in the `spec.tls` of weir's Ingresses, lower-case.
    tls_hosts: FastSet<String>,
    /// The hosts whose paths are regexes.
    regex_hosts: BTreeSet<HostMatch>,
    /// The global defaults (flags and ConfigMap).
    defaults: Defaults,
    /// `Strict-Transport-Security` for TLS hosts, from the defaults.
    hsts: Option<HeaderValue>,
}

impl Builder<'_> {
    fn report(&mut self, object: &ObjectRef, reason: Reason, message: String) {
        self.diagnostics
            .push(Diagnostic::new(object.clone(), reason, message));
    }

    /// The HTTPS policy of the routes of an Ingress with `annotations` on a host with or
    /// without TLS.
    fn https(&self, annotations: &IngressAnnotations, tls_host: bool) -> HttpsPolicy {
        let a = &annotations.https;
        HttpsPolicy {
            tls_host,
            redirect: a.force_ssl_redirect || (tls_host && a.ssl_redirect),
            redirect_code: self.defaults.https_redirect_code,
            hsts: self.hsts.clone().filter(|_| tls_host),
            preserve_trailing_slash: a.preserve_trailing_slash,
        }
    }

    /// Adds the rules of one Ingress; returns the route of its `spec.defaultBackend` when it
    /// has no rules (a candidate for the catch-all).
    ///
    /// The defaultBackend also becomes the fallback of every valid host the Ingress has a rule
    /// for (a rule without `http` included: it names the host, the defaultBackend serves it),
    /// with that host's HTTPS policy. Rules without a host get no fallback of their own: "every
    /// host" is the catch-all's job, so that Ingresses without rules keep their precedence
    /// there. Every valid host a rule names is in the table, even when none of its paths is
    /// usable, so that another Ingress's catch-all never serves it.
    ///
    /// A path that cannot be used (invalid, a regex that does not compile, an unusable backend)
    /// is dropped with a Diagnostic — except on an Ingress that fails closed, where it is still
    /// matched (literally) and refuses, so that its requests cannot reach a shorter route.
    fn add_ingress(
        &mut self,
        ours: &OurIngress<'_>,
        annotations: &IngressAnnotations,
        ops: &mut Vec<Op>,
    ) -> Option<Arc<Route>> {
        let me = ours.object;
        let spec = ours.ingress.spec.as_ref()?;
        let refused = annotations.policy.refused.is_some();
        let catch_all = spec
            .default_backend
            .as_ref()
            .filter(|_| !ours.has_rules)
            .and_then(|b| {
                let parts = self.catch_all_parts(annotations);
                self.route(me, b, &Site::DefaultBackend, parts)
            });

        let mut hosts = BTreeSet::new();
        for rule in spec.rules.iter().flatten() {
            let Some((raw_host, host)) = self.rule_host(me, rule) else {
                continue;
            };
            if host != HostMatch::Any {
                hosts.insert(host.clone());
                ops.push(Op::Declare(host.clone()));
            }
            let regex_host = self.regex_hosts.contains(&host);
            let host_parts = self.parts(annotations, self.is_tls_host(&host));
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let raw_path = validate::rule_path(path.path.as_deref());
                let site = Site::Rule {
                    host: raw_host,
                    path: raw_path,
                };
                let mut parts = host_parts.clone();
                let mut usable = true;
                let mut rule_path = match validate::path_rule(path.path.as_deref(), &path.path_type)
                {
                    Ok(rule_path) => rule_path,
                    Err(why) => {
                        self.drop_path(me, refused, format!("{why} (rule host {raw_host:?})"));
                        usable = false;
                        PathRule::prefix(raw_path)
                    }
                };
                if regex_host {
                    match PathRegex::new(raw_path) {
                        Ok(regex) if usable => {
                            self.check_captures(me, annotations, &regex);
                            parts.regex = Some(regex);
                        }
                        Ok(_) => parts.regex = Some(PathRegex::literal(raw_path)),
                        Err(why) => {
                            let what = format!(
                                "path {raw_path:?} (rule host {raw_host:?}) is matched as a regex \
                                 because this host uses regex paths (use-regex or rewrite-target \
                                 on one of its Ingresses), but {why}"
                            );
                            self.drop_path(me, refused, what);
                            usable = false;
                            parts.regex = Some(PathRegex::literal(raw_path));
                        }
                    }
                    rule_path = PathRule::regex(raw_path);
                }
                if !(usable || refused && raw_path.starts_with('/')) {
                    continue;
                }
                if parts
                    .policy
                    .rewrite
                    .target
                    .as_ref()
                    .is_some_and(|t| t.as_str() == raw_path)
                {
                    // ingress-nginx does not rewrite a path to itself.
                    parts.policy = Arc::new(Policy {
                        rewrite: Rewrite {
                            target: None,
                            forwarded_prefix: None,
                            ..parts.policy.rewrite.clone()
                        },
                        ..(*parts.policy).clone()
                    });
                }
                if let Some(policy) =
                    without_global_auth(&parts.policy, raw_path, &self.defaults.no_auth_locations)
                {
                    parts.policy = policy;
                }
                let route = match self.route(me, &path.backend, &site, parts.clone()) {
                    Some(route) if usable => route,
                    _ if refused => refusing_route(me, parts),
                    _ => continue,
                };
                ops.push(Op::Insert(host.clone(), rule_path, route));
            }
        }

        if let Some(backend) = &spec.default_backend {
            for host in &hosts {
                let parts = self.parts(annotations, self.is_tls_host(host));
                let route = match self.route(me, backend, &Site::DefaultBackend, parts.clone()) {
                    Some(route) => route,
                    None if refused => refusing_route(me, parts),
                    None => continue,
                };
                ops.push(Op::Fallback(host.clone(), route));
            }
        }
        catch_all
    }

    /// Computes the routes of one of weir's Ingresses from its `parsed` annotations, noting
    /// what they read; `controller` is `--default-backend-service`.
    fn compute(
        &mut self,
        ours: &OurIngress<'_>,
        parsed: &IngressAnnotations,
        controller: Option<&ObjectRef>,
    ) -> RoutesMemo {
        let me = ours.object;
        let start = self.diagnostics.len();
        let mut annotations = parsed.clone();
        let pages = self.error_pages(me, &annotations.error_pages, controller);
        if pages.is_some() {
            Arc::make_mut(&mut annotations.policy).custom_errors = pages;
        }
        let mut ops = Vec::new();
        let catch_all = if annotations.canary.is_canary() {
            None
        } else {
            self.add_ingress(ours, &annotations, &mut ops)
        };
        // Grouped by host, each host's in the order made: the table is assembled host by host.
        ops.sort_by(|a, b| a.host().cmp(b.host()));
        // Every host its rules name, the empty one (every host) too: whether it is a regex
        // host changes this Ingress's paths there.
        let mut hosts = rule_hosts(ours.ingress);
        let rules = ours.ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        if rules
            .into_iter()
            .flatten()
            .any(|r| r.host.as_deref().unwrap_or("").is_empty())
        {
            hosts.insert(HostMatch::Any);
        }
        let hosts = hosts
            .into_iter()
            .map(|host| {
                let (tls, regex) = self.host_kind(&host);
                (host, tls, regex)
            })
            .collect();
        RoutesMemo {
            services: self.backends.take_reads(),
            hosts,
            annotations,
            ops,
            catch_all,
            diagnostics: self.diagnostics.split_off(start),
        }
    }

    /// Whether `host` is a TLS host and whether it is a regex host: what the routes of an
    /// Ingress on it depend on beside the Ingress.
    fn host_kind(&self, host: &HostMatch) -> (bool, bool) {
        (self.is_tls_host(host), self.regex_hosts.contains(host))
    }

    /// Adds the routes of Ingress `me` on `host` to the table, reporting conflicts with older
    /// ones.
    fn apply_host(&mut self, me: &ObjectRef, routes: &RoutesMemo, host: &HostMatch) {
        for op in routes.ops_on(host) {
            match op {
                Op::Declare(_) => self.table.declare_host(host),
                Op::Insert(_, path, route) => self.insert(me, host, path, route.clone()),
                Op::Fallback(_, route) => {
                    if let Err(winner) = self.table.set_host_fallback(host, route.clone()) {
                        let message = format!(
                            "spec.defaultBackend is not used for host \"{host}\": Ingress {} {} \
                             already provides the default backend for that host",
                            quoted(&winner.ingress),
                            self.precedence(&winner.ingress, me),
                        );
                        self.report(me, Reason::DefaultBackendConflict, message);
                    }
                }
            }
        }
    }

    /// The host of `rule` as written and as matched; `None` (reported) when it is not a valid
    /// host, and the rule is ignored.
    fn rule_host<'r>(
        &mut self,
        me: &ObjectRef,
        rule: &'r IngressRule,
    ) -> Option<(&'r str, HostMatch)> {
        let raw_host = rule.host.as_deref().unwrap_or("");
        if let Err(why) = validate::check_host(raw_host) {
            let message = format!("{why}; the rule is ignored");
            self.report(me, Reason::InvalidHost, message);
            return None;
        }
        Some((raw_host, HostMatch::from_rule_host(raw_host)))
    }

    /// Whether `host` is named in the `spec.tls` of one of weir's Ingresses.
    fn is_tls_host(&self, host: &HostMatch) -> bool {
        match host {
            _ if self.tls_hosts.is_empty() => false,
            HostMatch::Exact(name) => self.tls_hosts.contains(name),
            HostMatch::Wildcard(_) => self.tls_hosts.contains(&host.to_string()),
            HostMatch::Any => false,
        }
    }

    /// Reports a path that cannot be used; `what` says why.
    fn drop_path(&mut self, me: &ObjectRef, refused: bool, what: String) {
        let consequence = if refused {
            "it is matched literally and answers 503 like the rest of this Ingress (fail closed)"
        } else {
            "the path is ignored"
        };
        self.report(me, Reason::InvalidPath, format!("{what}; {consequence}"));
    }

    /// What the catch-all of a rule-less Ingress has: its policy without redirect or rewrite,
    /// which ingress-nginx does not apply there either.
    fn catch_all_parts(&self, annotations: &IngressAnnotations) -> RouteParts {
        let mut parts = self.parts(annotations, false);
        let policy = &annotations.policy;
        if policy.redirect.is_some() || policy.rewrite.target.is_some() {
            parts.policy = Arc::new(Policy {
                redirect: None,
                rewrite: Rewrite {
                    target: None,
                    forwarded_prefix: None,
                    ..policy.rewrite.clone()
                },
                ..(**policy).clone()
            });
        }
        parts
    }

    /// What the routes of an Ingress on a host share.
    fn parts(&self, annotations: &IngressAnnotations, tls_host: bool) -> RouteParts {
        RouteParts {
            https: self.https(annotations, tls_host),
            policy: annotations.policy.clone(),
            regex: None,
            upstream: upstream_of(annotations),
        }
    }

    /// Reports a rewrite target that refers to a capture group the path does not have.
    fn check_captures(
        &mut self,
        me: &ObjectRef,
        annotations: &IngressAnnotations,
        regex: &PathRegex,
    ) {
        let Some(target) = &annotations.policy.rewrite.target else {
            return;
        };
        let groups = regex.groups();
        if target.highest_group() > groups {
            let message = format!(
                "rewrite-target {:?} refers to ${} but path {:?} has {groups} capture group(s); \
                 the missing ones expand to nothing (as in ingress-nginx)",
                target.as_str(),
                target.highest_group(),
                regex.as_str(),
            );
            self.report(me, Reason::InvalidAnnotationValue, message);
        }
    }

    /// Inserts one rule, reporting a conflict with an earlier one.
    fn insert(&mut self, me: &ObjectRef, host: &HostMatch, path: &PathRule, route: Arc<Route>) {
        let Err(winner) = self.table.insert(host, path, route) else {
            return;
        };
        let kind = match path.kind {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::Regex => "regex",
        };
        let what = match host {
            HostMatch::Any => format!("path {:?} ({kind}) for all hosts", path.path),
            _ => format!("host \"{host}\" path {:?} ({kind})", path.path),
        };
        let message = if winner.ingress == *me {
            format!("{what} is defined twice in this Ingress; the first definition is used")
        } else {
            format!(
                "{what} is already routed by Ingress {} {}; this path is ignored",
                quoted(&winner.ingress),
                self.precedence(&winner.ingress, me),
            )
        };
        self.report(me, Reason::RouteConflict, message);
    }

    /// The route of Ingress `me` to `backend` with `parts`, or `None` when the backend is
    /// unusable. Reports what is wrong with the backend either way.
    fn route(
        &mut self,
        me: &ObjectRef,
        backend: &IngressBackend,
        site: &Site<'_>,
        parts: RouteParts,
    ) -> Option<Arc<Route>> {
        let service = match (&backend.service, &backend.resource) {
            (Some(service), None) => service,
            (_, Some(resource)) => {
                let message = format!(
                    "{site} is a resource backend ({} {:?}); weir only routes to Services, so it is ignored",
                    resource.kind, resource.name
                );
                self.report(me, Reason::UnsupportedBackend, message);
                return None;
            }
            (None, None) => {
                let message = format!("{site} names no service; it is ignored");
                self.report(me, Reason::UnsupportedBackend, message);
                return None;
            }
        };
        let resolved = self
            .backends
            .resolve(&me.namespace, service, parts.upstream);
        for problem in resolved.problems {
            let message = format!("{} (referenced by {site}); {}", problem.what, problem.hint);
            self.report(me, problem.reason, message);
        }
        let location = match site {
            Site::Rule { host, path } => Arc::from(format!("{host} {path}")),
            Site::DefaultBackend => Arc::from(""),
        };
        Some(Arc::new(Route {
            ingress: me.clone(),
            backend: resolved.backend,
            https: parts.https,
            policy: parts.policy,
            regex: parts.regex,
            location,
            canary: None,
        }))
    }

    /// Applies the host-scope annotations (`app-root`, `server-alias`,
    /// `from-to-www-redirect`, `auth-tls-*`, `ssl-passthrough`) of each Ingress to the hosts it
    /// names; for each host and setting the oldest Ingress that sets it decides (for
    /// `ssl-passthrough`: the oldest Ingress that names the host).
    fn set_host_settings(&mut self, ours: &[OurIngress<'_>], annotations: &[&IngressAnnotations]) {
        let mut alias_owner: BTreeMap<HostMatch, (HostMatch, ObjectRef)> = BTreeMap::new();
        let mut hosts_with_aliases: BTreeMap<HostMatch, ObjectRef> = BTreeMap::new();
        let mut www: Vec<(String, ObjectRef)> = Vec::new();
        let passthrough = annotations.iter().any(|a| a.host.passthrough);
        let owners = if passthrough {
            host_owners(ours, annotations)
        } else {
            BTreeMap::new()
        };
        for (ours, annotations) in ours.iter().zip(annotations) {
            let settings = &annotations.host;
            if settings.is_empty() || annotations.canary.is_canary() {
                continue;
            }
            let me = ours.object;
            let hosts = rule_hosts(ours.ingress);
            // Client certificates protect the whole host, also when this Ingress fails closed
            // (its unusable ones make the host refuse every request).
            if let Some(auth) = &settings.client_auth {
                for host in &hosts {
                    if !self.table.set_client_auth(host, auth.clone()) {
                        let message = format!(
                            "the auth-tls-* annotations are not used for host \"{host}\": an \
                             older Ingress sets that host's client certificates"
                        );
                        self.report(me, Reason::HostSettingConflict, message);
                    }
                }
            }
            // A failing-closed Ingress's other host settings would serve around its 503.
            if annotations.policy.refused.is_some() {
                continue;
            }
            if settings.passthrough {
                self.set_passthrough(me, &hosts, &owners);
            }
            for host in &hosts {
                if let Some(app_root) = &settings.app_root
                    && !self.table.set_app_root(host, app_root.clone())
                {
                    let message = format!(
                        "app-root is not used for host \"{host}\": an older Ingress sets it"
                    );
                    self.report(me, Reason::HostSettingConflict, message);
                }
                if !settings.aliases.is_empty() {
                    if let Some(first) = hosts_with_aliases.get(host) {
                        let message = format!(
                            "server-alias is not used for host \"{host}\": Ingress {} already \
                             sets the aliases of that host",
                            quoted(first)
                        );
                        self.report(me, Reason::HostSettingConflict, message);
                    } else {
                        hosts_with_aliases.insert(host.clone(), me.clone());
                        for alias in &settings.aliases {
                            self.add_alias(me, alias, host, &mut alias_owner);
                        }
                    }
                }
                if settings.www_redirect
                    && let HostMatch::Exact(name) = host
                {
                    www.push((name.clone(), me.clone()));
                }
            }
        }
        for (host, me) in www {
            let other = match host.strip_prefix("www.") {
                Some(bare) => bare.to_owned(),
                None => format!("www.{host}"),
            };
            let other_match = HostMatch::Exact(other.clone());
            if self.table.has_host(&other_match) || alias_owner.contains_key(&other_match) {
                let message = format!(
                    "from-to-www-redirect does not redirect \"{other}\" to \"{host}\": \
                     \"{other}\" is served by rules of its own"
                );
                self.report(&me, Reason::HostSettingConflict, message);
                continue;
            }
            self.table
                .set_redirect_host(&other, &host, self.defaults.https_redirect_code);
        }
        if passthrough {
            self.report_passed_through(ours, annotations);
        }
    }

    /// `ssl-passthrough` of Ingress `me` on its `hosts`: each host it is the oldest to name
    /// passes its TLS connections to the backend of its path `/` in `me` (else `me`'s
    /// `spec.defaultBackend`). A newer Ingress cannot take a host's TLS away from an older one
    /// (every path of the host would go with it), as in ingress-nginx, where the Ingress that
    /// creates a server decides.
    fn set_passthrough(
        &mut self,
        me: &ObjectRef,
        hosts: &BTreeSet<HostMatch>,
        owners: &BTreeMap<HostMatch, ObjectRef>,
    ) {
        if hosts.is_empty() {
            let message = "ssl-passthrough has no effect: this Ingress names no host, and TLS \
                           connections are passed through by the host name of their SNI";
            self.report(me, Reason::HostSettingConflict, message.to_owned());
            return;
        }
        for host in hosts {
            if let Some(owner) = owners.get(host).filter(|owner| *owner != me) {
                let message = format!(
                    "ssl-passthrough is not used for host \"{host}\": Ingress {} {} names that \
                     host too, without it, and a host's TLS connections go to one place; weir \
                     terminates them and serves this Ingress's paths on it as HTTPS",
                    quoted(owner),
                    self.precedence(owner, me),
                );
                self.report(me, Reason::HostSettingConflict, message);
                continue;
            }
            let route = self.table.root_route(host, me);
            if route.is_none() {
                let message = format!(
                    "ssl-passthrough: host \"{host}\" has no backend in this Ingress for path \
                     \"/\" (a rule for \"/\" or spec.defaultBackend), which its TLS connections \
                     go to; they are closed until it has one"
                );
                self.report(me, Reason::UnsupportedBackend, message);
            }
            let passthrough = Passthrough {
                ingress: me.clone(),
                route,
            };
            self.table.set_passthrough(host, passthrough);
        }
    }

    /// Tells the other Ingresses of a passthrough host that their paths there are reached
    /// over plain HTTP only.
    fn report_passed_through(
        &mut self,
        ours: &[OurIngress<'_>],
        annotations: &[&IngressAnnotations],
    ) {
        for (ours, annotations) in ours.iter().zip(annotations) {
            if annotations.canary.is_canary() {
                continue;
            }
            let me = ours.object;
            for host in rule_hosts(ours.ingress) {
                let Some(owner) = self
                    .table
                    .passthrough(&host)
                    .map(|p| &p.ingress)
                    .filter(|owner| *owner != me)
                else {
                    continue;
                };
                let message = format!(
                    "host \"{host}\" passes its TLS connections through to the backend of \
                     Ingress {} (ssl-passthrough): this Ingress's paths on it are reached over \
                     plain HTTP only",
                    quoted(owner)
                );
                self.report(me, Reason::HostSettingConflict, message);
            }
        }
    }

    fn add_alias(
        &mut self,
        me: &ObjectRef,
        alias: &HostMatch,
        host: &HostMatch,
        owners: &mut BTreeMap<HostMatch, (HostMatch, ObjectRef)>,
    ) {
        if alias == host {
            return;
        }
        if self.table.has_host(alias) {
            let message = format!(
                "server-alias \"{alias}\" of host \"{host}\" is not used: \"{alias}\" has rules \
                 of its own, which serve it"
            );
            self.report(me, Reason::HostSettingConflict, message);
            return;
        }
        if let Some((other, owner)) = owners.get(alias) {
            let message = format!(
                "server-alias \"{alias}\" of host \"{host}\" is not used: it is already an \
                 alias of host \"{other}\" (Ingress {})",
                quoted(owner)
            );
            self.report(me, Reason::HostSettingConflict, message);
            return;
        }
        owners.insert(alias.clone(), (host.clone(), me.clone()));
        self.table.add_alias(alias.clone(), host.clone());
    }

    /// Chooses the catch-all default backend among `(has_rules, ingress, route)` candidates
    /// given oldest first: only Ingresses without rules qualify (an Ingress with rules already
    /// has its defaultBackend serve its own hosts).
    fn set_catch_all(&mut self, candidates: Vec<(bool, ObjectRef, Arc<Route>)>) {
        for (_, me, route) in candidates
            .into_iter()
            .filter(|(has_rules, _, _)| !has_rules)
        {
            let Err(winner) = self.table.set_catch_all(route) else {
                continue;
            };
            let message = format!(
                "spec.defaultBackend is not the default backend for all hosts: Ingress {} {} \
                 already provides it; remove one of the two",
                quoted(&winner.ingress),
                self.precedence(&winner.ingress, &me),
            );
            self.report(&me, Reason::DefaultBackendConflict, message);
        }
    }

    /// Sets the controller's default backend (`--default-backend-service`): the Service's
    /// first TCP port. When it is missing or has no ready endpoints, requests nothing else
    /// serves get weir's 404 (as ingress-nginx falls back to its built-in 404).
    fn set_default_backend(&mut self, service: Option<&ObjectRef>) {
        let Some(service) = service else {
            return;
        };
        let backend = match self.backends.first_port(service) {
            Ok(backend) => backend,
            Err(why) => {
                self.report(
                    service,
                    Reason::DefaultBackendNotUsable,
                    format!(
                        "the default backend Service (--default-backend-service) {why}; requests \
                         nothing else serves are answered 404"
                    ),
                );
                return;
            }
        };
        let resolved = self
            .backends
            .resolve(&service.namespace, &backend, Upstream::Endpoints);
        for problem in &resolved.problems {
            let consequence = if resolved.backend.endpoints.is_empty() {
                "; requests nothing else serves are answered 404 until it has ready endpoints"
            } else {
                ""
            };
            self.report(
                service,
                Reason::DefaultBackendNotUsable,
                format!(
                    "the default backend Service (--default-backend-service): {}{consequence}",
                    problem.what
                ),
            );
        }
        if resolved.backend.endpoints.is_empty() {
            return;
        }
        let mut route = Route::new(service.clone(), resolved.backend);
        let mut policy = Policy::from_defaults(&self.defaults);
        let spec = annotations::ErrorPagesSpec {
            codes: self.defaults.custom_http_errors.clone(),
            service: None,
        };
        policy.custom_errors = self.error_pages(service, &spec, Some(service));
        route.policy = Arc::new(policy);
        self.table.set_default_backend(Arc::new(route));
    }

    /// Why `winner` takes precedence over `loser`, in parentheses.
    fn precedence(&self, winner: &ObjectRef, loser: &ObjectRef) -> &'static str {
        let created = self.created.get_or_init(|| {
            (self.ours.iter())
                .map(|o| {
                    let key = (o.object.namespace.as_str(), o.object.name.as_str());
                    (key, o.created)
                })
                .collect()
        });
        let created = |o: &ObjectRef| {
            let key = (o.namespace.as_str(), o.name.as_str());
            created.get(&key).copied().flatten()
        };
        match (created(winner), created(loser)) {
            (Some(w), Some(l)) if w < l => "(which is older)",
            (Some(_), None) => "(which has a creationTimestamp; this Ingress has none)",
            (None, None) => "(neither has a creationTimestamp; it sorts first by namespace/name)",
            _ => "(created at the same time; it sorts first by namespace/name)",
        }
    }
}

/// The valid hosts the rules of `ingress` name (not the empty one: every host).
fn rule_hosts(ingress: &Ingress) -> BTreeSet<HostMatch> {
    let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
    rules
        .into_iter()
        .flatten()
        .filter_map(|r| r.host.as_deref())
        .filter(|h| !h.is_empty() && validate::check_host(h).is_ok())
        .map(HostMatch::from_rule_host)
        .collect()
}

/// The oldest routed Ingress that names each host: the one whose `ssl-passthrough` decides.
fn host_owners(
    ours: &[OurIngress<'_>],
    annotations: &[&IngressAnnotations],
) -> BTreeMap<HostMatch, ObjectRef> {
    let mut owners = BTreeMap::new();
    for (ours, annotations) in ours.iter().zip(annotations) {
        if annotations.canary.is_canary() {
            continue;
        }
        for host in rule_hosts(ours.ingress) {
            owners.entry(host).or_insert_with(|| ours.object.clone());
        }
    }
    owners
}

/// Where the backends of an Ingress with `annotations` send: the endpoints, or the Service's
/// cluster IP (`service-upstream`).
fn upstream_of(annotations: &IngressAnnotations) -> Upstream {
    if annotations.service_upstream {
        Upstream::ClusterIp
    } else {
        Upstream::Endpoints
    }
}

/// A route of `me` that refuses every request (its Ingress fails closed), for a path or
/// backend that cannot be used otherwise.
fn refusing_route(me: &ObjectRef, parts: RouteParts) -> Arc<Route> {
    let backend = super::Backend::new(
        ObjectRef::new(ObjectKind::Service, &me.namespace, ""),
        "",
        vec![],
    );
    Arc::new(Route {
        ingress: me.clone(),
        backend: Arc::new(backend),
        https: parts.https,
        policy: parts.policy,
        regex: parts.regex,
        location: Arc::from(""),
        canary: None,
    })
}

fn quoted(object: &ObjectRef) -> String {
    format!("\"{}/{}\"", object.namespace, object.name)
}

/// The policy of a path in `no-auth-locations` (it starts with one of them): without the
/// global authentication it would have. `None`: unchanged.
fn without_global_auth(
    policy: &Arc<Policy>,
    path: &str,
    no_auth_locations: &[String],
) -> Option<Arc<Policy>> {
    let access = policy.access.as_ref()?;
    if !access.external.as_ref()?.global
        || !no_auth_locations
            .iter()
            .any(|location| path.starts_with(location.as_str()))
    {
        return None;
    }
    let access = Access {
        external: None,
        ..(**access).clone()
    };
    let is_empty = access.allow.is_none() && access.deny.is_none() && access.basic.is_none();
    Some(Arc::new(Policy {
        access: (!is_empty).then(|| Arc::new(access)),
        ..(**policy).clone()
    }))
}

mod canaries;
mod error_pages;
mod hosts;
#[cfg(test)]
mod incremental_tests;
mod memo;
mod order;
#[cfg(test)]
mod shuffle_tests;
#[cfg(test)]
mod tests;

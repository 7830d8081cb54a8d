//! `build`: Input → RouteTable + diagnostics.
//!
//! Steps: pick weir's Ingresses ([`Classes`]), order them oldest first, then for each one
//! read its annotations, validate its rules, resolve their backends ([`Backends`]) and insert
//! the routes (the first insert of a host+path wins, so the oldest Ingress wins a conflict).
//! Last, choose the catch-all default backend.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::annotations;
use super::classes::Classes;
use super::diagnostic::{Diagnostic, ObjectKind, ObjectRef, Reason};
use super::endpoints::Backends;
use super::objects::index_by_name;
use super::table::{HostMatch, HttpsPolicy, PathRule, Route, RouteTableBuilder};
use super::validate;
use super::{BuildConfig, Built, Input, TlsBinding};

/// Builds the routing table for `input`. Never fails and never panics: objects that cannot be
/// used become [`Diagnostic`]s and everything else is routed. The result does not depend on
/// the order of the objects in `input`.
///
/// Precedence is by age: Ingresses are processed by `metadata.creationTimestamp` (an Ingress
/// without one comes after all that have one), then namespace, then name. The first Ingress
/// to claim a host+path keeps it; later ones get a `RouteConflict`. The same order decides
/// which `spec.defaultBackend` serves a host's unmatched paths and, among Ingresses without
/// rules first, which one is the catch-all default backend.
pub fn build(input: &Input, config: &BuildConfig) -> Built {
    let classes = Classes::new(&input.ingress_classes, config);
    let ours = ordered_ingresses(input, &classes);
    let mut builder = Builder {
        table: RouteTableBuilder::new(),
        backends: Backends::new(input, config.balance_seed),
        diagnostics: Vec::new(),
        created: ours.iter().map(|i| (i.object.clone(), i.created)).collect(),
        tls_hosts: tls_hosts(&ours),
    };

    let mut catch_all = Vec::new();
    for ingress in &ours {
        if let Some(route) = builder.add_ingress(ingress) {
            catch_all.push((ingress.has_rules, ingress.object.clone(), route));
        }
    }
    builder.set_catch_all(catch_all);
    let tls = tls_bindings(&ours, &mut builder.diagnostics);

    let Builder {
        table,
        mut diagnostics,
        ..
    } = builder;
    diagnostics.sort();
    diagnostics.dedup();
    let mut ingresses: Vec<ObjectRef> = ours.into_iter().map(|i| i.object).collect();
    ingresses.sort();
    Built {
        table: table.build(),
        diagnostics,
        tls,
        ingresses,
    }
}

/// Every valid host named in the `spec.tls` of weir's Ingresses, lower-case (with or without a
/// Secret: hosts without one are served the default certificate, and are still TLS hosts).
fn tls_hosts(ours: &[OurIngress<'_>]) -> BTreeSet<String> {
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
        let me = &ours.object;
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
    object: ObjectRef,
    created: Option<&'a Time>,
    has_rules: bool,
    ingress: &'a Ingress,
}

/// weir's Ingresses, oldest first (see [`build`]), each (namespace, name) once.
fn ordered_ingresses<'a>(input: &'a Input, classes: &Classes<'_>) -> Vec<OurIngress<'a>> {
    let mut ours: Vec<OurIngress<'a>> = index_by_name(&input.ingresses, |i| &i.metadata)
        .into_iter()
        .filter(|(_, ingress)| classes.is_ours(ingress))
        .map(|((ns, name), ingress)| OurIngress {
            object: ObjectRef::new(ObjectKind::Ingress, ns, name),
            created: ingress.metadata.creation_timestamp.as_ref(),
            has_rules: ingress
                .spec
                .as_ref()
                .and_then(|s| s.rules.as_ref())
                .is_some_and(|r| !r.is_empty()),
            ingress,
        })
        .collect();
    ours.sort_by(|a, b| {
        let key = |i: &OurIngress<'a>| (i.created.is_none(), i.created);
        key(a).cmp(&key(b)).then_with(|| a.object.cmp(&b.object))
    });
    ours
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

struct Builder<'a> {
    table: RouteTableBuilder,
    backends: Backends<'a>,
    diagnostics: Vec<Diagnostic>,
    created: BTreeMap<ObjectRef, Option<&'a Time>>,
    /// Every valid host in the `spec.tls` of weir's Ingresses, lower-case.
    tls_hosts: BTreeSet<String>,
}

impl Builder<'_> {
    fn report(&mut self, object: &ObjectRef, reason: Reason, message: String) {
        self.diagnostics
            .push(Diagnostic::new(object.clone(), reason, message));
    }

    /// Adds the rules of one Ingress; returns the route of its `spec.defaultBackend`, if any.
    ///
    /// The defaultBackend also becomes the fallback of every valid host the Ingress has a rule
    /// for (a rule without `http` included: it names the host, the defaultBackend serves it).
    /// Rules without a host get no fallback of their own: "every host" is the catch-all's
    /// job, so that Ingresses without rules keep their precedence there.
    fn add_ingress(&mut self, ours: &OurIngress<'_>) -> Option<Arc<Route>> {
        let me = &ours.object;
        let annotations = annotations::parse(
            me,
            ours.ingress.metadata.annotations.as_ref(),
            &mut self.diagnostics,
        );
        let read_timeout = annotations.proxy_read_timeout;
        let spec = ours.ingress.spec.as_ref()?;
        let default_route = spec.default_backend.as_ref().and_then(|b| {
            let https = HttpsPolicy {
                tls_host: false,
                redirect: annotations.force_ssl_redirect,
            };
            self.route(me, b, &Site::DefaultBackend, https, read_timeout)
        });

        let mut hosts = BTreeSet::new();
        for rule in spec.rules.iter().flatten() {
            let raw_host = rule.host.as_deref().unwrap_or("");
            if let Err(why) = validate::check_host(raw_host) {
                self.report(
                    me,
                    Reason::InvalidHost,
                    format!("{why}; the rule is ignored"),
                );
                continue;
            }
            let host = HostMatch::from_rule_host(raw_host);
            if host != HostMatch::Any {
                hosts.insert(host.clone());
            }
            let tls_host = host != HostMatch::Any && self.tls_hosts.contains(&host.to_string());
            let https = HttpsPolicy {
                tls_host,
                redirect: annotations.force_ssl_redirect || (tls_host && annotations.ssl_redirect),
            };
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let raw_path = validate::rule_path(path.path.as_deref());
                let rule_path = match validate::path_rule(path.path.as_deref(), &path.path_type) {
                    Ok(rule_path) => rule_path,
                    Err(why) => {
                        let message =
                            format!("{why} (rule host {raw_host:?}); the path is ignored");
                        self.report(me, Reason::InvalidPath, message);
                        continue;
                    }
                };
                let site = Site::Rule {
                    host: raw_host,
                    path: raw_path,
                };
                if let Some(route) = self.route(me, &path.backend, &site, https, read_timeout) {
                    self.insert(me, &host, &rule_path, route);
                }
            }
        }

        if let Some(route) = &default_route {
            for host in &hosts {
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
        default_route
    }

    /// Inserts one rule, reporting a conflict with an earlier one.
    fn insert(&mut self, me: &ObjectRef, host: &HostMatch, path: &PathRule, route: Arc<Route>) {
        let Err(winner) = self.table.insert(host, path, route) else {
            return;
        };
        let what = match host {
            HostMatch::Any => format!("path {:?} ({:?}) for all hosts", path.path, path.kind),
            _ => format!("host \"{host}\" path {:?} ({:?})", path.path, path.kind),
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

    /// The route to `backend` for Ingress `me` (with that Ingress's HTTPS policy and read
    /// timeout), or `None` when the backend is unusable. Reports what is wrong with the backend
    /// either way.
    fn route(
        &mut self,
        me: &ObjectRef,
        backend: &IngressBackend,
        site: &Site<'_>,
        https: HttpsPolicy,
        read_timeout: Option<Duration>,
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
        let resolved = self.backends.resolve(&me.namespace, service);
        if let Some(problem) = resolved.problem {
            let message = format!("{} (referenced by {site}); {}", problem.what, problem.hint);
            self.report(me, problem.reason, message);
        }
        Some(Arc::new(Route {
            ingress: me.clone(),
            backend: resolved.backend,
            https,
            read_timeout,
        }))
    }

    /// Chooses the catch-all default backend among `(has_rules, ingress, route)` candidates
    /// given oldest first: Ingresses without rules take precedence, then age.
    fn set_catch_all(&mut self, mut candidates: Vec<(bool, ObjectRef, Arc<Route>)>) {
        // Stable: keeps the age order within each group.
        candidates.sort_by_key(|(has_rules, _, _)| *has_rules);
        for (has_rules, me, route) in candidates {
            let Err(winner) = self.table.set_default_backend(route) else {
                continue;
            };
            if has_rules {
                // Its defaultBackend already serves its own hosts; nothing is lost.
                continue;
            }
            let message = format!(
                "spec.defaultBackend is not the default backend for all hosts: Ingress {} {} \
                 already provides it; remove one of the two",
                quoted(&winner.ingress),
                self.precedence(&winner.ingress, &me),
            );
            self.report(&me, Reason::DefaultBackendConflict, message);
        }
    }

    /// Why `winner` takes precedence over `loser`, in parentheses.
    fn precedence(&self, winner: &ObjectRef, loser: &ObjectRef) -> &'static str {
        let created = |o: &ObjectRef| self.created.get(o).copied().flatten();
        match (created(winner), created(loser)) {
            (Some(w), Some(l)) if w < l => "(which is older)",
            (Some(_), None) => "(which has a creationTimestamp; this Ingress has none)",
            (None, None) => "(neither has a creationTimestamp; it sorts first by namespace/name)",
            _ => "(created at the same time; it sorts first by namespace/name)",
        }
    }
}

fn quoted(object: &ObjectRef) -> String {
    format!("\"{}/{}\"", object.namespace, object.name)
}

#[cfg(test)]
mod tests;

//! Canary Ingresses: each rule path of a canary adds a second backend to the route of its main
//! Ingress (the same host, path and path type), as ingress-nginx merges "alternative backends".
//! Canaries are added after every main Ingress, so age decides between canaries only: a
//! route takes the oldest canary, the others are reported.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::HTTPIngressPath;

use super::{Builder, OurIngress, Site, quoted, upstream_of};
use crate::model::annotations::IngressAnnotations;
use crate::model::balance::{Balance, CanaryBehavior};
use crate::model::canary::{Canary, CanaryRule};
use crate::model::diagnostic::{ObjectRef, Reason};
use crate::model::endpoints::Upstream;
use crate::model::table::{HostMatch, PathRule};
use crate::model::validate;

/// What became of one rule path of a canary.
enum Outcome {
    Added,
    /// No main Ingress routes this host and path.
    NoMain,
    /// The main route's backend is the canary's own.
    SameBackend(ObjectRef),
    /// An older canary holds the route.
    Taken(ObjectRef),
}

/// How a canary's endpoints are balanced: its own settings (`own`), with the main backend's
/// cookie affinity (`main`'s) unless the canary asks for `affinity-canary-behavior: legacy`.
fn canary_balance(main: &Balance, own: &Balance) -> Balance {
    let legacy = own
        .affinity
        .as_ref()
        .is_some_and(|a| a.canary == CanaryBehavior::Legacy);
    match &main.affinity {
        Some(affinity) if !legacy => Balance {
            affinity: Some(affinity.clone()),
            ..own.clone()
        },
        _ => own.clone(),
    }
}

impl Builder<'_> {
    /// Adds the canary Ingress `ours` (whose rule is `rule`) to the routes of its main Ingress.
    pub(super) fn add_canary(
        &mut self,
        ours: &OurIngress<'_>,
        annotations: &IngressAnnotations,
        rule: &CanaryRule,
    ) {
        let me = ours.object;
        let Some(spec) = ours.ingress.spec.as_ref() else {
            return;
        };
        if spec.default_backend.is_some() {
            let message = "spec.defaultBackend of a canary Ingress is not used: weir adds a \
                           canary to the routes of the same host and path only"
                .to_owned();
            self.report(me, Reason::UnsupportedBackend, message);
        }
        let upstream = upstream_of(annotations);
        for ingress_rule in spec.rules.iter().flatten() {
            let Some((raw_host, host)) = self.rule_host(me, ingress_rule) else {
                continue;
            };
            for path in ingress_rule.http.iter().flat_map(|h| &h.paths) {
                let settings = (upstream, &annotations.policy.balance);
                self.add_canary_path(me, &host, raw_host, path, settings, rule);
            }
        }
    }

    fn add_canary_path(
        &mut self,
        me: &ObjectRef,
        host: &HostMatch,
        raw_host: &str,
        path: &HTTPIngressPath,
        (upstream, own): (Upstream, &Balance),
        rule: &CanaryRule,
    ) {
        let raw_path = validate::rule_path(path.path.as_deref());
        let rule_path = if self.regex_hosts.contains(host) {
            PathRule::regex(raw_path)
        } else {
            match validate::path_rule(path.path.as_deref(), &path.path_type) {
                Ok(rule_path) => rule_path,
                Err(why) => {
                    let message = format!("{why} (rule host {raw_host:?}); the path is ignored");
                    self.report(me, Reason::InvalidPath, message);
                    return;
                }
            }
        };
        let site = Site::Rule {
            host: raw_host,
            path: raw_path,
        };
        let Some(service) = path.backend.service.as_ref() else {
            let message = format!("{site} names no service; it is ignored");
            self.report(me, Reason::UnsupportedBackend, message);
            return;
        };
        let resolved = self.backends.resolve(&me.namespace, service, upstream);
        for problem in resolved.problems {
            let message = format!("{} (referenced by {site}); {}", problem.what, problem.hint);
            self.report(me, problem.reason, message);
        }
        let backend = resolved.backend;
        // Decided on the route as it is: the host is copied (when shared) only to add it.
        let outcome = match self.table.rule_route(host, &rule_path) {
            None => Outcome::NoMain,
            Some(main) if main.backend.service == backend.service => {
                Outcome::SameBackend(main.ingress.clone())
            }
            Some(main) => match &main.canary {
                Some(taken) => Outcome::Taken(taken.ingress.clone()),
                None => Outcome::Added,
            },
        };
        if let (Outcome::Added, Some(main)) =
            (&outcome, self.table.rule_route_mut(host, &rule_path))
        {
            let balance = canary_balance(&main.policy.balance, own);
            Arc::make_mut(main).canary = Some(Arc::new(Canary {
                ingress: me.clone(),
                backend,
                rule: rule.clone(),
                balance,
            }));
        }
        let (reason, message) = match outcome {
            Outcome::Added => return,
            Outcome::NoMain => (
                Reason::CanaryWithoutMain,
                format!(
                    "{site} ({rule_path}): no other Ingress routes this host and path, so \
                     this canary takes no traffic there (a canary splits the traffic of a main \
                     Ingress with the same host, path and pathType)"
                ),
            ),
            Outcome::SameBackend(main) => (
                Reason::CanaryWithoutMain,
                format!(
                    "{site}: the canary's Service {:?} is the backend of its main Ingress {} \
                     already; the canary is not used there",
                    service.name,
                    quoted(&main)
                ),
            ),
            Outcome::Taken(older) => (
                Reason::RouteConflict,
                format!(
                    "{site} already has a canary, Ingress {} {}; this canary is not used there",
                    quoted(&older),
                    self.precedence(&older, me),
                ),
            ),
        };
        self.report(me, reason, message);
    }
}

//! What one build keeps for the next: each Ingress's parsed annotations and routes, with the
//! objects they were computed from. The next build computes again only the Ingresses whose
//! objects changed, and reuses the others' `Arc<Route>`s, so that computing routes costs the
//! changed Ingresses' and the data plane can keep the per-route state of the routes that
//! stayed (the same `Arc`). The hosts assembled from them are kept too (`super::hosts`).
//!
//! Objects are compared by identity: a source hands every build the same `Arc` for an object
//! that did not change (the cluster source its reflector stores', the manifests source its
//! per-file cache's), and a memo holds the `Arc`s it compared, so that an address is never
//! another object's.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;

use super::super::BuildConfig;
use super::super::annotations::{Context, IngressAnnotations, ObjectRead};
use super::super::diagnostic::Diagnostic;
use super::super::endpoints::{BackendCache, Backends, ServiceDeps};
use super::super::objects::same_object;
use super::super::table::{HostMatch, PathRule, Route};
use super::hosts::HostMemos;
use super::order::Order;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Builds one routing table after another and computes again only what changed since the
/// last one: the result is always what [`super::build`] gives for the same input.
#[derive(Debug, Default)]
pub struct IncrementalBuild {
    /// What every memo was computed under: the settings and the controller ConfigMap. When
    /// they change, everything is computed again.
    pub(super) global: Option<(BuildConfig, Option<Arc<ConfigMap>>)>,
    /// How many builds there were (each memo is marked with the last that used it).
    pub(super) generation: u64,
    /// The input's Ingresses, and weir's in build order.
    pub(super) order: Order,
    /// Each of weir's Ingresses as the last build computed it, by the address of its object.
    pub(super) ingresses: FastMap<usize, Box<IngressMemo>>,
    /// The backends the last build resolved.
    pub(super) backends: BackendCache,
    /// The hosts the last build assembled from the Ingresses' routes.
    pub(super) hosts: HostMemos,
}

impl IncrementalBuild {
    /// Forgets every memo when the settings or the controller ConfigMap are not those the
    /// memos were computed under.
    pub(super) fn check_global(
        &mut self,
        config: &BuildConfig,
        config_map: Option<&Arc<ConfigMap>>,
    ) {
        let same = self
            .global
            .as_ref()
            .is_some_and(|(then, map)| then == config && same_object(config_map, map.as_ref()));
        if !same {
            self.order.clear();
            self.ingresses.clear();
            self.hosts.clear();
            self.backends = BackendCache::default();
            self.global = Some((config.clone(), config_map.cloned()));
        }
    }
}

/// One Ingress as a build computed it.
#[derive(Debug)]
pub(super) struct IngressMemo {
    /// The Ingress object.
    pub ingress: Arc<Ingress>,
    /// The Secrets and ConfigMaps its annotations looked up.
    pub reads: Vec<ObjectRead>,
    /// Its annotations as parsed (before the build resolves their error backend).
    pub parsed: IngressAnnotations,
    /// What parsing reported.
    pub parse_diagnostics: Vec<Diagnostic>,
    /// Its routes; `None` until computed.
    pub routes: Option<RoutesMemo>,
    /// The last build whose input held it.
    pub generation: u64,
}

impl IngressMemo {
    /// Whether the parsed annotations still hold for `ingress` (the same object, and the same
    /// Secrets and ConfigMaps behind what they read).
    pub fn parsed_for(&self, ingress: &Arc<Ingress>, context: &Context<'_>) -> bool {
        Arc::ptr_eq(&self.ingress, ingress) && context.still_reads(&self.reads)
    }
}

/// The routes of one Ingress before they meet the other Ingresses' in the table, with what
/// they were computed from beside the Ingress and its annotations.
#[derive(Debug)]
pub(super) struct RoutesMemo {
    /// The Services looked at (namespace, name), with the objects they resolved from.
    pub services: Vec<(String, String, ServiceDeps)>,
    /// Each valid host of its rules: whether it was a TLS host and a regex host.
    pub hosts: Vec<(HostMatch, bool, bool)>,
    /// Its annotations with the error backend resolved.
    pub annotations: IngressAnnotations,
    /// What it adds to the table, grouped by host (sorted), each host's in the order made.
    pub ops: Vec<Op>,
    /// The route of its `spec.defaultBackend` when it has no rules.
    pub catch_all: Option<Arc<Route>>,
    /// What computing the routes reported (conflicts with other Ingresses come later).
    pub diagnostics: Vec<Diagnostic>,
}

impl RoutesMemo {
    /// Its ops on `host`, in the order made.
    pub fn ops_on(&self, host: &HostMatch) -> &[Op] {
        let start = self.ops.partition_point(|op| op.host() < host);
        let end = start + self.ops[start..].partition_point(|op| op.host() == host);
        &self.ops[start..end]
    }

    /// Whether the routes still hold: the same Services and endpoints, and each host still
    /// is (or is not) a TLS host and a regex host as `host_kind` says now.
    pub fn holds(
        &self,
        backends: &Backends<'_>,
        host_kind: impl Fn(&HostMatch) -> (bool, bool),
    ) -> bool {
        self.services
            .iter()
            .all(|(namespace, name, deps)| backends.matches(namespace, name, deps))
            && self
                .hosts
                .iter()
                .all(|(host, tls, regex)| host_kind(host) == (*tls, *regex))
    }
}

/// One change an Ingress makes to the table.
#[derive(Debug)]
pub(super) enum Op {
    /// A host it names (served by its rules, never by the catch-all).
    Declare(HostMatch),
    /// A rule path.
    Insert(HostMatch, PathRule, Arc<Route>),
    /// Its `spec.defaultBackend` for a host it names.
    Fallback(HostMatch, Arc<Route>),
}

impl Op {
    /// The host the op changes.
    pub fn host(&self) -> &HostMatch {
        match self {
            Op::Declare(host) | Op::Insert(host, ..) | Op::Fallback(host, _) => host,
        }
    }
}

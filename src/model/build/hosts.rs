//! Assembling the table's hosts from the Ingresses' routes, host by host, again only for the
//! hosts whose routes changed.
//!
//! A host's routes (before canaries and host settings) and the conflicts among them depend on
//! the routes of the Ingresses that name it, in build order, and on nothing else. So the build
//! keeps, for each host, the Ingresses that name it and what it assembled; a change assembles
//! again only the hosts that the routes it replaced or removed named and that the new routes
//! name. Every other host is the same `Arc<HostRoutes>` as in the last table, with the same
//! diagnostics: nothing of it is inserted again, and freeing the previous table frees only
//! what changed. (The routes for all hosts, `HostMatch::Any`, are not an `Arc` of their own:
//! they are put into every table again, from the Ingresses kept for them.)

use std::collections::HashMap;
use std::sync::Arc;

use super::super::diagnostic::Diagnostic;
use super::super::table::{HostMatch, HostRoutes};
use super::Builder;
use super::memo::{IngressMemo, RoutesMemo};
use super::order::Order;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The hosts the last build assembled, kept for the next.
#[derive(Debug, Default)]
pub(super) struct HostMemos {
    build: u64,
    hosts: FastMap<HostMatch, HostMemo>,
    /// The Ingresses (memo addresses) with rules for all hosts, in build order.
    any_host: Vec<usize>,
}

/// One host as a build assembled it.
#[derive(Debug)]
struct HostMemo {
    /// The Ingresses (memo addresses) whose routes name it, in build order.
    ingresses: Vec<usize>,
    routes: Arc<HostRoutes>,
    /// How many rules it holds.
    route_count: usize,
    /// The conflicts among its routes.
    diagnostics: Vec<Diagnostic>,
    /// The last build that assembled it.
    build: u64,
}

impl HostMemos {
    /// Forgets every host.
    pub fn clear(&mut self) {
        *self = HostMemos::default();
    }
}

/// What changed since the last build: the hosts to assemble again, and the Ingresses whose
/// routes are new.
#[derive(Debug, Default)]
pub(super) struct HostChanges {
    hosts: FastMap<HostMatch, Vec<usize>>,
}

impl HostChanges {
    /// Routes that the table loses: their hosts are assembled again.
    pub fn removed(&mut self, routes: Option<&RoutesMemo>) {
        for op in routes.into_iter().flat_map(|r| &r.ops) {
            if !self.hosts.contains_key(op.host()) {
                self.hosts.insert(op.host().clone(), Vec::new());
            }
        }
    }

    /// The new routes of the Ingress whose memo is at `address`: their hosts are assembled
    /// again, with it among their Ingresses.
    pub fn added(&mut self, address: usize, routes: &RoutesMemo) {
        if routes.annotations.canary.is_canary() {
            return; // a canary's routes are added to its main Ingress's afterwards
        }
        for op in &routes.ops {
            let added = match self.hosts.get_mut(op.host()) {
                Some(added) => added,
                None => self.hosts.entry(op.host().clone()).or_default(),
            };
            if added.last() != Some(&address) {
                added.push(address);
            }
        }
    }
}

/// Whether `routes` (of a memo of this build) change `host`.
fn names(routes: Option<&RoutesMemo>, host: &HostMatch) -> bool {
    routes.is_some_and(|r| {
        !r.annotations.canary.is_canary() && r.ops.iter().any(|op| op.host() == host)
    })
}

impl Builder<'_> {
    /// Puts the routes of weir's Ingresses (`ingresses`, by address, each with its routes
    /// computed) into the table, host by host: the hosts in `changes` are assembled again
    /// (reporting conflicts with older Ingresses), every other host is the one `memos` kept.
    pub(super) fn apply_all(
        &mut self,
        order: &Order,
        ingresses: &FastMap<usize, Box<IngressMemo>>,
        changes: HostChanges,
        memos: &mut HostMemos,
    ) {
        memos.build += 1;
        let build = memos.build;
        let routes_of = |address: &usize| ingresses.get(address).and_then(|m| m.routes.as_ref());
        // The Ingresses of a changed host: those it had that still name it, and those whose
        // new routes do, in build order.
        let members = |kept: &[usize], added: Vec<usize>, host: &HostMatch| {
            let mut all: Vec<usize> = kept
                .iter()
                .copied()
                .filter(|address| names(routes_of(address), host))
                .chain(added)
                .collect();
            all.sort_unstable();
            all.dedup();
            all.sort_unstable_by(|a, b| order.cmp_addresses(*a, *b));
            all
        };
        for (host, added) in changes.hosts {
            if host == HostMatch::Any {
                memos.any_host = members(&memos.any_host, added, &host);
                continue;
            }
            let kept = memos.hosts.remove(&host);
            let kept = kept.as_ref().map_or(&[][..], |memo| &memo.ingresses);
            let members = members(kept, added, &host);
            if members.is_empty() {
                continue; // no rule names it any more
            }
            let (count, reported) = (self.table.route_count(), self.diagnostics.len());
            for address in &members {
                let routes = routes_of(address).expect("a member has routes");
                self.apply_host(order.object(*address), routes, &host);
            }
            let memo = HostMemo {
                routes: self
                    .table
                    .host_to_keep(&host)
                    .expect("its routes were just added"),
                ingresses: members,
                route_count: self.table.route_count() - count,
                diagnostics: self.diagnostics[reported..].to_vec(),
                build,
            };
            memos.hosts.insert(host, memo);
        }
        for (host, memo) in &memos.hosts {
            if memo.build != build {
                self.table
                    .adopt_host(host, memo.routes.clone(), memo.route_count);
                self.diagnostics.extend(memo.diagnostics.iter().cloned());
            }
        }
        for address in &memos.any_host {
            let routes = routes_of(address).expect("a member has routes");
            self.apply_host(order.object(*address), routes, &HostMatch::Any);
        }
    }
}

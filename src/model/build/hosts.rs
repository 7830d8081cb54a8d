//! Assembling the table's hosts from the Ingresses' routes, host by host, again only for the
//! hosts whose routes changed.
//!
//! A host's routes (before canaries and host settings) and the conflicts among them depend on
//! the routes of the Ingresses that name it, in build order, and on nothing else. So the build
//! keeps, for each host, the Ingresses that name it and what it assembled; a change assembles
//! again only the hosts that the routes it replaced or removed named and that the new routes
//! name. Every other host goes into the new table as the same `Arc<HostRoutes>`, with the same
//! diagnostics: nothing of it is inserted again, and freeing the previous table frees only
//! what changed. Canaries and host-scope annotations are applied after, to a copy of each host
//! they touch (copy on write), so those hosts are copies in every table. The routes for all
//! hosts (`HostMatch::Any`) are not an `Arc` of their own: they are put into every table
//! again, from the Ingresses kept for them.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::diagnostic::Diagnostic;
use super::super::table::{HostMatch, HostRoutes};
use super::Builder;
use super::memo::{IngressMemo, RoutesMemo};
use super::order::Order;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The hosts the last build assembled, kept for the next. Ingresses are named by their
/// address, the key of their memo in [`super::IncrementalBuild`].
#[derive(Debug, Default)]
pub(super) struct HostMemos {
    hosts: FastMap<HostMatch, HostMemo>,
    /// The Ingresses with rules for all hosts, in build order.
    any_host: Vec<usize>,
}

/// One host as a build assembled it.
#[derive(Debug)]
struct HostMemo {
    /// The Ingresses whose routes name it, in build order.
    ingresses: Vec<usize>,
    routes: Arc<HostRoutes>,
    /// How many rules it holds.
    route_count: usize,
    /// The conflicts among its routes.
    diagnostics: Vec<Diagnostic>,
    /// The build that assembled it.
    generation: u64,
}

impl HostMemos {
    /// Forgets every host.
    pub fn clear(&mut self) {
        *self = HostMemos::default();
    }
}

/// What changed since the last build: the hosts to assemble again, each with the Ingresses
/// whose new routes name it.
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

    /// The new routes of the Ingress at `address`: their hosts are assembled again, with it
    /// among their Ingresses. (A canary has no ops: it is added to its main Ingress's routes
    /// after the hosts are assembled.)
    pub fn added(&mut self, address: usize, routes: &RoutesMemo) {
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

impl Builder<'_> {
    /// Puts the routes of weir's Ingresses (`ingresses`, by address, each with its routes
    /// computed) into the table, host by host: the hosts in `changes` are assembled again
    /// (reporting conflicts with older Ingresses) and kept in `kept` for the next build;
    /// every other host is the one `kept` has from an earlier build.
    pub(super) fn apply_all(
        &mut self,
        order: &Order,
        ingresses: &FastMap<usize, Box<IngressMemo>>,
        changes: HostChanges,
        kept: &mut HostMemos,
        generation: u64,
    ) {
        let routes_of = |address: &usize| ingresses.get(address).and_then(|m| m.routes.as_ref());
        // The Ingresses of a changed host: those it had that still name it, and those whose
        // new routes do, in build order.
        let members = |had: &[usize], added: Vec<usize>, host: &HostMatch| {
            let names =
                |address: &usize| routes_of(address).is_some_and(|r| !r.ops_on(host).is_empty());
            let mut all: Vec<usize> = had.iter().copied().filter(names).chain(added).collect();
            all.sort_unstable_by(|a, b| order.cmp_addresses(*a, *b));
            all.dedup();
            all
        };
        for (host, added) in changes.hosts {
            if host == HostMatch::Any {
                kept.any_host = members(&kept.any_host, added, &host);
                continue;
            }
            let had = kept.hosts.remove(&host);
            let members = members(
                had.as_ref().map_or(&[], |memo| &memo.ingresses),
                added,
                &host,
            );
            if members.is_empty() {
                continue; // no rule names it any more
            }
            let (count, reported) = (self.table.route_count(), self.diagnostics.len());
            for address in &members {
                let routes = routes_of(address).expect("a member has routes");
                self.apply_host(order.our(*address).object, routes, &host);
            }
            let memo = HostMemo {
                routes: self
                    .table
                    .host_to_keep(&host)
                    .expect("its routes were just added"),
                ingresses: members,
                route_count: self.table.route_count() - count,
                diagnostics: self.diagnostics[reported..].to_vec(),
                generation,
            };
            kept.hosts.insert(host, memo);
        }
        for (host, memo) in &kept.hosts {
            if memo.generation != generation {
                self.table
                    .adopt_host(host, memo.routes.clone(), memo.route_count);
                self.diagnostics.extend(memo.diagnostics.iter().cloned());
            }
        }
        for address in &kept.any_host {
            let routes = routes_of(address).expect("a member has routes");
            self.apply_host(order.our(*address).object, routes, &HostMatch::Any);
        }
    }
}

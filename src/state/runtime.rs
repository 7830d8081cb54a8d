//! What the data plane keeps per route beside an immutable table: request metrics and the
//! balancer's position, the rate limits' counts (later: latency scores, sticky tables).
//!
//! It is prepared when a table is published, from the new table and the previous snapshot's
//! runtime, so that state carries over to the next table for everything that did not change:
//! a backend (Service port) keeps its round-robin position across rebuilds, whatever else
//! changed in the cluster. The pure model never sees any of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Balancer, ConnectionCounter, Limiter};
use crate::metrics::{RouteIndex, RouteStats};
use tracing::warn;

use crate::model::{Backend, Balance, ObjectRef, Rate, Route, RouteTable, UpstreamTls};
use crate::tls::{UpstreamTlsClient, upstream_client};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The runtime state of one route of the current table.
#[derive(Debug)]
pub struct RouteRuntime {
    /// Its request metrics (`None` when request metrics are off).
    pub stats: Option<Arc<RouteStats>>,
    /// Its backend's balancer under its balancing settings.
    pub balancer: Arc<Balancer>,
    /// The counts of its Ingress's `limit-rps` and `limit-rpm` (`None` without the limit).
    pub per_second: Option<Arc<Limiter>>,
    /// See `per_second`.
    pub per_minute: Option<Arc<Limiter>>,
    /// The requests in progress of its Ingress's `limit-connections`.
    pub connections: Option<Arc<ConnectionCounter>>,
    /// The TLS client of a route whose endpoints speak TLS, or why it could not be set up
    /// (the route then answers 502 rather than talk to the endpoint otherwise).
    pub tls: Option<UpstreamTlsSetting>,
    /// The state of the route's canary backend, when it has one.
    pub canary: Option<CanaryRuntime>,
    /// The generation of the last [`Runtimes`] it is part of.
    table: AtomicU64,
}

impl RouteRuntime {
    /// Whether it holds something the other routes of its Ingress share (a rate limit, a
    /// connection counter, a TLS client).
    fn shares(&self) -> bool {
        self.per_second.is_some()
            || self.per_minute.is_some()
            || self.connections.is_some()
            || self.tls.is_some()
    }
}

/// What the data plane keeps for a route's canary backend.
#[derive(Debug)]
pub struct CanaryRuntime {
    /// The metrics of the requests it serves (labelled with the canary Ingress and Service).
    pub stats: Option<Arc<RouteStats>>,
    /// Its backend's balancer.
    pub balancer: Arc<Balancer>,
}

/// A route's TLS client towards its endpoints, or why there is none.
pub type UpstreamTlsSetting = Result<Arc<UpstreamTlsClient>, Arc<str>>;

/// TLS clients' identity across tables: the settings and the Service they verify.
type TlsKey = (Arc<UpstreamTls>, ObjectRef);

/// A rate limit's identity across tables: its Ingress and the rate (a changed rate starts
/// afresh).
type LimiterKey = (ObjectRef, Rate);

/// A balancer's identity across tables: the backend (namespace, Service, port as written)
/// and the balancing settings. Its endpoints may change: the next balancer continues it.
type BalancerKey = (String, String, String, Balance);

fn balancer_key(backend: &Backend, balance: &Balance) -> BalancerKey {
    (
        backend.service.namespace.clone(),
        backend.service.name.clone(),
        backend.port.clone(),
        balance.clone(),
    )
}

/// The [`RouteRuntime`] of every route of one table, by the route's address (the table owns
/// the routes for as long as this lives next to it in the snapshot).
#[derive(Debug, Default)]
pub struct Runtimes {
    by_route: FastMap<usize, Arc<RouteRuntime>>,
    /// Which table this is for (counts up from the first).
    generation: u64,
    /// Every balancer by identity, with the generation of the last table whose new routes
    /// asked for it. Only the next `prepare` uses it: it takes the map over (routes that did
    /// not change keep their balancer without a key being made for them).
    balancers: Mutex<FastMap<BalancerKey, (Arc<Balancer>, u64)>>,
    limiters: FastMap<LimiterKey, Arc<Limiter>>,
    counters: FastMap<(ObjectRef, u32), Arc<ConnectionCounter>>,
    tls: FastMap<TlsKey, UpstreamTlsSetting>,
}

impl Runtimes {
    /// The runtime of `table`'s routes: their stats from `stats`, their balancers from
    /// `previous` where the backend and its balancing settings were there already (continued
    /// when its endpoints changed), else new ones (a round robin starts at a random endpoint,
    /// so that replicas and restarts do not all start on the same one).
    ///
    /// A route of the previous table that is in this one (the same `Arc`: the model reuses the
    /// routes of Ingresses that did not change) keeps its runtime as it is.
    pub fn prepare(
        table: &RouteTable,
        stats: &mut RouteIndex<'_>,
        previous: &Runtimes,
    ) -> Runtimes {
        let generation = previous.generation + 1;
        let balancers = std::mem::take(&mut *lock(&previous.balancers));
        // The previous runtimes, of which those of routes not in this table are dropped at the
        // end (a route at the same address is the same route: the previous table keeps its
        // routes alive while this one is prepared).
        let mut next = Runtimes {
            generation,
            by_route: previous.by_route.clone(),
            balancers: Mutex::new(balancers),
            ..Runtimes::default()
        };
        // Whether a runtime is not (yet) part of this generation.
        let unmarked = |runtime: &RouteRuntime| runtime.table.load(Ordering::Relaxed) != generation;
        // First the routes that stay, then the new ones, which then find what the kept ones
        // share.
        let mut fresh: Vec<&Arc<Route>> = Vec::new();
        for entry in table.entries() {
            let address = Arc::as_ptr(entry.route) as usize;
            let Some(kept) = next.by_route.get(&address) else {
                fresh.push(entry.route);
                continue;
            };
            if !unmarked(kept) {
                continue; // kept already: a route reached from several rules
            }
            let kept_stats = kept.stats.as_ref();
            if kept.canary.is_none()
                && same_stats(kept_stats, stats.route(entry.route, kept_stats).as_ref())
            {
                kept.table.store(generation, Ordering::Relaxed);
                if kept.shares() {
                    let kept = kept.clone();
                    next.keep(entry.route, &kept);
                }
            } else {
                fresh.push(entry.route);
            }
        }
        let mut added = false;
        // The balancers of the routes kept from the previous table: made when first needed.
        let mut kept_balancers: Option<FastMap<usize, ()>> = None;
        // The balancers already found for a backend (its `Arc`: routes of one Service port
        // share it) by settings: most routes then need no key made of owned strings.
        let mut by_backend: FastMap<usize, Vec<(&Balance, Arc<Balancer>)>> = FastMap::default();
        let mut balancer_of = |next: &mut Runtimes, backend: &Arc<Backend>, balance| {
            let known = by_backend.entry(Arc::as_ptr(backend) as usize).or_default();
            if let Some((_, balancer)) = known.iter().find(|(b, _)| *b == balance) {
                return balancer.clone();
            }
            added = true;
            let balancer = next.balancer(backend, balance, &mut kept_balancers);
            known.push((balance, balancer.clone()));
            balancer
        };
        for shared in fresh {
            let address = Arc::as_ptr(shared) as usize;
            if next.by_route.get(&address).is_some_and(|r| !unmarked(r)) {
                continue; // a route reached from several rules
            }
            let route: &Route = shared;
            let balancer = balancer_of(&mut next, &route.backend, &route.policy.balance);
            let limits = route.policy.rate_limits.as_deref();
            let mut limiter = |rate: Option<Rate>| {
                let key = (route.ingress.clone(), rate?);
                let limiter = next
                    .limiters
                    .get(&key)
                    .or_else(|| previous.limiters.get(&key))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Limiter::new(key.1)));
                next.limiters.insert(key, limiter.clone());
                Some(limiter)
            };
            let per_second = limiter(limits.and_then(|l| l.per_second));
            let per_minute = limiter(limits.and_then(|l| l.per_minute));
            let connections = limits.and_then(|l| l.connections).map(|limit| {
                let key = (route.ingress.clone(), limit);
                let counter = next
                    .counters
                    .get(&key)
                    .or_else(|| previous.counters.get(&key))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ConnectionCounter::new(limit)));
                next.counters.insert(key, counter.clone());
                counter
            });
            let tls = route.policy.upstream.tls.as_ref().map(|tls| {
                let key = (tls.clone(), route.backend.service.clone());
                let setting = next
                    .tls
                    .get(&key)
                    .or_else(|| previous.tls.get(&key))
                    .cloned()
                    .unwrap_or_else(|| compile_tls(&key));
                next.tls.insert(key, setting.clone());
                setting
            });
            let canary = route.canary.as_ref().map(|canary| CanaryRuntime {
                stats: stats.canary(shared, canary),
                balancer: balancer_of(&mut next, &canary.backend, &canary.balance),
            });
            let runtime = RouteRuntime {
                stats: stats.route(shared, None),
                balancer,
                canary,
                per_second,
                per_minute,
                connections,
                tls,
                table: AtomicU64::new(generation),
            };
            next.by_route.insert(address, Arc::new(runtime));
        }
        // The runtimes of the routes that left.
        next.by_route.retain(|_, runtime| !unmarked(runtime));
        if added || lock(&next.balancers).len() > 2 * next.by_route.len() + 16 {
            // Forget the balancers no route uses any more (only this map holds them).
            lock(&next.balancers).retain(|_, (balancer, _)| Arc::strong_count(balancer) > 1);
        }
        next
    }

    /// Registers what the kept runtime of `route` shares with other routes (its rate limits,
    /// connection counter, TLS client), so that new routes of its Ingress find them.
    fn keep(&mut self, route: &Route, kept: &RouteRuntime) {
        let limits = route.policy.rate_limits.as_deref();
        let rates = [
            (limits.and_then(|l| l.per_second), &kept.per_second),
            (limits.and_then(|l| l.per_minute), &kept.per_minute),
        ];
        for (rate, limiter) in rates {
            if let (Some(rate), Some(limiter)) = (rate, limiter) {
                self.limiters
                    .insert((route.ingress.clone(), rate), limiter.clone());
            }
        }
        if let (Some(limit), Some(counter)) =
            (limits.and_then(|l| l.connections), &kept.connections)
        {
            self.counters
                .insert((route.ingress.clone(), limit), counter.clone());
        }
        if let (Some(tls), Some(setting)) = (&route.policy.upstream.tls, &kept.tls) {
            let key = (tls.clone(), route.backend.service.clone());
            self.tls.insert(key, setting.clone());
        }
    }

    /// The balancer of `backend` under `balance` in the table being prepared: the one
    /// another route already has, else `previous`'s (continued when the endpoints changed),
    /// else a new one. `kept` holds the balancers (by address) of the routes kept from the
    /// previous table, which are in this table too (made here when first needed).
    fn balancer(
        &mut self,
        backend: &Backend,
        balance: &Balance,
        kept: &mut Option<FastMap<usize, ()>>,
    ) -> Arc<Balancer> {
        let key = balancer_key(backend, balance);
        let generation = self.generation;
        let balancers = self.balancers.get_mut().unwrap_or_else(|e| e.into_inner());
        let old = match balancers.get_mut(&key) {
            Some((balancer, used)) if balancer.endpoints() == backend.endpoints.as_slice() => {
                *used = generation;
                return balancer.clone();
            }
            // The same Service port and settings with other endpoints in this table
            // (`service-upstream` on one of the Ingresses to it: the cluster IP): a balancer
            // of its own, made anew with each table.
            Some((balancer, used))
                if *used == generation || {
                    let kept = kept.get_or_insert_with(|| {
                        (self.by_route.values())
                            .filter(|r| r.table.load(Ordering::Relaxed) == generation)
                            .map(|r| (Arc::as_ptr(&r.balancer) as usize, ()))
                            .collect()
                    });
                    kept.contains_key(&(Arc::as_ptr(balancer) as usize))
                } =>
            {
                let name = format!("{}/{}:{} (cluster IP)", key.0, key.1, key.2);
                return Arc::new(Balancer::new(&name, &backend.endpoints, balance, None));
            }
            Some((old, _)) => Some(old.clone()),
            None => None,
        };
        let name = format!("{}/{}:{}", key.0, key.1, key.2);
        let balancer = Arc::new(Balancer::new(
            &name,
            &backend.endpoints,
            balance,
            old.as_deref(),
        ));
        balancers.insert(key, (balancer.clone(), generation));
        balancer
    }

    /// The runtime of `route`, when it is a route of the table this was prepared for.
    pub fn get(&self, route: &Arc<Route>) -> Option<&Arc<RouteRuntime>> {
        self.by_route.get(&(Arc::as_ptr(route) as usize))
    }

    /// How many routes have a runtime.
    pub fn len(&self) -> usize {
        self.by_route.len()
    }

    /// True when the table had no routes.
    pub fn is_empty(&self) -> bool {
        self.by_route.is_empty()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a kept runtime's stats are those the index gives its route now.
fn same_stats(kept: Option<&Arc<RouteStats>>, now: Option<&Arc<RouteStats>>) -> bool {
    match (kept, now) {
        (Some(kept), Some(now)) => Arc::ptr_eq(kept, now),
        (None, None) => true,
        _ => false,
    }
}

/// The TLS client of `tls` towards `service`'s endpoints (a failure is logged once here).
fn compile_tls((tls, service): &TlsKey) -> UpstreamTlsSetting {
    upstream_client(tls, service).map(Arc::new).map_err(|error| {
        warn!(service = %service, %error, "the TLS settings towards the endpoints cannot be used; requests there get 502");
        Arc::from(error.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        HostMatch, LoadBalance, ObjectKind, ObjectRef, PathRule, RouteTableBuilder,
    };
    use std::net::SocketAddr;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    fn table(services: &[&str]) -> RouteTable {
        table_of(services, 3, &Balance::default())
    }

    /// Routes `/0`, `/1`… to `services`, each with `endpoints` endpoints and `balance`.
    fn table_of(services: &[&str], endpoints: u8, balance: &Balance) -> RouteTable {
        let mut builder = RouteTableBuilder::new();
        for (i, service) in services.iter().enumerate() {
            let backend = Arc::new(Backend::new(
                ObjectRef::new(ObjectKind::Service, "ns", *service),
                "80",
                addrs(endpoints),
            ));
            let mut route = Route::new(
                ObjectRef::new(ObjectKind::Ingress, "ns", format!("i{i}")),
                backend,
            );
            let mut policy = (*route.policy).clone();
            policy.balance = balance.clone();
            route.policy = Arc::new(policy);
            let route = Arc::new(route);
            builder
                .insert(&HostMatch::Any, &PathRule::prefix(&format!("/{i}")), route)
                .unwrap();
        }
        builder.build()
    }

    /// A table of `routes`, `/0`, `/1`… in order.
    fn table_with(routes: &[&Arc<Route>]) -> RouteTable {
        let mut builder = RouteTableBuilder::new();
        for (i, route) in routes.iter().enumerate() {
            let path = PathRule::prefix(&format!("/{i}"));
            builder
                .insert(&HostMatch::Any, &path, Arc::clone(route))
                .unwrap();
        }
        builder.build()
    }

    fn route_to(ingress: &str, endpoints: u8) -> Arc<Route> {
        let backend = Backend::new(
            ObjectRef::new(ObjectKind::Service, "ns", "s"),
            "80",
            addrs(endpoints),
        );
        Arc::new(Route::new(
            ObjectRef::new(ObjectKind::Ingress, "ns", ingress),
            Arc::new(backend),
        ))
    }

    #[test]
    fn a_kept_route_s_balancer_is_shared_with_new_routes_to_its_endpoints() {
        // `a` sends to the endpoints of s:80 (and has its balancer), `u` (service-upstream)
        // to its cluster IP: the same balancer key with other endpoints.
        let (a, u) = (route_to("a", 3), route_to("u", 1));
        let one = Runtimes::prepare(
            &table_with(&[&a]),
            &mut RouteIndex::off(),
            &Runtimes::default(),
        );
        let second = table_with(&[&a, &u]);
        let two = Runtimes::prepare(&second, &mut RouteIndex::off(), &one);
        // `u` is edited (a new route), `a` stays; then a new Ingress to s:80's endpoints
        // shares `a`'s balancer.
        let u2 = route_to("u", 1);
        let third = table_with(&[&a, &u2]);
        let three = Runtimes::prepare(&third, &mut RouteIndex::off(), &two);
        let a2 = route_to("a2", 3);
        let fourth = table_with(&[&a, &u2, &a2]);
        let four = Runtimes::prepare(&fourth, &mut RouteIndex::off(), &three);
        let balancer =
            |runtimes: &Runtimes, route: &Arc<Route>| runtimes.get(route).unwrap().balancer.clone();
        assert!(Arc::ptr_eq(&balancer(&one, &a), &balancer(&four, &a)));
        assert!(!Arc::ptr_eq(&balancer(&two, &a), &balancer(&two, &u)));
        assert!(!Arc::ptr_eq(&balancer(&three, &a), &balancer(&three, &u2)));
        assert!(Arc::ptr_eq(&balancer(&four, &a), &balancer(&four, &a2)));
        assert!(!Arc::ptr_eq(&balancer(&four, &a), &balancer(&four, &u2)));
    }

    #[test]
    fn balancers_carry_over_to_the_next_table_per_backend() {
        let first = table(&["a", "b"]);
        let runtimes = Runtimes::prepare(&first, &mut RouteIndex::off(), &Runtimes::default());
        assert_eq!(runtimes.len(), 2);
        let balancer_of = |runtimes: &Runtimes, table: &RouteTable, path: &str| {
            let route = table.route("h", path).unwrap();
            runtimes.get(route).unwrap().balancer.clone()
        };
        let a = balancer_of(&runtimes, &first, "/0");

        // A new table (new Route objects) with the same backend keeps its balancer; a new
        // backend gets a new one.
        let second = table(&["a", "c"]);
        let next = Runtimes::prepare(&second, &mut RouteIndex::off(), &runtimes);
        assert!(Arc::ptr_eq(&a, &balancer_of(&next, &second, "/0")));
        assert!(!Arc::ptr_eq(
            &balancer_of(&runtimes, &first, "/1"),
            &balancer_of(&next, &second, "/1")
        ));
        assert!(
            next.get(first.route("h", "/0").unwrap()).is_none(),
            "keyed by the new routes"
        );
    }

    #[test]
    fn a_route_still_in_the_table_keeps_its_runtime_and_balancers_stay_known() {
        let first = table(&["a", "b"]);
        let runtimes = Runtimes::prepare(&first, &mut RouteIndex::off(), &Runtimes::default());
        let route = first.route("h", "/0").unwrap();
        // The same routes (the model kept them): the same runtimes.
        let kept = Runtimes::prepare(&first, &mut RouteIndex::off(), &runtimes);
        assert!(Arc::ptr_eq(
            runtimes.get(route).unwrap(),
            kept.get(route).unwrap()
        ));
        // New routes to the same backend after that still find its balancer.
        let second = table(&["a", "c"]);
        let next = Runtimes::prepare(&second, &mut RouteIndex::off(), &kept);
        assert!(Arc::ptr_eq(
            &runtimes.get(route).unwrap().balancer,
            &next.get(second.route("h", "/0").unwrap()).unwrap().balancer
        ));
    }

    #[test]
    fn balancers_are_per_balancing_settings_and_continue_across_endpoint_changes() {
        let balancer_of = |runtimes: &Runtimes, table: &RouteTable| {
            runtimes
                .get(table.route("h", "/0").unwrap())
                .unwrap()
                .balancer
                .clone()
        };
        let ewma = Balance::with_load(LoadBalance::Ewma);
        let first = table_of(&["a"], 3, &ewma);
        let runtimes = Runtimes::prepare(&first, &mut RouteIndex::off(), &Runtimes::default());
        let a = balancer_of(&runtimes, &first);
        // Same settings and endpoints: the same balancer (its EWMA scores with it).
        let same = table_of(&["a"], 3, &ewma);
        let next = Runtimes::prepare(&same, &mut RouteIndex::off(), &runtimes);
        assert!(Arc::ptr_eq(&a, &balancer_of(&next, &same)));
        // Other endpoints: a new balancer of the new endpoints (continuing the old one's
        // scores, tested with the balancer).
        let grown = table_of(&["a"], 4, &ewma);
        let after = Runtimes::prepare(&grown, &mut RouteIndex::off(), &next);
        let b = balancer_of(&after, &grown);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.endpoints().len(), 4);
        // Other settings: another balancer.
        let round_robin = table_of(&["a"], 4, &Balance::default());
        let last = Runtimes::prepare(&round_robin, &mut RouteIndex::off(), &after);
        assert!(!Arc::ptr_eq(&b, &balancer_of(&last, &round_robin)));
    }
}

//! Choosing an endpoint of a backend, per request, the way ingress-nginx's Lua balancers do:
//! round robin, peak-EWMA with the power of two choices (`ewma.lua`), consistent hashing on a
//! ring with virtual nodes (`chash.lua`, `chashsubset.lua`) and cookie affinity
//! (`sticky_balanced.lua`, `sticky_persistent.lua`).
//!
//! A [`Balancer`] is made per backend and balancing settings when a table is published, from
//! the previous one when there was one (the round-robin position and the latency scores carry
//! over; an endpoint that is new gets the average score, as in ingress-nginx). Nothing is
//! locked on the request path but one endpoint's score, briefly, by EWMA.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::model::balance::{AffinityMode, Balance, LoadBalance};
use crate::model::variables::{Expr, Vars, cookie};

/// Round-robin over a backend's endpoints.
#[derive(Debug)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round-robin whose first pick is endpoint `start` (modulo their number).
    pub fn starting_at(start: usize) -> Self {
        RoundRobin {
            next: AtomicUsize::new(start),
        }
    }

    /// The next endpoint of `endpoints`, or `None` when there is none.
    pub fn pick(&self, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        self.index(endpoints.len()).map(|i| endpoints[i])
    }

    fn index(&self, n: usize) -> Option<usize> {
        match n {
            0 => None,
            1 => Some(0),
            n => Some(self.next.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

/// The endpoint chosen for a request, and what its response must carry.
#[derive(Debug)]
pub struct Picked {
    /// The endpoint.
    pub addr: SocketAddr,
    /// A new affinity cookie's value, when the request had no valid one (or
    /// `session-cookie-change-on-failure` moved it); the proxy writes the `Set-Cookie`.
    pub cookie: Option<String>,
    /// EWMA's record of this endpoint, fed by [`Picked::attempt`].
    load: Option<(Arc<Ewma>, usize)>,
}

impl Picked {
    /// `addr`, chosen without a balancer.
    pub fn endpoint(addr: SocketAddr) -> Picked {
        Picked::plain(addr)
    }

    fn plain(addr: SocketAddr) -> Picked {
        Picked {
            addr,
            cookie: None,
            load: None,
        }
    }

    /// Starts an attempt on the endpoint: under EWMA it counts as in flight until the attempt
    /// ends, and [`Attempt::finish`] records its latency. Free for the other balancers.
    pub fn attempt(&self) -> Attempt {
        Attempt {
            load: self.load.as_ref().map(|(ewma, i)| {
                ewma.endpoints[*i].in_flight.fetch_add(1, Ordering::Relaxed);
                (ewma.clone(), *i, Instant::now())
            }),
        }
    }
}

/// One attempt on a [`Picked`] endpoint (see [`Picked::attempt`]).
#[derive(Debug)]
pub struct Attempt {
    load: Option<(Arc<Ewma>, usize, Instant)>,
}

impl Attempt {
    /// Records the attempt: `answered` when the endpoint sent a response head (its latency is
    /// the time since the attempt started), else a failure (a latency of [`FAILURE_PENALTY`]
    /// at least, so that an endpoint that refuses at once does not look fast).
    pub fn finish(self, answered: bool) {
        if let Some((ewma, i, started)) = &self.load {
            let mut rtt = started.elapsed();
            if !answered {
                rtt = rtt.max(FAILURE_PENALTY);
            }
            ewma.endpoints[*i].observe(rtt.as_secs_f64(), Instant::now());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some((ewma, i, _)) = &self.load {
            ewma.endpoints[*i].in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How fast a failed attempt counts for EWMA, at least.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// The time constant of the latency scores' decay (ingress-nginx's `DECAY_TIME`).
const DECAY: f64 = 10.0;

/// EWMA's per-endpoint state, in the order of the balancer's endpoints.
#[derive(Debug)]
struct Ewma {
    endpoints: Box<[EndpointLoad]>,
}

#[derive(Debug)]
struct EndpointLoad {
    in_flight: AtomicU32,
    score: Mutex<Score>,
}

/// A latency average (seconds) and when it was last updated.
#[derive(Debug, Clone, Copy)]
struct Score {
    ewma: f64,
    touched: Instant,
}

impl Score {
    /// The average decayed towards 0 for the time since it was touched (ingress-nginx scores
    /// an endpoint as an update with a latency of 0 that it does not keep): an endpoint left
    /// alone after a slow answer is tried again in time.
    fn decayed(&self, now: Instant) -> f64 {
        self.ewma * weight(self.touched, now)
    }
}

fn weight(touched: Instant, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(touched).as_secs_f64();
    (-elapsed / DECAY).exp()
}

impl EndpointLoad {
    fn new(ewma: f64, now: Instant) -> Self {
        EndpointLoad {
            in_flight: AtomicU32::new(0),
            score: Mutex::new(Score { ewma, touched: now }),
        }
    }

    fn score(&self) -> Score {
        *self.score.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The score of choosing it now: its decayed latency times the requests it would have in
    /// flight (the small constant makes in-flight requests count before any latency is known).
    fn cost(&self, now: Instant) -> f64 {
        let in_flight = f64::from(self.in_flight.load(Ordering::Relaxed));
        (self.score().decayed(now) + 1e-6) * (in_flight + 1.0)
    }

    /// Adds one latency sample: a peak (slower than the average) replaces it at once, a
    /// faster one moves it by the time-decay weight.
    fn observe(&self, rtt: f64, now: Instant) {
        let mut score = self.score.lock().unwrap_or_else(|e| e.into_inner());
        let w = weight(score.touched, now);
        let average = score.ewma * w + rtt * (1.0 - w);
        score.ewma = average.max(rtt);
        score.touched = now;
    }
}

impl Ewma {
    /// The scores of `endpoints`, kept from `previous` (by address) where it had them; a new
    /// endpoint starts at the previous endpoints' average.
    fn new(endpoints: &[SocketAddr], previous: Option<(&[SocketAddr], &Ewma)>) -> Ewma {
        let now = Instant::now();
        let old: HashMap<SocketAddr, Score> = previous
            .map(|(addrs, ewma)| {
                addrs
                    .iter()
                    .zip(ewma.endpoints.iter())
                    .map(|(addr, load)| (*addr, load.score()))
                    .collect()
            })
            .unwrap_or_default();
        let average = if old.is_empty() {
            0.0
        } else {
            old.values().map(|s| s.ewma).sum::<f64>() / old.len() as f64
        };
        Ewma {
            endpoints: endpoints
                .iter()
                .map(|addr| match old.get(addr) {
                    Some(score) => EndpointLoad {
                        in_flight: AtomicU32::new(0),
                        score: Mutex::new(*score),
                    },
                    None => EndpointLoad::new(average, now),
                })
                .collect(),
        }
    }

    /// The better of two distinct random candidates (the power of two choices).
    fn choose(&self, candidates: &[usize]) -> Option<usize> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                let now = Instant::now();
                let (cost_a, cost_b) = (self.endpoints[a].cost(now), self.endpoints[b].cost(now));
                Some(if cost_b < cost_a { b } else { a })
            }
        }
    }
}

/// A stable 64-bit hash (FNV-1a, then MurmurHash3's finalizer to spread it): the same on
/// every replica and across restarts, so that replicas agree on where a key goes.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A consistent-hash ring: [`POINTS`] virtual nodes per node, so that removing one of N
/// nodes moves only the keys it had (about 1/N of them) and adding one takes about 1/(N+1).
#[derive(Debug)]
struct Ring {
    /// (hash, node), sorted by hash.
    points: Box<[(u64, u32)]>,
}

/// Virtual nodes per node (as resty.chash, which ingress-nginx uses: 160 per unit of weight).
const POINTS: usize = 160;

impl Ring {
    /// A ring of the nodes named `labels` (their index is what [`Ring::find`] returns).
    fn new<S: AsRef<str>>(labels: &[S]) -> Ring {
        let mut points: Vec<(u64, u32)> = labels
            .iter()
            .enumerate()
            .flat_map(|(node, label)| {
                let label = label.as_ref();
                (0..POINTS).map(move |i| {
                    let hash = stable_hash(format!("{label}#{i}").as_bytes());
                    (hash, u32::try_from(node).unwrap_or(u32::MAX))
                })
            })
            .collect();
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The node of `key`: the first point at or after its hash, around the ring.
    fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = stable_hash(key);
        let at = self.points.partition_point(|(h, _)| *h < hash);
        let (_, node) = self.points.get(at).or_else(|| self.points.first())?;
        Some(*node as usize)
    }
}

/// Cookie affinity.
#[derive(Debug)]
struct Sticky {
    mode: AffinityMode,
    change_on_failure: bool,
    cookie: String,
    /// The opaque tag of the backend after `|` in the cookie (ingress-nginx's `backend_key`).
    tag: String,
    /// `balanced`: the cookie's key on a ring of the endpoints.
    ring: Ring,
    /// `persistent`: each endpoint's opaque hash, by hash.
    hashes: HashMap<String, usize>,
}

/// How many random keys `balanced` tries for one that lands on an endpoint not tried yet
/// (ingress-nginx's `MAX_UPSTREAM_CHECKS_COUNT`).
const KEY_TRIES: usize = 20;

impl Sticky {
    /// The endpoint the request's cookie names, if it is valid and names one.
    fn cookie_endpoint(&self, vars: &Vars<'_>) -> Option<usize> {
        let value = cookie(vars.headers, &self.cookie)?;
        let key = value.split('|').next().filter(|k| !k.is_empty())?;
        match self.mode {
            AffinityMode::Balanced => self.ring.find(key.as_bytes()),
            AffinityMode::Persistent => self.hashes.get(key).copied(),
        }
    }

    /// A new endpoint, not one of `tried`, and its cookie value.
    fn fresh(&self, endpoints: &[SocketAddr], tried: &[SocketAddr]) -> Option<(usize, String)> {
        let (index, key) = match self.mode {
            AffinityMode::Balanced => (0..KEY_TRIES).find_map(|_| {
                let key = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
                let index = self.ring.find(key.as_bytes())?;
                (!tried.contains(&endpoints[index])).then_some((index, key))
            })?,
            AffinityMode::Persistent => {
                let candidates: Vec<usize> = untried(endpoints, tried).collect();
                let index = *candidates.get(fastrand::usize(..candidates.len().max(1)))?;
                let key = self
                    .hashes
                    .iter()
                    .find_map(|(key, i)| (*i == index).then(|| key.clone()))?;
                (index, key)
            }
        };
        Some((index, format!("{key}|{}", self.tag)))
    }
}

/// The indices of `endpoints` not in `tried`.
/// An endpoint of `endpoints` not in `tried`, the first after the last one tried (round
/// robin from there; from the start when that one left the table).
pub fn next_untried(endpoints: &[SocketAddr], tried: &[SocketAddr]) -> Option<SocketAddr> {
    let n = endpoints.len();
    let start = tried
        .last()
        .and_then(|last| endpoints.iter().position(|e| e == last))
        .map_or(0, |i| i + 1);
    (0..n)
        .map(|k| endpoints[(start + k) % n])
        .find(|e| !tried.contains(e))
}

fn untried<'a>(
    endpoints: &'a [SocketAddr],
    tried: &'a [SocketAddr],
) -> impl Iterator<Item = usize> + 'a {
    (0..endpoints.len()).filter(move |i| !tried.contains(&endpoints[*i]))
}

/// An opaque hex digest of `text` (32 digits of SHA-1): what affinity cookies carry instead
/// of names and addresses.
fn opaque(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug)]
enum Kind {
    RoundRobin(RoundRobin),
    Ewma(Arc<Ewma>),
    Hash {
        ring: Ring,
        key: Expr,
    },
    Subset {
        ring: Ring,
        subsets: Box<[Box<[usize]>]>,
        key: Expr,
    },
    Sticky(Box<Sticky>),
}

/// The endpoint selection of one backend under one [`Balance`]: shared by the routes that
/// have both, and carried across tables while neither changes.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Box<[SocketAddr]>,
    kind: Kind,
}

impl Balancer {
    /// The balancer of `endpoints` of the backend named `name` (`namespace/service:port`,
    /// which salts the affinity cookies) under `balance`, continuing `previous` (the
    /// balancer of the same backend and settings in the last table) where it can.
    pub fn new(
        name: &str,
        endpoints: &[SocketAddr],
        balance: &Balance,
        previous: Option<&Balancer>,
    ) -> Balancer {
        let kind = if let Some(affinity) = &balance.affinity {
            let labels: Vec<String> = endpoints.iter().map(SocketAddr::to_string).collect();
            let hashes = labels
                .iter()
                .enumerate()
                .map(|(i, label)| (opaque(&format!("{name}{label}")), i))
                .collect();
            Kind::Sticky(Box::new(Sticky {
                mode: affinity.mode,
                change_on_failure: affinity.cookie.change_on_failure,
                cookie: affinity.cookie.name.clone(),
                tag: opaque(&format!("{}{name}", opaque(name))),
                ring: Ring::new(&labels),
                hashes,
            }))
        } else if let Some(hash_by) = &balance.hash_by {
            let key = hash_by.key.clone();
            match hash_by.subset {
                None => {
                    let labels: Vec<String> = endpoints.iter().map(SocketAddr::to_string).collect();
                    Kind::Hash {
                        ring: Ring::new(&labels),
                        key,
                    }
                }
                Some(size) => {
                    let subsets = subsets(endpoints.len(), size.get() as usize);
                    let labels: Vec<String> =
                        (1..=subsets.len()).map(|i| format!("set{i}")).collect();
                    Kind::Subset {
                        ring: Ring::new(&labels),
                        subsets,
                        key,
                    }
                }
            }
        } else {
            match (balance.load, previous.map(|p| (&*p.endpoints, &p.kind))) {
                (LoadBalance::RoundRobin, Some((_, Kind::RoundRobin(rr)))) => {
                    Kind::RoundRobin(RoundRobin::starting_at(rr.next.load(Ordering::Relaxed)))
                }
                (LoadBalance::RoundRobin, _) => {
                    Kind::RoundRobin(RoundRobin::starting_at(fastrand::usize(..)))
                }
                (LoadBalance::Ewma, Some((addrs, Kind::Ewma(ewma)))) => {
                    Kind::Ewma(Arc::new(Ewma::new(endpoints, Some((addrs, ewma)))))
                }
                (LoadBalance::Ewma, _) => Kind::Ewma(Arc::new(Ewma::new(endpoints, None))),
            }
        };
        Balancer {
            endpoints: endpoints.into(),
            kind,
        }
    }

    /// The endpoints it chooses among.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The endpoint for a request, `None` without endpoints. `request` describes the request
    /// to hashing and affinity (the others never call it).
    pub fn pick<'v>(&self, request: impl FnOnce() -> Vars<'v>) -> Option<Picked> {
        let endpoints = &self.endpoints;
        let index = match &self.kind {
            Kind::RoundRobin(rr) => rr.index(endpoints.len())?,
            Kind::Ewma(ewma) => {
                let all: Vec<usize> = (0..endpoints.len()).collect();
                let index = ewma.choose(&all)?;
                return Some(Picked {
                    addr: endpoints[index],
                    cookie: None,
                    load: Some((ewma.clone(), index)),
                });
            }
            Kind::Hash { ring, key } => ring.find(key.expand(&request()).as_bytes())?,
            Kind::Subset { ring, subsets, key } => {
                let subset = &subsets[ring.find(key.expand(&request()).as_bytes())?];
                subset[fastrand::usize(..subset.len())]
            }
            Kind::Sticky(sticky) => {
                if let Some(index) = sticky.cookie_endpoint(&request()) {
                    return Some(Picked::plain(endpoints[index]));
                }
                let (index, cookie) = sticky.fresh(endpoints, &[])?;
                return Some(Picked {
                    addr: endpoints[index],
                    cookie: Some(cookie),
                    load: None,
                });
            }
        };
        Some(Picked::plain(endpoints[index]))
    }

    /// Another endpoint for a request whose attempts on `tried` failed, `None` when every
    /// endpoint was tried. `previous` is the last pick: under affinity, the new endpoint gets
    /// a cookie when the previous pick had made one, or with
    /// `session-cookie-change-on-failure`.
    pub fn another(&self, tried: &[SocketAddr], previous: &Picked) -> Option<Picked> {
        let endpoints = &self.endpoints;
        match &self.kind {
            Kind::Ewma(ewma) => {
                let candidates: Vec<usize> = untried(endpoints, tried).collect();
                let index = ewma.choose(&candidates)?;
                Some(Picked {
                    addr: endpoints[index],
                    cookie: None,
                    load: Some((ewma.clone(), index)),
                })
            }
            Kind::Sticky(sticky) if sticky.change_on_failure || previous.cookie.is_some() => {
                let (index, cookie) = sticky.fresh(endpoints, tried)?;
                Some(Picked {
                    addr: endpoints[index],
                    cookie: Some(cookie),
                    load: None,
                })
            }
            _ => next_untried(endpoints, tried).map(Picked::plain),
        }
    }

    /// An endpoint for a connection that carries no request weir reads (TLS passthrough):
    /// round robin and EWMA as for requests, else a random endpoint.
    pub fn pick_connection(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::RoundRobin(_) | Kind::Ewma(_) => self.pick(|| unreachable!()).map(|p| p.addr),
            _ => match self.endpoints.len() {
                0 => None,
                n => Some(self.endpoints[fastrand::usize(..n)]),
            },
        }
    }

    /// Whether the request's affinity cookie was made by this balancer's backend (for
    /// `affinity-canary-behavior: sticky`: a session on the canary stays there). Always false
    /// without affinity.
    pub fn is_affinitized(&self, headers: &http::HeaderMap) -> bool {
        let Kind::Sticky(sticky) = &self.kind else {
            return false;
        };
        cookie(headers, &sticky.cookie)
            .and_then(|value| value.split_once('|'))
            .is_some_and(|(_, tag)| tag == sticky.tag)
    }
}

/// ingress-nginx's subsets: the endpoints in order, in groups of `size`, the last one filled up
/// with the first endpoints again so that every group has `size` members.
fn subsets(n: usize, size: usize) -> Box<[Box<[usize]>]> {
    if n == 0 {
        return Box::new([]);
    }
    let count = n.div_ceil(size);
    (0..count)
        .map(|set| (0..size).map(|k| (set * size + k) % n).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::balance::{Affinity, HashBy};
    use http::HeaderMap;

    #[test]
    fn next_untried_is_one_not_tried_after_the_last_one() {
        let e: Vec<SocketAddr> = (1..=4)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        assert_eq!(next_untried(&e, &[e[0]]), Some(e[1]));
        assert_eq!(next_untried(&e, &[e[3]]), Some(e[0]));
        assert_eq!(next_untried(&e, &[e[1], e[2]]), Some(e[3]));
        assert_eq!(next_untried(&e, &[e[2], e[3], e[0]]), Some(e[1]));
        assert_eq!(next_untried(&e, &e), None);
        assert_eq!(next_untried(&e[..1], &e[..1]), None);
        // An endpoint that left the table since: start from the beginning.
        let gone: SocketAddr = "10.9.9.9:80".parse().unwrap();
        assert_eq!(next_untried(&e, &[gone]), Some(e[0]));
    }

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 80)))
            .collect()
    }

    fn vars<'a>(uri: &'a str, headers: &'a HeaderMap) -> Vars<'a> {
        Vars {
            scheme: "http",
            host: "h",
            http_host: "h",
            method: "GET",
            request_uri: uri,
            remote_addr: "192.0.2.1".parse().unwrap(),
            headers,
        }
    }

    fn hashing(subset: Option<u32>) -> Balance {
        Balance {
            hash_by: Some(HashBy {
                key: Expr::parse("$request_uri").unwrap(),
                subset: subset.and_then(std::num::NonZeroU32::new),
            }),
            ..Balance::default()
        }
    }

    #[test]
    fn round_robin_cycles_from_its_start() {
        let eps = addrs(3);
        let rr = RoundRobin::starting_at(4);
        let picks: Vec<_> = (0..4).map(|_| rr.pick(&eps).unwrap()).collect();
        assert_eq!(picks, [eps[1], eps[2], eps[0], eps[1]]);
        assert_eq!(rr.pick(&[]), None);
        assert_eq!(RoundRobin::starting_at(9).pick(&eps[..1]), Some(eps[0]));
    }

    #[test]
    fn round_robin_continues_its_position_in_the_next_balancer() {
        let eps = addrs(3);
        let first = Balancer::new("b", &eps, &Balance::default(), None);
        let a = first.pick(|| unreachable!()).unwrap().addr;
        let next = Balancer::new("b", &eps, &Balance::default(), Some(&first));
        let b = next.pick(|| unreachable!()).unwrap().addr;
        let i = eps.iter().position(|e| *e == a).unwrap();
        assert_eq!(b, eps[(i + 1) % 3]);
    }

    /// Removing one of N endpoints moves only its keys (about 1/N); adding one moves about
    /// 1/(N+1) — to the new endpoint only. Bounds: within 40 % of the ideal share over 20,000
    /// keys (160 virtual nodes per endpoint keep the shares within about ±15 %).
    #[test]
    fn consistent_hashing_moves_about_one_nth_of_the_keys() {
        let headers = HeaderMap::new();
        let n = 10;
        let eps = addrs(n);
        let keys: Vec<String> = (0..20_000).map(|i| format!("/item/{i}")).collect();
        let owner =
            |balancer: &Balancer, key: &str| balancer.pick(|| vars(key, &headers)).unwrap().addr;
        let all = Balancer::new("b", &eps, &hashing(None), None);
        let before: Vec<SocketAddr> = keys.iter().map(|k| owner(&all, k)).collect();
        // Every endpoint gets a share.
        for e in &eps {
            let share = before.iter().filter(|a| *a == e).count() as f64 / keys.len() as f64;
            assert!((share - 0.1).abs() < 0.04, "{e}: {share}");
        }
        let removed = eps[3];
        let fewer: Vec<SocketAddr> = eps.iter().copied().filter(|e| *e != removed).collect();
        let without = Balancer::new("b", &fewer, &hashing(None), None);
        let mut moved = 0;
        for (key, was) in keys.iter().zip(&before) {
            let now = owner(&without, key);
            if now != *was {
                assert_eq!(*was, removed, "only the removed endpoint's keys move");
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys.len() as f64;
        let ideal = 1.0 / n as f64;
        assert!(
            (fraction - ideal).abs() < 0.4 * ideal,
            "moved {fraction}, ideal {ideal}"
        );
        // Adding an endpoint back moves keys only to it.
        let mut more = eps.clone();
        more.push(SocketAddr::from(([10, 9, 9, 9], 80)));
        let with = Balancer::new("b", &more, &hashing(None), None);
        let mut gained = 0;
        for (key, was) in keys.iter().zip(&before) {
            let now = owner(&with, key);
            if now != *was {
                assert_eq!(now, more[n], "keys move only to the new endpoint");
                gained += 1;
            }
        }
        let fraction = gained as f64 / keys.len() as f64;
        let ideal = 1.0 / (n + 1) as f64;
        assert!((fraction - ideal).abs() < 0.4 * ideal, "gained {fraction}");
    }

    #[test]
    fn subsets_group_endpoints_and_keys_stay_in_theirs() {
        assert_eq!(
            subsets(7, 3),
            vec![
                vec![0, 1, 2].into_boxed_slice(),
                vec![3, 4, 5].into_boxed_slice(),
                vec![6, 0, 1].into_boxed_slice()
            ]
            .into_boxed_slice()
        );
        assert!(subsets(0, 3).is_empty());
        let headers = HeaderMap::new();
        let eps = addrs(9);
        let balancer = Balancer::new("b", &eps, &hashing(Some(3)), None);
        for key in ["/a", "/b", "/c"] {
            let seen: std::collections::BTreeSet<SocketAddr> = (0..200)
                .map(|_| balancer.pick(|| vars(key, &headers)).unwrap().addr)
                .collect();
            assert_eq!(seen.len(), 3, "{key}: one subset of 3, each member used");
            let group: Vec<usize> = seen
                .iter()
                .map(|a| eps.iter().position(|e| e == a).unwrap())
                .collect();
            assert!(group.iter().all(|i| i / 3 == group[0] / 3), "{group:?}");
        }
    }

    fn sticky(mode: AffinityMode) -> Balance {
        Balance {
            affinity: Some(Arc::new(Affinity {
                mode,
                ..Affinity::default()
            })),
            ..Balance::default()
        }
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            format!("a=b; INGRESSCOOKIE={value}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn affinity_cookies_are_opaque_and_lead_back() {
        let eps = addrs(5);
        for mode in [AffinityMode::Balanced, AffinityMode::Persistent] {
            let balancer = Balancer::new("ns/svc:80", &eps, &sticky(mode), None);
            let none = HeaderMap::new();
            let first = balancer.pick(|| vars("/", &none)).unwrap();
            let cookie = first.cookie.clone().expect("a new cookie without one");
            for e in &eps {
                assert!(!cookie.contains(&e.ip().to_string()), "{cookie}");
            }
            let (key, tag) = cookie.split_once('|').unwrap();
            assert_eq!((key.len(), tag.len()), (32, 32), "{cookie}");
            let headers = with_cookie(&cookie);
            assert!(balancer.is_affinitized(&headers));
            for _ in 0..50 {
                let again = balancer.pick(|| vars("/", &headers)).unwrap();
                assert_eq!((again.addr, again.cookie), (first.addr, None), "{mode:?}");
            }
            // Another backend's balancer does not claim the cookie.
            let other = Balancer::new("ns/other:80", &eps, &sticky(mode), None);
            assert!(!other.is_affinitized(&headers));
        }
    }

    #[test]
    fn persistent_sessions_move_only_when_their_endpoint_leaves() {
        let eps = addrs(4);
        let balancer = Balancer::new("b", &eps, &sticky(AffinityMode::Persistent), None);
        let none = HeaderMap::new();
        let first = balancer.pick(|| vars("/", &none)).unwrap();
        let headers = with_cookie(first.cookie.as_deref().unwrap());
        // Endpoints added: the session stays.
        let mut more = eps.clone();
        more.extend(addrs(8).into_iter().skip(4));
        let grown = Balancer::new("b", &more, &sticky(AffinityMode::Persistent), None);
        assert_eq!(grown.pick(|| vars("/", &headers)).unwrap().addr, first.addr);
        // Its endpoint removed: another one, and a new cookie.
        let rest: Vec<SocketAddr> = eps.iter().copied().filter(|e| *e != first.addr).collect();
        let shrunk = Balancer::new("b", &rest, &sticky(AffinityMode::Persistent), None);
        let moved = shrunk.pick(|| vars("/", &headers)).unwrap();
        assert_ne!(moved.addr, first.addr);
        assert!(moved.cookie.is_some());
    }

    #[test]
    fn retries_go_to_an_endpoint_not_tried() {
        let eps = addrs(3);
        let none = HeaderMap::new();
        for balance in [
            Balance::default(),
            Balance::with_load(LoadBalance::Ewma),
            hashing(None),
            sticky(AffinityMode::Balanced),
            sticky(AffinityMode::Persistent),
        ] {
            let balancer = Balancer::new("b", &eps, &balance, None);
            let first = balancer.pick(|| vars("/", &none)).unwrap();
            let second = balancer.another(&[first.addr], &first).unwrap();
            assert_ne!(second.addr, first.addr, "{balance:?}");
            let third = balancer
                .another(&[first.addr, second.addr], &second)
                .unwrap();
            assert!(![first.addr, second.addr].contains(&third.addr));
            assert!(balancer.another(&eps, &third).is_none());
            // A sticky retry re-issues the cookie the first pick made.
            assert_eq!(second.cookie.is_some(), first.cookie.is_some());
        }
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint_and_counts_requests_in_flight() {
        let eps = addrs(2);
        let balancer = Balancer::new("b", &eps, &Balance::with_load(LoadBalance::Ewma), None);
        let Kind::Ewma(ewma) = &balancer.kind else {
            panic!("not EWMA")
        };
        let now = Instant::now();
        ewma.endpoints[0].observe(0.050, now);
        ewma.endpoints[1].observe(0.001, now);
        for _ in 0..100 {
            assert_eq!(balancer.pick(|| unreachable!()).unwrap().addr, eps[1]);
        }
        // Enough requests in flight on the fast one make the slow one cheaper.
        let fast = Picked {
            addr: eps[1],
            cookie: None,
            load: Some((ewma.clone(), 1)),
        };
        let attempts: Vec<Attempt> = (0..60).map(|_| fast.attempt()).collect();
        assert_eq!(balancer.pick(|| unreachable!()).unwrap().addr, eps[0]);
        drop(attempts);
        assert_eq!(ewma.endpoints[1].in_flight.load(Ordering::Relaxed), 0);
        // A failure counts as slow.
        fast.attempt().finish(false);
        assert!(ewma.endpoints[1].score().ewma >= FAILURE_PENALTY.as_secs_f64());
        // Scores decay towards 0 with time.
        let later = now + Duration::from_secs(30);
        assert!(ewma.endpoints[0].score().decayed(later) < 0.050 * 0.06);
    }

    #[test]
    fn ewma_scores_carry_over_and_new_endpoints_start_at_the_average() {
        let eps = addrs(2);
        let balance = Balance::with_load(LoadBalance::Ewma);
        let first = Balancer::new("b", &eps, &balance, None);
        let Kind::Ewma(ewma) = &first.kind else {
            panic!("not EWMA")
        };
        let now = Instant::now();
        ewma.endpoints[0].observe(0.030, now);
        ewma.endpoints[1].observe(0.010, now);
        let more = addrs(3);
        let next = Balancer::new("b", &more, &balance, Some(&first));
        let Kind::Ewma(carried) = &next.kind else {
            panic!("not EWMA")
        };
        let scores: Vec<f64> = carried.endpoints.iter().map(|e| e.score().ewma).collect();
        assert_eq!(scores[..2], [0.030, 0.010]);
        assert!((scores[2] - 0.020).abs() < 1e-9, "{scores:?}");
    }

    #[test]
    fn stable_hash_is_stable() {
        // Fixed values: replicas and restarts must agree on where keys go.
        assert_eq!(stable_hash(b""), stable_hash(b""));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
        assert_eq!(stable_hash(b"/item/1"), 0xfc4d_9278_2fd2_f41a);
    }
}

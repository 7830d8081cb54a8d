//! ExternalName Services: the DNS names they point at, resolved outside the model.
//!
//! [`ExternalNames::run`] sits between a source (cluster or manifests) and the rebuild loop:
//! it passes every [`Input`] on with [`Input::external_names`] filled in, the answers for the
//! names of the ExternalName Services weir's Ingresses reference
//! ([`crate::model::names_to_resolve`]). Names are resolved here, never per request:
//!
//! - with the system's resolver configuration (`/etc/resolv.conf`: name servers, search
//!   domains, `ndots`, timeouts; `/etc/hosts`, read once at start), by an asynchronous
//!   resolver (hickory-resolver); A records first, AAAA only when a name has no A record, as
//!   ingress-nginx's resolver does, so that IPv4-only clusters never get IPv6 endpoints;
//! - each name again when its answer's TTL runs out, clamped to [`Timing::min_ttl`] ..
//!   [`Timing::max_ttl`]; a name that does not exist (NXDOMAIN, no address records) again
//!   after its negative TTL (clamped the same way, [`Timing::negative_ttl`] when the answer
//!   has none); a lookup that fails (timeout, no name server) again after a backoff
//!   ([`Timing::retry_min`] doubling up to [`Timing::retry_max`]), keeping the last addresses
//!   for up to [`Timing::stale`] meanwhile (a DNS hiccup does not turn a working route into
//!   503s);
//! - an input that names new names waits up to [`Timing::hold`] for their first answers
//!   before it is passed on (the first table in particular, so that a restart does not answer
//!   503 meanwhile); names still unanswered then are passed on as not resolved yet, and the
//!   input is passed on again when they are;
//! - a change of answers (addresses are sorted, so a name server rotating the order changes
//!   nothing) passes the input on again, which rebuilds the table like any other change; the
//!   same answers pass nothing on.
//!
//! The answers become endpoints in the model, which also refuses the addresses weir must not
//! connect to (loopback, link-local, cloud metadata: [`crate::model::external_names`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::model::{BuildConfig, Input, NameAnswer, NameAnswers, names_to_resolve};

/// What one lookup of a name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The name's addresses (at least one), valid for `ttl`.
    Addresses {
        /// The addresses, in any order.
        addresses: Vec<IpAddr>,
        /// How long the answer may be used.
        ttl: Duration,
    },
    /// The name does not exist or has no address records: a definitive answer.
    NotFound {
        /// What the name server said.
        why: String,
        /// How long that answer may be believed (the negative TTL), when the server said.
        ttl: Option<Duration>,
    },
    /// No answer: a timeout, no reachable name server, a malformed response.
    Failed {
        /// What went wrong.
        why: String,
    },
}

/// A future resolving to an [`Answer`].
pub type LookupFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Looks names up; [`SystemResolver`] for real, a script in tests.
pub trait Lookup: Send + Sync + 'static {
    /// Looks up the addresses of `name`.
    fn lookup(&self, name: &str) -> LookupFuture;
}

/// The system's resolver configuration (`/etc/resolv.conf`, `/etc/hosts`) in an asynchronous
/// resolver with its own cache.
#[derive(Clone)]
pub struct SystemResolver(TokioResolver);

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemResolver")
    }
}

impl SystemResolver {
    /// Reads the system's configuration. Without one (no `/etc/resolv.conf`), a resolver with
    /// no name server is made, and logged: only `localhost` and IP addresses resolve then.
    pub fn new() -> SystemResolver {
        let builder = TokioResolver::builder_tokio().unwrap_or_else(|error| {
            warn!(%error, "cannot read the system's resolver configuration (/etc/resolv.conf); ExternalName Services will not resolve");
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                TokioRuntimeProvider::default(),
            )
        });
        let mut builder = builder;
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let resolver = builder.build().unwrap_or_else(|error| {
            warn!(%error, "cannot set up the DNS resolver; ExternalName Services will not resolve");
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                TokioRuntimeProvider::default(),
            )
            .build()
            .expect("a resolver without name servers")
        });
        SystemResolver(resolver)
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        SystemResolver::new()
    }
}

impl Lookup for SystemResolver {
    fn lookup(&self, name: &str) -> LookupFuture {
        let resolver = self.0.clone();
        let name = name.to_owned();
        Box::pin(async move {
            match resolver.lookup_ip(name.as_str()).await {
                Ok(found) => {
                    let ttl = found
                        .valid_until()
                        .saturating_duration_since(std::time::Instant::now());
                    let addresses: Vec<IpAddr> = found.iter().collect();
                    if addresses.is_empty() {
                        Answer::NotFound {
                            why: "the name has no address records".to_owned(),
                            ttl: None,
                        }
                    } else {
                        Answer::Addresses { addresses, ttl }
                    }
                }
                Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Answer::NotFound {
                    why: if none.response_code
                        == hickory_resolver::proto::op::ResponseCode::NXDomain
                    {
                        "the name does not exist (NXDOMAIN)".to_owned()
                    } else {
                        "the name has no address records".to_owned()
                    },
                    ttl: none.negative_ttl.map(|s| Duration::from_secs(u64::from(s))),
                },
                Err(error) => Answer::Failed {
                    why: error.to_string(),
                },
            }
        })
    }
}

/// How long answers are used and when names are asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Shortest time an answer is used, whatever its TTL (0 would ask without a pause).
    pub min_ttl: Duration,
    /// Longest time an answer is used, whatever its TTL (a day-long TTL would keep a moved
    /// name's old addresses for a day).
    pub max_ttl: Duration,
    /// How long "does not exist" is believed when the answer gives no negative TTL.
    pub negative_ttl: Duration,
    /// The first retry after a failed lookup; it doubles with every failure.
    pub retry_min: Duration,
    /// The longest pause between retries.
    pub retry_max: Duration,
    /// How long after its TTL ran out the last answer stands in while lookups fail.
    pub stale: Duration,
    /// How long an input with new names waits for their first answers.
    pub hold: Duration,
    /// Longest a lookup may take (the resolver has its own timeouts; this bounds them).
    pub lookup_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            stale: Duration::from_secs(300),
            hold: Duration::from_secs(2),
            lookup_timeout: Duration::from_secs(30),
        }
    }
}

/// What is known of one name.
#[derive(Debug)]
struct Entry {
    /// The answer passed on; `None` until the first lookup is back.
    answer: Option<NameAnswer>,
    /// Until when the last addresses stand in for failed lookups.
    stale_until: Option<Instant>,
    /// When to ask again (while no lookup is in flight).
    next: Instant,
    /// The lookup in flight, by id.
    in_flight: Option<u64>,
    /// Failed lookups in a row.
    failures: u32,
}

type Pending = Pin<Box<dyn Future<Output = (String, u64, Answer)> + Send>>;

/// The names being resolved, their answers and the lookups in flight.
struct Names<L> {
    lookup: Arc<L>,
    timing: Timing,
    entries: BTreeMap<String, Entry>,
    lookups: FuturesUnordered<Pending>,
    next_id: u64,
}

impl<L: Lookup> Names<L> {
    fn new(lookup: Arc<L>, timing: Timing) -> Self {
        Names {
            lookup,
            timing,
            entries: BTreeMap::new(),
            lookups: FuturesUnordered::new(),
            next_id: 0,
        }
    }

    /// Starts a lookup of `name` (whose entry exists).
    fn start(&mut self, name: &str) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(entry) = self.entries.get_mut(name) {
            entry.in_flight = Some(id);
        }
        let lookup = self.lookup.lookup(name);
        let limit = self.timing.lookup_timeout;
        let name = name.to_owned();
        self.lookups.push(Box::pin(async move {
            let answer = tokio::time::timeout(limit, lookup)
                .await
                .unwrap_or_else(|_| Answer::Failed {
                    why: format!("no answer within {limit:?}"),
                });
            (name, id, answer)
        }));
    }

    /// Resolves exactly `names` from now on: forgets the others and starts looking up the new
    /// ones. Returns whether there are new ones.
    fn want(&mut self, names: BTreeSet<String>) -> bool {
        self.entries.retain(|name, _| names.contains(name));
        let new: Vec<String> = names
            .into_iter()
            .filter(|name| !self.entries.contains_key(name))
            .collect();
        for name in &new {
            self.entries.insert(
                name.clone(),
                Entry {
                    answer: None,
                    stale_until: None,
                    next: Instant::now(),
                    in_flight: None,
                    failures: 0,
                },
            );
            self.start(name);
        }
        !new.is_empty()
    }

    /// Whether a wanted name still waits for its first answer.
    fn waiting_for_first_answers(&self) -> bool {
        self.entries.values().any(|e| e.answer.is_none())
    }

    /// When the next name is due to be asked again.
    fn next_refresh(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.in_flight.is_none())
            .map(|e| e.next)
            .min()
    }

    /// Starts the lookups that are due.
    fn refresh_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.in_flight.is_none() && e.next <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            debug!(name, "resolving an ExternalName again");
            self.start(&name);
        }
    }

    /// Takes in what lookup `id` of `name` found. Returns whether the answer passed on changed.
    fn record(&mut self, name: &str, id: u64, answer: Answer) -> bool {
        let timing = self.timing;
        let Some(entry) = self.entries.get_mut(name) else {
            return false; // no longer wanted
        };
        if entry.in_flight != Some(id) {
            return false;
        }
        entry.in_flight = None;
        let now = Instant::now();
        let clamp = |ttl: Duration| ttl.clamp(timing.min_ttl, timing.max_ttl);
        let next = match answer {
            Answer::Addresses { mut addresses, ttl } => {
                addresses.sort_unstable();
                addresses.dedup();
                let ttl = clamp(ttl);
                entry.failures = 0;
                entry.stale_until = Some(now + ttl + timing.stale);
                entry.next = now + ttl;
                NameAnswer::Addresses(addresses)
            }
            Answer::NotFound { why, ttl } => {
                entry.failures = 0;
                entry.stale_until = None;
                entry.next = now + clamp(ttl.unwrap_or(timing.negative_ttl));
                NameAnswer::Failed(why)
            }
            Answer::Failed { why } => {
                entry.failures = entry.failures.saturating_add(1);
                let backoff = timing
                    .retry_min
                    .saturating_mul(1u32 << (entry.failures.min(16) - 1))
                    .min(timing.retry_max);
                entry.next = now + backoff;
                let stale = entry.stale_until.is_some_and(|until| now < until);
                match &entry.answer {
                    Some(last @ NameAnswer::Addresses(_)) if stale => {
                        if entry.failures == 1 {
                            warn!(name, error = %why, retry = ?backoff, "cannot resolve an ExternalName again; its last addresses stay in use meanwhile");
                        }
                        last.clone()
                    }
                    _ => NameAnswer::Failed(why),
                }
            }
        };
        if entry.answer.as_ref() == Some(&next) {
            return false;
        }
        match &next {
            NameAnswer::Addresses(addresses) => {
                info!(name, ?addresses, "ExternalName resolved");
            }
            NameAnswer::Failed(why) => {
                warn!(name, error = %why, "ExternalName does not resolve; its routes answer 503");
            }
        }
        entry.answer = Some(next);
        true
    }

    /// The answers to pass on.
    fn answers(&self) -> NameAnswers {
        self.entries
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.answer.clone()?)))
            .collect()
    }
}

/// The stage that resolves the names of ExternalName Services (see the module docs).
pub struct ExternalNames<L = SystemResolver> {
    lookup: Arc<L>,
    config: BuildConfig,
    timing: Timing,
}

impl<L: Lookup> ExternalNames<L> {
    /// Resolves with `lookup` the names that `config`'s build would use.
    pub fn new(lookup: L, config: BuildConfig) -> Self {
        ExternalNames {
            lookup: Arc::new(lookup),
            config,
            timing: Timing::default(),
        }
    }

    /// The same with other timings.
    #[must_use]
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Passes every input of `inputs` on to `out` with its names' answers, and again when the
    /// answers change, until `cancel` fires or the source goes away. `None` (not synced yet)
    /// is not passed on.
    pub async fn run(
        self,
        inputs: watch::Receiver<Option<Arc<Input>>>,
        out: watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
    ) {
        self.run_inner(inputs, out, cancel)
            .instrument(info_span!("external_names"))
            .await
    }

    async fn run_inner(
        self,
        mut inputs: watch::Receiver<Option<Arc<Input>>>,
        out: watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
    ) {
        let mut names = Names::new(self.lookup.clone(), self.timing);
        let mut source: Option<Arc<Input>> = None;
        let mut dirty = false;
        let mut hold_until = Instant::now();
        let mut fresh = inputs.borrow_and_update().clone();
        loop {
            if let Some(input) = fresh.take() {
                if names.want(names_to_resolve(&input, &self.config)) {
                    hold_until = Instant::now() + self.timing.hold;
                }
                source = Some(input);
                dirty = true;
            }
            let waiting = names.waiting_for_first_answers() && Instant::now() < hold_until;
            if let Some(input) = source.as_ref().filter(|_| dirty && !waiting) {
                let answered = if names.entries.is_empty() && input.external_names.is_empty() {
                    // Nothing to add: the source's input as it is, not a copy of its lists.
                    input.clone()
                } else {
                    Arc::new(Input {
                        external_names: Arc::new(names.answers()),
                        ..Input::clone(input)
                    })
                };
                out.send_replace(Some(answered));
                dirty = false;
            }
            let refresh = names.next_refresh();
            let holding = dirty && waiting;
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = inputs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    fresh = inputs.borrow_and_update().clone();
                }
                Some((name, id, answer)) = names.lookups.next(), if !names.lookups.is_empty() => {
                    if names.record(&name, id, answer) {
                        dirty = true;
                    }
                }
                _ = tokio::time::sleep_until(refresh.unwrap_or(hold_until)), if refresh.is_some() => {
                    names.refresh_due();
                }
                _ = tokio::time::sleep_until(hold_until), if holding => {}
            }
        }
    }
}

/// `input` with the answers for its names, each looked up once with `lookup` (for `weir
/// check`, which reports what a build would do now).
pub async fn resolve_once<L: Lookup>(lookup: &L, input: Input, config: &BuildConfig) -> Input {
    let names = names_to_resolve(&input, config);
    let limit = Timing::default().lookup_timeout;
    let lookups = names.into_iter().map(|name| async move {
        let answer = tokio::time::timeout(limit, lookup.lookup(&name))
            .await
            .unwrap_or_else(|_| Answer::Failed {
                why: format!("no answer within {limit:?}"),
            });
        let answer = match answer {
            Answer::Addresses { mut addresses, .. } => {
                addresses.sort_unstable();
                addresses.dedup();
                NameAnswer::Addresses(addresses)
            }
            Answer::NotFound { why, .. } | Answer::Failed { why } => NameAnswer::Failed(why),
        };
        (name, answer)
    });
    let answers: NameAnswers = futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect();
    Input {
        external_names: Arc::new(answers),
        ..input
    }
}

#[cfg(test)]
mod tests;

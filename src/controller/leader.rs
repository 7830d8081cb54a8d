//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! Every replica serves traffic; only the leader writes to the API (Ingress status, Events).
//! Each replica tries every `retry_period` to create, renew or take over the Lease. A follower
//! takes over when the Lease record (holder and renew time) has not changed for the Lease's
//! duration *as measured by the follower's own clock* — as client-go does — so clock skew
//! between nodes cannot cut a leader's term short. Updates carry the Lease's resourceVersion, so
//! two replicas can never both win the same round. A leader that cannot renew stops acting as
//! leader two thirds of the duration after its last renewal began, before anyone else may take
//! over; on shutdown it releases the Lease so a successor takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (`--election-id`).
    pub name: String,
    /// This replica's identity (the pod name on a cluster).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// What a replica should do with the Lease as it finds it at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create one held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds a valid Lease.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides what `identity` should do with the Lease as read (`None`: it does not exist), given
/// how long its record has been seen unchanged on this replica's clock.
pub fn decide(lease: Option<&Lease>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    if holder.is_empty() || unchanged_for >= duration {
        Decision::TakeOver
    } else {
        Decision::Follow { holder }
    }
}

/// The part of a Lease that changes when its holder renews it.
fn record(lease: Option<&Lease>) -> Option<(Option<String>, Option<MicroTime>)> {
    let spec = lease?.spec.as_ref()?;
    Some((spec.holder_identity.clone(), spec.renew_time.clone()))
}

/// Remembers when this replica first saw the current Lease record.
#[derive(Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Option<tokio::time::Instant>,
}

impl Observed {
    /// How long `lease`'s record has been seen unchanged.
    fn unchanged_for(&mut self, lease: Option<&Lease>) -> Duration {
        let record = record(lease);
        let now = tokio::time::Instant::now();
        if record != self.record || self.since.is_none() {
            self.record = record;
            self.since = Some(now);
        }
        now - self.since.unwrap_or(now)
    }
}

fn lease_spec(
    config: &ElectionConfig,
    previous: Option<&LeaseSpec>,
    now: Timestamp,
    taking_over: bool,
) -> LeaseSpec {
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
        acquire_time: if taking_over {
            Some(MicroTime(now))
        } else {
            previous
                .and_then(|s| s.acquire_time.clone())
                .or(Some(MicroTime(now)))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taking_over {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// Runs the election until `cancel` fires, reporting leadership on `leader`. Releases the Lease
/// when it stops while leading.
///
/// Safety: a leader counts its term from the *start* of its last successful renewal and steps
/// down at two thirds of the Lease duration after it, whatever its requests are doing (they are
/// bounded by timeouts and by that deadline). A follower takes over only after seeing the Lease
/// unchanged for the whole duration, which begins after that renewal was written.
pub async fn run_election(
    client: Client,
    config: ElectionConfig,
    leader: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let term = config.lease_duration.mul_f64(2.0 / 3.0);
    let mut term_ends: Option<tokio::time::Instant> = None;
    let mut observed = Observed::default();
    loop {
        let attempt_started = tokio::time::Instant::now();
        // Never wait past the end of the current term, and never longer than a retry period.
        let limit = term_ends.map_or(config.retry_period, |end| {
            config
                .retry_period
                .min(end.saturating_duration_since(attempt_started))
        });
        let attempt = tokio::select! {
            _ = cancel.cancelled() => break,
            attempt = tokio::time::timeout(limit, try_acquire(&api, &config, &mut observed)) => attempt,
        };
        match attempt {
            Ok(Ok(true)) => {
                term_ends = Some(attempt_started + term);
                if !*leader.borrow() {
                    info!(lease = %config.name, identity = %config.identity, "became the leader");
                }
                set(&leader, true);
            }
            Ok(Ok(false)) => {
                if *leader.borrow() {
                    info!(lease = %config.name, "lost the leadership");
                }
                term_ends = None;
                set(&leader, false);
            }
            Ok(Err(error)) => warn!(lease = %config.name, %error, "cannot reach the lease"),
            Err(_) => warn!(lease = %config.name, after = ?limit, "the lease request timed out"),
        }
        let next_attempt = attempt_started + config.retry_period;
        loop {
            let step_down = term_ends.filter(|_| *leader.borrow());
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(next_attempt) => break,
                _ = tokio::time::sleep_until(step_down.unwrap_or(next_attempt)), if step_down.is_some() => {
                    warn!(lease = %config.name, "could not renew the lease in time; stepping down");
                    term_ends = None;
                    set(&leader, false);
                }
            }
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    if *leader.borrow() {
        set(&leader, false);
        match tokio::time::timeout(config.retry_period, release(&api, &config)).await {
            Ok(Ok(())) => info!(lease = %config.name, "released the lease"),
            Ok(Err(error)) => warn!(lease = %config.name, %error, "could not release the lease"),
            Err(_) => warn!(lease = %config.name, "releasing the lease timed out"),
        }
    }
}

/// Reports a change of leadership (renewals that change nothing wake no one).
fn set(leader: &watch::Sender<bool>, leading: bool) {
    leader.send_if_modified(|current| std::mem::replace(current, leading) != leading);
}

/// One round: returns whether we hold the Lease afterwards.
async fn try_acquire(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let unchanged_for = observed.unchanged_for(current.as_ref());
    let decision = decide(current.as_ref(), &config.identity, unchanged_for);
    let now = Timestamp::now();
    let result = match (&decision, current) {
        (Decision::Follow { .. }, _) => return Ok(false),
        (Decision::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease_spec(config, None, now, true)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (decision, Some(mut lease)) => {
            // `replace` sends the resourceVersion we read: a concurrent winner makes this fail
            // with a conflict instead of both of us leading.
            lease.spec = Some(lease_spec(
                config,
                lease.spec.as_ref(),
                now,
                *decision == Decision::TakeOver,
            ));
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (_, None) => unreachable!("only Create is decided without a lease"),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

async fn release(api: &Api<Lease>, config: &ElectionConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(&config.identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()).filter(|h| !h.is_empty()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decides_from_the_lease_as_read() {
        let renewed: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let secs = Duration::from_secs;
        assert_eq!(decide(None, "me", secs(0)), Decision::Create);
        assert_eq!(
            decide(Some(&lease("me", renewed, 15)), "me", secs(60)),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease("other", renewed, 15)), "me", secs(14)),
            Decision::Follow {
                holder: "other".into()
            }
        );
        assert_eq!(
            decide(Some(&lease("other", renewed, 15)), "me", secs(15)),
            Decision::TakeOver,
            "unchanged for the whole duration"
        );
        assert_eq!(
            decide(Some(&lease("", renewed, 15)), "me", secs(0)),
            Decision::TakeOver,
            "released"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_timed_on_the_local_clock_from_the_last_change() {
        let mut observed = Observed::default();
        let t0: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let old = lease("other", t0, 15);
        // A renew time far in the past (a skewed clock) does not make the lease expired.
        assert_eq!(observed.unchanged_for(Some(&old)), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(observed.unchanged_for(Some(&old)), Duration::from_secs(10));
        // A renewal restarts the count.
        let renewed = lease("other", "2020-01-01T00:00:05Z".parse().unwrap(), 15);
        assert_eq!(observed.unchanged_for(Some(&renewed)), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(
            decide(Some(&renewed), "me", observed.unchanged_for(Some(&renewed))),
            Decision::TakeOver
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let config = ElectionConfig {
            namespace: "ns".into(),
            name: "weir-leader".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        };
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        let first = lease_spec(&config, None, t0, true);
        assert_eq!(first.lease_transitions, Some(1));
        assert_eq!(first.lease_duration_seconds, Some(15));
        let renewed = lease_spec(&config, Some(&first), t1, false);
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.renew_time, Some(MicroTime(t1)));
        assert_eq!(renewed.lease_transitions, Some(1));
    }
}

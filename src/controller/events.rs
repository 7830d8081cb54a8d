//! Diagnostics as Kubernetes Events (leader only): one Warning Event on the object concerned
//! when a diagnostic appears; the same diagnostic on later rebuilds adds nothing, and one that
//! could not be published is retried. A replica that becomes leader reports the diagnostics
//! that are current then (so a change of leader may repeat an Event).
//!
//! Events are paced ([`Pacing`]): a storm of diagnostics (a thousand Ingresses broken by one
//! bad apply, an Ingress flapping between valid and invalid) becomes Events at a rate the API
//! server can take, each in its turn while it is still current. Every diagnostic is logged at
//! once whatever its turn (`DiagnosticLog`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::rebuild::Published;
use crate::metrics::ControlMetrics;
use crate::model::{Diagnostic, Input, ObjectKind, ObjectRef, Rate};
use crate::state::Limiter;

/// How long a failed Event waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// How fast diagnostics become Events, as client-go's event spam filter and client rate pace
/// an ingress-nginx controller's: per object a burst of 25, then one every 5 minutes; for all
/// objects together a burst of 25, then 5 a second.
struct Pacing {
    all: Limiter<()>,
    per_object: Limiter<ObjectRef>,
}

impl Pacing {
    fn new() -> Self {
        Pacing {
            all: Limiter::new(Rate {
                count: 5,
                period: Duration::from_secs(1),
                burst: 24,
            }),
            per_object: Limiter::new(Rate {
                count: 1,
                period: Duration::from_secs(300),
                burst: 24,
            }),
        }
    }

    /// How long until an Event about `object` may be written (zero: now).
    fn delay(&self, object: &ObjectRef, now: Instant) -> Duration {
        self.all
            .delay(&(), now)
            .max(self.per_object.delay(object, now))
    }

    /// Counts an Event about `object` written at `now` (after a zero [`Pacing::delay`]).
    fn count(&self, object: &ObjectRef, now: Instant) {
        self.all.allow((), now);
        self.per_object.allow(object.clone(), now);
    }
}

/// Runs until `cancel` fires, publishing an Event for every new diagnostic while leader, in
/// its turn under the [`Pacing`].
pub async fn run_event_writer(
    client: Client,
    reporter: Reporter,
    mut published: watch::Receiver<Option<Arc<Published>>>,
    mut leader: watch::Receiver<bool>,
    metrics: ControlMetrics,
    cancel: CancellationToken,
) {
    let recorder = Recorder::new(client, reporter);
    let pacing = Pacing::new();
    let mut reported: BTreeSet<Diagnostic> = BTreeSet::new();
    let mut waiting = 0;
    loop {
        let is_leader = *leader.borrow_and_update();
        let current = published.borrow_and_update().clone();
        // When to look again for diagnostics that wait (their turn, or a retry).
        let mut again: Option<Duration> = None;
        let mut left = 0;
        match (is_leader, current) {
            (false, _) => reported.clear(),
            (true, Some(current)) => {
                let now: BTreeSet<&Diagnostic> = current.diagnostics.iter().collect();
                // Forget the resolved ones, so that a diagnostic that comes back is reported again.
                reported.retain(|d| now.contains(d));
                let new: Vec<&Diagnostic> =
                    now.into_iter().filter(|d| !reported.contains(*d)).collect();
                left = new.len();
                for diagnostic in new {
                    if !*leader.borrow() {
                        break;
                    }
                    let delay = pacing.delay(&diagnostic.object, Instant::now());
                    if !delay.is_zero() {
                        again = Some(again.map_or(delay, |a| a.min(delay)));
                        continue;
                    }
                    pacing.count(&diagnostic.object, Instant::now());
                    match publish(&recorder, diagnostic, &current.input).await {
                        Ok(()) => {
                            metrics.events.with_label_values(&["published"]).inc();
                            reported.insert(diagnostic.clone());
                            left -= 1;
                        }
                        Err(error) => {
                            metrics.events.with_label_values(&["failed"]).inc();
                            warn!(object = %diagnostic.object, %error, "cannot publish an Event; retrying");
                            again = Some(again.map_or(RETRY, |a| a.min(RETRY)));
                        }
                    }
                }
            }
            (true, None) => {}
        }
        if left > 0 && waiting == 0 {
            info!(
                waiting = left,
                "Events are paced (25 at once, then 5 a second; per object 25, then one every 5 minutes): diagnostics wait for their turn (each is logged already)"
            );
        } else if left == 0 && waiting > 0 {
            info!("every current diagnostic is reported as an Event");
        }
        waiting = left;
        metrics
            .events_waiting
            .set(i64::try_from(left).unwrap_or(i64::MAX));
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = published.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(again.unwrap_or_default()), if again.is_some() => {}
        }
    }
}

/// Writes the Event of `diagnostic` (bounded by a timeout).
async fn publish(
    recorder: &Recorder,
    diagnostic: &Diagnostic,
    input: &Input,
) -> Result<(), PublishError> {
    let reference = object_reference(diagnostic, input);
    let event = Event {
        type_: EventType::Warning,
        reason: diagnostic.reason.as_str().to_owned(),
        note: Some(truncate(&diagnostic.message, 1000)),
        action: "BuildRoutes".to_owned(),
        secondary: None,
    };
    match tokio::time::timeout(
        Duration::from_secs(10),
        recorder.publish(&event, &reference),
    )
    .await
    {
        Ok(result) => result.map_err(PublishError::Api),
        Err(_) => Err(PublishError::Timeout),
    }
}

/// Why an Event was not written.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Api(kube::Error),
    #[error("timed out after 10 s")]
    Timeout,
}

/// The Event's object, with its uid when the input has the object (`kubectl describe` matches
/// Events by uid).
fn object_reference(diagnostic: &Diagnostic, input: &Input) -> ObjectReference {
    let object = &diagnostic.object;
    let same = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name.as_deref() == Some(object.name.as_str())
            && meta.namespace.as_deref().unwrap_or("default") == object.namespace
    };
    let uid = match object.kind {
        ObjectKind::Ingress => input
            .ingresses
            .iter()
            .find(|i| same(&i.metadata))
            .and_then(|i| i.metadata.uid.clone()),
        ObjectKind::Service => input
            .services
            .iter()
            .find(|s| same(&s.metadata))
            .and_then(|s| s.metadata.uid.clone()),
        ObjectKind::Secret => input
            .secrets
            .iter()
            .find(|s| same(&s.metadata))
            .and_then(|s| s.metadata.uid.clone()),
        ObjectKind::ConfigMap => input
            .config_maps
            .iter()
            .find(|c| same(&c.metadata))
            .and_then(|c| c.metadata.uid.clone()),
        _ => None,
    };
    ObjectReference {
        api_version: Some(object.kind.api_version().to_owned()),
        kind: Some(object.kind.as_str().to_owned()),
        namespace: Some(object.namespace.clone()).filter(|ns| !ns.is_empty()),
        name: Some(object.name.clone()),
        uid,
        ..ObjectReference::default()
    }
}

fn truncate(message: &str, max: usize) -> String {
    match message.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef {
        ObjectRef::new(ObjectKind::Ingress, "default", name)
    }

    /// Counts the Events `pacing` lets through for `objects` (one attempt each, in order) at `now`.
    fn written(pacing: &Pacing, objects: &[ObjectRef], now: Instant) -> usize {
        objects
            .iter()
            .filter(|o| {
                let go = pacing.delay(o, now).is_zero();
                if go {
                    pacing.count(o, now);
                }
                go
            })
            .count()
    }

    #[test]
    fn a_storm_gets_a_burst_then_five_a_second() {
        let pacing = Pacing::new();
        let start = Instant::now();
        let storm: Vec<ObjectRef> = (0..1000).map(|i| object(&format!("i{i}"))).collect();
        assert_eq!(written(&pacing, &storm, start), 25);
        let waits = pacing.delay(&storm[25], start);
        assert_eq!(waits, Duration::from_millis(200));
        // The next second lets five more through, whichever objects they are about.
        assert_eq!(
            written(&pacing, &storm[25..], start + Duration::from_secs(1)),
            5
        );
    }

    #[test]
    fn one_flapping_object_gets_25_then_one_every_5_minutes() {
        let pacing = Pacing::new();
        let start = Instant::now();
        let flapping = object("flapping");
        let mut now = start;
        let mut count = 0;
        // Reappearing every second for a minute: 25, then nothing more.
        for _ in 0..60 {
            count += written(&pacing, std::slice::from_ref(&flapping), now);
            now += Duration::from_secs(1);
        }
        assert_eq!(count, 25);
        // Others are not held back by it.
        assert_eq!(written(&pacing, &[object("other")], now), 1);
        let next = pacing.delay(&flapping, now);
        assert!(
            next > Duration::from_secs(200) && next <= Duration::from_secs(300),
            "{next:?}"
        );
        assert_eq!(written(&pacing, &[flapping], now + next), 1);
    }
}

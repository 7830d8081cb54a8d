//! Diagnostics as Kubernetes Events (leader only): one Warning Event on the object concerned
//! when a diagnostic appears; the same diagnostic on later rebuilds adds nothing, and one that
//! could not be published is retried. A replica that becomes leader reports the diagnostics
//! that are current then (so a change of leader may repeat an Event).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::rebuild::Published;
use crate::model::{Diagnostic, Input, ObjectKind};

/// Runs until `cancel` fires, publishing an Event for every new diagnostic while leader.
pub async fn run_event_writer(
    client: Client,
    reporter: Reporter,
    mut published: watch::Receiver<Option<Arc<Published>>>,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let recorder = Recorder::new(client, reporter);
    let mut reported: BTreeSet<Diagnostic> = BTreeSet::new();
    loop {
        let is_leader = *leader.borrow_and_update();
        let current = published.borrow_and_update().clone();
        let mut failed = false;
        match (is_leader, current) {
            (false, _) => reported.clear(),
            (true, Some(current)) => {
                let now: BTreeSet<Diagnostic> = current.diagnostics.iter().cloned().collect();
                // Forget the resolved ones, so that a diagnostic that comes back is reported again.
                reported.retain(|d| now.contains(d));
                let new: Vec<Diagnostic> = now.difference(&reported).cloned().collect();
                for diagnostic in new {
                    let reference = object_reference(&diagnostic, &current.input);
                    let event = Event {
                        type_: EventType::Warning,
                        reason: diagnostic.reason.as_str().to_owned(),
                        note: Some(truncate(&diagnostic.message, 1000)),
                        action: "BuildRoutes".to_owned(),
                        secondary: None,
                    };
                    let published = recorder.publish(&event, &reference);
                    match tokio::time::timeout(Duration::from_secs(10), published).await {
                        Ok(Ok(())) => {
                            reported.insert(diagnostic);
                        }
                        Ok(Err(error)) => {
                            warn!(object = %diagnostic.object, %error, "cannot publish an Event; retrying");
                            failed = true;
                        }
                        Err(_) => {
                            warn!(object = %diagnostic.object, "publishing an Event timed out; retrying");
                            failed = true;
                        }
                    }
                    if !*leader.borrow() {
                        break;
                    }
                }
            }
            (true, None) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = published.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)), if failed => {}
        }
    }
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

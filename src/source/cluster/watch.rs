//! One watcher + reflector per kind, reporting every change it applies.

use std::fmt::Debug;
use std::hash::Hash;

use futures_util::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What changed in the cluster, as far as deciding whether to rebuild goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An object of a kind that always matters (Ingress, IngressClass) changed, or a watcher
    /// relisted after a disconnect: rebuild.
    Always,
    /// An Ingress changed: references must be recomputed, and rebuild.
    Ingress,
    /// The Service, or the endpoints of the Service, `namespace/name` changed.
    Service { namespace: String, name: String },
    /// The TLS Secret `namespace/name` changed.
    Secret { namespace: String, name: String },
}

/// How objects of a kind map to [`Change`]s.
pub trait Watched: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    /// The change an event about `self` means.
    fn change(&self) -> Change;
}

fn key(obj: &impl Resource) -> (String, String) {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

impl Watched for k8s_openapi::api::networking::v1::Ingress {
    fn change(&self) -> Change {
        Change::Ingress
    }
}

impl Watched for k8s_openapi::api::networking::v1::IngressClass {
    fn change(&self) -> Change {
        Change::Always
    }
}

impl Watched for k8s_openapi::api::core::v1::Service {
    fn change(&self) -> Change {
        let (namespace, name) = key(self);
        Change::Service { namespace, name }
    }
}

impl Watched for k8s_openapi::api::core::v1::Endpoints {
    fn change(&self) -> Change {
        let (namespace, name) = key(self);
        Change::Service { namespace, name }
    }
}

impl Watched for k8s_openapi::api::discovery::v1::EndpointSlice {
    fn change(&self) -> Change {
        let (namespace, _) = key(self);
        match self.labels().get("kubernetes.io/service-name") {
            Some(service) => Change::Service {
                namespace,
                name: service.clone(),
            },
            None => Change::Always,
        }
    }
}

impl Watched for k8s_openapi::api::core::v1::Secret {
    fn change(&self) -> Change {
        let (namespace, name) = key(self);
        Change::Secret { namespace, name }
    }
}

/// Watches `api`, keeps `writer`'s store up to date (without managedFields) and sends a
/// [`Change`] for every applied or deleted object and every completed relist, until `cancel`
/// fires. Errors (the API server going away, a watch expiring) are logged and retried with
/// backoff; the store keeps its objects meanwhile.
pub async fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    changes: mpsc::Sender<Change>,
    cancel: CancellationToken,
) where
    K: Watched,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&Default::default()).into_owned();
    let events = watcher::watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| obj.managed_fields_mut().clear())
        .reflect(writer);
    tokio::pin!(events);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let change = match event {
            Ok(Event::Apply(obj) | Event::Delete(obj)) => obj.change(),
            Ok(Event::InitDone) => {
                debug!(%kind, "list complete");
                Change::Always
            }
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Err(error) => {
                warn!(%kind, %error, "watch failed; retrying with backoff (the last known objects stay in use)");
                continue;
            }
        };
        if changes.send(change).await.is_err() {
            return;
        }
    }
}

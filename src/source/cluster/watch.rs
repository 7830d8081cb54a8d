//! One watcher + reflector per kind, reporting every change it applies.

use std::fmt::Debug;
use std::hash::Hash;

use futures_util::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use prometheus::IntCounterVec;
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
    /// An Ingress changed: rebuild (and recompute references) unless only its status changed.
    Ingress {
        /// Its namespace and name.
        key: (String, String),
        /// What the table depends on beyond its key (see [`ingress_fingerprint`]); `None` when
        /// it was deleted or cannot be fingerprinted.
        fingerprint: Option<u64>,
    },
    /// The Service, or the endpoints of the Service, `namespace/name` changed.
    Service { namespace: String, name: String },
    /// The TLS Secret `namespace/name` changed.
    Secret { namespace: String, name: String },
    /// The ConfigMap `namespace/name` changed.
    ConfigMap { namespace: String, name: String },
}

/// How objects of a kind map to [`Change`]s.
pub trait Watched: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    /// The change an event about `self` means; `deleted` for a deletion.
    fn change(&self, deleted: bool) -> Change;
}

/// A hash of what the table depends on in an Ingress besides its name: its spec (through
/// `metadata.generation`, which the API server bumps on every spec change) and its annotations
/// (the legacy class annotation, weir's own). A status update changes neither. `None` without
/// a generation (then every update counts).
pub fn ingress_fingerprint(ingress: &k8s_openapi::api::networking::v1::Ingress) -> Option<u64> {
    use std::hash::Hasher;
    let generation = ingress.metadata.generation?;
    let mut hasher = std::hash::DefaultHasher::new();
    generation.hash(&mut hasher);
    ingress.metadata.annotations.hash(&mut hasher);
    Some(hasher.finish())
}

fn key(obj: &impl Resource) -> (String, String) {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

impl Watched for k8s_openapi::api::networking::v1::Ingress {
    fn change(&self, deleted: bool) -> Change {
        Change::Ingress {
            key: key(self),
            fingerprint: if deleted {
                None
            } else {
                ingress_fingerprint(self)
            },
        }
    }
}

impl Watched for k8s_openapi::api::networking::v1::IngressClass {
    fn change(&self, _deleted: bool) -> Change {
        Change::Always
    }
}

impl Watched for k8s_openapi::api::core::v1::Service {
    fn change(&self, _deleted: bool) -> Change {
        let (namespace, name) = key(self);
        Change::Service { namespace, name }
    }
}

impl Watched for k8s_openapi::api::core::v1::Endpoints {
    fn change(&self, _deleted: bool) -> Change {
        let (namespace, name) = key(self);
        Change::Service { namespace, name }
    }
}

impl Watched for k8s_openapi::api::discovery::v1::EndpointSlice {
    fn change(&self, _deleted: bool) -> Change {
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
    fn change(&self, _deleted: bool) -> Change {
        let (namespace, name) = key(self);
        Change::Secret { namespace, name }
    }
}

impl Watched for k8s_openapi::api::core::v1::ConfigMap {
    fn change(&self, _deleted: bool) -> Change {
        let (namespace, name) = key(self);
        Change::ConfigMap { namespace, name }
    }
}

/// Watches `api`, keeps `writer`'s store up to date (without managedFields, and as `trim`
/// leaves each object) and sends a
/// [`Change`] for every applied or deleted object and every completed relist, until `cancel`
/// fires. Errors (the API server going away, a watch expiring) are logged, counted in
/// `restarts` (by kind) and retried with backoff; the store keeps its objects meanwhile.
pub async fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    changes: mpsc::Sender<Change>,
    restarts: Option<IntCounterVec>,
    cancel: CancellationToken,
    mut trim: impl FnMut(&mut K) + Send + 'static,
) where
    K: Watched,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&Default::default()).into_owned();
    let restarts = restarts.map(|r| r.with_label_values(&[&kind]));
    let events = watcher::watcher(api, config)
        .default_backoff()
        .modify(move |obj: &mut K| {
            obj.managed_fields_mut().clear();
            trim(obj);
        })
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
            Ok(Event::Apply(obj)) => obj.change(false),
            Ok(Event::Delete(obj)) => obj.change(true),
            Ok(Event::InitDone) => {
                debug!(%kind, "list complete");
                Change::Always
            }
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Err(error) => {
                if let Some(restarts) = &restarts {
                    restarts.inc();
                }
                warn!(%kind, %error, "watch failed; retrying with backoff (the last known objects stay in use)");
                continue;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = changes.send(change) => if sent.is_err() { return },
        }
    }
}

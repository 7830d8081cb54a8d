//! The objects that annotations name (`auth-secret`, `auth-tls-secret`: Secrets;
//! `auth-proxy-set-headers`: ConfigMaps), watched one by one.
//!
//! TLS Secrets are watched by type (`tls_secrets.rs`), but the Secrets annotations name are
//! Opaque, a type that also holds every Helm release and application credential in the
//! cluster, and ConfigMaps hold any application's configuration. So weir watches exactly the
//! ones some Ingress names, each by name (a field selector on `metadata.name`): a watch starts
//! when an Ingress comes to name an object and stops when none does any more, and nothing
//! else is ever read or cached.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::watch::{Change, Watched, watch_kind};

/// Where the watches of [`Named`] run: the client, the task tracker, the change channel, the
/// restart counter and the cancel token their stops derive from.
#[derive(Clone)]
pub struct Watching {
    pub client: Client,
    pub tasks: TaskTracker,
    pub changes: mpsc::Sender<Change>,
    pub restarts: Option<IntCounterVec>,
    pub cancel: CancellationToken,
}

/// One watch per named object of kind `K`, keyed by (namespace, name).
pub struct Named<K>
where
    K: Watched,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    watching: Watching,
    watched: BTreeMap<(String, String), (Store<K>, CancellationToken)>,
}

impl<K> Named<K>
where
    K: Watched + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// No watches yet; they will run as `watching` says.
    pub fn new(watching: Watching) -> Self {
        Named {
            watching,
            watched: BTreeMap::new(),
        }
    }

    /// Watches exactly the objects in `wanted`: starts the missing watches, stops the others.
    pub fn watch_only<'a>(&mut self, wanted: impl IntoIterator<Item = &'a (String, String)>) {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let wanted: BTreeMap<&(String, String), ()> = wanted.into_iter().map(|k| (k, ())).collect();
        self.watched.retain(|key, (_, stop)| {
            let keep = wanted.contains_key(key);
            if !keep {
                debug!(%kind, namespace = %key.0, name = %key.1, "no Ingress names this object any more: watch stopped");
                stop.cancel();
            }
            keep
        });
        for key @ (namespace, name) in wanted.into_keys() {
            if self.watched.contains_key(key) {
                continue;
            }
            debug!(%kind, %namespace, %name, "an Ingress names this object: watching it");
            let (store, writer) = reflector::store();
            let w = &self.watching;
            let stop = w.cancel.child_token();
            let api = Api::<K>::namespaced(w.client.clone(), namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            w.tasks.spawn(watch_kind(
                api,
                config,
                writer,
                w.changes.clone(),
                w.restarts.clone(),
                stop.clone(),
                |_| {},
            ));
            self.watched.insert(key.clone(), (store, stop));
        }
    }

    /// Waits until every watch has listed once (or its writer is gone).
    pub async fn wait_until_ready(&self) {
        for (store, _) in self.watched.values() {
            let _ = store.wait_until_ready().await;
        }
    }

    /// The objects the watches hold.
    pub fn objects(&self) -> impl Iterator<Item = Arc<K>> + '_ {
        self.watched.values().flat_map(|(store, _)| store.state())
    }
}

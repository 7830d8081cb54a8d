//! The Secrets that annotations name (`auth-secret`), watched one by one.
//!
//! TLS Secrets are watched by type (`tls_secrets.rs`), but the Secrets annotations name are
//! Opaque, a type
//! that also holds every Helm release and application credential in the cluster. So weir
//! watches exactly the ones some Ingress names, each by name (a field selector on
//! `metadata.name`): a watch starts when an Ingress comes to name a Secret and stops when none
//! does any more, and nothing else is ever read or cached.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::watch::{Change, watch_kind};

/// One watch per named Secret, keyed by (namespace, name).
pub struct NamedSecrets {
    client: Client,
    tasks: TaskTracker,
    changes: mpsc::Sender<Change>,
    restarts: Option<IntCounterVec>,
    cancel: CancellationToken,
    watched: BTreeMap<(String, String), (Store<Secret>, CancellationToken)>,
}

impl NamedSecrets {
    /// No watches yet; they will run on `tasks`, send to `changes` and stop with `cancel`.
    pub fn new(
        client: Client,
        tasks: TaskTracker,
        changes: mpsc::Sender<Change>,
        restarts: Option<IntCounterVec>,
        cancel: CancellationToken,
    ) -> Self {
        NamedSecrets {
            client,
            tasks,
            changes,
            restarts,
            cancel,
            watched: BTreeMap::new(),
        }
    }

    /// Watches exactly the Secrets in `wanted`: starts the missing watches, stops the others.
    pub fn watch_only<'a>(&mut self, wanted: impl IntoIterator<Item = &'a (String, String)>) {
        let wanted: BTreeMap<&(String, String), ()> = wanted.into_iter().map(|k| (k, ())).collect();
        self.watched.retain(|key, (_, stop)| {
            let keep = wanted.contains_key(key);
            if !keep {
                debug!(namespace = %key.0, name = %key.1, "no Ingress names this Secret any more: watch stopped");
                stop.cancel();
            }
            keep
        });
        for key @ (namespace, name) in wanted.into_keys() {
            if self.watched.contains_key(key) {
                continue;
            }
            debug!(%namespace, %name, "an Ingress names this Secret: watching it");
            let (store, writer) = reflector::store();
            let stop = self.cancel.child_token();
            let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            self.tasks.spawn(watch_kind(
                api,
                config,
                writer,
                self.changes.clone(),
                self.restarts.clone(),
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

    /// The Secrets the watches hold.
    pub fn secrets(&self) -> impl Iterator<Item = Arc<Secret>> + '_ {
        self.watched.values().flat_map(|(store, _)| store.state())
    }
}

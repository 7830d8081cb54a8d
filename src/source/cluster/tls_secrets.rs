//! TLS Secrets: one watch of type `kubernetes.io/tls` (a watch per certificate would hold one
//! API server connection each), keeping the keys of only the Secrets weir's Ingresses name in
//! `spec.tls` (and `--default-ssl-certificate`). Every other TLS Secret of the cluster is held
//! as its metadata only: its data is dropped as it arrives, before it reaches the store. A
//! Secret named after it arrived (an Ingress added for an existing certificate) is read once
//! by name; later changes to it come through the watch with their data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tracing::{debug, warn};

/// (namespace, name).
type Key = (String, String);

/// How long reading one newly named Secret may take before the table is published without it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS Secrets weir keeps, and the set that decides which ones.
pub struct TlsSecrets {
    client: Client,
    wanted: Arc<RwLock<HashSet<Key>>>,
    /// Read by name because the store had dropped their data (see the module doc).
    fetched: BTreeMap<Key, Arc<Secret>>,
}

fn key(secret: &Secret) -> Key {
    (
        secret.metadata.namespace.clone().unwrap_or_default(),
        secret.metadata.name.clone().unwrap_or_default(),
    )
}

/// Drops the data of `secret` unless it is `wanted`.
fn trim(wanted: &RwLock<HashSet<Key>>, secret: &mut Secret) {
    let keep = wanted
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key(secret));
    if !keep {
        secret.data = None;
        secret.string_data = None;
    }
}

impl TlsSecrets {
    /// Nothing wanted yet.
    pub fn new(client: Client) -> Self {
        TlsSecrets {
            client,
            wanted: Arc::new(RwLock::new(HashSet::new())),
            fetched: BTreeMap::new(),
        }
    }

    /// What the watch applies to each Secret before storing it: drops the data of one that is
    /// not wanted.
    pub fn trim(&self) -> impl FnMut(&mut Secret) + Send + 'static {
        let wanted = self.wanted.clone();
        move |secret: &mut Secret| trim(&wanted, secret)
    }

    /// Makes `wanted` the Secrets whose keys are kept; those `store` holds without data (and
    /// not read yet, or whose reading failed) are read by name.
    pub async fn want(&mut self, wanted: BTreeSet<Key>, store: &Store<Secret>) {
        *self.wanted.write().unwrap_or_else(|e| e.into_inner()) = wanted.iter().cloned().collect();
        self.fetched.retain(|k, _| wanted.contains(k));
        for (namespace, name) in wanted {
            let held = store.get(&ObjectRef::new(&name).within(&namespace));
            let key = (namespace, name);
            if held.is_none_or(|s| s.data.is_some()) || self.fetched.contains_key(&key) {
                continue;
            }
            let (namespace, name) = &key;
            debug!(%namespace, %name, "an Ingress names this TLS Secret: reading it");
            let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
            match tokio::time::timeout(READ_TIMEOUT, api.get_opt(name)).await {
                Ok(Ok(Some(mut secret))) => {
                    secret.metadata.managed_fields = None;
                    self.fetched.insert(key, Arc::new(secret));
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    warn!(%namespace, %name, %error, "cannot read a TLS Secret an Ingress names")
                }
                Err(_) => {
                    warn!(%namespace, %name, "reading a TLS Secret an Ingress names timed out")
                }
            }
        }
    }

    /// The wanted Secrets with their data: from the store, else as read by name (while the
    /// store still holds the Secret).
    pub fn secrets(&self, store: &Store<Secret>) -> Vec<Arc<Secret>> {
        let wanted = self.wanted.read().unwrap_or_else(|e| e.into_inner());
        wanted
            .iter()
            .filter_map(|key| {
                let secret = store.get(&ObjectRef::new(&key.1).within(&key.0))?;
                if secret.data.is_some() {
                    Some(secret)
                } else {
                    self.fetched.get(key).cloned()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wanted_secrets_keep_their_keys() {
        let secret = |name: &str| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "apps"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
            }))
            .unwrap()
        };
        let wanted = RwLock::new(HashSet::from([("apps".to_owned(), "mine".to_owned())]));
        let (mut mine, mut other) = (secret("mine"), secret("other"));
        trim(&wanted, &mut mine);
        trim(&wanted, &mut other);
        assert_eq!(mine.data.as_ref().map(|d| d.len()), Some(2));
        assert!(other.data.is_none() && other.metadata.name.as_deref() == Some("other"));
    }
}

//! The cluster source: kube-rs watchers and reflectors for every kind the model reads.
//!
//! Each kind has a watcher whose objects (without `managedFields`) land in a reflector store.
//! Nothing is sent before every watcher has listed once; after that, changes that can affect
//! the table — any Ingress or IngressClass, and Services, endpoints, TLS Secrets and the
//! Secrets and ConfigMaps annotations name ([`named`]) that some Ingress references — are
//! debounced and a new [`Input`] built from the stores is sent.
//! When the API server goes away the watchers retry with backoff and the stores, and so the last
//! table, stay as they were.

mod named;
mod references;
mod tls_secrets;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use prometheus::IntCounterVec;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::model::Input;
use named::{Named, Watching};
use references::{Pinned, References};
use tls_secrets::TlsSecrets;
use watch::{Change, Watched, watch_kind};

/// How long the first table waits for the Secrets and ConfigMaps that Ingresses name.
const NAMED_OBJECTS_WAIT: Duration = Duration::from_secs(10);

/// Which API publishes a Service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointsApi {
    /// `discovery.k8s.io/v1` EndpointSlices when the server serves them, else core/v1 Endpoints.
    Auto,
    /// `discovery.k8s.io/v1` EndpointSlices.
    Endpointslices,
    /// core/v1 Endpoints.
    Endpoints,
}

/// Why the cluster source stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A reflector's writer went away before its first list finished.
    #[error("the {0} watcher stopped before its first list")]
    WatcherStopped(&'static str),
}

/// Settings of the cluster source.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Where endpoints come from.
    pub endpoints_api: EndpointsApi,
    /// Quiet period after a change before rebuilding, so that the watch events of a burst of
    /// writes make one rebuild.
    pub debounce: Duration,
    /// Longest a stream of changes may delay a rebuild.
    pub debounce_max: Duration,
    /// The `--default-ssl-certificate` Secret (namespace, name): its changes always matter.
    pub default_certificate: Option<(String, String)>,
    /// The controller ConfigMap (`--configmap`, namespace and name): watched, and its changes
    /// always matter.
    pub config_map: Option<(String, String)>,
    /// The controller's default backend (`--default-backend-service`): its changes always
    /// matter.
    pub default_backend_service: Option<(String, String)>,
    /// How the model reads the objects: which Ingresses are weir's and whether they may name
    /// other namespaces' Secrets, which decides the Secrets watched by name.
    pub build: crate::model::BuildConfig,
}

/// The stores the reflectors fill, one per kind.
struct Stores {
    ingresses: Store<Ingress>,
    classes: Store<IngressClass>,
    services: Store<Service>,
    slices: Option<Store<EndpointSlice>>,
    endpoints: Option<Store<Endpoints>>,
    secrets: Store<Secret>,
    config_maps: Option<Store<ConfigMap>>,
}

impl Stores {
    /// The stores' objects, and the objects annotations name, as an [`Input`]. `Store::state`
    /// hands out the store's own `Arc`s, so this copies pointers, not objects.
    fn input(&self, named: &NamedObjects, tls: &TlsSecrets) -> Input {
        let mut secrets = tls.secrets(&self.secrets);
        secrets.extend(named.secrets.objects());
        let mut config_maps = self
            .config_maps
            .as_ref()
            .map(Store::state)
            .unwrap_or_default();
        config_maps.extend(named.config_maps.objects());
        Input {
            ingresses: self.ingresses.state(),
            ingress_classes: self.classes.state(),
            services: self.services.state(),
            endpoint_slices: self.slices.as_ref().map(Store::state).unwrap_or_default(),
            endpoints: self
                .endpoints
                .as_ref()
                .map(Store::state)
                .unwrap_or_default(),
            secrets,
            config_maps,
            external_names: Arc::default(),
        }
    }
}

/// The Secrets and ConfigMaps annotations name, each watched by name.
struct NamedObjects {
    secrets: Named<Secret>,
    config_maps: Named<ConfigMap>,
}

/// What weir fetches because its Ingresses name it: the Secrets and ConfigMaps their
/// annotations name, the TLS Secrets of their `spec.tls`, and the references that say which.
struct Referenced {
    references: References,
    named: NamedObjects,
    tls: TlsSecrets,
}

impl NamedObjects {
    /// Waits until every watch has listed once.
    async fn wait_until_ready(&self) {
        self.secrets.wait_until_ready().await;
        self.config_maps.wait_until_ready().await;
    }
}

/// Watches the cluster and sends an [`Input`] for every change that matters.
pub struct ClusterSource {
    client: Client,
    config: ClusterConfig,
    ingresses: Store<Ingress>,
    ingress_writer: Option<reflector::store::Writer<Ingress>>,
    restarts: Option<IntCounterVec>,
}

impl ClusterSource {
    /// A source reading through `client`.
    pub fn new(client: Client, config: ClusterConfig) -> Self {
        let (ingresses, ingress_writer) = reflector::store();
        ClusterSource {
            client,
            config,
            ingresses,
            ingress_writer: Some(ingress_writer),
            restarts: None,
        }
    }

    /// Counts failed watches in `restarts` (labelled by resource kind).
    #[must_use]
    pub fn with_watch_restarts(mut self, restarts: IntCounterVec) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// The live store of Ingresses (current status included, which the inputs sent by
    /// [`ClusterSource::run`] may lag: status-only updates trigger no new input).
    pub fn ingresses(&self) -> Store<Ingress> {
        self.ingresses.clone()
    }

    /// Runs until `cancel` fires. Sends the first input once every watcher has listed.
    pub async fn run(
        self,
        tx: tokio_watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
    ) -> Result<(), ClusterError> {
        let span = info_span!(
            "cluster",
            namespace = self.config.namespace.as_deref().unwrap_or("*")
        );
        self.run_inner(tx, cancel).instrument(span).await
    }

    async fn run_inner(
        mut self,
        tx: tokio_watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
    ) -> Result<(), ClusterError> {
        let use_slices = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            slices = self.use_endpoint_slices() => slices,
        };
        let endpoints_api = if use_slices {
            "discovery.k8s.io/v1 EndpointSlice"
        } else {
            "v1 Endpoints"
        };
        info!(api = endpoints_api, "reading endpoints");

        let tasks = TaskTracker::new();
        let (changes_tx, mut changes) = mpsc::channel::<Change>(1024);
        let watching = Watching {
            client: self.client.clone(),
            tasks: tasks.clone(),
            changes: changes_tx.clone(),
            restarts: self.restarts.clone(),
            cancel: cancel.clone(),
        };
        let named = NamedObjects {
            secrets: Named::new(watching.clone()),
            config_maps: Named::new(watching),
        };
        let mut tls = TlsSecrets::new(self.client.clone());
        let (stores, secrets_writer) =
            self.spawn_watchers(use_slices, &tasks, changes_tx.clone(), &cancel);

        let synced = tokio::select! {
            _ = cancel.cancelled() => Ok(false),
            synced = wait_for_first_lists(&stores) => synced.map(|()| true),
        };
        if synced? {
            // TLS Secrets are watched once the Ingresses are known, so that the first list
            // keeps the keys of the ones they name and drops every other's.
            let references = self.references(&stores);
            tls.want(self.tls_secrets(&references), &stores.secrets)
                .await;
            let watchers = Watchers {
                tasks: &tasks,
                changes: changes_tx,
                restarts: self.restarts.clone(),
                cancel: &cancel,
            };
            let api = namespaced_api(&self.client, self.config.namespace.as_deref());
            let config = watcher::Config::default().fields("type=kubernetes.io/tls");
            watchers.spawn_trimmed(api, config, secrets_writer, tls.trim());
            tasks.close();
            let listed = tokio::select! {
                _ = cancel.cancelled() => Ok(false),
                listed = stores.secrets.wait_until_ready() => listed
                    .map(|()| true)
                    .map_err(|_| ClusterError::WatcherStopped("Secret")),
            };
            if listed? {
                let mut referenced = Referenced {
                    references,
                    named,
                    tls,
                };
                self.send_changes(&stores, &mut referenced, &mut changes, &tx, &cancel)
                    .await;
            }
        } else {
            tasks.close();
        }
        // Dropping the receiver unblocks watchers waiting to send, so they see the cancel.
        drop(changes);
        tasks.wait().await;
        Ok(())
    }

    /// Starts one watcher per kind but TLS Secrets; their stores fill as they list and watch.
    /// The Secrets' store fills through the writer returned, once its watcher starts.
    fn spawn_watchers(
        &mut self,
        use_slices: bool,
        tasks: &TaskTracker,
        changes: mpsc::Sender<Change>,
        cancel: &CancellationToken,
    ) -> (Stores, reflector::store::Writer<Secret>) {
        let client = &self.client;
        let ns = self.config.namespace.as_deref();
        let watchers = Watchers {
            tasks,
            changes,
            restarts: self.restarts.clone(),
            cancel,
        };
        let all = watcher::Config::default;
        let (secrets, secrets_writer) = reflector::store();
        let stores = Stores {
            ingresses: match self.ingress_writer.take() {
                Some(writer) => {
                    watchers.spawn_into(namespaced_api(client, ns), all(), writer);
                    self.ingresses.clone()
                }
                None => watchers.spawn(namespaced_api(client, ns), all()),
            },
            classes: watchers.spawn(Api::all(client.clone()), all()),
            services: watchers.spawn(namespaced_api(client, ns), all()),
            secrets,
            slices: use_slices.then(|| watchers.spawn(namespaced_api(client, ns), all())),
            endpoints: (!use_slices).then(|| watchers.spawn(namespaced_api(client, ns), all())),
            // Only the controller ConfigMap, by name (its namespace may differ from the
            // watched one).
            config_maps: self.config.config_map.as_ref().map(|(namespace, name)| {
                let api = Api::namespaced(client.clone(), namespace);
                watchers.spawn(api, all().fields(&format!("metadata.name={name}")))
            }),
        };
        (stores, secrets_writer)
    }

    /// Sends the first input, then a new one after every debounced burst of changes that can
    /// affect the table, until `cancel` fires or the watchers are gone.
    /// `referenced.references` are what the stores' Ingresses referenced when the TLS Secrets
    /// were first asked for; changes keep them up to date.
    async fn send_changes(
        &self,
        stores: &Stores,
        referenced: &mut Referenced,
        changes: &mut mpsc::Receiver<Change>,
        tx: &tokio_watch::Sender<Option<Arc<Input>>>,
        cancel: &CancellationToken,
    ) {
        let Referenced {
            references,
            named,
            tls,
        } = referenced;
        // What arrived during the initial lists is in the stores already; what arrived since
        // `references` were read is taken into them below, before the first table.
        while changes.try_recv().is_ok() {}
        // The objects annotations name are read before the first table, so that a restart
        // does not answer 503 on protected routes while they load; one weir cannot read
        // (RBAC) holds the table back for a while only, its routes fail closed meanwhile.
        self.watch_named(references, named);
        tokio::select! {
            _ = cancel.cancelled() => return,
            ready = tokio::time::timeout(NAMED_OBJECTS_WAIT, named.wait_until_ready()) => {
                if ready.is_err() {
                    warn!(wait = ?NAMED_OBJECTS_WAIT, "some Secrets or ConfigMaps that Ingresses name could not be read yet; publishing without them (their routes answer 503)");
                }
            }
        }
        // Ingresses that arrived while the Secrets were listed name theirs too.
        references.update_and_check(&Change::Always, &stores.ingresses, &stores.classes);
        self.watch_named(references, named);
        tls.want(self.tls_secrets(references), &stores.secrets)
            .await;
        info!("every watcher has listed; publishing the first table");
        let _ = tx.send(Some(Arc::new(stores.input(named, tls))));
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
            };
            if !references.update_and_check(&first, &stores.ingresses, &stores.classes) {
                debug!(?first, "change cannot affect the table");
                continue;
            }
            // Debounce: wait for a quiet period, bounded by a maximum delay. Changes that arrive
            // meanwhile are in the stores already; they only update the references.
            let deadline = tokio::time::Instant::now() + self.config.debounce_max;
            loop {
                let quiet = tokio::time::Instant::now() + self.config.debounce;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(quiet.min(deadline)) => break,
                    change = changes.recv() => match change {
                        Some(change) => {
                            references.update_and_check(&change, &stores.ingresses, &stores.classes);
                        }
                        None => break,
                    },
                }
            }
            // Changes that arrived since are in the stores already: what they name is
            // fetched for this input too.
            while let Ok(change) = changes.try_recv() {
                references.update_and_check(&change, &stores.ingresses, &stores.classes);
            }
            self.watch_named(references, named);
            tls.want(self.tls_secrets(references), &stores.secrets)
                .await;
            let _ = tx.send(Some(Arc::new(stores.input(named, tls))));
        }
    }

    /// What the stores' Ingresses reference, and the objects the flags name.
    fn references(&self, stores: &Stores) -> References {
        let pinned = Pinned {
            secret: self.config.default_certificate.clone(),
            config_map: self.config.config_map.clone(),
            service: self.config.default_backend_service.clone(),
        };
        References::of(
            &stores.ingresses.state(),
            &stores.classes.state(),
            &self.config.build,
            pinned,
        )
    }

    /// The TLS Secrets whose keys weir keeps: those of weir's Ingresses, and
    /// `--default-ssl-certificate`.
    fn tls_secrets(&self, references: &References) -> std::collections::BTreeSet<(String, String)> {
        let mut secrets = references.tls_secrets();
        secrets.extend(self.config.default_certificate.clone());
        secrets
    }

    /// Watches exactly the Secrets and ConfigMaps the annotations of weir's Ingresses name
    /// (and may read).
    fn watch_named(&self, references: &References, named: &mut NamedObjects) {
        named.secrets.watch_only(references.named_secrets());
        named.config_maps.watch_only(references.named_config_maps());
    }

    /// Whether to read EndpointSlices, asking the server when `--endpoints-api auto`. Retries
    /// (with a delay) while the server cannot be asked.
    async fn use_endpoint_slices(&self) -> bool {
        match self.config.endpoints_api {
            EndpointsApi::Endpointslices => true,
            EndpointsApi::Endpoints => false,
            EndpointsApi::Auto => loop {
                match self
                    .client
                    .list_api_group_resources("discovery.k8s.io/v1")
                    .await
                {
                    Ok(list) => return list.resources.iter().any(|r| r.name == "endpointslices"),
                    Err(kube::Error::Api(status)) if status.code == 404 => return false,
                    Err(error) => {
                        warn!(%error, "cannot ask the API server which endpoints API it serves; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            },
        }
    }
}

/// What every watcher shares: the task tracker, the change channel and the cancel token.
struct Watchers<'a> {
    tasks: &'a TaskTracker,
    changes: mpsc::Sender<Change>,
    restarts: Option<IntCounterVec>,
    cancel: &'a CancellationToken,
}

impl Watchers<'_> {
    /// Starts a watcher of `api` and returns the store it fills.
    fn spawn<K>(&self, api: Api<K>, config: watcher::Config) -> Store<K>
    where
        K: Watched,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (store, writer) = reflector::store();
        self.spawn_into(api, config, writer);
        store
    }

    /// Starts a watcher of `api` that fills a store through `writer`.
    fn spawn_into<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        writer: reflector::store::Writer<K>,
    ) where
        K: Watched,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        self.spawn_trimmed(api, config, writer, |_| {});
    }

    /// Like [`Watchers::spawn_into`], storing each object as `trim` leaves it.
    fn spawn_trimmed<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        writer: reflector::store::Writer<K>,
        trim: impl FnMut(&mut K) + Send + 'static,
    ) where
        K: Watched,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let task = watch_kind(
            api,
            config,
            writer,
            self.changes.clone(),
            self.restarts.clone(),
            self.cancel.clone(),
            trim,
        );
        self.tasks.spawn(task);
    }
}

/// An API for a namespaced kind: in `namespace`, or in all namespaces.
fn namespaced_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn wait_for_first_lists(stores: &Stores) -> Result<(), ClusterError> {
    let ready = |result: Result<(), reflector::store::WriterDropped>, kind| {
        result.map_err(|_| ClusterError::WatcherStopped(kind))
    };
    ready(stores.ingresses.wait_until_ready().await, "Ingress")?;
    ready(stores.classes.wait_until_ready().await, "IngressClass")?;
    ready(stores.services.wait_until_ready().await, "Service")?;
    if let Some(slices) = &stores.slices {
        ready(slices.wait_until_ready().await, "EndpointSlice")?;
    }
    if let Some(endpoints) = &stores.endpoints {
        ready(endpoints.wait_until_ready().await, "Endpoints")?;
    }
    if let Some(config_maps) = &stores.config_maps {
        ready(config_maps.wait_until_ready().await, "ConfigMap")?;
    }
    Ok(())
}

/// The object an annotation names, read by name; `None` when it does not exist or weir may not
/// read it (logged).
async fn get_named<K>(client: &Client, object: &crate::model::ObjectRef) -> Option<Arc<K>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), &object.namespace);
    match api.get_opt(&object.name).await {
        Ok(found) => found.map(Arc::new),
        Err(error) => {
            warn!(kind = %object.kind, namespace = %object.namespace, name = %object.name, %error, "cannot read an object an Ingress names");
            None
        }
    }
}

/// Every object the model reads, listed once (read-only): what `weir check` reports on. Core/v1
/// Endpoints are read for endpoints (every API server serves them); only TLS Secrets, the
/// Secrets and ConfigMaps annotations name and the named controller ConfigMap are read.
pub async fn list_once(
    client: &Client,
    namespace: Option<&str>,
    config_map: Option<&(String, String)>,
) -> Result<Input, kube::Error> {
    use kube::api::ListParams;
    async fn list<K>(api: Api<K>, params: &ListParams) -> Result<Vec<Arc<K>>, kube::Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Ok(api
            .list(params)
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect())
    }
    let all = ListParams::default();
    let mut config_maps: Vec<Arc<ConfigMap>> = match config_map {
        Some((ns, name)) => Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .map(Arc::new)
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let ingresses: Vec<Arc<Ingress>> = list(namespaced_api(client, namespace), &all).await?;
    let mut secrets = list(
        namespaced_api(client, namespace),
        &ListParams::default().fields("type=kubernetes.io/tls"),
    )
    .await?;
    // The Secrets and ConfigMaps annotations name, one by one, as the watching source reads
    // them. One weir may not read is reported as missing by the build, like in the
    // controller, rather than stop the whole check.
    let mut named_secrets = std::collections::BTreeSet::new();
    let mut named_config_maps = std::collections::BTreeSet::new();
    for ingress in &ingresses {
        let refs = crate::model::references(ingress);
        named_secrets.extend(refs.annotation_secrets);
        named_config_maps.extend(refs.config_maps);
    }
    for object in named_secrets {
        secrets.extend(get_named::<Secret>(client, &object).await);
    }
    for object in named_config_maps {
        config_maps.extend(get_named::<ConfigMap>(client, &object).await);
    }
    Ok(Input {
        ingresses,
        ingress_classes: list(Api::all(client.clone()), &all).await?,
        services: list(namespaced_api(client, namespace), &all).await?,
        endpoint_slices: Vec::new(),
        endpoints: list(namespaced_api(client, namespace), &all).await?,
        secrets,
        config_maps,
        external_names: Arc::default(),
    })
}

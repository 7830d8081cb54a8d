//! weir against a real kube-apiserver and etcd. These tests need the environment that
//! `scripts/e2e-env.sh` prepares (a private network namespace with the API server, backend
//! addresses 192.0.2.x on `lo`), so a plain `cargo test` leaves them out (`test = false` in
//! Cargo.toml) and `scripts/test.sh` runs them as
//! `scripts/e2e-env.sh -- cargo test --test e2e`.
//!
//! weir runs as a real process, authenticated with a ServiceAccount token bound to the
//! ClusterRole in `deploy/rbac.yaml`, so every case also proves the RBAC is sufficient. One
//! case installs the Helm chart (`helm` from `WEIR_E2E_HELM`) and runs weir with the chart's
//! ServiceAccount, arguments and environment.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::Request;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::fault::FaultProxy;
use common::metrics::{parse, scrape, total, value};
use common::process::WeirProcess;
use common::ws::WsBackend;
use common::*;

const WEIR_NAMESPACE: &str = "weir";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test through scripts/e2e-env.sh"))
}

/// Tests share the API server; the one that stops it takes it for itself.
static API_SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

enum ApiServerUse {
    Shared(#[allow(dead_code)] tokio::sync::RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// The API server of the environment, an admin client, and a kubeconfig for weir's
/// ServiceAccount.
struct Cluster {
    _use: ApiServerUse,
    admin: Client,
    weir_kubeconfig: PathBuf,
    backend_ips: Vec<IpAddr>,
    dir: tempfile::TempDir,
}

async fn admin_client() -> Client {
    let kubeconfig = Kubeconfig::read_from(env("WEIR_E2E_KUBECONFIG")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Replaces the object named like `obj` with `obj` (at the current resource version).
async fn replace<K>(api: &Api<K>, mut obj: K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().expect("a named object");
    obj.meta_mut().resource_version = api
        .get(&name)
        .await
        .unwrap()
        .meta()
        .resource_version
        .clone();
    api.replace(&name, &PostParams::default(), &obj)
        .await
        .unwrap();
}

/// Creates `obj` unless it exists.
async fn ensure<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("cannot create {obj:?}: {error}"),
    }
}

impl Cluster {
    /// Installs weir's RBAC from deploy/rbac.yaml (idempotent) and writes a kubeconfig with a
    /// fresh token of weir's ServiceAccount.
    async fn connect() -> Cluster {
        Self::connect_with(ApiServerUse::Shared(API_SERVER.read().await)).await
    }

    /// Like [`Cluster::connect`], for a test that stops and starts the API server: no other
    /// test runs meanwhile.
    async fn connect_exclusive() -> Cluster {
        Self::connect_with(ApiServerUse::Exclusive(API_SERVER.write().await)).await
    }

    async fn connect_with(api_server_use: ApiServerUse) -> Cluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let admin = admin_client().await;
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        ensure(
            &namespaces,
            &serde_json::from_value(json!({"metadata": {"name": WEIR_NAMESPACE}})).unwrap(),
        )
        .await;
        let rbac =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
                .unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&rbac) {
            let value = serde_json::to_value(
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).unwrap(),
            )
            .unwrap();
            let ns = value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            match value["kind"].as_str().unwrap() {
                "ServiceAccount" => {
                    ensure(
                        &Api::<ServiceAccount>::namespaced(admin.clone(), &ns),
                        &serde_json::from_value(value).unwrap(),
                    )
                    .await
                }
                "ClusterRole" => {
                    ensure(
                        &Api::<ClusterRole>::all(admin.clone()),
                        &serde_json::from_value(value).unwrap(),
                    )
                    .await
                }
                "ClusterRoleBinding" => {
                    ensure(
                        &Api::<ClusterRoleBinding>::all(admin.clone()),
                        &serde_json::from_value(value).unwrap(),
                    )
                    .await
                }
                "Role" => {
                    ensure(
                        &Api::<Role>::namespaced(admin.clone(), &ns),
                        &serde_json::from_value(value).unwrap(),
                    )
                    .await
                }
                "RoleBinding" => {
                    ensure(
                        &Api::<RoleBinding>::namespaced(admin.clone(), &ns),
                        &serde_json::from_value(value).unwrap(),
                    )
                    .await
                }
                other => panic!("unexpected kind {other} in deploy/rbac.yaml"),
            }
        }
        let classes: Api<IngressClass> = Api::all(admin.clone());
        ensure(&classes, &serde_json::from_value(json!({"metadata": {"name": "weir"}, "spec": {"controller": "weir.dev/ingress-controller"}})).unwrap()).await;
        ensure(
            &classes,
            &serde_json::from_value(
                json!({"metadata": {"name": "other"}, "spec": {"controller": "example.com/other"}}),
            )
            .unwrap(),
        )
        .await;

        let dir = tempfile::tempdir().unwrap();
        let weir_kubeconfig =
            service_account_kubeconfig(&admin, WEIR_NAMESPACE, "weir", dir.path()).await;
        let backend_ips = env("WEIR_E2E_BACKEND_IPS")
            .split_whitespace()
            .map(|ip| ip.parse().unwrap())
            .collect();
        Cluster {
            _use: api_server_use,
            admin,
            weir_kubeconfig,
            backend_ips,
            dir,
        }
    }

    /// A namespace of this test's own.
    async fn namespace(&self, name: &str) -> String {
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        ensure(
            &namespaces,
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await;
        name.to_owned()
    }

    /// Starts weir with the ServiceAccount's kubeconfig; `election_id` keeps the tests'
    /// replicas from electing each other.
    async fn weir(&self, election_id: &str, extra: &[&str]) -> WeirProcess {
        self.weir_with(&self.weir_kubeconfig, election_id, extra)
            .await
    }

    /// Like [`Cluster::weir`], reaching the API server through `relay` (a [`FaultProxy`] in
    /// front of it).
    async fn weir_via(&self, relay: SocketAddr, election_id: &str, extra: &[&str]) -> WeirProcess {
        let kubeconfig = std::fs::read_to_string(&self.weir_kubeconfig)
            .unwrap()
            .replace(&env("WEIR_E2E_APISERVER"), &format!("https://{relay}"));
        let path = self
            .dir
            .path()
            .join(format!("via-{}.kubeconfig", relay.port()));
        std::fs::write(&path, kubeconfig).unwrap();
        self.weir_with(&path, election_id, extra).await
    }

    async fn weir_with(
        &self,
        kubeconfig: &std::path::Path,
        election_id: &str,
        extra: &[&str],
    ) -> WeirProcess {
        let mut args = vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--election-id",
            election_id,
            "--election-lease-duration",
            "3s",
            "--election-retry-period",
            "500ms",
            "--shutdown-delay",
            "0s",
        ];
        args.extend_from_slice(extra);
        let weir = WeirProcess::spawn(&args);
        weir.until_ready().await;
        weir
    }

    async fn backend(&self, index: usize, name: &str) -> TestBackend {
        let options = BackendOptions {
            ip: Some(self.backend_ips[index % self.backend_ips.len()]),
            ..BackendOptions::default()
        };
        TestBackend::start_with(name, options).await
    }

    /// A Service `name` with port `http` 80 and core/v1 Endpoints for `backends`.
    async fn service(&self, ns: &str, name: &str, backends: &[&TestBackend]) {
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        self.service_at(ns, name, &addrs).await;
    }

    /// Like [`Cluster::service`], with the endpoints' addresses.
    async fn service_at(&self, ns: &str, name: &str, addrs: &[SocketAddr]) {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        Api::<Service>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        self.endpoints_at(ns, name, addrs).await;
    }

    /// Creates or replaces the Endpoints of Service `name`.
    async fn endpoints(&self, ns: &str, name: &str, backends: &[&TestBackend]) {
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        self.endpoints_at(ns, name, &addrs).await;
    }

    /// Like [`Cluster::endpoints`], with the endpoints' addresses.
    async fn endpoints_at(&self, ns: &str, name: &str, addrs: &[SocketAddr]) {
        let subsets: Vec<_> = addrs
            .iter()
            .map(|a| json!({"addresses": [{"ip": a.ip().to_string()}], "ports": [{"name": "http", "port": a.port()}]}))
            .collect();
        let api: Api<Endpoints> = Api::namespaced(self.admin.clone(), ns);
        let mut endpoints: Endpoints = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns}, "subsets": subsets}),
        )
        .unwrap();
        match api.get_opt(name).await.unwrap() {
            Some(current) => {
                endpoints.metadata.resource_version = current.metadata.resource_version;
                api.replace(name, &PostParams::default(), &endpoints)
                    .await
                    .unwrap();
            }
            None => {
                api.create(&PostParams::default(), &endpoints)
                    .await
                    .unwrap();
            }
        }
    }

    /// An Ingress of class weir routing `host` (every path) to port `http` of `service`.
    async fn route(&self, ns: &str, name: &str, host: &str, service: &str) -> Ingress {
        let spec = ingress_json(
            ns,
            name,
            Some("weir"),
            host,
            "/",
            service,
            json!({"name": "http"}),
        );
        self.ingress(ns, spec).await
    }

    /// A Service `service` whose endpoint is backend `index`, and an Ingress `steady` routing
    /// `host` to it (for [`SteadyLoad`]); the backend.
    async fn steady_route(&self, ns: &str, index: usize, service: &str, host: &str) -> TestBackend {
        let backend = self.backend(index, service).await;
        self.service(ns, service, &[&backend]).await;
        self.route(ns, "steady", host, service).await;
        backend
    }

    async fn ingress(&self, ns: &str, spec: serde_json::Value) -> Ingress {
        let ingress: Ingress = serde_json::from_value(spec).unwrap();
        Api::<Ingress>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &ingress)
            .await
            .unwrap()
    }

    /// Waits until an Event with `reason` about the Ingress `name` exists.
    async fn until_event(&self, ns: &str, name: &str, reason: &str) {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.admin.clone(), ns);
        let started = Instant::now();
        loop {
            let list = events.list(&Default::default()).await.unwrap();
            if list.items.iter().any(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.involved_object.name.as_deref() == Some(name)
            }) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {reason} Event on {ns}/{name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The IPs and hostnames in an Ingress's status.
    async fn status(&self, ns: &str, name: &str) -> Vec<String> {
        let ingress = Api::<Ingress>::namespaced(self.admin.clone(), ns)
            .get(name)
            .await
            .unwrap();
        ingress
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.ip.or(e.hostname))
            .collect()
    }

    async fn until_status(&self, ns: &str, name: &str, want: &[&str]) {
        let started = Instant::now();
        loop {
            if self.status(ns, name).await == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "status of {ns}/{name} never became {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A kubeconfig (written into `dir`) that authenticates as ServiceAccount `namespace/name`
/// with a fresh token from the TokenRequest API.
async fn service_account_kubeconfig(
    admin: &Client,
    namespace: &str,
    name: &str,
    dir: &std::path::Path,
) -> PathBuf {
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {namespace}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let path = dir.join(format!("{namespace}-{name}.kubeconfig"));
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
         users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: e2e\n    user: {name}\n    namespace: {namespace}\n\
         current-context: {name}\n",
        env("WEIR_E2E_APISERVER"),
        env("WEIR_E2E_CA"),
    );
    std::fs::write(&path, kubeconfig).unwrap();
    path
}

fn ingress_json(
    ns: &str,
    name: &str,
    class: Option<&str>,
    host: &str,
    path: &str,
    service: &str,
    port: serde_json::Value,
) -> serde_json::Value {
    let mut spec = json!({
        "rules": [{"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": port}}}]}}]
    });
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Polls `host` + `path` through weir until it answers `status`; returns how long that took.
async fn until_answer(weir: &WeirProcess, host: &str, path: &str, status: u16) -> Duration {
    until_answer_within(weir, host, path, status, Duration::from_secs(20)).await
}

/// Like [`until_answer`], waiting at most `limit`.
async fn until_answer_within(
    weir: &WeirProcess,
    host: &str,
    path: &str,
    status: u16,
    limit: Duration,
) -> Duration {
    let client = http1_client();
    let started = Instant::now();
    loop {
        let answer = get(&client, weir.http, host, path).await;
        if answer.status == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{host}{path} still answers {} instead of {status}; log:\n{}",
            answer.status,
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test]
async fn ingresses_become_routable_change_and_go_away() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-lifecycle").await;
    let backend = cluster.backend(0, "web").await;
    cluster.service(&ns, "web", &[&backend]).await;
    // This weir watches every namespace (the default). It writes no status, so that it cannot
    // fight over other tests' Ingresses; the other tests' weirs watch only their namespace.
    let weir = cluster.weir("e2e-lifecycle", &[]).await;

    // Create → routable, 50 times; measure create-to-first-200.
    let mut latencies = Vec::new();
    for i in 0..50 {
        let host = format!("app{i}.lifecycle.test");
        cluster
            .ingress(
                &ns,
                ingress_json(
                    &ns,
                    &format!("app{i}"),
                    Some("weir"),
                    &host,
                    "/",
                    "web",
                    json!({"name": "http"}),
                ),
            )
            .await;
        latencies.push(until_answer(&weir, &host, "/", 200).await);
    }
    latencies.sort();
    println!(
        "create-to-routable over 50 Ingresses: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // Change host and path.
    let api: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    let mut app0 = api.get("app0").await.unwrap();
    let rule = &mut app0.spec.as_mut().unwrap().rules.as_mut().unwrap()[0];
    rule.host = Some("moved.lifecycle.test".into());
    rule.http.as_mut().unwrap().paths[0].path = Some("/v2".into());
    api.replace("app0", &PostParams::default(), &app0)
        .await
        .unwrap();
    until_answer(&weir, "moved.lifecycle.test", "/v2/x", 200).await;
    assert_eq!(
        get(&http1_client(), weir.http, "app0.lifecycle.test", "/")
            .await
            .status,
        404
    );
    assert_eq!(
        get(&http1_client(), weir.http, "moved.lifecycle.test", "/v1")
            .await
            .status,
        404
    );

    // Delete → 404.
    api.delete("app1", &DeleteParams::default()).await.unwrap();
    until_answer(&weir, "app1.lifecycle.test", "/", 404).await;
}

#[tokio::test]
async fn endpoints_scale_from_one_to_ten_to_zero() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-endpoints").await;
    let mut backends = Vec::new();
    for i in 0..10 {
        backends.push(cluster.backend(i, &format!("b{i}")).await);
    }
    cluster.service(&ns, "scaled", &[&backends[0]]).await;
    let weir = cluster
        .weir("e2e-endpoints", &["--watch-namespace", &ns])
        .await;
    // The Service port is referenced by number here (by name in the other cases).
    cluster
        .ingress(
            &ns,
            ingress_json(
                &ns,
                "scaled",
                Some("weir"),
                "scaled.test",
                "/",
                "scaled",
                json!({"number": 80}),
            ),
        )
        .await;
    until_answer(&weir, "scaled.test", "/", 200).await;

    let all: Vec<&TestBackend> = backends.iter().collect();
    cluster.endpoints(&ns, "scaled", &all).await;
    let client = http1_client();
    let started = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 10 {
        let answer = get(&client, weir.http, "scaled.test", "/").await;
        assert_eq!(answer.status, 200);
        seen.insert(answer.echo().backend().to_owned());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {seen:?} answered"
        );
    }

    cluster.endpoints(&ns, "scaled", &[]).await;
    until_answer(&weir, "scaled.test", "/", 503).await;
}

#[tokio::test]
async fn classes_conflicts_and_diagnostics() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-classes").await;
    let (old_backend, new_backend) = (
        cluster.backend(1, "old").await,
        cluster.backend(2, "new").await,
    );
    cluster.service(&ns, "old", &[&old_backend]).await;
    cluster.service(&ns, "new", &[&new_backend]).await;
    let weir = cluster
        .weir(
            "e2e-classes",
            &[
                "--publish-status-address",
                "203.0.113.20",
                "--watch-namespace",
                &ns,
                "--identity",
                "classes-weir",
            ],
        )
        .await;

    // Two Ingresses claim the same host and path: the older one wins, the newer gets an Event.
    cluster.route(&ns, "first", "conflict.test", "old").await;
    until_answer(&weir, "conflict.test", "/", 200).await;
    // "first" is older, or (creationTimestamp has a resolution of one second) equally old and
    // first by name: it wins either way.
    cluster.route(&ns, "second", "conflict.test", "new").await;
    cluster.until_event(&ns, "second", "RouteConflict").await;
    assert_eq!(
        get(&http1_client(), weir.http, "conflict.test", "/")
            .await
            .echo()
            .backend(),
        "old"
    );

    // A missing Service: an Event, 503, and everything else keeps serving.
    cluster.route(&ns, "orphan", "orphan.test", "nope").await;
    cluster.until_event(&ns, "orphan", "ServiceNotFound").await;
    assert_eq!(
        get(&http1_client(), weir.http, "orphan.test", "/")
            .await
            .status,
        503
    );

    // Another controller's class is ignored and never gets our status.
    cluster
        .ingress(
            &ns,
            ingress_json(
                &ns,
                "foreign",
                Some("other"),
                "foreign.test",
                "/",
                "old",
                json!({"name": "http"}),
            ),
        )
        .await;
    cluster.route(&ns, "marker", "marker.test", "old").await;
    cluster.until_status(&ns, "marker", &["203.0.113.20"]).await;
    assert_eq!(
        get(&http1_client(), weir.http, "foreign.test", "/")
            .await
            .status,
        404
    );
    assert!(cluster.status(&ns, "foreign").await.is_empty());

    // An Ingress that leaves weir's class loses the status weir wrote.
    let api: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    let mut marker = api.get("marker").await.unwrap();
    marker.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
    api.replace("marker", &PostParams::default(), &marker)
        .await
        .unwrap();
    until_answer(&weir, "marker.test", "/", 404).await;
    cluster.until_status(&ns, "marker", &[]).await;

    // A default IngressClass of weir's makes class-less Ingresses weir's.
    let classes: Api<IngressClass> = Api::all(cluster.admin.clone());
    ensure(
        &classes,
        &serde_json::from_value(json!({"metadata": {"name": "weir-default", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "weir.dev/ingress-controller"}}))
        .unwrap(),
    )
    .await;
    cluster
        .ingress(
            &ns,
            ingress_json(
                &ns,
                "classless",
                None,
                "classless.test",
                "/",
                "old",
                json!({"name": "http"}),
            ),
        )
        .await;
    until_answer(&weir, "classless.test", "/", 200).await;
    classes
        .delete("weir-default", &DeleteParams::default())
        .await
        .unwrap();

    // Many rebuilds later, the conflict is still reported by one Event from this test's weir,
    // not one per rebuild. (The all-namespaces weir of another test may report it too.)
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let conflicts: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("RouteConflict")
                && e.involved_object.name.as_deref() == Some("second")
                && e.reporting_instance.as_deref() == Some("classes-weir")
        })
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0].series.is_none(),
        "published once: {:?}",
        conflicts[0]
    );
}

#[tokio::test]
async fn the_last_table_serves_while_the_api_server_is_down_and_weir_restarts() {
    let cluster = Cluster::connect_exclusive().await;
    let ns = cluster.namespace("e2e-outage").await;
    let backend = cluster.backend(3, "steady").await;
    cluster.service(&ns, "steady", &[&backend]).await;
    cluster.route(&ns, "steady", "steady.test", "steady").await;
    let mut weir = cluster
        .weir("e2e-outage", &["--watch-namespace", &ns])
        .await;
    until_answer(&weir, "steady.test", "/", 200).await;

    // A client keeps sending while the API server is stopped and started again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client_task = {
        let (stop, addr) = (stop.clone(), weir.http);
        tokio::spawn(async move {
            let client = http1_client();
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match try_get(&client, addr, "steady.test", "/").await {
                    Ok(answer) if answer.status == 200 => ok += 1,
                    Ok(answer) => failed.push(answer.status.to_string()),
                    Err(error) => failed.push(error),
                }
            }
            (ok, failed)
        })
    };
    let ctl = env("WEIR_E2E_APISERVER_CTL");
    let stopped = tokio::process::Command::new(&ctl)
        .arg("kill")
        .status()
        .await
        .unwrap();
    assert!(stopped.success());
    // While it is down, weir keeps serving (the client task counts) and stays ready.
    assert_eq!(
        get(&http1_client(), weir.admin, "admin", "/readyz")
            .await
            .status,
        200
    );
    let started = tokio::process::Command::new(&ctl)
        .arg("start")
        .status()
        .await
        .unwrap();
    assert!(started.success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client_task.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed requests during the outage: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0);

    // The watchers reconnect: a change made after the restart reaches the table.
    cluster.route(&ns, "after", "after.test", "steady").await;
    until_answer(&weir, "after.test", "/", 200).await;
    // … and the failed watches were counted.
    let samples = parse(&scrape(&weir).await);
    let restarts = total(&samples, "weir_watch_restarts_total");
    assert!(restarts >= 1.0, "weir_watch_restarts_total is {restarts}");

    // weir restarts: it is ready again only with the full table.
    let status = {
        weir.sigterm();
        weir.wait_exit(Duration::from_secs(20)).await
    };
    assert!(status.success());
    let weir = cluster
        .weir("e2e-outage", &["--watch-namespace", &ns])
        .await;
    assert_eq!(
        get(&http1_client(), weir.http, "steady.test", "/")
            .await
            .status,
        200,
        "ready means the table is complete"
    );
    assert_eq!(
        get(&http1_client(), weir.http, "after.test", "/")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn one_of_two_replicas_writes_status_and_the_other_takes_over() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-replicas").await;
    let backend = cluster.backend(4, "ha").await;
    cluster.service(&ns, "ha", &[&backend]).await;
    let flags = [
        "--publish-status-address",
        "203.0.113.30",
        "--watch-namespace",
        ns.as_str(),
    ];
    let identities = ["replica-a", "replica-b"];
    let mut replicas = Vec::new();
    for identity in identities {
        replicas.push(
            cluster
                .weir(
                    "e2e-replicas",
                    &[&flags[..], &["--identity", identity]].concat(),
                )
                .await,
        );
    }
    cluster.route(&ns, "ha", "ha.test", "ha").await;
    // Both replicas serve; the status is written once.
    for replica in &replicas {
        until_answer(replica, "ha.test", "/", 200).await;
    }
    cluster.until_status(&ns, "ha", &["203.0.113.30"]).await;

    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), WEIR_NAMESPACE);
    let holder = leases
        .get("e2e-replicas")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let leader_index = identities.iter().position(|i| *i == holder).unwrap();
    until_leader_gauge(&replicas[leader_index], 1.0).await;
    until_leader_gauge(&replicas[1 - leader_index], 0.0).await;
    // The status is on the API, so the holder logged writing it; the other replica never did.
    replicas[leader_index]
        .wait_for_line("about writing the status", Duration::from_secs(5), |l| {
            l.contains("wrote Ingress status")
        })
        .await;
    assert!(
        !replicas[1 - leader_index]
            .log()
            .contains("wrote Ingress status"),
        "exactly one replica, the Lease holder, writes status"
    );
    let mut leader = replicas.remove(leader_index);
    let follower = &replicas[0];
    let follower_identity = identities[1 - leader_index];

    // Kill the leader without a chance to release the Lease: the follower takes over within
    // the lease duration (3 s) and writes the status of a new Ingress.
    leader.child.kill().unwrap();
    let killed = Instant::now();
    cluster.route(&ns, "ha2", "ha2.test", "ha").await;
    until_answer(follower, "ha2.test", "/", 200).await;
    cluster.until_status(&ns, "ha2", &["203.0.113.30"]).await;
    let took = killed.elapsed();
    println!("leader killed; the other replica wrote status after {took:?}");
    // The Lease lasts 3 s; allow two retry periods and some scheduling slack on top.
    assert!(took < Duration::from_secs(6), "takeover took {took:?}");
    let holder = leases
        .get("e2e-replicas")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_eq!(holder, follower_identity);
    until_leader_gauge(follower, 1.0).await;
}

/// Waits (5 s at most) until `weir_leader` of `weir` is `expected`.
async fn until_leader_gauge(weir: &WeirProcess, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let leading = value(&parse(&scrape(weir).await), "weir_leader", &[]);
        if leading == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "weir_leader stays {leading}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn only_changes_that_can_affect_the_table_trigger_a_rebuild() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-relevance").await;
    let backend = cluster.backend(5, "tls").await;
    cluster.service(&ns, "web", &[&backend]).await;
    let weir = cluster
        .weir("e2e-relevance", &["--watch-namespace", &ns])
        .await;
    // An Ingress whose TLS Secret does not exist yet.
    let mut spec = ingress_json(
        &ns,
        "secure",
        Some("weir"),
        "secure.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    spec["spec"]["tls"] = json!([{"hosts": ["secure.test"], "secretName": "secure-cert"}]);
    cluster.ingress(&ns, spec).await;
    // A host with TLS: plain HTTP is redirected to HTTPS (308).
    until_answer(&weir, "secure.test", "/", 308).await;
    let publishes = || weir.log().matches("published routing table").count();
    // Log lines trail weir a little (pipe and reader thread): take the count once it has held
    // still for 300 ms.
    let mut settled = publishes();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if publishes() != settled {
            settled = publishes();
            still_since = Instant::now();
        }
    }

    // A Service, Endpoints and a TLS Secret that no Ingress references change nothing. There is
    // no event to wait for, so give a rebuild twice the longest debounce (500 ms) to show up.
    let other = cluster.backend(6, "other").await;
    cluster.service(&ns, "unreferenced", &[&other]).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let tls_secret = |name: &str| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": &ns},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &tls_secret("unreferenced-cert"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        publishes(),
        settled,
        "unreferenced objects triggered a rebuild:\n{}",
        weir.log()
    );

    // The TLS Secret the Ingress names, created after it, does.
    secrets
        .create(&PostParams::default(), &tls_secret("secure-cert"))
        .await
        .unwrap();
    let started = Instant::now();
    while publishes() == settled {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the referenced Secret triggered no rebuild"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(&http1_client(), weir.http, "secure.test", "/")
            .await
            .status,
        308
    );
}

#[tokio::test]
async fn status_comes_from_the_publish_service() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-publish").await;
    let backend = cluster.backend(7, "pub").await;
    cluster.service(&ns, "web", &[&backend]).await;
    // weir's own Service: without a load balancer, its cluster IP is what Ingresses report.
    let services: Api<Service> = Api::namespaced(cluster.admin.clone(), &ns);
    let own: Service = serde_json::from_value(json!({
        "metadata": {"name": "weir-front", "namespace": &ns},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    let own = services.create(&PostParams::default(), &own).await.unwrap();
    let cluster_ip = own.spec.unwrap().cluster_ip.unwrap();
    let publish = format!("{ns}/weir-front");
    let weir = cluster
        .weir(
            "e2e-publish",
            &["--publish-service", &publish, "--watch-namespace", &ns],
        )
        .await;
    cluster
        .route(&ns, "published", "published.test", "web")
        .await;
    until_answer(&weir, "published.test", "/", 200).await;
    cluster
        .until_status(&ns, "published", &[cluster_ip.as_str()])
        .await;
    // Written once: lease renewals (every 0.5 s here) and weir's own status update coming back
    // through the watch must not make it write again. No event marks "nothing happened", so
    // give it four renewal periods.
    let line = weir
        .wait_for_line("about writing the status", Duration::from_secs(5), |l| {
            l.contains("wrote Ingress status")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = weir.log().matches("wrote Ingress status").count();
    assert_eq!(
        writes,
        1,
        "status written {writes} times, first: {line}\n{}",
        weir.log()
    );
}

#[tokio::test]
async fn a_tls_secret_is_served_rotated_and_removed() {
    use common::tls::{cert_for, handshake};
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-tls").await;
    let backend = cluster.backend(8, "tls").await;
    cluster.service(&ns, "web", &[&backend]).await;
    let weir = cluster.weir("e2e-tls", &["--watch-namespace", &ns]).await;
    let mut spec = ingress_json(
        &ns,
        "secure",
        Some("weir"),
        "tls.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    spec["spec"]["tls"] = json!([{"hosts": ["tls.test"], "secretName": "tls-cert"}]);
    cluster.ingress(&ns, spec).await;
    until_answer(&weir, "tls.test", "/", 308).await;
    // No Secret yet: the default certificate.
    let (_, default) = handshake(weir.https, "tls.test", &[]).await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let secret_of = |cert: &common::tls::Cert| -> k8s_openapi::api::core::v1::Secret {
        let data = [
            (
                "tls.crt".to_owned(),
                k8s_openapi::ByteString(cert.cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                k8s_openapi::ByteString(cert.key_pem.clone().into_bytes()),
            ),
        ];
        k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("tls-cert".into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data.into()),
            ..Default::default()
        }
    };
    let served_becomes = |want: Vec<u8>, what: &'static str| {
        let addr = weir.https;
        async move {
            let started = Instant::now();
            loop {
                if handshake(addr, "tls.test", &[]).await.1 == want {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "never served {what}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Created after its Ingress: served.
    let first = cert_for(&["tls.test"]);
    secrets
        .create(&PostParams::default(), &secret_of(&first))
        .await
        .unwrap();
    served_becomes(first.der.clone(), "the created certificate").await;

    // Rotated: new handshakes get the new certificate.
    let second = cert_for(&["tls.test"]);
    replace(&secrets, secret_of(&second)).await;
    served_becomes(second.der.clone(), "the rotated certificate").await;

    // HTTPS works, with HSTS, and is not redirected.
    let (stream, _) = handshake(weir.https, "tls.test", &[b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "tls.test")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let answer = read_answer(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers.contains_key("strict-transport-security"));

    // Deleted: back to the default certificate.
    secrets
        .delete("tls-cert", &DeleteParams::default())
        .await
        .unwrap();
    served_becomes(default, "the default certificate again").await;

    // A TLS Secret no Ingress names keeps only its metadata in weir; once an Ingress names
    // it, weir reads it (by name, when its keys were dropped as it arrived) and serves it.
    let third = cert_for(&["later.test"]);
    let mut early = secret_of(&third);
    early.metadata.name = Some("later-cert".into());
    secrets
        .create(&PostParams::default(), &early)
        .await
        .unwrap();
    let mut later = ingress_json(
        &ns,
        "later",
        Some("weir"),
        "later.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    later["spec"]["tls"] = json!([{"hosts": ["later.test"], "secretName": "later-cert"}]);
    cluster.ingress(&ns, later).await;
    let started = Instant::now();
    while handshake(weir.https, "later.test", &[]).await.1 != third.der {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the Secret named after it existed was never served\n{}",
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Basic auth follows its Secret, an Opaque one weir watches by name because an Ingress
/// names it: missing (503, fail closed), created after the Ingress (401, then 200 with a
/// password), rotated (the old password stops working), deleted (503 again).
/// An Opaque Secret `ns/name` holding `value` under `key`.
fn opaque_secret(
    ns: &str,
    name: &str,
    key: &str,
    value: &str,
) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                key.to_owned(),
                k8s_openapi::ByteString(value.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn basic_auth_follows_its_secret_created_rotated_and_deleted() {
    const ALICE: &str = "Basic YWxpY2U6c2VjcmV0";
    const BOB: &str = "Basic Ym9iOnNlY3JldA==";
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-auth").await;
    let backend = cluster.backend(9, "auth").await;
    cluster.service(&ns, "web", &[&backend]).await;
    let weir = cluster.weir("e2e-auth", &["--watch-namespace", &ns]).await;
    let mut spec = ingress_json(
        &ns,
        "private",
        Some("weir"),
        "auth.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    spec["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "users",
        "nginx.ingress.kubernetes.io/auth-realm": "e2e",
    });
    cluster.ingress(&ns, spec).await;
    until_answer(&weir, "auth.test", "/", 503).await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let users = |htpasswd: &str| opaque_secret(&ns, "users", "auth", htpasswd);
    let with_password = |authorization: &'static str, status: u16| {
        let addr = weir.http;
        async move {
            let client = http1_client();
            let started = Instant::now();
            loop {
                let req = http::Request::get(format!("http://{addr}/"))
                    .header("host", "auth.test")
                    .header("authorization", authorization)
                    .body(http_body_util::Full::<bytes::Bytes>::default())
                    .unwrap();
                if send(&client, req).await.status == status {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{authorization} never answered {status}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Created after its Ingress: a password is asked for, and alice's opens the route.
    secrets
        .create(
            &PostParams::default(),
            &users("alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n"),
        )
        .await
        .unwrap();
    until_answer(&weir, "auth.test", "/", 401).await;
    with_password(ALICE, 200).await;
    with_password(BOB, 401).await;

    // Rotated to bob alone: alice's password stops working.
    replace(
        &secrets,
        users("bob:$2y$05$KzDnLdNDVX3p.8IVXyuUmONaz0awLFIKsAyrFdKZTd5Clj5OTvwBi\n"),
    )
    .await;
    with_password(ALICE, 401).await;
    with_password(BOB, 200).await;

    // Deleted: the route fails closed again.
    secrets
        .delete("users", &DeleteParams::default())
        .await
        .unwrap();
    with_password(BOB, 503).await;
    let samples = parse(&scrape(&weir).await);
    let denied = value(
        &samples,
        "weir_requests_denied_total",
        &[
            ("namespace", &ns),
            ("ingress", "private"),
            ("reason", "auth"),
        ],
    );
    assert!(denied >= 2.0, "denials counted: {denied}");
}

#[tokio::test]
async fn auth_headers_follow_their_config_map_created_changed_and_deleted() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-auth-headers").await;
    let backend = cluster.backend(10, "headers").await;
    cluster.service(&ns, "web", &[&backend]).await;
    // The authentication service lets in only requests whose sub-request says X-Tenant: blue,
    // a header only the ConfigMap sets.
    let auth = common::auth::AuthServer::start().await;
    let weir = cluster
        .weir("e2e-auth-headers", &["--watch-namespace", &ns])
        .await;
    let mut spec = ingress_json(
        &ns,
        "tenant",
        Some("weir"),
        "tenant.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    spec["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-url": auth.url("/tenant"),
        "nginx.ingress.kubernetes.io/auth-proxy-set-headers": "tenant-headers",
    });
    cluster.ingress(&ns, spec).await;
    // Before the ConfigMap exists the route fails closed, and the service is never asked.
    until_answer(&weir, "tenant.test", "/", 503).await;
    assert_eq!(auth.asked(), 0);

    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), &ns);
    let headers = |tenant: &str| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "tenant-headers", "namespace": ns},
            "data": {"X-Tenant": tenant},
        }))
        .unwrap()
    };
    config_maps
        .create(&PostParams::default(), &headers("red"))
        .await
        .unwrap();
    until_answer(&weir, "tenant.test", "/", 403).await;
    assert_eq!(auth.last().headers["x-tenant"], "red");

    replace(&config_maps, headers("blue")).await;
    until_answer(&weir, "tenant.test", "/", 200).await;

    config_maps
        .delete("tenant-headers", &DeleteParams::default())
        .await
        .unwrap();
    until_answer(&weir, "tenant.test", "/", 503).await;
    cluster
        .until_event(&ns, "tenant", "InvalidAnnotationValue")
        .await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens `ws://{host}/` through weir, retrying until the route exists (bounded).
async fn until_ws(weir: &WeirProcess, host: &str) -> Ws {
    let started = Instant::now();
    loop {
        let stream = tokio::net::TcpStream::connect(weir.http).await.unwrap();
        let request = format!("ws://{host}/").into_client_request().unwrap();
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => return ws,
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "no WebSocket to {host} through weir: {error}; log:\n{}",
                weir.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next message, which must be text, within a few seconds.
async fn next_text(ws: &mut Ws) -> String {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
        Ok(other) => panic!("expected a text message, got {other:?}"),
        Err(_) => panic!("no message within 10 s"),
    }
}

/// Which endpoint a new WebSocket through weir reaches (the socket is then closed).
async fn ws_reaches(weir: &WeirProcess, host: &str) -> String {
    let mut ws = until_ws(weir, host).await;
    ws.send(Message::text("who")).await.unwrap();
    let name = next_text(&mut ws).await;
    ws.close(None).await.unwrap();
    name
}

/// Numbered messages sent one after the other on a WebSocket, each echo checked (the message
/// just sent, nothing lost, nothing reordered), until [`Chatter::finish`].
struct Chatter {
    echoed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Ws>,
}

impl Chatter {
    fn start(mut ws: Ws) -> Chatter {
        let echoed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let (count, stopped) = (echoed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            for n in 0.. {
                let text = format!("message {n}");
                ws.send(Message::text(text.clone()))
                    .await
                    .unwrap_or_else(|e| panic!("sending message {n} failed: {e}"));
                let back = next_text(&mut ws).await;
                assert_eq!(back, text, "every echo is the message just sent");
                count.store(n + 1, std::sync::atomic::Ordering::SeqCst);
                // Pacing only: a few hundred messages a second at most.
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                }
            }
            ws
        });
        Chatter { echoed, stop, task }
    }

    fn echoed(&self) -> usize {
        self.echoed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until messages keep flowing: `more` echoes beyond what had come back so far.
    async fn until_flowing(&self, more: usize, after: &str) {
        let target = self.echoed() + more;
        wait_until(
            &format!("{more} more echoes after {after}"),
            Duration::from_secs(20),
            || self.echoed() >= target || self.task.is_finished(),
        )
        .await;
        assert!(
            !self.task.is_finished(),
            "the WebSocket failed after {after}"
        );
    }

    /// Stops after the current echo and hands back the (still open) socket.
    async fn finish(self) -> (Ws, usize) {
        self.stop.cancel();
        let ws = self.task.await.expect("every echo came back, in order");
        (ws, self.echoed.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[tokio::test]
async fn a_websocket_stays_open_while_the_cluster_changes() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-websocket").await;
    let a = WsBackend::start_at(cluster.backend_ips[0], "a").await;
    let b = WsBackend::start_at(cluster.backend_ips[1], "b").await;
    let web = cluster.backend(2, "web").await;
    cluster.service_at(&ns, "chat", &[a.addr]).await;
    cluster.service(&ns, "web", &[&web]).await;
    let weir = cluster
        .weir("e2e-websocket", &["--watch-namespace", &ns])
        .await;
    let host = "chat.websocket.test";
    cluster.route(&ns, "chat", host, "chat").await;

    let mut ws = until_ws(&weir, host).await;
    ws.send(Message::text("who")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "a");
    let chatter = Chatter::start(ws);
    chatter.until_flowing(20, "the start").await;

    // The Ingress changes: a new path (to another Service) and an annotation.
    let ingresses: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    let mut chat = ingresses.get("chat").await.unwrap();
    chat.metadata
        .annotations
        .get_or_insert_default()
        .insert("weir.dev/proxy-read-timeout".into(), "120".into());
    chat.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths
        .push(
            serde_json::from_value(json!({"path": "/added", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"name": "http"}}}}))
            .unwrap(),
        );
    ingresses
        .replace("chat", &PostParams::default(), &chat)
        .await
        .unwrap();
    until_answer(&weir, host, "/added", 200).await;
    chatter.until_flowing(20, "the Ingress changed").await;

    // A second endpoint: new WebSockets reach it.
    cluster.endpoints_at(&ns, "chat", &[a.addr, b.addr]).await;
    let started = Instant::now();
    while ws_reaches(&weir, host).await != "b" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new WebSocket reached the second endpoint"
        );
    }
    chatter.until_flowing(20, "a second endpoint").await;

    // The endpoint our WebSocket is connected to goes away: new WebSockets (round-robin) reach
    // only the other one — three in a row — and ours stays open.
    cluster.endpoints_at(&ns, "chat", &[b.addr]).await;
    let (started, mut in_a_row) = (Instant::now(), 0);
    while in_a_row < 3 {
        in_a_row = match ws_reaches(&weir, host).await.as_str() {
            "b" => in_a_row + 1,
            _ => 0,
        };
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "new WebSockets still reach the removed endpoint"
        );
    }
    chatter.until_flowing(20, "its endpoint was removed").await;

    // Twenty other Ingresses come and go.
    for i in 0..20 {
        cluster
            .route(
                &ns,
                &format!("other{i}"),
                &format!("other{i}.websocket.test"),
                "web",
            )
            .await;
    }
    for i in 0..20 {
        until_answer(&weir, &format!("other{i}.websocket.test"), "/", 200).await;
    }
    chatter
        .until_flowing(20, "twenty Ingresses were created")
        .await;
    for i in 0..20 {
        ingresses
            .delete(&format!("other{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    for i in 0..20 {
        until_answer(&weir, &format!("other{i}.websocket.test"), "/", 404).await;
    }
    chatter
        .until_flowing(20, "twenty Ingresses were deleted")
        .await;

    // Still open, still connected to the removed endpoint, every message echoed; then a clean
    // close (the endpoint answers the close frame).
    let (mut ws, echoed) = chatter.finish().await;
    println!("{echoed} messages echoed in order while the cluster changed");
    ws.send(Message::text("who")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "a");
    ws.close(None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut close_frame = false;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(_)) => close_frame = true,
                Ok(other) => panic!("unexpected {other:?} after the close"),
                Err(error) => panic!("the close handshake failed: {error}"),
            }
        }
        close_frame
    })
    .await
    .expect("the close handshake completes");
    assert!(closed, "the endpoint answered the close frame");
}

/// How many objects `api` lists with `selector`.
async fn labelled<K>(api: Api<K>, selector: &kube::api::ListParams) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(selector).await.unwrap().items.len()
}

/// How many objects of each kind carry `app.kubernetes.io/instance: release`, cluster-wide
/// and in `namespaces`.
async fn release_objects(
    admin: &Client,
    release: &str,
    namespaces: &[&str],
) -> Vec<(&'static str, usize)> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    let mine =
        kube::api::ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let admin = || admin.clone();
    let mut counts = vec![
        (
            "ClusterRole",
            labelled(Api::<ClusterRole>::all(admin()), &mine).await,
        ),
        (
            "ClusterRoleBinding",
            labelled(Api::<ClusterRoleBinding>::all(admin()), &mine).await,
        ),
        (
            "IngressClass",
            labelled(Api::<IngressClass>::all(admin()), &mine).await,
        ),
    ];
    for ns in namespaces {
        counts.extend([
            (
                "Deployment",
                labelled(Api::<Deployment>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "Service",
                labelled(Api::<Service>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "ServiceAccount",
                labelled(Api::<ServiceAccount>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "Role",
                labelled(Api::<Role>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "RoleBinding",
                labelled(Api::<RoleBinding>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "ConfigMap",
                labelled(Api::<ConfigMap>::namespaced(admin(), ns), &mine).await,
            ),
            (
                "Lease",
                labelled(Api::<Lease>::namespaced(admin(), ns), &mine).await,
            ),
        ]);
    }
    counts
}

/// `helm` with the admin kubeconfig; panics with its output unless it succeeds.
async fn helm(args: &[&str]) -> String {
    let output = tokio::process::Command::new(env("WEIR_E2E_HELM"))
        .args(args)
        .args(["--kubeconfig", &env("WEIR_E2E_KUBECONFIG")])
        .output()
        .await
        .expect("helm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "helm {args:?} failed:\n{text}");
    text
}

#[tokio::test]
async fn the_helm_chart_installs_rbac_that_is_enough_and_no_more_and_uninstalls_cleanly() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
    use kube::api::ListParams;

    let cluster = Cluster::connect().await;
    let apps = cluster.namespace("e2e-helm").await;
    let (release, chart_ns, class) = ("helm-weir", "weir-helm", "weir-helm");
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/weir");
    let installed = helm(&[
        "install",
        release,
        chart,
        "--namespace",
        chart_ns,
        "--create-namespace",
        "--set",
        &format!("ingressClass.name={class}"),
        "--set",
        &format!("controller.config.watchNamespace={apps}"),
        "--set",
        "controller.config.shutdownDelay=0s",
    ])
    .await;
    println!(
        "$ helm install {release} charts/weir --namespace {chart_ns} --create-namespace …\n{installed}"
    );

    // Run weir as the chart's Deployment would, out of the cluster: its arguments, its
    // environment (the Downward API's values filled in), its ServiceAccount's token.
    let deployment = Api::<Deployment>::namespaced(cluster.admin.clone(), chart_ns)
        .get(release)
        .await
        .expect("the chart's Deployment");
    let pod = deployment.spec.template.spec.expect("a pod template");
    let container = &pod.containers[0];
    let service_account = pod.service_account_name.clone().expect("a ServiceAccount");
    // The listen addresses are the test's own (ephemeral ports on 127.0.0.1).
    let chart_args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            !["--http-addr", "--https-addr", "--admin-addr"]
                .iter()
                .any(|f| a.starts_with(f))
        })
        .collect();
    assert!(
        chart_args.contains(&format!("--publish-service={chart_ns}/{release}")),
        "{chart_args:?}"
    );
    assert!(
        chart_args.contains(&format!("--configmap={chart_ns}/{release}")),
        "{chart_args:?}"
    );
    let pod_name = format!("{release}-0");
    let mut env_vars = vec![("RUST_LOG".to_owned(), "info".to_owned())];
    for var in container.env.clone().unwrap_or_default() {
        let value = match (var.value, var.value_from.and_then(|v| v.field_ref)) {
            (Some(value), _) => value,
            (None, Some(field)) if field.field_path == "metadata.name" => pod_name.clone(),
            (None, Some(field)) if field.field_path == "metadata.namespace" => chart_ns.to_owned(),
            (None, other) => panic!("{} comes from {other:?}", var.name),
        };
        env_vars.push((var.name, value));
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig =
        service_account_kubeconfig(&cluster.admin, chart_ns, &service_account, dir.path()).await;
    let mut args = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    args.extend(chart_args.iter().map(String::as_str));
    let env_refs: Vec<(&str, &str)> = env_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let weir = WeirProcess::spawn_with_env(&args, &env_refs);
    weir.until_ready().await;

    // Sufficient: an Ingress of the chart's class is routed, and its status comes from the
    // chart's Service.
    let services: Api<Service> = Api::namespaced(cluster.admin.clone(), chart_ns);
    services
        .patch_status(
            release,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.60"}]}}}),
            ),
        )
        .await
        .unwrap();
    let backend = cluster.backend(9, "charted").await;
    cluster.service(&apps, "charted", &[&backend]).await;
    let spec = ingress_json(
        &apps,
        "charted",
        Some(class),
        "charted.test",
        "/",
        "charted",
        json!({"name": "http"}),
    );
    cluster.ingress(&apps, spec).await;
    until_answer(&weir, "charted.test", "/", 200).await;
    cluster
        .until_status(&apps, "charted", &["203.0.113.60"])
        .await;

    // And no more: the ServiceAccount cannot change what it serves or touch what it does not
    // need.
    let sa_config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let sa = Client::try_from(sa_config).unwrap();
    let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the chart's ServiceAccount could {what}: {other:?}"),
    };
    let ingresses: Api<Ingress> = Api::namespaced(sa.clone(), &apps);
    forbidden(
        ingresses
            .patch(
                "charted",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"rules": []}})),
            )
            .await
            .map(drop),
        "change an Ingress's rules",
    );
    forbidden(
        ingresses
            .delete("charted", &DeleteParams::default())
            .await
            .map(drop),
        "delete an Ingress",
    );
    forbidden(
        Api::<Service>::namespaced(sa.clone(), &apps)
            .delete("charted", &DeleteParams::default())
            .await
            .map(drop),
        "delete a Service",
    );
    forbidden(
        Api::<Pod>::namespaced(sa.clone(), &apps)
            .list(&ListParams::default())
            .await
            .map(drop),
        "list Pods",
    );
    // ConfigMaps elsewhere it may read (auth-proxy-set-headers names them), never write.
    forbidden(
        Api::<ConfigMap>::namespaced(sa.clone(), &apps)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "planted"}})).unwrap(),
            )
            .await
            .map(drop),
        "create a ConfigMap",
    );
    // Its own controller ConfigMap it may read (weir became ready watching it).
    let own = Api::<ConfigMap>::namespaced(sa.clone(), chart_ns);
    own.get(release)
        .await
        .expect("the chart's ServiceAccount reads its ConfigMap");
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), &apps)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "planted"}})).unwrap(),
            )
            .await
            .map(drop),
        "create a Secret",
    );
    forbidden(
        Api::<ClusterRole>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(drop),
        "read RBAC",
    );
    drop(weir);
    let before = release_objects(&cluster.admin, release, &[chart_ns, &apps]).await;
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "IngressClass",
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Lease",
        "ConfigMap",
    ] {
        assert!(
            before.iter().any(|(k, n)| *k == kind && *n > 0),
            "the release's {kind} carries app.kubernetes.io/instance: {before:?}"
        );
    }

    // Uninstalled, nothing of the release is left (its namespace was made by --create-namespace
    // and is not the chart's).
    println!(
        "{}",
        helm(&["uninstall", release, "--namespace", chart_ns]).await
    );
    let after = release_objects(&cluster.admin, release, &[chart_ns, &apps]).await;
    let left: Vec<_> = after.iter().filter(|(_, n)| *n > 0).collect();
    assert!(left.is_empty(), "left after helm uninstall: {left:?}");
    // The Lease weir's replicas renewed is the release's too.
    let lease = Api::<Lease>::namespaced(cluster.admin.clone(), chart_ns)
        .get_opt("weir-leader")
        .await
        .unwrap();
    assert!(
        lease.is_none(),
        "the election Lease outlives the release: {lease:?}"
    );
    assert!(
        Api::<IngressClass>::all(cluster.admin.clone())
            .get_opt(class)
            .await
            .unwrap()
            .is_none(),
        "the chart's IngressClass is gone"
    );
}

#[tokio::test]
async fn an_ingress_written_for_ingress_nginx_is_served_after_only_its_class_changes() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-migration").await;
    // ingress-nginx's IngressClass, as its chart installs it.
    ensure(
        &Api::<IngressClass>::all(cluster.admin.clone()),
        &serde_json::from_value(
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
        )
        .unwrap(),
    )
    .await;
    let (api, web) = (
        cluster.backend(0, "api").await,
        cluster.backend(1, "web").await,
    );
    cluster.service(&ns, "api", &[&api]).await;
    cluster.service(&ns, "web", &[&web]).await;
    // The controller ConfigMap, as ingress-nginx users keep it (weir reads it from its own
    // namespace, where its RBAC allows).
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), WEIR_NAMESPACE);
    let _ = config_maps
        .delete("e2e-migration", &DeleteParams::default())
        .await;
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "e2e-migration", "namespace": WEIR_NAMESPACE},
                "data": {"proxy-body-size": "1k", "proxy-read-timeout": "120", "use-forwarded-headers": "true", "use-gzip": "true"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let nginx = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    let api_ingress = json!({
        "metadata": {"name": "api", "namespace": ns, "annotations": {
            nginx("use-regex"): "true",
            nginx("rewrite-target"): "/$2",
            nginx("x-forwarded-prefix"): "/api",
            nginx("proxy-body-size"): "4k",
        }},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.e2e", "http": {"paths": [
            {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
             "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]},
    });
    let web_ingress = json!({
        "metadata": {"name": "web", "namespace": ns, "annotations": {
            nginx("app-root"): "/home",
            nginx("from-to-www-redirect"): "true",
            "cert-manager.io/cluster-issuer": "letsencrypt",
        }},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "www.shop.e2e", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]},
    });
    cluster.ingress(&ns, api_ingress).await;
    cluster.ingress(&ns, web_ingress).await;

    // Before switching: `weir check` with weir's own (read-only) RBAC reports what weir would
    // do with ingress-nginx's Ingresses as they are.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "check",
            "--kubeconfig",
            cluster.weir_kubeconfig.to_str().unwrap(),
        ])
        .args([
            "--namespace",
            &ns,
            "--ingress-class",
            "nginx",
            "--configmap",
        ])
        .arg(format!("{WEIR_NAMESPACE}/e2e-migration"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(1),
        "the ConfigMap's use-gzip is lost:\n{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for line in [
        format!("Ingress {ns}/api: ok"),
        format!("Ingress {ns}/web: ok"),
        "        rewrites the path to /$2".to_owned(),
        format!(
            "ConfigMap {WEIR_NAMESPACE}/e2e-migration UnsupportedConfigMapKey: weir does not support key \"use-gzip\" (yet); it is ignored"
        ),
    ] {
        assert!(
            report.lines().any(|l| l == line),
            "missing {line:?} in:\n{report}"
        );
    }

    let config_map = format!("{WEIR_NAMESPACE}/e2e-migration");
    let weir = cluster
        .weir("e2e-migration", &["--configmap", &config_map])
        .await;
    // Not weir's class yet.
    until_answer(&weir, "shop.e2e", "/api/items", 404).await;

    // The only change: the class.
    let ingresses: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    for name in ["api", "web"] {
        ingresses
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"ingressClassName": "weir"}})),
            )
            .await
            .unwrap();
    }
    until_answer(&weir, "shop.e2e", "/api/items", 200).await;
    let client = http1_client();
    let echo = get(&client, weir.http, "shop.e2e", "/api/items/7?full=1")
        .await
        .echo();
    assert_eq!(
        echo.uri(),
        "/items/7?full=1",
        "rewrite-target with capture groups"
    );
    assert_eq!(echo.header("x-forwarded-prefix").as_deref(), Some("/api"));
    let upload = |host: &str, path: &str, size: usize| {
        Request::post(format!("http://{}{path}", weir.http))
            .header("host", host)
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                size
            ])))
            .unwrap()
    };
    // The annotation (4k) wins over the ConfigMap (1k); the other Ingress gets the ConfigMap's.
    assert_eq!(
        send(&client, upload("shop.e2e", "/api/sink", 2048))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&client, upload("www.shop.e2e", "/sink", 2048))
            .await
            .status,
        413
    );
    // Host-scope annotations: app-root and the www redirect.
    let root = get(&client, weir.http, "www.shop.e2e", "/").await;
    assert_eq!(
        (
            root.status.as_u16(),
            root.headers["location"].to_str().unwrap()
        ),
        (302, "http://www.shop.e2e/home")
    );
    let bare = get(&client, weir.http, "shop.e2e", "/about?x=1").await;
    assert_eq!(
        bare.status, 404,
        "shop.e2e has rules of its own (the api Ingress): no www redirect"
    );
    // A ConfigMap change applies live.
    config_maps
        .patch(
            "e2e-migration",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"proxy-body-size": "8k"}})),
        )
        .await
        .unwrap();
    let started = Instant::now();
    while send(&client, upload("www.shop.e2e", "/sink", 2048))
        .await
        .status
        != 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the ConfigMap change never applied; log:\n{}",
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The ConfigMap's unsupported key became an Event on the ConfigMap.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(cluster.admin.clone(), WEIR_NAMESPACE);
    let started = Instant::now();
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("UnsupportedConfigMapKey")
                && e.involved_object.name.as_deref() == Some("e2e-migration")
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no UnsupportedConfigMapKey Event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn grpc_calls_are_balanced_per_call_and_follow_their_endpoints() {
    use common::grpc::{GrpcClient, GrpcServer, call};
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-grpc").await;
    let ips = &cluster.backend_ips;
    let a = GrpcServer::start_on("a", ips[0]).await;
    let b = GrpcServer::start_on("b", ips[1 % ips.len()]).await;
    cluster.service_at(&ns, "echo", &[a.addr, b.addr]).await;
    let weir = cluster.weir("e2e-grpc", &["--watch-namespace", &ns]).await;
    let mut spec = ingress_json(
        &ns,
        "grpc",
        Some("weir"),
        "grpc.test",
        "/",
        "echo",
        json!({"name": "http"}),
    );
    spec["metadata"]["annotations"] =
        json!({"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"});
    cluster.ingress(&ns, spec).await;

    // One client connection; its calls reach both pods.
    let client = GrpcClient::connect(weir.http, "grpc.test").await;
    let started = Instant::now();
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    while served.values().sum::<usize>() < 100 {
        match client.clone().unary(call("hello")).await {
            Ok(reply) => *served.entry(reply.into_inner().endpoint).or_default() += 1,
            Err(status) => {
                assert!(served.is_empty(), "a call failed once routable: {status:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "never routable: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(served.values().all(|n| *n >= 40), "{served:?}");
    assert!(a.connections.load(std::sync::atomic::Ordering::SeqCst) <= 2);

    // Without endpoints the client gets UNAVAILABLE, as a status, on the same connection.
    cluster.endpoints_at(&ns, "echo", &[]).await;
    let started = Instant::now();
    loop {
        match client.clone().unary(call("hello")).await {
            Err(status) if status.code() == tonic::Code::Unavailable => break,
            other => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "still {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let samples = parse(&scrape(&weir).await);
    let ok = value(
        &samples,
        "weir_grpc_requests_total",
        &[
            ("namespace", &ns),
            ("ingress", "grpc"),
            ("grpc_status", "0"),
        ],
    );
    assert!(ok >= 100.0, "calls counted OK: {ok}");
}

#[tokio::test]
async fn an_https_backend_follows_its_ca_secret_created_rotated_and_deleted() {
    use common::tls::{TestCa, TlsBackend, server_config};
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-upstream-tls").await;
    let (ca, other) = (TestCa::new("upstream CA"), TestCa::new("another CA"));
    let cert = ca.server(&[&format!("web.{ns}.svc")]);
    let config = server_config(&cert, None, &[], &[b"http/1.1"]);
    let backend = TlsBackend::start_on("secure", config, cluster.backend_ips[0]).await;
    cluster.service_at(&ns, "web", &[backend.addr]).await;
    let weir = cluster
        .weir("e2e-upstream-tls", &["--watch-namespace", &ns])
        .await;
    let mut spec = ingress_json(
        &ns,
        "secure",
        Some("weir"),
        "secure.test",
        "/",
        "web",
        json!({"name": "http"}),
    );
    spec["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
        "nginx.ingress.kubernetes.io/proxy-ssl-verify": "on",
        "nginx.ingress.kubernetes.io/proxy-ssl-secret": "backend-ca",
    });
    cluster.ingress(&ns, spec).await;
    // No Secret yet: the route fails closed.
    until_answer(&weir, "secure.test", "/", 503).await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let ca_secret = |ca: &TestCa| opaque_secret(&ns, "backend-ca", "ca.crt", &ca.pem());
    // Created with the backend's CA: verified, served.
    secrets
        .create(&PostParams::default(), &ca_secret(&ca))
        .await
        .unwrap();
    until_answer(&weir, "secure.test", "/", 200).await;
    // Rotated to another CA: the next connection does not verify.
    replace(&secrets, ca_secret(&other)).await;
    until_answer(&weir, "secure.test", "/", 502).await;
    let samples = parse(&scrape(&weir).await);
    let failed = value(
        &samples,
        "weir_upstream_errors_total",
        &[
            ("namespace", &ns),
            ("service", "web"),
            ("reason", "tls_verify"),
        ],
    );
    assert!(failed >= 1.0, "verification failures counted: {failed}");
    // Back to the right CA, then deleted: fails closed again.
    replace(&secrets, ca_secret(&ca)).await;
    until_answer(&weir, "secure.test", "/", 200).await;
    secrets
        .delete("backend-ca", &DeleteParams::default())
        .await
        .unwrap();
    until_answer(&weir, "secure.test", "/", 503).await;
    assert!(backend.seen.handshakes().iter().all(|h| h.sni.is_none()));
}

/// What the steady load of the canary rollout saw: each request's start and the backend that
/// answered (`None`: it failed).
type Served = Arc<std::sync::Mutex<Vec<(Instant, Option<String>)>>>;

/// Keeps `workers` keep-alive clients sending to `host` through weir until `stop`.
fn steady_load(
    weir: &WeirProcess,
    host: &'static str,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) -> (Served, Vec<tokio::task::JoinHandle<()>>) {
    let served: Served = Arc::default();
    let handles = (0..workers)
        .map(|_| {
            let (served, stop, addr) = (served.clone(), stop.clone(), weir.http);
            tokio::spawn(async move {
                let client = http1_client();
                while !stop.is_cancelled() {
                    let started = Instant::now();
                    let outcome = match try_get(&client, addr, host, "/").await {
                        Ok(answer) if answer.status == 200 => {
                            Some(answer.echo().backend().to_owned())
                        }
                        _ => None,
                    };
                    served.lock().unwrap().push((started, outcome));
                }
            })
        })
        .collect();
    (served, handles)
}

/// Two keep-alive clients sending to a host through weir (see [`steady_load`]) until
/// [`SteadyLoad::all_served`].
struct SteadyLoad {
    stop: tokio_util::sync::CancellationToken,
    handles: Vec<tokio::task::JoinHandle<()>>,
    served: Served,
}

impl SteadyLoad {
    /// Starts once weir serves `host`.
    async fn start(weir: &WeirProcess, host: &'static str) -> SteadyLoad {
        until_answer(weir, host, "/", 200).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let (served, handles) = steady_load(weir, host, 2, stop.clone());
        SteadyLoad {
            stop,
            handles,
            served,
        }
    }

    /// Stops the clients and asserts that every request they sent succeeded; how many they
    /// sent.
    async fn all_served(self) -> usize {
        self.stop.cancel();
        for handle in self.handles {
            handle.await.unwrap();
        }
        let served = self.served.lock().unwrap();
        let failed = served
            .iter()
            .filter(|(_, outcome)| outcome.is_none())
            .count();
        assert_eq!(failed, 0, "{failed} of {} requests failed", served.len());
        assert!(!served.is_empty(), "no request was sent");
        served.len()
    }
}

/// Waits until weir serves a table newer than `after` (`weir_table_generation`); returns it.
async fn until_generation_after(weir: &WeirProcess, after: f64) -> f64 {
    let started = Instant::now();
    loop {
        let generation = value(&parse(&scrape(weir).await), "weir_table_generation", &[]);
        if generation > after {
            return generation;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "weir still serves generation {generation}; log:\n{}",
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A canary rollout played the way Argo Rollouts plays it on ingress-nginx, under steady
/// load: a canary Ingress (a copy of the main one to the new Service, `canary: "true"`) at
/// weight 0, 10, 50 and 100; then the main Ingress switched to the new Service and the canary
/// Ingress deleted. No request fails, and each step's split holds: at least 1,500 requests per
/// step, so that ±5 points is more than 5 standard deviations of a binomial at 10 % and 50 %.
#[tokio::test]
async fn a_canary_rollout_moves_traffic_step_by_step_without_a_failed_request() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-canary").await;
    let stable = cluster.backend(0, "stable").await;
    let preview = cluster.backend(1, "preview").await;
    cluster.service(&ns, "app-stable", &[&stable]).await;
    cluster.service(&ns, "app-preview", &[&preview]).await;
    let weir = cluster
        .weir("e2e-canary", &["--watch-namespace", &ns])
        .await;
    cluster.route(&ns, "app", "canary.test", "app-stable").await;
    until_answer(&weir, "canary.test", "/", 200).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let (served, workers) = steady_load(&weir, "canary.test", 4, stop.clone());
    let ingresses: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    let mut generation = value(&parse(&scrape(&weir).await), "weir_table_generation", &[]);
    // The share of the preview among the requests started after `since`, once there are
    // `n` of them.
    let share_after = |since: Instant, n: usize| {
        let served = served.clone();
        async move {
            let started = Instant::now();
            loop {
                let after: Vec<Option<String>> = served
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(at, _)| *at >= since)
                    .map(|(_, backend)| backend.clone())
                    .collect();
                if after.len() >= n {
                    let preview = after.iter().filter(|b| b.as_deref() == Some("preview"));
                    return 100.0 * preview.count() as f64 / after.len() as f64;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "load stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    for (step, weight) in [0, 10, 50, 100].into_iter().enumerate() {
        let annotations = json!({
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": weight.to_string(),
        });
        if step == 0 {
            let mut spec = ingress_json(
                &ns,
                "app-canary",
                Some("weir"),
                "canary.test",
                "/",
                "app-preview",
                json!({"name": "http"}),
            );
            spec["metadata"]["annotations"] = annotations;
            cluster.ingress(&ns, spec).await;
        } else {
            let patch = json!({"metadata": {"annotations": annotations}});
            ingresses
                .patch("app-canary", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
        generation = until_generation_after(&weir, generation).await;
        let share = share_after(Instant::now(), 1_500).await;
        assert!(
            (share - f64::from(weight)).abs() <= 5.0,
            "weight {weight}: the preview served {share:.1} %"
        );
    }

    // Promotion: the main Ingress goes to the new Service, then the canary goes away.
    let patch = json!({"spec": {"rules": [{"host": "canary.test", "http": {"paths": [{"path": "/",
        "pathType": "Prefix", "backend": {"service": {"name": "app-preview",
        "port": {"name": "http"}}}}]}}]}});
    ingresses
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    generation = until_generation_after(&weir, generation).await;
    assert_eq!(share_after(Instant::now(), 500).await, 100.0);
    ingresses
        .delete("app-canary", &DeleteParams::default())
        .await
        .unwrap();
    until_generation_after(&weir, generation).await;
    assert_eq!(share_after(Instant::now(), 500).await, 100.0);

    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    let served = served.lock().unwrap();
    let failed = served.iter().filter(|(_, b)| b.is_none()).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", served.len());
}

/// The API server forgets the resource versions weir watched from while weir cannot reach it:
/// when weir is back, its watches are answered 410 Gone (`too old resource version`), and
/// weir lists afresh — a deletion and a creation it never saw as watch events reach the
/// table, and the table serves all along.
#[tokio::test]
async fn an_expired_watch_lists_afresh_without_dropping_the_table() {
    let cluster = Cluster::connect_exclusive().await;
    let ns = cluster.namespace("e2e-expiry").await;
    let _backend = cluster
        .steady_route(&ns, 4, "expiry", "steady.expiry.test")
        .await;
    cluster
        .route(&ns, "gone", "gone.expiry.test", "expiry")
        .await;
    let apiserver: SocketAddr = env("WEIR_E2E_APISERVER")
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let relay = FaultProxy::start(apiserver, Duration::ZERO).await;
    let weir = cluster
        .weir_via(relay.addr, "e2e-expiry", &["--watch-namespace", &ns])
        .await;
    until_answer(&weir, "gone.expiry.test", "/", 200).await;
    let load = SteadyLoad::start(&weir, "steady.expiry.test").await;

    // weir is cut off; meanwhile one Ingress goes and another comes …
    relay.cut();
    let ingresses: Api<Ingress> = Api::namespaced(cluster.admin.clone(), &ns);
    ingresses
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    cluster.route(&ns, "new", "new.expiry.test", "expiry").await;
    // … and the API server restarts: its watch cache begins at the current revision, older
    // resource versions are gone.
    let ctl = env("WEIR_E2E_APISERVER_CTL");
    for step in ["restart", "wait-ready"] {
        let status = tokio::process::Command::new(&ctl)
            .arg(step)
            .status()
            .await
            .unwrap();
        assert!(status.success(), "apiserver-ctl.sh {step}");
    }
    relay.restore();

    // The watches back off (as client-go's reflectors do: from 0.8 s doubling to 30 s) after
    // the failures of the cut, and once more after the 410.
    until_answer_within(&weir, "new.expiry.test", "/", 200, Duration::from_secs(75)).await;
    until_answer(&weir, "gone.expiry.test", "/", 404).await;
    let requests = load.all_served().await;
    let log = weir.log();
    assert!(
        log.contains("too old resource version"),
        "no watch was answered 410 Gone; log:\n{log}"
    );
    let restarts = total(&parse(&scrape(&weir).await), "weir_watch_restarts_total");
    assert!(restarts >= 1.0, "weir_watch_restarts_total is {restarts}");
    eprintln!("{requests} requests served while weir was cut off and relisted");
}

/// An Ingress of more than 1 MiB (8,000-odd rules, near what etcd stores in one object) is
/// served whole, and the other routes serve while it is taken in.
#[tokio::test]
async fn a_one_mebibyte_ingress_is_served_whole() {
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-large").await;
    let _backend = cluster
        .steady_route(&ns, 5, "large", "steady.large.test")
        .await;
    let weir = cluster.weir("e2e-large", &["--watch-namespace", &ns]).await;
    let load = SteadyLoad::start(&weir, "steady.large.test").await;

    let rule = |i: usize| {
        json!({"host": format!("r{i}.large.test"), "http": {"paths": [{
            "path": format!("/{i}/{}", "p".repeat(24)), "pathType": "Prefix",
            "backend": {"service": {"name": "large", "port": {"name": "http"}}}}]}})
    };
    let mut rules = Vec::new();
    let mut size = 0;
    while size < 1 << 20 {
        let next = rule(rules.len());
        size += serde_json::to_vec(&next).unwrap().len() + 1;
        rules.push(next);
    }
    let count = rules.len();
    let large = json!({"metadata": {"name": "large", "namespace": ns},
        "spec": {"ingressClassName": "weir", "rules": rules}});
    assert!(serde_json::to_vec(&large).unwrap().len() > 1 << 20);
    let before = value(&parse(&scrape(&weir).await), "weir_table_generation", &[]);
    cluster.ingress(&ns, large).await;
    until_generation_after(&weir, before).await;

    let client = http1_client();
    for i in [0, count / 2, count - 1] {
        let path = format!("/{i}/{}/x", "p".repeat(24));
        let host = format!("r{i}.large.test");
        let answer = get(&client, weir.http, &host, &path).await;
        assert_eq!(answer.status, 200, "{host}{path}");
        assert_eq!(answer.echo().uri(), path);
    }
    // A rule answers only its own host.
    let host = format!("r{}.large.test", count - 1);
    assert_eq!(get(&client, weir.http, &host, "/0/").await.status, 404);
    load.all_served().await;
    let samples = parse(&scrape(&weir).await);
    assert_eq!(
        value(&samples, "weir_table_ingresses", &[]),
        2.0,
        "both Ingresses are in the table"
    );
}

/// A storm of Diagnostics (60 Ingresses naming a Service that does not exist, created at
/// once) becomes Events at a pace: 25 at once, then 5 a second — every one of them in the
/// end, none lost — while weir serves.
#[tokio::test]
async fn a_diagnostic_storm_is_paced_into_events() {
    const BROKEN: usize = 60;
    let cluster = Cluster::connect().await;
    let ns = cluster.namespace("e2e-storm").await;
    let _backend = cluster
        .steady_route(&ns, 6, "storm", "steady.storm.test")
        .await;
    let weir = cluster.weir("e2e-storm", &["--watch-namespace", &ns]).await;
    until_leader_gauge(&weir, 1.0).await;
    let load = SteadyLoad::start(&weir, "steady.storm.test").await;

    for i in 0..BROKEN {
        let name = format!("broken-{i}");
        let host = format!("{name}.storm.test");
        cluster.route(&ns, &name, &host, "missing").await;
    }
    // Until every broken Ingress has its Event; on the way, some waited for their turn.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.admin.clone(), &ns);
    let started = Instant::now();
    let mut most_waiting = 0.0f64;
    let times = loop {
        let waiting = value(&parse(&scrape(&weir).await), "weir_events_waiting", &[]);
        most_waiting = most_waiting.max(waiting);
        let list = events.list(&Default::default()).await.unwrap();
        let mut times: Vec<_> = list
            .items
            .iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .and_then(|r| r.name.as_deref())
                    .is_some_and(|n| n.starts_with("broken-"))
            })
            .filter_map(|e| e.event_time.as_ref().map(|t| t.0))
            .collect();
        if times.len() >= BROKEN {
            times.sort();
            break times;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {BROKEN} Events after a minute; log:\n{}",
            times.len(),
            weir.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(times.len(), BROKEN, "one Event per broken Ingress");
    assert!(most_waiting > 0.0, "no diagnostic ever waited for its turn");
    // 25 at once, then one every 200 ms: the 35 after the burst take at least 7 s.
    let span = times[BROKEN - 1].duration_since(times[0]);
    assert!(
        span.as_secs_f64() >= 6.5,
        "{BROKEN} Events written within {span:?}"
    );
    let samples = parse(&scrape(&weir).await);
    assert_eq!(
        value(&samples, "weir_events_total", &[("result", "published")]),
        BROKEN as f64
    );
    assert_eq!(value(&samples, "weir_events_waiting", &[]), 0.0);
    load.all_served().await;
}

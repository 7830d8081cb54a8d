//! [`IncrementalBuild`] against [`build`]: after any sequence of changes, the incremental
//! build gives what a fresh build of the same input gives.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressTLS};
use proptest::prelude::*;

use crate::model::fixtures::{
    backend, config_map, endpoint_slice, ingress, ingress_class, service,
};
use crate::model::{BuildConfig, HostMatch, IncrementalBuild, Input, ObjectKind, ObjectRef, build};

const NS: &str = "apps";
const OURS: &str = "weir.dev/ingress-controller";
const INGRESSES: usize = 6;
const SERVICES: [&str; 3] = ["web", "api", "errors"];

/// Ingress `i` in one of 64 shapes (`shape`'s bits): hosts shared with other Ingresses, so
/// that one's TLS, regex paths, canary or conflicts change what another builds.
fn ingress_variant(i: usize, shape: u8) -> Ingress {
    // Some shapes have a rule for every host (no host): regex paths there change the other
    // Ingresses' rules without a host too.
    let host = if shape & 5 == 5 && i.is_multiple_of(2) {
        String::new()
    } else {
        format!("h{}.com", (i + usize::from(shape & 1)) % 3)
    };
    let service = SERVICES[usize::from(shape >> 1) % 2];
    let path = if shape & 4 == 0 { "/" } else { "/api" };
    if shape % 13 == 4 {
        // No rules: a candidate for the catch-all of hosts no rule names.
        return ingress(NS, &format!("ing-{i}"))
            .class("weir")
            .created(i64::try_from(i % 4).unwrap_or(0))
            .default_backend(backend(service, 80))
            .build();
    }
    let mut b = ingress(NS, &format!("ing-{i}"))
        .class("weir")
        .created(i64::try_from(i % 4).unwrap_or(0))
        .prefix(&host, path, service, 80);
    if shape & 8 != 0 {
        b = b.annotation("nginx.ingress.kubernetes.io/use-regex", "true");
    }
    if shape & 16 != 0 {
        b = b
            .annotation("nginx.ingress.kubernetes.io/auth-type", "basic")
            .annotation("nginx.ingress.kubernetes.io/auth-secret", "users");
    }
    if shape & 32 != 0 {
        b = b
            .annotation("nginx.ingress.kubernetes.io/custom-http-errors", "503")
            .annotation("nginx.ingress.kubernetes.io/default-backend", "errors")
            .default_backend(backend("api", 80));
    }
    // A second host on some shapes (a wildcard one, or a rule without paths), so that an
    // Ingress can leave one of its hosts and stay on the other.
    match shape % 9 {
        5 => b = b.prefix(&format!("*.h{}.com", (i + 1) % 3), "/w", service, 80),
        7 => b = b.rule_without_http(&format!("h{}.com", (i + 2) % 3)),
        _ => {}
    }
    // Host settings on some shapes: applied on top of hosts a build may reuse (the CA
    // Secret does not exist: the host refuses, fail closed).
    match shape % 11 {
        3 => b = b.annotation("nginx.ingress.kubernetes.io/auth-tls-secret", "apps/ca"),
        6 => b = b.annotation("nginx.ingress.kubernetes.io/from-to-www-redirect", "true"),
        9 => b = b.annotation("nginx.ingress.kubernetes.io/ssl-passthrough", "true"),
        _ => {}
    }
    if shape % 5 == 2 {
        b = b.annotation("nginx.ingress.kubernetes.io/app-root", "/app");
    }
    if shape % 7 == 3 {
        let alias = format!("alias{}.com", i % 2);
        b = b.annotation("nginx.ingress.kubernetes.io/server-alias", &alias);
    }
    if shape & 64 != 0 {
        b = b
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .annotation("nginx.ingress.kubernetes.io/canary-weight", "30");
    }
    let mut built = b.build();
    if shape & 128 != 0 {
        let spec = built.spec.as_mut().expect("the builder writes a spec");
        spec.tls = Some(vec![IngressTLS {
            hosts: Some(vec![host]),
            secret_name: Some("cert".into()),
        }]);
    }
    built
}

fn slice(service: &str, ips: u8) -> EndpointSlice {
    let ips: Vec<String> = (0..ips % 3).map(|n| format!("10.0.{n}.1")).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    endpoint_slice(
        NS,
        &format!("{service}-abc"),
        service,
        &[(Some("http"), 8080)],
        &[(&ips, Some(true))],
    )
}

fn users(version: u8) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "users", "namespace": NS},
        "stringData": {},
        "data": {"auth": k8s_openapi::ByteString(format!("u{version}:$apr1$x$y\n").into_bytes())}
    }))
    .expect("a Secret")
}

/// One change to the world.
#[derive(Debug, Clone)]
enum Change {
    /// Ingress `i` takes shape `shape` (a new object even when the shape is the same).
    Ingress(usize, u8),
    /// Ingress `i` is deleted.
    DeleteIngress(usize),
    /// A Service's endpoints change.
    Endpoints(usize, u8),
    /// A Service is deleted, or comes back.
    ToggleService(usize),
    /// The `users` Secret changes, or is deleted.
    Secret(Option<u8>),
    /// The controller ConfigMap changes.
    ConfigMap(u8),
    /// A second object named like Ingress `i`, in shape `shape`, appears or goes.
    Twin(Option<(usize, u8)>),
    /// The IngressClass `weir` is weir's (`true`), another controller's, or missing.
    Class(Option<bool>),
    /// A second controller ConfigMap of the same name appears (its data in one of three
    /// sizes: the smaller JSON form is the one used) or goes.
    ConfigMapTwin(Option<u8>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..INGRESSES, any::<u8>()).prop_map(|(i, s)| Change::Ingress(i, s)),
        1 => (0..INGRESSES).prop_map(Change::DeleteIngress),
        2 => (0..SERVICES.len(), any::<u8>()).prop_map(|(s, n)| Change::Endpoints(s, n)),
        1 => (0..SERVICES.len()).prop_map(Change::ToggleService),
        1 => proptest::option::of(any::<u8>()).prop_map(Change::Secret),
        1 => any::<u8>().prop_map(Change::ConfigMap),
        1 => proptest::option::of((0..INGRESSES, any::<u8>())).prop_map(Change::Twin),
        1 => proptest::option::of(any::<bool>()).prop_map(Change::Class),
        1 => proptest::option::of(any::<u8>()).prop_map(Change::ConfigMapTwin),
    ]
}

/// Ingresses no change touches, so that a change patches the build order rather than sort it
/// again: some older and some newer than the changing ones, some of another class.
fn fillers() -> Vec<Arc<Ingress>> {
    (0..40)
        .map(|i| {
            let class = if i % 5 == 0 { "nginx" } else { "weir" };
            let host = if i == 1 {
                String::new()
            } else {
                format!("f{i}.com")
            };
            let b = ingress(NS, &format!("ing-{}{}", i % 7, i))
                .class(class)
                .prefix(&host, &format!("/f{i}"), "web", 80);
            let b = if i % 3 == 0 {
                b
            } else {
                b.created(i64::from(i % 6))
            };
            Arc::new(b.build())
        })
        .collect()
}

/// The world as `Arc`s: what a change leaves alone keeps its `Arc`, as the sources do.
struct World {
    fillers: Vec<Arc<Ingress>>,
    /// A second object with the name of one of the changing Ingresses (as a manifests
    /// directory can hold), in a shape of its own.
    twin: Option<Arc<Ingress>>,
    ingresses: Vec<Option<Arc<Ingress>>>,
    services: Vec<Option<Arc<Service>>>,
    slices: Vec<Arc<EndpointSlice>>,
    secret: Option<Arc<Secret>>,
    config_map: Arc<ConfigMap>,
    config_map_twin: Option<Arc<ConfigMap>>,
    class: Option<Arc<IngressClass>>,
}

/// The controller ConfigMap with data of one of three sizes.
fn controller_config_map(n: u8) -> ConfigMap {
    let value = if n.is_multiple_of(2) { "true" } else { "false" };
    match n % 3 {
        0 => config_map("weir", "config", &[]),
        1 => config_map("weir", "config", &[("ssl-redirect", value)]),
        _ => config_map(
            "weir",
            "config",
            &[("ssl-redirect", value), ("hsts", value)],
        ),
    }
}

impl World {
    fn new(shapes: &[u8]) -> World {
        World {
            fillers: fillers(),
            twin: None,
            ingresses: (0..INGRESSES)
                .map(|i| Some(Arc::new(ingress_variant(i, shapes[i % shapes.len()]))))
                .collect(),
            services: SERVICES
                .iter()
                .map(|s| Some(Arc::new(service(NS, s, &[(Some("http"), 80, 8080)]))))
                .collect(),
            slices: SERVICES.iter().map(|s| Arc::new(slice(s, 1))).collect(),
            secret: Some(Arc::new(users(0))),
            config_map: Arc::new(config_map("weir", "config", &[])),
            config_map_twin: None,
            class: None,
        }
    }

    fn apply(&mut self, change: &Change) {
        match *change {
            Change::Ingress(i, shape) => {
                self.ingresses[i] = Some(Arc::new(ingress_variant(i, shape)))
            }
            Change::DeleteIngress(i) => self.ingresses[i] = None,
            Change::Endpoints(s, n) => self.slices[s] = Arc::new(slice(SERVICES[s], n)),
            Change::ToggleService(s) => {
                self.services[s] = match self.services[s] {
                    Some(_) => None,
                    None => Some(Arc::new(service(
                        NS,
                        SERVICES[s],
                        &[(Some("http"), 80, 8080)],
                    ))),
                }
            }
            Change::Secret(version) => self.secret = version.map(|v| Arc::new(users(v))),
            Change::Twin(twin) => {
                self.twin = twin.map(|(i, shape)| Arc::new(ingress_variant(i, shape)));
            }
            Change::ConfigMap(n) => self.config_map = Arc::new(controller_config_map(n)),
            Change::ConfigMapTwin(n) => {
                self.config_map_twin = n.map(|n| Arc::new(controller_config_map(n)));
            }
            Change::Class(class) => {
                self.class = class.map(|ours| {
                    let controller = if ours { OURS } else { "example.com/other" };
                    Arc::new(ingress_class("weir", controller, false))
                });
            }
        }
    }

    fn input(&self) -> Input {
        Input {
            ingresses: self
                .fillers
                .iter()
                .chain(self.ingresses.iter().flatten())
                .chain(&self.twin)
                .cloned()
                .collect(),
            services: self.services.iter().flatten().cloned().collect(),
            endpoint_slices: self.slices.clone(),
            secrets: self.secret.iter().cloned().collect(),
            config_maps: std::iter::once(&self.config_map)
                .chain(&self.config_map_twin)
                .cloned()
                .collect(),
            ingress_classes: self.class.iter().cloned().collect(),
            ..Input::default()
        }
    }
}

fn config() -> BuildConfig {
    BuildConfig {
        config_map: Some(ObjectRef::new(ObjectKind::ConfigMap, "weir", "config")),
        default_backend_service: Some(ObjectRef::new(ObjectKind::Service, NS, "errors")),
        ssl_passthrough: true,
        ..BuildConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_incremental_build_equals_a_fresh_one(
        shapes in proptest::collection::vec(any::<u8>(), INGRESSES),
        changes in proptest::collection::vec(change(), 1..12),
    ) {
        let config = config();
        let mut world = World::new(&shapes);
        let mut builds = IncrementalBuild::default();
        builds.build(&world.input(), &config);
        for (step, change) in changes.iter().enumerate() {
            world.apply(change);
            let input = world.input();
            let incremental = builds.build(&input, &config);
            let fresh = build(&input, &config);
            prop_assert_eq!(&incremental.table, &fresh.table, "step {} ({:?})", step, change);
            prop_assert_eq!(&incremental.diagnostics, &fresh.diagnostics, "step {}", step);
            prop_assert_eq!(&incremental.tls, &fresh.tls, "step {}", step);
            prop_assert_eq!(&incremental.ingresses, &fresh.ingresses, "step {}", step);
        }
    }
}

#[test]
fn an_unchanged_ingress_keeps_its_routes_and_a_changed_one_gets_new_ones() {
    let config = config();
    // ing-0 serves h0.com (web), ing-4 the oldest of h2.com (web); no host settings there.
    let mut world = World::new(&[0, 1, 4]);
    let mut builds = IncrementalBuild::default();
    let route = |built: &crate::model::Built, host: &str| {
        built.table.route(host, "/").expect("a route").clone()
    };
    let first = builds.build(&world.input(), &config);
    assert_eq!(route(&first, "h0.com").ingress.name, "ing-0");
    assert_eq!(route(&first, "h2.com").ingress.name, "ing-4");

    // ing-4 moves to h1.com and the Service api: ing-0's route stays the same Arc.
    world.apply(&Change::Ingress(4, 2));
    let second = builds.build(&world.input(), &config);
    assert!(Arc::ptr_eq(
        &route(&first, "h0.com"),
        &route(&second, "h0.com")
    ));
    let moved = route(&second, "h1.com");
    assert_eq!(moved.ingress.name, "ing-4");
    assert_eq!(moved.backend.service.name, "api");
    // The hosts whose Ingresses did not change are the same `Arc`s (nothing of them was
    // assembled again); the host ing-4 left is new (h1.com, which it joined, is new too).
    let host = |built: &crate::model::Built, name: &str| {
        let host = HostMatch::Exact(name.to_owned());
        built.table.host_routes(&host).expect("the host").clone()
    };
    for unchanged in ["h0.com", "f2.com", "f3.com"] {
        assert!(
            Arc::ptr_eq(&host(&first, unchanged), &host(&second, unchanged)),
            "{unchanged}"
        );
    }
    assert!(!Arc::ptr_eq(
        &host(&first, "h2.com"),
        &host(&second, "h2.com")
    ));
    // The same input again: no host is assembled again.
    let again = builds.build(&world.input(), &config);
    for unchanged in ["h0.com", "h2.com", "f2.com"] {
        assert!(
            Arc::ptr_eq(&host(&second, unchanged), &host(&again, unchanged)),
            "{unchanged}"
        );
    }

    // The endpoints of api change: the routes to api are new, the others stay.
    world.apply(&Change::Endpoints(1, 2));
    let third = builds.build(&world.input(), &config);
    assert!(Arc::ptr_eq(
        &route(&second, "h0.com"),
        &route(&third, "h0.com")
    ));
    let resolved = route(&third, "h1.com");
    assert!(!Arc::ptr_eq(&moved, &resolved));
    assert_eq!(resolved.backend.endpoints.len(), 2);
    assert_eq!(third.table, build(&world.input(), &config).table);
}

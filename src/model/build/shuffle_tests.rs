//! [`build`] on generated inputs: it never panics, and the same objects in any order build the
//! same table, diagnostics, TLS bindings and Ingress list.
//!
//! The inputs are small but hostile: a few Ingresses drawn from shared pools of names, hosts
//! (exact, wildcard, upper-case, invalid), paths of every pathType (regex-like ones too), class
//! selections, annotations from the real key set under both prefixes with valid and garbage
//! values (and sets that only act together: canaries, regex hosts, basic authentication…),
//! TLS sections, default and resource backends; Services with and without the named port or
//! a cluster IP, ExternalName Services, EndpointSlices and Endpoints, Secrets that look right
//! and Secrets that do not, the controller ConfigMap or none; and twins (two objects with one
//! namespace and name).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressTLS};
use proptest::prelude::*;

use crate::model::annotations::keys;
use crate::model::fixtures::{
    Port, backend, config_map, endpoint_slice, endpoints, external_service, ingress, ingress_class,
    resource_backend, service,
};
use crate::model::{BuildConfig, ClassConfig, Input, ObjectKind, ObjectRef, build};

const OURS: &str = "weir.dev/ingress-controller";
const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: [&str; 4] = ["one", "two", "three", "four"];
const HOSTS: [&str; 10] = [
    "a.com",
    "A.Com",
    "b.com",
    "*.w.com",
    "x.w.com",
    "",
    "bad_host",
    "*.*.com",
    "a.com.",
    "www.a.com",
];
const PATHS: [Option<&str>; 12] = [
    Some("/"),
    Some("/api"),
    Some("/api/"),
    Some("/API"),
    Some("/a/b"),
    Some("x"),
    Some("/(.*)"),
    Some("/api/(v[0-9]+)/.*"),
    Some("/["),
    Some(""),
    Some("/a//b/../c"),
    None,
];
const PATH_TYPES: [&str; 5] = ["Prefix", "Exact", "ImplementationSpecific", "", "Regex"];
const SERVICES: [&str; 4] = ["web", "api", "ext", "errors"];
const PORTS: [Port; 4] = [
    Port::Number(80),
    Port::Number(81),
    Port::Name("http"),
    Port::Name("nope"),
];

/// Annotation values: valid for some key or other, and garbage.
const VALUES: [&str; 36] = [
    "true",
    "false",
    "0",
    "30",
    "100",
    "10s",
    "1m",
    "8k",
    "/",
    "/app",
    "/$1",
    "https://auth.example.com/verify",
    "http://",
    "10.0.0.0/8, ::1",
    "10.0.0.0/33",
    "web",
    "web:80",
    "users",
    "a/users",
    "ca",
    "cookie",
    "round_robin",
    "ewma",
    "basic",
    "digest",
    "HTTPS",
    "GRPC",
    "503,404",
    "GET, POST",
    "*",
    "X-Canary",
    "",
    "  ",
    "%%%${}",
    "-1",
    "99999999999999999999",
];

/// Annotations that only do something together, so that canaries, regex hosts, basic
/// authentication, passthrough, aliases, error pages, client certificates and upstreams by
/// cluster IP come up often (not only when random keys and values happen to agree).
const PRESETS: [&[(&str, &str)]; 10] = [
    &[("canary", "true"), ("canary-weight", "30")],
    &[("canary", "true"), ("canary-by-header", "X-Canary")],
    &[("use-regex", "true")],
    &[("rewrite-target", "/$1")],
    &[("auth-type", "basic"), ("auth-secret", "users")],
    &[("ssl-passthrough", "true")],
    &[("server-alias", "b.com, alias.com"), ("app-root", "/app")],
    &[("from-to-www-redirect", "true")],
    &[
        ("custom-http-errors", "503,404"),
        ("default-backend", "errors"),
    ],
    &[("auth-tls-secret", "a/ca"), ("service-upstream", "true")],
];

/// Keys read by no code (reported, never applied) besides the real ones.
const UNKNOWN_KEYS: [&str; 2] = ["configuration-snippet", "no-such-annotation"];

fn key_names() -> Vec<&'static str> {
    keys()
        .map(|(_, key)| key.name)
        .chain(UNKNOWN_KEYS)
        .collect()
}

/// One generated Ingress, by indexes into the pools above.
#[derive(Debug, Clone)]
struct GenIngress {
    ns: usize,
    name: usize,
    created: Option<u8>,
    /// 0: `ingressClassName: weir`; 1: the legacy annotation; 2: no class; 3: another class;
    /// 4: `weir` by name and another class by annotation.
    class: u8,
    /// (host, path, pathType, service, port).
    paths: Vec<(usize, usize, usize, usize, usize)>,
    rule_without_http: Option<usize>,
    default_backend: Option<(usize, usize)>,
    /// (weir prefix?, key, value).
    annotations: Vec<(bool, usize, usize)>,
    /// (weir prefix?, [`PRESETS`] index).
    presets: Vec<(bool, usize)>,
    /// (hosts, Secret name index: 0 `cert`, 1 `missing`, 2 no secretName).
    tls: Vec<(Vec<usize>, u8)>,
}

fn gen_ingress(keys: usize) -> impl Strategy<Value = GenIngress> {
    // Mostly the first hosts, paths and pathTypes, so that Ingresses meet (conflicts); the
    // service one past the end is a resource backend.
    let path = (
        prop_oneof![3 => 0..3usize, 1 => 0..HOSTS.len()],
        prop_oneof![3 => 0..2usize, 1 => 0..PATHS.len()],
        prop_oneof![3 => 0..2usize, 1 => 0..PATH_TYPES.len()],
        0..=SERVICES.len(),
        0..PORTS.len(),
    );
    (
        (0..NAMESPACES.len(), 0..NAMES.len()),
        proptest::option::of(0u8..4),
        prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => 2u8..5],
        proptest::collection::vec(path, 0..4),
        proptest::option::weighted(0.2, 0..HOSTS.len()),
        proptest::option::weighted(0.3, (0..=SERVICES.len(), 0..PORTS.len())),
        (
            proptest::collection::vec((any::<bool>(), 0..keys, 0..VALUES.len()), 0..5),
            proptest::collection::vec((any::<bool>(), 0..PRESETS.len()), 0..3),
        ),
        proptest::collection::vec(
            (proptest::collection::vec(0..HOSTS.len(), 0..3), 0u8..3),
            0..2,
        ),
    )
        .prop_map(
            |(
                (ns, name),
                created,
                class,
                paths,
                rule_without_http,
                default_backend,
                (annotations, presets),
                tls,
            )| GenIngress {
                ns,
                name,
                created,
                class,
                paths,
                rule_without_http,
                default_backend,
                annotations,
                presets,
                tls,
            },
        )
}

impl GenIngress {
    fn build(&self, keys: &[&str]) -> Ingress {
        let mut b = ingress(NAMESPACES[self.ns], NAMES[self.name]);
        b = match self.class {
            0 => b.class("weir"),
            1 => b.legacy_class("weir"),
            2 => b,
            3 => b.class("nginx"),
            _ => b.class("weir").legacy_class("nginx"),
        };
        if let Some(created) = self.created {
            b = b.created(i64::from(created));
        }
        for &(host, path, path_type, svc, port) in &self.paths {
            let to = match SERVICES.get(svc) {
                Some(svc) => backend(svc, PORTS[port].clone()),
                None => resource_backend(),
            };
            b = b.path(HOSTS[host], PATHS[path], PATH_TYPES[path_type], to);
        }
        if let Some(host) = self.rule_without_http {
            b = b.rule_without_http(HOSTS[host]);
        }
        if let Some((svc, port)) = self.default_backend {
            b = b.default_backend(match SERVICES.get(svc) {
                Some(svc) => backend(svc, PORTS[port].clone()),
                None => resource_backend(),
            });
        }
        let prefix = |weir| {
            if weir {
                "weir.dev/"
            } else {
                "nginx.ingress.kubernetes.io/"
            }
        };
        for &(weir, preset) in &self.presets {
            for (key, value) in PRESETS[preset] {
                b = b.annotation(&format!("{}{key}", prefix(weir)), value);
            }
        }
        for &(weir, key, value) in &self.annotations {
            b = b.annotation(&format!("{}{}", prefix(weir), keys[key]), VALUES[value]);
        }
        let mut built = b.build();
        if !self.tls.is_empty() {
            let spec = built.spec.as_mut().expect("the builder writes a spec");
            spec.tls = Some(
                self.tls
                    .iter()
                    .map(|(hosts, secret)| IngressTLS {
                        hosts: Some(hosts.iter().map(|h| HOSTS[*h].to_owned()).collect()),
                        secret_name: match secret {
                            0 => Some("cert".into()),
                            1 => Some("missing".into()),
                            _ => None,
                        },
                    })
                    .collect(),
            );
        }
        built
    }
}

/// A Service of one of several shapes: 0 absent, 1 port `http` 80 → 8080 with a cluster IP,
/// 2 an unnamed port 81 only and no cluster IP, 3 ExternalName, 4 both 1 and 2 as twins.
fn services(ns: &str, name: &str, shape: u8) -> Vec<Service> {
    let named = || {
        let mut s = service(ns, name, &[(Some("http"), 80, 8080)]);
        if let Some(spec) = s.spec.as_mut() {
            spec.cluster_ip = Some("10.96.0.10".into());
        }
        s
    };
    let unnamed = || service(ns, name, &[(None, 81, 9000)]);
    match shape {
        0 => vec![],
        1 => vec![named()],
        2 => vec![unnamed()],
        3 => vec![external_service(ns, name)],
        _ => vec![named(), unnamed()],
    }
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let data: BTreeMap<String, k8s_openapi::ByteString> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                k8s_openapi::ByteString(v.as_bytes().to_vec()),
            )
        })
        .collect();
    Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some(ns.to_owned()),
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

/// The Secrets of a namespace, by the bits of `shape`: an htpasswd `users` (valid or not), a
/// TLS `cert`, a CA bundle `ca`, and a twin of `users`.
fn secrets(ns: &str, shape: u8) -> Vec<Secret> {
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let mut out = Vec::new();
    if shape & 1 != 0 {
        out.push(secret(
            ns,
            "users",
            &[("auth", "alice:$apr1$Bd6nIVYA$3BZloI3Mo8X5Hld57gVzL.\n")],
        ));
    }
    if shape & 2 != 0 {
        out.push(secret(ns, "users", &[("auth", "garbage\n:::\n")]));
    }
    if shape & 4 != 0 {
        out.push(secret(ns, "cert", &[("tls.crt", PEM), ("tls.key", "nope")]));
    }
    if shape & 8 != 0 {
        out.push(secret(ns, "ca", &[("ca.crt", PEM)]));
    }
    out
}

/// Controller ConfigMap data: ingress-nginx-style keys with good and bad values.
const CONFIG: [(&str, &str); 10] = [
    ("ssl-redirect", "false"),
    ("hsts", "true"),
    ("proxy-read-timeout", "abc"),
    ("proxy-body-size", "1m"),
    ("load-balance", "ewma"),
    ("custom-http-errors", "500,x"),
    ("use-forwarded-headers", "true"),
    ("whitelist-source-range", "10.0.0.0/8"),
    ("server-snippet", "return 200;"),
    ("no-such-key", "1"),
];

#[derive(Debug, Clone)]
struct World {
    ingresses: Vec<GenIngress>,
    /// A shape per (namespace, service), see [`services`].
    services: Vec<u8>,
    /// Per (namespace, service): 0 none, 1 a ready EndpointSlice, 2 core Endpoints, 3 both,
    /// with the ready addresses picked by the other bits.
    endpoints: Vec<u8>,
    /// A shape per namespace, see [`secrets`].
    secrets: Vec<u8>,
    /// The bits of [`CONFIG`] in the controller ConfigMap (if there is one), and its twin's.
    config: (Option<u16>, Option<u16>),
    /// 0: no IngressClass; 1: `weir` is weir's and the default; 2: `weir` is weir's;
    /// 3: `weir` is another controller's.
    class: u8,
    watch_without_class: bool,
}

fn world(keys: usize) -> impl Strategy<Value = World> {
    let per_service = NAMESPACES.len() * SERVICES.len();
    (
        proptest::collection::vec(gen_ingress(keys), 1..7),
        proptest::collection::vec(0u8..5, per_service),
        proptest::collection::vec(any::<u8>(), per_service),
        proptest::collection::vec(0u8..16, NAMESPACES.len()),
        (
            proptest::option::weighted(0.9, any::<u16>()),
            proptest::option::weighted(0.2, any::<u16>()),
        ),
        0u8..4,
        any::<bool>(),
    )
        .prop_map(
            |(ingresses, services, endpoints, secrets, config, class, watch_without_class)| World {
                ingresses,
                services,
                endpoints,
                secrets,
                config,
                class,
                watch_without_class,
            },
        )
}

fn controller_config_map(bits: u16) -> ConfigMap {
    let data: Vec<(&str, &str)> = CONFIG
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, kv)| *kv)
        .collect();
    config_map("weir", "config", &data)
}

impl World {
    fn input(&self, keys: &[&str]) -> Input {
        let mut input = Input::default();
        for g in &self.ingresses {
            input.ingresses.push(Arc::new(g.build(keys)));
        }
        for (i, (&shape, &eps)) in self.services.iter().zip(&self.endpoints).enumerate() {
            let ns = NAMESPACES[i / SERVICES.len()];
            let name = SERVICES[i % SERVICES.len()];
            input
                .services
                .extend(services(ns, name, shape).into_iter().map(Arc::new));
            let ips: Vec<String> = (0..(eps >> 2) % 3)
                .map(|n| format!("10.{i}.0.{n}"))
                .collect();
            let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
            if eps & 1 != 0 {
                let ready = Some(eps & 32 == 0);
                input.endpoint_slices.push(Arc::new(endpoint_slice(
                    ns,
                    &format!("{name}-abc"),
                    name,
                    &[(Some("http"), 8080)],
                    &[(&ips, ready)],
                )));
            }
            if eps & 2 != 0 {
                input.endpoints.push(Arc::new(endpoints(
                    ns,
                    name,
                    &ips,
                    &["10.9.9.9"],
                    &[(None, 9000), (Some("http"), 8080)],
                )));
            }
        }
        for (ns, &shape) in NAMESPACES.iter().zip(&self.secrets) {
            input
                .secrets
                .extend(secrets(ns, shape).into_iter().map(Arc::new));
        }
        for bits in [self.config.0, self.config.1].into_iter().flatten() {
            input
                .config_maps
                .push(Arc::new(controller_config_map(bits)));
        }
        let class: Option<IngressClass> = match self.class {
            0 => None,
            1 => Some(ingress_class("weir", OURS, true)),
            2 => Some(ingress_class("weir", OURS, false)),
            _ => Some(ingress_class("weir", "example.com/other", false)),
        };
        input.ingress_classes.extend(class.map(Arc::new));
        input.ingress_classes.push(Arc::new(ingress_class(
            "nginx",
            "k8s.io/ingress-nginx",
            false,
        )));
        input
    }

    fn config(&self) -> BuildConfig {
        BuildConfig {
            classes: ClassConfig {
                watch_ingress_without_class: self.watch_without_class,
                ..ClassConfig::default()
            },
            config_map: Some(ObjectRef::new(ObjectKind::ConfigMap, "weir", "config")),
            default_backend_service: Some(ObjectRef::new(ObjectKind::Service, "a", "errors")),
            ssl_passthrough: true,
            ..BuildConfig::default()
        }
    }
}

/// Every list of `input` in an order drawn from `seed`.
fn shuffled(input: &Input, seed: u64) -> Input {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut input = input.clone();
    rng.shuffle(&mut input.ingresses);
    rng.shuffle(&mut input.ingress_classes);
    rng.shuffle(&mut input.services);
    rng.shuffle(&mut input.endpoint_slices);
    rng.shuffle(&mut input.endpoints);
    rng.shuffle(&mut input.secrets);
    rng.shuffle(&mut input.config_maps);
    input
}

proptest! {
    // A build of a generated input takes a few milliseconds in a debug build (regex hosts
    // compile their paths): 96 cases of two builds each.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn building_generated_inputs_in_any_order_gives_the_same_result(
        world in world(key_names().len()),
        seed in any::<u64>(),
    ) {
        let keys = key_names();
        let input = world.input(&keys);
        let config = world.config();
        let reference = build(&input, &config);
        // The diagnostics are sorted, as documented.
        prop_assert!(reference.diagnostics.windows(2).all(|w| w[0] <= w[1]));
        let built = build(&shuffled(&input, seed), &config);
        prop_assert_eq!(&built.table, &reference.table);
        prop_assert_eq!(&built.diagnostics, &reference.diagnostics);
        prop_assert_eq!(&built.tls, &reference.tls);
        prop_assert_eq!(&built.ingresses, &reference.ingresses);
    }
}

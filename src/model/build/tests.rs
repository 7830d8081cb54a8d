//! Tests of `build`: whole inputs in, routes and diagnostics out.

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::model::fixtures::{
    IngressBuilder, backend, endpoint_slice, endpoints, external_service, ingress, ingress_class,
    resource_backend, service, shared,
};
use crate::model::{BuildConfig, Built, ClassConfig, Input, Reason, build};

const OURS: &str = "weir.dev/ingress-controller";

/// An Ingress of weir's class.
fn ing(ns: &str, name: &str) -> IngressBuilder {
    ingress(ns, name).class("weir")
}

/// Service `ns/name` with one port `http` 80 → 8080 and ready endpoints `ips` on 8080.
fn web(ns: &str, name: &str, ips: &[&str]) -> (Service, EndpointSlice) {
    (
        service(ns, name, &[(Some("http"), 80, 8080)]),
        endpoint_slice(
            ns,
            &format!("{name}-abc"),
            name,
            &[(Some("http"), 8080)],
            &[(ips, Some(true))],
        ),
    )
}

#[derive(Default)]
struct World {
    ingresses: Vec<Ingress>,
    classes: Vec<IngressClass>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    endpoints: Vec<Endpoints>,
}

impl World {
    fn ingress(mut self, i: IngressBuilder) -> Self {
        self.ingresses.push(i.build());
        self
    }
    fn web(mut self, ns: &str, name: &str, ips: &[&str]) -> Self {
        let (svc, slice) = web(ns, name, ips);
        self.services.push(svc);
        self.slices.push(slice);
        self
    }
    fn service(mut self, s: Service) -> Self {
        self.services.push(s);
        self
    }
    fn slice(mut self, s: EndpointSlice) -> Self {
        self.slices.push(s);
        self
    }
    fn endpoints(mut self, e: Endpoints) -> Self {
        self.endpoints.push(e);
        self
    }
    fn class(mut self, c: IngressClass) -> Self {
        self.classes.push(c);
        self
    }
    fn input(self) -> Input {
        Input {
            ingresses: shared(self.ingresses),
            ingress_classes: shared(self.classes),
            services: shared(self.services),
            endpoint_slices: shared(self.slices),
            endpoints: shared(self.endpoints),
            ..Input::default()
        }
    }
    fn build(self) -> Built {
        build(&self.input(), &BuildConfig::default())
    }
}

/// Where a request goes: (Ingress name, Service name, endpoints).
fn served(built: &Built, host: &str, path: &str) -> Option<(String, String, Vec<String>)> {
    let route = built.table.route(host, path)?;
    Some((
        route.ingress.name.clone(),
        route.backend.service.name.clone(),
        route
            .backend
            .endpoints
            .iter()
            .map(SocketAddr::to_string)
            .collect(),
    ))
}

/// The Ingress that serves a request.
fn served_by(built: &Built, host: &str, path: &str) -> Option<String> {
    built
        .table
        .route(host, path)
        .map(|r| r.ingress.name.clone())
}

/// Endpoints of the backend serving a request.
fn eps(built: &Built, host: &str, path: &str) -> Vec<String> {
    served(built, host, path).map(|s| s.2).unwrap_or_default()
}

/// The diagnostics as (Ingress name, reason).
fn reasons(built: &Built) -> Vec<(String, Reason)> {
    built
        .diagnostics
        .iter()
        .map(|d| (d.object.name.clone(), d.reason))
        .collect()
}

fn names(built: &Built) -> Vec<String> {
    built
        .ingresses
        .iter()
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect()
}

#[test]
fn only_our_class_is_routed_and_others_are_ignored_silently() {
    let built = World::default()
        .class(ingress_class("weir", OURS, false))
        .class(ingress_class("nginx", "k8s.io/ingress-nginx", false))
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "mine").prefix("a.com", "/", "web", 80))
        .ingress(
            ingress("d", "legacy")
                .legacy_class("weir")
                .prefix("b.com", "/", "web", 80),
        )
        .ingress(
            ingress("d", "theirs")
                .class("nginx")
                .annotation("weir.dev/bogus", "x")
                .prefix("c.com", "/", "missing", 80)
                .prefix("bad host:80", "/", "web", 80),
        )
        .ingress(ingress("d", "classless").prefix("d.com", "/", "web", 80))
        .build();
    assert_eq!(served_by(&built, "a.com", "/").as_deref(), Some("mine"));
    assert_eq!(served_by(&built, "b.com", "/").as_deref(), Some("legacy"));
    assert_eq!(served_by(&built, "c.com", "/"), None);
    assert_eq!(served_by(&built, "d.com", "/"), None);
    assert_eq!(built.diagnostics, []);
    assert_eq!(names(&built), ["d/legacy", "d/mine"]);

    // The classless one becomes ours once our class is the default.
    let built = World::default()
        .class(ingress_class("weir", OURS, true))
        .web("d", "web", &["10.0.0.1"])
        .ingress(ingress("d", "classless").prefix("d.com", "/", "web", 80))
        .build();
    assert_eq!(
        served_by(&built, "d.com", "/").as_deref(),
        Some("classless")
    );

    // Or with --watch-ingress-without-class.
    let world = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ingress("d", "classless").prefix("d.com", "/", "web", 80));
    let config = BuildConfig {
        classes: ClassConfig {
            watch_ingress_without_class: true,
            ..ClassConfig::default()
        },
        ..BuildConfig::default()
    };
    let built = build(&world.input(), &config);
    assert_eq!(
        served_by(&built, "d.com", "/").as_deref(),
        Some("classless")
    );
}

#[test]
fn service_port_by_number_or_name_resolves_to_the_endpoint_port() {
    let built = World::default()
        .service(service(
            "d",
            "web",
            &[(Some("http"), 80, 8080), (Some("admin"), 9000, 9090)],
        ))
        .slice(endpoint_slice(
            "d",
            "web-1",
            "web",
            &[(Some("http"), 8080), (Some("admin"), 9090)],
            &[(&["10.0.0.1"], Some(true))],
        ))
        .service(service("d", "solo", &[(None, 80, 3000)]))
        .endpoints(endpoints("d", "solo", &["10.0.0.9"], &[], &[(None, 3000)]))
        .ingress(
            ing("d", "i")
                .prefix("a.com", "/number", "web", 80)
                .prefix("a.com", "/name", "web", "http")
                .prefix("a.com", "/admin", "web", 9000)
                .prefix("a.com", "/admin-by-name", "web", "admin")
                .prefix("a.com", "/solo", "solo", 80),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    assert_eq!(eps(&built, "a.com", "/number"), ["10.0.0.1:8080"]);
    assert_eq!(eps(&built, "a.com", "/name"), ["10.0.0.1:8080"]);
    assert_eq!(eps(&built, "a.com", "/admin"), ["10.0.0.1:9090"]);
    assert_eq!(eps(&built, "a.com", "/admin-by-name"), ["10.0.0.1:9090"]);
    assert_eq!(eps(&built, "a.com", "/solo"), ["10.0.0.9:3000"]);
    let port = |path| {
        built
            .table
            .route("a.com", path)
            .unwrap()
            .backend
            .port
            .clone()
    };
    assert_eq!(port("/number"), "80");
    assert_eq!(port("/name"), "http");
}

#[test]
fn routes_to_the_same_service_port_share_one_backend() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1", "10.0.0.2"])
        .ingress(ing("d", "one").prefix("a.com", "/", "web", 80))
        .ingress(
            ing("d", "two")
                .prefix("b.com", "/", "web", 80)
                .exact("b.com", "/x", "web", 80),
        )
        .build();
    let a = &built.table.route("a.com", "/").unwrap().backend;
    let b = &built.table.route("b.com", "/").unwrap().backend;
    let x = &built.table.route("b.com", "/x").unwrap().backend;
    assert!(Arc::ptr_eq(a, b) && Arc::ptr_eq(b, x));
}

#[test]
fn only_ready_endpoints_are_used() {
    let built = World::default()
        .service(service("d", "sliced", &[(Some("http"), 80, 8080)]))
        .slice(endpoint_slice(
            "d",
            "sliced-1",
            "sliced",
            &[(Some("http"), 8080)],
            &[
                (&["10.0.0.1"], Some(true)),
                (&["10.0.0.2"], None),
                (&["10.0.0.3"], Some(false)),
                (&["10.0.0.4", "fd00::4"], Some(true)),
                (&["not-an-ip"], Some(true)),
            ],
        ))
        .service(service("d", "legacy", &[(Some("http"), 80, 8080)]))
        .endpoints(endpoints(
            "d",
            "legacy",
            &["10.1.0.1", "bogus"],
            &["10.1.0.2"],
            &[(Some("http"), 8080)],
        ))
        .ingress(
            ing("d", "i")
                .prefix("a.com", "/sliced", "sliced", 80)
                .prefix("a.com", "/legacy", "legacy", "http"),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    assert_eq!(
        eps(&built, "a.com", "/sliced"),
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.4:8080",
            "[fd00::4]:8080"
        ]
    );
    assert_eq!(eps(&built, "a.com", "/legacy"), ["10.1.0.1:8080"]);
}

#[test]
fn endpoint_slices_are_merged_and_preferred_over_endpoints() {
    let built = World::default()
        .service(service("d", "web", &[(Some("http"), 80, 8080)]))
        .slice(endpoint_slice(
            "d",
            "web-1",
            "web",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.1"], None)],
        ))
        .slice(endpoint_slice(
            "d",
            "web-2",
            "web",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.2"], None)],
        ))
        // Same service name in another namespace: not ours.
        .slice(endpoint_slice(
            "e",
            "web-3",
            "web",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.3"], None)],
        ))
        .endpoints(endpoints(
            "d",
            "web",
            &["10.9.9.9"],
            &[],
            &[(Some("http"), 8080)],
        ))
        .ingress(ing("d", "i").prefix("a.com", "/", "web", 80))
        .build();
    assert_eq!(
        eps(&built, "a.com", "/"),
        ["10.0.0.1:8080", "10.0.0.2:8080"]
    );

    // A slice that exists but is empty still wins over Endpoints.
    let built = World::default()
        .service(service("d", "web", &[(Some("http"), 80, 8080)]))
        .slice(endpoint_slice(
            "d",
            "web-1",
            "web",
            &[(Some("http"), 8080)],
            &[],
        ))
        .endpoints(endpoints(
            "d",
            "web",
            &["10.9.9.9"],
            &[],
            &[(Some("http"), 8080)],
        ))
        .ingress(ing("d", "i").prefix("a.com", "/", "web", 80))
        .build();
    assert_eq!(eps(&built, "a.com", "/"), Vec::<String>::new());
    assert_eq!(reasons(&built), [("i".into(), Reason::NoReadyEndpoints)]);
}

/// What the route at `a.com /` should be after a diagnostic.
#[derive(Debug, PartialEq)]
enum Expect {
    /// No route: the path was skipped.
    NoRoute,
    /// A route to a backend without endpoints (503).
    Unavailable,
    /// A route to working endpoints.
    Works,
}

#[test]
fn every_diagnostic_reason() {
    use Expect::*;
    use Reason::*;
    let udp = {
        let mut s = service("d", "dns", &[(Some("dns"), 53, 53)]);
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
        s
    };
    let rows: Vec<(&str, IngressBuilder, Reason, Expect)> = vec![
        (
            "service not found",
            ing("d", "i").prefix("a.com", "/", "missing", 80),
            ServiceNotFound,
            Unavailable,
        ),
        (
            "no such port number",
            ing("d", "i").prefix("a.com", "/", "web", 81),
            ServicePortNotFound,
            Unavailable,
        ),
        (
            "no such port name",
            ing("d", "i").prefix("a.com", "/", "web", "grpc"),
            ServicePortNotFound,
            Unavailable,
        ),
        (
            "UDP port",
            ing("d", "i").prefix("a.com", "/", "dns", 53),
            ServicePortNotFound,
            Unavailable,
        ),
        (
            "ExternalName service not resolved yet",
            ing("d", "i").prefix("a.com", "/", "external", 80),
            ExternalNameNotResolved,
            Unavailable,
        ),
        (
            "no ready endpoints",
            ing("d", "i").prefix("a.com", "/", "idle", 80),
            NoReadyEndpoints,
            Unavailable,
        ),
        (
            "IP host",
            ing("d", "i")
                .prefix("10.0.0.1", "/", "web", 80)
                .prefix("a.com", "/", "web", 80),
            InvalidHost,
            Works,
        ),
        (
            "host with port",
            ing("d", "i").prefix("a.com:80", "/", "web", 80),
            InvalidHost,
            NoRoute,
        ),
        (
            "inner wildcard",
            ing("d", "i").prefix("a.*.com", "/", "web", 80),
            InvalidHost,
            NoRoute,
        ),
        (
            "relative path",
            ing("d", "i").prefix("a.com", "api", "web", 80),
            InvalidPath,
            NoRoute,
        ),
        (
            "dot segment",
            ing("d", "i").exact("a.com", "/a/../", "web", 80),
            InvalidPath,
            NoRoute,
        ),
        (
            "unknown pathType",
            ing("d", "i").path("a.com", Some("/"), "Regex", backend("web", 80)),
            InvalidPath,
            NoRoute,
        ),
        (
            "resource backend",
            ing("d", "i").path("a.com", Some("/"), "Prefix", resource_backend()),
            UnsupportedBackend,
            NoRoute,
        ),
        (
            "unknown weir annotation",
            ing("d", "i")
                .annotation("weir.dev/turbo", "on")
                .prefix("a.com", "/", "web", 80),
            UnknownAnnotation,
            Works,
        ),
        (
            "nginx annotation",
            ing("d", "i")
                .annotation("nginx.ingress.kubernetes.io/ssl-ciphers", "HIGH")
                .prefix("a.com", "/", "web", 80),
            UnsupportedAnnotation,
            Works,
        ),
        (
            "nginx snippet",
            ing("d", "i")
                .annotation("nginx.ingress.kubernetes.io/server-snippet", "return 200;")
                .prefix("a.com", "/", "web", 80),
            UnsupportedAnnotation,
            Works,
        ),
        (
            "proxy-read-timeout not a number",
            ing("d", "i")
                .annotation("weir.dev/proxy-read-timeout", "soon")
                .prefix("a.com", "/", "web", 80),
            InvalidAnnotationValue,
            Works,
        ),
        (
            "service not found in the default backend",
            ing("d", "i").default_backend(backend("missing", 80)),
            ServiceNotFound,
            Unavailable,
        ),
        (
            "resource default backend",
            ing("d", "i").default_backend(resource_backend()),
            UnsupportedBackend,
            NoRoute,
        ),
    ];
    for (name, ingress, reason, expect) in rows {
        let built = World::default()
            .web("d", "web", &["10.0.0.1"])
            .service(service("d", "idle", &[(None, 80, 80)]))
            .service(external_service("d", "external"))
            .service(udp.clone())
            .ingress(ingress)
            .build();
        assert_eq!(
            reasons(&built),
            [("i".into(), reason)],
            "{name}: {:#?}",
            built.diagnostics
        );
        let got = match built.table.route("a.com", "/") {
            None => NoRoute,
            Some(r) if r.backend.endpoints.is_empty() => Unavailable,
            Some(_) => Works,
        };
        assert_eq!(got, expect, "{name}");
        assert!(!built.diagnostics[0].message.is_empty());
        assert_eq!(names(&built), ["d/i"], "{name}");
    }
}

#[test]
fn messages_say_what_to_fix() {
    let built = World::default()
        .web("default", "web", &["10.0.0.1"])
        .ingress(
            ing("", "i")
                .prefix("a.com", "/api", "nope", 80)
                .prefix("a.com", "/web", "web", 8080)
                .prefix("", "/x", "nope", 80),
        )
        .build();
    let messages: Vec<&str> = built
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "service \"default/nope\" not found (referenced by rule host \"a.com\" path \"/api\"); \
             requests there are answered 503 until it exists",
            "service \"default/nope\" not found (referenced by the rule for all hosts, path \"/x\"); \
             requests there are answered 503 until it exists",
            "service \"default/web\" has no port 8080 (referenced by rule host \"a.com\" path \
             \"/web\"); its ports are 80 (\"http\"); requests there are answered 503 until the \
             Ingress or the Service is fixed",
        ]
    );
    assert_eq!(built.diagnostics[0].object.namespace, "default");
    assert_eq!(
        built.diagnostics[0].to_string().split(':').next(),
        Some("Ingress default/i")
    );
}

#[test]
fn identical_diagnostics_are_reported_once() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "i")
                .prefix("bad_host", "/a", "web", 80)
                .rule_without_http("bad_host")
                .prefix("a.com", "/", "web", 80),
        )
        .build();
    assert_eq!(reasons(&built), [("i".into(), Reason::InvalidHost)]);
    assert!(built.table.route("a.com", "/").is_some());
}

#[test]
fn invalid_rules_are_skipped_and_the_rest_of_the_ingress_routes() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "i")
                .prefix("1.2.3.4", "/", "web", 80)
                .prefix("a.com", "/ok", "web", 80)
                .prefix("a.com", "/bad//path", "web", 80)
                .path("a.com", Some("/res"), "Prefix", resource_backend())
                .prefix("*.b.com", "/", "web", 80),
        )
        .build();
    assert_eq!(
        reasons(&built),
        [
            ("i".into(), Reason::InvalidHost),
            ("i".into(), Reason::InvalidPath),
            ("i".into(), Reason::UnsupportedBackend),
        ]
    );
    assert_eq!(served_by(&built, "a.com", "/ok/x").as_deref(), Some("i"));
    assert_eq!(served_by(&built, "x.b.com", "/").as_deref(), Some("i"));
    assert_eq!(served_by(&built, "a.com", "/res"), None);
    assert_eq!(served_by(&built, "1.2.3.4", "/"), None);
    assert_eq!(built.table.route_count(), 2);
}

#[test]
fn path_types_and_missing_paths() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "i")
                .path("a.com", None, "Prefix", backend("web", 80))
                .path("a.com", Some("/exact"), "Exact", backend("web", 80))
                .path(
                    "a.com",
                    Some("/impl/"),
                    "ImplementationSpecific",
                    backend("web", 80),
                )
                .path("b.com", Some("/untyped"), "", backend("web", 80))
                .prefix("UPPER.Example.COM", "/", "web", 80),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    assert_eq!(built.table.route_count(), 5);
    assert!(built.table.route("a.com", "/anything").is_some());
    assert!(built.table.route("b.com", "/untyped/sub").is_some());
    assert!(built.table.route("b.com", "/other").is_none());
    assert!(built.table.route("upper.example.com", "/").is_some());
}

#[test]
fn the_oldest_ingress_wins_a_conflict() {
    let world = || {
        World::default()
            .web("d", "old-svc", &["10.0.0.1"])
            .web("d", "new-svc", &["10.0.0.2"])
            .ingress(
                ing("d", "zz-old")
                    .created(100)
                    .prefix("a.com", "/api", "old-svc", 80),
            )
            .ingress(
                ing("d", "aa-new")
                    .created(200)
                    .prefix("a.com", "/api/", "new-svc", 80),
            )
            .ingress(ing("d", "no-time").prefix("a.com", "/api", "new-svc", 80))
    };
    let mut input = world().input();
    for _ in 0..2 {
        let built = build(&input, &BuildConfig::default());
        assert_eq!(
            served_by(&built, "a.com", "/api").as_deref(),
            Some("zz-old")
        );
        assert_eq!(
            reasons(&built),
            [
                ("aa-new".into(), Reason::RouteConflict),
                ("no-time".into(), Reason::RouteConflict)
            ]
        );
        let message = &built.diagnostics[0].message;
        assert!(message.contains("\"d/zz-old\""), "{message}");
        assert!(message.contains("older"), "{message}");
        assert_eq!(names(&built), ["d/aa-new", "d/no-time", "d/zz-old"]);
        input.ingresses.reverse();
    }
}

#[test]
fn equal_creation_times_are_broken_by_namespace_then_name() {
    let built = World::default()
        .web("a", "web", &["10.0.0.1"])
        .web("b", "web", &["10.0.0.2"])
        .ingress(ing("b", "a").created(5).prefix("x.com", "/", "web", 80))
        .ingress(ing("a", "z").created(5).prefix("x.com", "/", "web", 80))
        .ingress(ing("a", "y").created(5).prefix("x.com", "/", "web", 80))
        .build();
    assert_eq!(
        served(&built, "x.com", "/"),
        Some(("y".into(), "web".into(), vec!["10.0.0.1:8080".into()]))
    );
    assert_eq!(
        reasons(&built),
        // Sorted by object: a/z before b/a.
        [
            ("z".into(), Reason::RouteConflict),
            ("a".into(), Reason::RouteConflict)
        ]
    );
    assert!(
        built.diagnostics[0]
            .message
            .contains("created at the same time")
    );

    // Two Ingresses without creation time: the same rule.
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "b").prefix("x.com", "/", "web", 80))
        .ingress(ing("d", "a").prefix("x.com", "/", "web", 80))
        .build();
    assert_eq!(served_by(&built, "x.com", "/").as_deref(), Some("a"));
}

#[test]
fn a_path_defined_twice_in_one_ingress_is_reported() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "other", &["10.0.0.2"])
        .ingress(
            ing("d", "i")
                .prefix("a.com", "/x", "web", 80)
                .prefix("a.com", "/x/", "other", 80)
                .exact("a.com", "/x", "other", 80),
        )
        .build();
    assert_eq!(reasons(&built), [("i".into(), Reason::RouteConflict)]);
    assert!(built.diagnostics[0].message.contains("defined twice"));
    assert_eq!(served(&built, "a.com", "/x/y").unwrap().1, "web");
    assert_eq!(served(&built, "a.com", "/x").unwrap().1, "other");
}

#[test]
fn a_rule_less_ingress_catches_every_host_no_rule_names() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "fallback", &["10.0.0.9"])
        .ingress(ing("d", "catch-all").default_backend(backend("fallback", 80)))
        .ingress(ing("d", "app").prefix("a.com", "/api", "web", 80))
        .build();
    assert_eq!(built.diagnostics, []);
    assert_eq!(served_by(&built, "a.com", "/api").as_deref(), Some("app"));
    // Another tenant's catch-all never serves the unmatched paths of a host with rules
    // (ingress-nginx: only the catch-all server's root).
    assert_eq!(served_by(&built, "a.com", "/other"), None);
    assert_eq!(
        served_by(&built, "unknown.com", "/").as_deref(),
        Some("catch-all")
    );
    assert_eq!(eps(&built, "unknown.com", "/"), ["10.0.0.9:8080"]);
}

#[test]
fn default_backend_of_an_ingress_with_rules_serves_its_hosts() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "app-default", &["10.0.0.5"])
        .web("d", "other-default", &["10.0.0.6"])
        .ingress(
            ing("d", "app")
                .created(1)
                .prefix("a.com", "/api", "web", 80)
                .rule_without_http("b.com")
                .default_backend(backend("app-default", 80)),
        )
        .ingress(
            ing("d", "other")
                .created(2)
                .prefix("a.com", "/other", "web", 80)
                .default_backend(backend("other-default", 80)),
        )
        .build();
    assert_eq!(
        served(&built, "a.com", "/nothing").unwrap().1,
        "app-default"
    );
    assert_eq!(served(&built, "b.com", "/").unwrap().1, "app-default");
    // An Ingress with rules never becomes the catch-all of hosts it does not name.
    assert_eq!(served(&built, "c.com", "/"), None);
    // "other" loses host a.com's fallback to the older "app" (reported); losing the catch-all
    // is not reported for Ingresses with rules.
    assert_eq!(
        reasons(&built),
        [("other".into(), Reason::DefaultBackendConflict)]
    );
    assert!(built.diagnostics[0].message.contains("\"a.com\""));
}

#[test]
fn rules_without_host_get_no_fallback_of_their_own() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "b-default", &["10.0.0.2"])
        .web("d", "a-default", &["10.0.0.3"])
        .ingress(
            ing("d", "b")
                .created(1)
                .prefix("", "/api", "web", 80)
                .prefix("b.com", "/api", "web", 80)
                .default_backend(backend("b-default", 80)),
        )
        .ingress(
            ing("d", "a")
                .created(2)
                .default_backend(backend("a-default", 80)),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    assert_eq!(served(&built, "x.com", "/api").unwrap().1, "web");
    // The Ingress without rules is the catch-all, also for hosts matched by rules without host.
    assert_eq!(served(&built, "x.com", "/other").unwrap().1, "a-default");
    // Hosts "b" names keep b's defaultBackend.
    assert_eq!(served(&built, "b.com", "/other").unwrap().1, "b-default");
}

#[test]
fn catch_all_prefers_ingresses_without_rules_then_the_oldest() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "oldest-with-rules")
                .created(1)
                .prefix("a.com", "/", "web", 80)
                .default_backend(backend("web", 80)),
        )
        .ingress(
            ing("d", "newer")
                .created(3)
                .default_backend(backend("web", 80)),
        )
        .ingress(
            ing("d", "older")
                .created(2)
                .default_backend(backend("web", 80)),
        )
        .ingress(ing("d", "untimed").default_backend(backend("web", 80)))
        .build();
    assert_eq!(served_by(&built, "x.com", "/").as_deref(), Some("older"));
    assert_eq!(
        reasons(&built),
        [
            ("newer".into(), Reason::DefaultBackendConflict),
            ("untimed".into(), Reason::DefaultBackendConflict),
        ]
    );
    assert!(built.diagnostics[0].message.contains("\"d/older\""));
}

#[test]
fn odd_objects_never_panic() {
    let mut no_spec_service = service("d", "bare", &[]);
    no_spec_service.spec = None;
    let mut weird_slice = endpoint_slice("d", "s", "web", &[(Some("http"), 0)], &[(&[], None)]);
    weird_slice.ports.as_mut().unwrap().push(Default::default());
    let mut unlabeled = endpoint_slice("d", "u", "web", &[], &[]);
    unlabeled.metadata.labels = None;
    let mut nameless = ing("d", "x").prefix("a.com", "/", "web", 80).build();
    nameless.metadata.name = None;
    let built = World::default()
        .service(service("d", "web", &[(Some("http"), 80, 8080)]))
        .service(no_spec_service)
        .slice(weird_slice)
        .slice(unlabeled)
        .endpoints(Endpoints::default())
        .ingress(ingress("d", "no-spec").legacy_class("weir").without_spec())
        .ingress(ing("d", "bare").prefix("b.com", "/", "bare", 80))
        .ingress(ing("d", "big-port").prefix("c.com", "/", "web", 70000))
        .ingress(ing("d", "no-port").path(
            "e.com",
            Some("/"),
            "Prefix",
            k8s_openapi::api::networking::v1::IngressBackend {
                service: Some(k8s_openapi::api::networking::v1::IngressServiceBackend {
                    name: "web".into(),
                    port: None,
                }),
                resource: None,
            },
        ))
        .ingress(ing("d", "empty-backend").path("f.com", Some("/"), "Prefix", Default::default()))
        .ingress(ing("d", "empty-host").path("", Some(""), "", backend("web", "http")))
        .build();
    let mut input = World::default().input();
    input.ingresses.push(Arc::new(nameless));
    let _ = build(&input, &BuildConfig::default());
    assert_eq!(
        reasons(&built),
        [
            ("bare".into(), Reason::ServicePortNotFound),
            ("big-port".into(), Reason::ServicePortNotFound),
            ("empty-backend".into(), Reason::UnsupportedBackend),
            ("empty-host".into(), Reason::NoReadyEndpoints),
            ("no-port".into(), Reason::ServicePortNotFound),
        ]
    );
    assert!(built.table.route("anything.com", "/").is_some());
    assert_eq!(built.ingresses.len(), 6);
}

#[test]
fn duplicate_objects_do_not_make_the_result_order_dependent() {
    let (svc_a, slice) = web("d", "web", &["10.0.0.1"]);
    let svc_b = service("d", "web", &[(Some("other"), 80, 8080)]);
    let ing_a = ing("d", "i").prefix("a.com", "/", "web", 80).build();
    let ing_b = ing("d", "i").prefix("b.com", "/", "web", 80).build();
    let make = |services: Vec<Service>, ingresses: Vec<Ingress>| Input {
        services: shared(services),
        ingresses: shared(ingresses),
        endpoint_slices: shared([slice.clone()]),
        ..Input::default()
    };
    let one = build(
        &make(
            vec![svc_a.clone(), svc_b.clone()],
            vec![ing_a.clone(), ing_b.clone()],
        ),
        &BuildConfig::default(),
    );
    let two = build(
        &make(vec![svc_b, svc_a], vec![ing_b, ing_a]),
        &BuildConfig::default(),
    );
    assert_eq!(one.table, two.table);
    assert_eq!(one.diagnostics, two.diagnostics);
    assert_eq!(one.ingresses, two.ingresses);
    assert_eq!(one.ingresses.len(), 1);
}

/// A small deterministic PRNG (SplitMix64) for the shuffle test.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// An input that exercises every step: classes, conflicts, default backends, slices and
/// Endpoints, duplicates and diagnostics.
fn rich_world() -> World {
    let mut world = World::default()
        .class(ingress_class("weir", OURS, true))
        .class(ingress_class("nginx", "k8s.io/ingress-nginx", false))
        .web("a", "web", &["10.0.0.1", "10.0.0.2"])
        .web("b", "web", &["10.0.1.1"])
        .slice(endpoint_slice(
            "a",
            "web-more",
            "web",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.3"], None)],
        ))
        .service(service("a", "legacy", &[(None, 80, 9000)]))
        .endpoints(endpoints(
            "a",
            "legacy",
            &["10.0.2.1", "10.0.2.2"],
            &["10.0.2.3"],
            &[(None, 9000)],
        ))
        .service(external_service("a", "ext"))
        .service(service("a", "web", &[(Some("dup"), 80, 8080)]));
    for i in 0..12 {
        let ns = if i % 2 == 0 { "a" } else { "b" };
        let mut b = ing(ns, &format!("ing-{i}"))
            .prefix("shared.com", "/", "web", 80)
            .prefix(&format!("h{}.com", i % 3), "/api", "web", "http")
            .exact("*.wild.com", "/x", "legacy", 80)
            .prefix("", &format!("/p{}", i % 4), "missing", 80);
        if i % 3 != 0 {
            b = b.created(i64::from(i % 5));
        }
        if i % 4 == 1 {
            b = b.default_backend(backend("web", 80));
        }
        if i % 5 == 2 {
            b = b.annotation("nginx.ingress.kubernetes.io/ssl-ciphers", "HIGH");
        }
        // Regex hosts, host settings and their conflicts.
        if i % 7 == 3 {
            b = b.annotation(USE_REGEX, "true");
        }
        if i % 6 == 1 {
            b = b
                .annotation(
                    "nginx.ingress.kubernetes.io/server-alias",
                    &format!("alias{}.com", i % 4),
                )
                .annotation("nginx.ingress.kubernetes.io/app-root", &format!("/root{i}"));
        }
        if i % 4 == 2 {
            b = b.annotation("nginx.ingress.kubernetes.io/from-to-www-redirect", "true");
        }
        world = world.ingress(b);
    }
    world
        .ingress(
            ing("a", "catch-1")
                .created(3)
                .default_backend(backend("legacy", 80)),
        )
        .ingress(
            ing("b", "catch-2")
                .created(3)
                .default_backend(backend("ext", 80)),
        )
        .ingress(ing("a", "catch-3").default_backend(backend("web", "http")))
        .ingress(ingress("a", "classless").prefix("shared.com", "/", "web", 80))
        .ingress(
            ingress("a", "foreign")
                .class("nginx")
                .prefix("shared.com", "/", "web", 80),
        )
        .ingress(
            ing("a", "bad")
                .prefix("bad_host", "/", "web", 80)
                .prefix("ok.com", "x", "web", 80),
        )
}

#[test]
fn shuffling_the_input_does_not_change_the_output() {
    let reference = rich_world().build();
    assert_eq!(reference.table.route_count(), 9);
    assert!(reference.diagnostics.len() > 10);
    let reference_reasons: std::collections::BTreeSet<Reason> =
        reference.diagnostics.iter().map(|d| d.reason).collect();
    assert_eq!(reference_reasons.len(), 9, "{reference_reasons:?}");
    for seed in 0..200 {
        let mut rng = SplitMix(seed);
        let mut input = rich_world().input();
        rng.shuffle(&mut input.ingresses);
        rng.shuffle(&mut input.ingress_classes);
        rng.shuffle(&mut input.services);
        rng.shuffle(&mut input.endpoint_slices);
        rng.shuffle(&mut input.endpoints);
        let built = build(&input, &BuildConfig::default());
        assert_eq!(built.table, reference.table, "seed {seed}");
        assert_eq!(built.diagnostics, reference.diagnostics, "seed {seed}");
        assert_eq!(built.ingresses, reference.ingresses, "seed {seed}");
    }
}

#[test]
fn tls_hosts_bind_to_the_secret_of_the_oldest_ingress() {
    let ingress = |name: &str,
                   created: &str,
                   secret: &str,
                   hosts: &[&str]|
     -> k8s_openapi::api::networking::v1::Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"ingressClassName": "weir", "tls": [{"hosts": hosts, "secretName": secret}]}
        }))
        .unwrap()
    };
    let input = crate::model::Input {
        ingresses: shared([
            ingress(
                "newer",
                "2026-01-02T00:00:00Z",
                "b-cert",
                &["A.example.com", "*.wild.example.com"],
            ),
            ingress(
                "older",
                "2026-01-01T00:00:00Z",
                "a-cert",
                &["a.example.com", "bad host"],
            ),
        ]),
        ..Default::default()
    };
    let built = crate::model::build(&input, &crate::model::BuildConfig::default());
    let bound: Vec<(&str, &str)> = built
        .tls
        .iter()
        .map(|b| (b.host.as_str(), b.secret.name.as_str()))
        .collect();
    assert_eq!(
        bound,
        [
            ("*.wild.example.com", "b-cert"),
            ("a.example.com", "a-cert")
        ]
    );
    let reasons: Vec<(&str, crate::model::Reason)> = built
        .diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.reason))
        .collect();
    assert!(
        reasons.contains(&("newer", crate::model::Reason::TlsConflict)),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("older", crate::model::Reason::InvalidHost)),
        "{reasons:?}"
    );
}

#[test]
fn routes_of_tls_hosts_redirect_unless_told_otherwise() {
    let ingress = |name: &str, annotations: serde_json::Value| -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {
                "ingressClassName": "weir",
                "tls": [{"hosts": [format!("{name}.tls.test")]}],
                "rules": [
                    {"host": format!("{name}.tls.test"), "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}},
                    {"host": format!("{name}.plain.test"), "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}
                ]
            }
        }))
        .unwrap()
    };
    let input = Input {
        ingresses: shared([
            ingress("default", serde_json::json!({})),
            ingress(
                "optout",
                serde_json::json!({"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
            ),
            ingress(
                "forced",
                serde_json::json!({"weir.dev/force-ssl-redirect": "true"}),
            ),
        ]),
        ..Default::default()
    };
    let built = build(&input, &BuildConfig::default());
    let policy = |host: &str| {
        let https = &built.table.route(host, "/").unwrap().https;
        (https.tls_host, https.redirect)
    };
    let p = |tls_host, redirect| (tls_host, redirect);
    assert_eq!(policy("default.tls.test"), p(true, true));
    assert_eq!(policy("default.plain.test"), p(false, false));
    assert_eq!(policy("optout.tls.test"), p(true, false));
    assert_eq!(policy("forced.plain.test"), p(false, true));
    assert_eq!(policy("forced.tls.test"), p(true, true));
}

#[test]
fn proxy_read_timeout_reaches_every_route_of_its_ingress() {
    use std::time::Duration;
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "fallback", &["10.0.0.9"])
        .ingress(
            ing("d", "slow")
                .created(1)
                .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600")
                .prefix("a.com", "/", "web", 80)
                .exact("a.com", "/exact", "web", 80)
                .prefix("*.wild.com", "/ws", "web", 80)
                .prefix("", "/any", "web", 80)
                .default_backend(backend("fallback", 80)),
        )
        .ingress(
            ing("d", "both")
                .created(2)
                .annotation("weir.dev/proxy-read-timeout", " 30 ")
                .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600")
                .prefix("b.com", "/", "web", 80),
        )
        .ingress(ing("d", "plain").created(3).prefix("c.com", "/", "web", 80))
        .build();
    assert_eq!(built.diagnostics, []);
    let timeout = |host: &str, path: &str| {
        let route = built.table.route(host, path).unwrap();
        (route.ingress.name.clone(), route.policy.timeouts.read)
    };
    let hour = Duration::from_secs(3600);
    for (host, path) in [
        ("a.com", "/"),
        ("a.com", "/exact"),
        ("x.wild.com", "/ws/chat"),
        ("nowhere.com", "/any"),
        // The defaultBackend, as the fallback of the Ingress's hosts.
        ("x.wild.com", "/other"),
        ("a.com", "/other"),
    ] {
        assert_eq!(timeout(host, path), ("slow".into(), hour), "{host}{path}");
    }
    assert_eq!(
        timeout("b.com", "/"),
        ("both".into(), Duration::from_secs(30)),
        "weir's own annotation wins"
    );
    assert_eq!(
        timeout("c.com", "/"),
        ("plain".into(), Duration::from_secs(60))
    );
}

#[test]
fn an_invalid_proxy_read_timeout_is_reported_once_and_the_ingress_still_serves() {
    use std::time::Duration;
    for bad in ["abc", "0", "-1", "604801", "60s", ""] {
        let built = World::default()
            .web("d", "web", &["10.0.0.1"])
            .ingress(
                ing("d", "i")
                    .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", bad)
                    .prefix("a.com", "/", "web", 80)
                    .prefix("b.com", "/", "web", 80)
                    .default_backend(backend("web", 80)),
            )
            .build();
        assert_eq!(
            reasons(&built),
            [("i".into(), Reason::InvalidAnnotationValue)],
            "{bad:?}"
        );
        assert!(
            built.diagnostics[0]
                .message
                .contains("nginx.ingress.kubernetes.io/proxy-read-timeout"),
            "{}",
            built.diagnostics[0].message
        );
        for host in ["a.com", "b.com"] {
            let route = built.table.route(host, "/").unwrap();
            assert_eq!(
                route.policy.timeouts.read,
                Duration::from_secs(60),
                "{bad:?} {host}"
            );
            assert_eq!(eps(&built, host, "/"), ["10.0.0.1:8080"], "{bad:?} {host}");
        }
    }
}

// ingress-nginx's path behaviours and the annotations that change routing.

/// The route serving a request, for looking at its policy.
fn route_of(built: &Built, host: &str, path: &str) -> Arc<crate::model::Route> {
    built
        .table
        .route(host, path)
        .unwrap_or_else(|| panic!("no route for {host}{path}"))
        .clone()
}

const USE_REGEX: &str = "nginx.ingress.kubernetes.io/use-regex";
const REWRITE: &str = "nginx.ingress.kubernetes.io/rewrite-target";

#[test]
fn regex_paths_behave_as_in_ingress_nginx() {
    // The blog post "Before You Migrate: Five Surprising Ingress-NGINX Behaviors", 1–3.
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "regex")
                .created(1)
                .annotation(USE_REGEX, "true")
                .path(
                    "regex.test",
                    Some("/[A-Z]{3}"),
                    "ImplementationSpecific",
                    backend("web", 80),
                ),
        )
        .ingress(
            ing("d", "typo")
                .created(2)
                .exact("regex.test", "/Header", "web", 80),
        )
        .ingress(
            ing("d", "rewrite")
                .created(3)
                .annotation(REWRITE, "/uuid")
                .exact("rewrite.test", "/IP", "web", 80),
        )
        .ingress(
            ing("d", "other")
                .created(4)
                .exact("rewrite.test", "/Header", "web", 80),
        )
        .ingress(
            ing("d", "plain")
                .created(5)
                .exact("plain.test", "/Header", "web", 80),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    // 1. Case-insensitive and a prefix match.
    assert_eq!(
        served_by(&built, "regex.test", "/uuid").as_deref(),
        Some("regex")
    );
    // 2. use-regex on one Ingress makes every path of the host a regex, Exact ones too.
    assert_eq!(
        served_by(&built, "regex.test", "/headers").as_deref(),
        Some("regex"),
        "longest path string first: /[A-Z]{{3}} before /Header"
    );
    assert_eq!(
        served_by(&built, "regex.test", "/Header").as_deref(),
        Some("regex")
    );
    // 3. rewrite-target alone does the same.
    assert_eq!(
        served_by(&built, "rewrite.test", "/ip").as_deref(),
        Some("rewrite")
    );
    assert_eq!(
        served_by(&built, "rewrite.test", "/headers").as_deref(),
        Some("other")
    );
    let rewrite = route_of(&built, "rewrite.test", "/ip");
    assert_eq!(
        rewrite.policy.rewrite.target.as_ref().unwrap().as_str(),
        "/uuid"
    );
    assert!(rewrite.regex.is_some());
    // A host without either keeps the Ingress specification's matching.
    assert_eq!(served_by(&built, "plain.test", "/headers"), None);
    assert_eq!(
        served_by(&built, "plain.test", "/Header").as_deref(),
        Some("plain")
    );
}

#[test]
fn a_rewrite_target_equal_to_its_path_neither_rewrites_nor_makes_regexes() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "same")
                .annotation(REWRITE, "/app")
                .annotation("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/app")
                .prefix("same.test", "/app", "web", 80)
                .prefix("mixed.test", "/app", "web", 80)
                .prefix("mixed.test", "/other(/|$)(.*)", "web", 80),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    let same = route_of(&built, "same.test", "/app/x");
    assert!(same.regex.is_none() && same.policy.rewrite.target.is_none());
    assert!(same.policy.rewrite.forwarded_prefix.is_none());
    assert_eq!(
        served_by(&built, "same.test", "/APP"),
        None,
        "still case-sensitive"
    );
    // On a host that is a regex host because of another path, the path equal to the target
    // is matched as a regex but not rewritten.
    let app = route_of(&built, "mixed.test", "/APP");
    assert!(app.regex.is_some() && app.policy.rewrite.target.is_none());
    let other = route_of(&built, "mixed.test", "/other/x");
    assert_eq!(
        other.policy.rewrite.target.as_ref().unwrap().as_str(),
        "/app"
    );
}

#[test]
fn a_regex_that_does_not_compile_drops_only_its_path() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "i")
                .annotation(USE_REGEX, "true")
                .annotation(REWRITE, "/$3")
                .path(
                    "r.test",
                    Some("/(?=look)"),
                    "ImplementationSpecific",
                    backend("web", 80),
                )
                .path(
                    "r.test",
                    Some("/ok/(.*)"),
                    "ImplementationSpecific",
                    backend("web", 80),
                ),
        )
        .build();
    let got = reasons(&built);
    assert_eq!(
        got,
        [
            ("i".into(), Reason::InvalidPath),
            ("i".into(), Reason::InvalidAnnotationValue)
        ],
        "{:#?}",
        built.diagnostics
    );
    let messages: Vec<&str> = built
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("lookaround")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("$3") && m.contains("1 capture group")),
        "{messages:?}"
    );
    assert_eq!(served_by(&built, "r.test", "/ok/x").as_deref(), Some("i"));
    assert_eq!(served_by(&built, "r.test", "/look"), None);
}

#[test]
fn host_settings_come_from_the_oldest_ingress_that_sets_them() {
    let www = "nginx.ingress.kubernetes.io/from-to-www-redirect";
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "other", &["10.0.0.2"])
        .ingress(
            ing("d", "first")
                .created(1)
                .annotation("nginx.ingress.kubernetes.io/app-root", "/app1")
                .annotation(
                    "nginx.ingress.kubernetes.io/server-alias",
                    "alias.test, *.wild.test, taken.test",
                )
                .annotation(www, "true")
                .prefix("site.test", "/", "web", 80),
        )
        .ingress(
            ing("d", "both")
                .created(3)
                .annotation(www, "true")
                .prefix("www.both.test", "/", "web", 80)
                .prefix("both.test", "/", "web", 80),
        )
        .ingress(
            ing("d", "second")
                .created(2)
                .annotation("nginx.ingress.kubernetes.io/app-root", "/app2")
                .annotation("nginx.ingress.kubernetes.io/server-alias", "late.test")
                .prefix("site.test", "/api", "other", 80)
                .prefix("taken.test", "/", "other", 80),
        )
        .build();
    let settings = |host: &str| built.table.lookup(host, "/").host.cloned();
    assert_eq!(settings("site.test").unwrap().app_root.unwrap(), "/app1");
    assert_eq!(
        served_by(&built, "alias.test", "/api").as_deref(),
        Some("second"),
        "an alias serves every route of its host"
    );
    assert_eq!(
        served_by(&built, "x.wild.test", "/").as_deref(),
        Some("first")
    );
    assert_eq!(
        served_by(&built, "taken.test", "/").as_deref(),
        Some("second"),
        "a host with rules is never an alias"
    );
    // "second" cannot set site.test's aliases (the oldest Ingress did) but is the first to set
    // taken.test's.
    assert_eq!(
        served_by(&built, "late.test", "/").as_deref(),
        Some("second")
    );
    assert_eq!(
        settings("late.test").unwrap().app_root.unwrap(),
        "/app2",
        "taken.test's settings, not site.test's"
    );
    let www = settings("www.site.test").unwrap().redirect_to.unwrap();
    assert_eq!((www.host.as_str(), www.code.as_u16()), ("site.test", 308));
    assert!(
        settings("www.www.both.test").is_none()
            && settings("both.test").is_none_or(|s| s.redirect_to.is_none())
    );
    let conflicts: Vec<&str> = built
        .diagnostics
        .iter()
        .filter(|d| d.reason == Reason::HostSettingConflict)
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(conflicts.len(), 5, "{conflicts:#?}");
    for needle in [
        "app-root",
        "\"taken.test\" has rules",
        "aliases of that host",
        "\"both.test\" is served",
        "\"www.both.test\" is served",
    ] {
        assert!(
            conflicts.iter().any(|m| m.contains(needle)),
            "{needle}: {conflicts:#?}"
        );
    }
}

#[test]
fn the_controller_default_backend_serves_what_nothing_else_does() {
    use crate::model::{ObjectKind, ObjectRef};
    let world = || {
        World::default()
            .web("d", "web", &["10.0.0.1"])
            .web("ingress", "errors", &["10.0.0.9"])
            .ingress(ing("d", "app").prefix("a.test", "/api", "web", 80))
    };
    let config = |name: &str| BuildConfig {
        default_backend_service: Some(ObjectRef::new(ObjectKind::Service, "ingress", name)),
        ..BuildConfig::default()
    };
    let built = build(&world().input(), &config("errors"));
    assert_eq!(built.diagnostics, []);
    assert_eq!(eps(&built, "a.test", "/other"), ["10.0.0.9:8080"]);
    assert_eq!(eps(&built, "unknown.test", "/"), ["10.0.0.9:8080"]);
    assert_eq!(eps(&built, "a.test", "/api"), ["10.0.0.1:8080"]);
    let missing = build(&world().input(), &config("missing"));
    assert_eq!(
        reasons(&missing),
        [("missing".into(), Reason::DefaultBackendNotUsable)]
    );
    assert_eq!(
        served_by(&missing, "unknown.test", "/"),
        None,
        "weir's 404 instead"
    );
}

#[test]
fn the_configmap_sets_defaults_and_annotations_win() {
    use crate::model::fixtures::config_map;
    use crate::model::{ObjectKind, ObjectRef};
    use std::time::Duration;
    let mut input = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "plain").prefix("a.test", "/", "web", 80))
        .ingress(
            ing("d", "own")
                .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "5")
                .prefix("b.test", "/", "web", 80),
        )
        .input();
    input.config_maps = shared([config_map(
        "ingress",
        "weir",
        &[
            ("proxy-read-timeout", "300"),
            ("proxy-body-size", "8m"),
            ("server-snippet", "x"),
        ],
    )]);
    let config = BuildConfig {
        config_map: Some(ObjectRef::new(ObjectKind::ConfigMap, "ingress", "weir")),
        ..BuildConfig::default()
    };
    let built = build(&input, &config);
    assert_eq!(
        reasons(&built),
        [("weir".into(), Reason::UnsupportedConfigMapKey)]
    );
    let plain = route_of(&built, "a.test", "/");
    assert_eq!(plain.policy.timeouts.read, Duration::from_secs(300));
    assert_eq!(plain.policy.max_body_size, Some(8 << 20));
    assert_eq!(
        route_of(&built, "b.test", "/").policy.timeouts.read,
        Duration::from_secs(5)
    );
}

#[test]
fn an_invalid_access_annotation_makes_every_route_of_its_ingress_refuse() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "bad")
                .annotation(
                    "nginx.ingress.kubernetes.io/permanent-redirect",
                    "not a url",
                )
                .prefix("a.test", "/", "web", 80)
                .prefix("b.test", "/x", "web", 80)
                .default_backend(backend("web", 80)),
        )
        .ingress(ing("d", "good").prefix("c.test", "/", "web", 80))
        .build();
    assert_eq!(
        reasons(&built),
        [("bad".into(), Reason::InvalidAnnotationValue)]
    );
    for (host, path) in [("a.test", "/"), ("b.test", "/x"), ("b.test", "/other")] {
        assert!(
            route_of(&built, host, path).policy.refused.is_some(),
            "{host}{path}"
        );
    }
    assert!(route_of(&built, "c.test", "/").policy.refused.is_none());
}

#[test]
fn objects_nothing_references_never_change_a_build() {
    use crate::model::fixtures::config_map;
    use crate::model::references;
    let reference = rich_world().build();
    let full = rich_world().input();
    // Everything any Ingress references (whatever its class), and nothing else.
    let mut wanted = std::collections::BTreeSet::new();
    for ingress in &full.ingresses {
        let refs = references(ingress);
        for o in refs
            .services
            .iter()
            .chain(&refs.secrets)
            .chain(&refs.config_maps)
        {
            wanted.insert((o.namespace.clone(), o.name.clone()));
        }
    }
    let key = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (
            meta.namespace.clone().unwrap_or_else(|| "default".into()),
            meta.name.clone().unwrap_or_default(),
        )
    };
    let service_of = |slice: &EndpointSlice| {
        let ns = slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned();
        (ns, svc.unwrap_or_default())
    };
    let mut only = full.clone();
    only.services.retain(|s| wanted.contains(&key(&s.metadata)));
    only.endpoints
        .retain(|e| wanted.contains(&key(&e.metadata)));
    only.endpoint_slices
        .retain(|s| wanted.contains(&service_of(s)));
    let mut more = full.clone();
    let (svc, slice) = web("a", "unreferenced", &["10.9.9.9"]);
    more.services.push(Arc::new(svc));
    more.endpoint_slices.push(Arc::new(slice));
    more.config_maps
        .push(Arc::new(config_map("a", "unreferenced", &[("k", "v")])));
    for (what, input) in [("only referenced objects", only), ("more objects", more)] {
        let built = build(&input, &BuildConfig::default());
        assert_eq!(built.table, reference.table, "{what}");
        assert_eq!(built.diagnostics, reference.diagnostics, "{what}");
    }
}

#[test]
fn a_host_rules_name_never_falls_to_another_ingress_s_catch_all() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "other", &["10.0.0.2"])
        .ingress(
            ing("t", "catch-all")
                .created(1)
                .default_backend(backend("other", 80)),
        )
        .ingress(
            ing("d", "broken")
                .created(2)
                .path("a.com", Some("/x"), "Bogus", backend("web", 80))
                .path("b.com", Some("/r"), "Prefix", resource_backend())
                .rule_without_http("c.com"),
        )
        .build();
    for host in ["a.com", "b.com", "c.com"] {
        assert_eq!(served_by(&built, host, "/x"), None, "{host}");
    }
    assert_eq!(
        served_by(&built, "d.com", "/").as_deref(),
        Some("catch-all")
    );
}

#[test]
fn a_failing_closed_ingress_keeps_its_unusable_paths_refusing() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "public")
                .created(1)
                .prefix("a.com", "/", "web", 80),
        )
        .ingress(
            ing("d", "admin")
                .created(2)
                .annotation("nginx.ingress.kubernetes.io/auth-url", "not a url")
                .annotation(USE_REGEX, "true")
                .path(
                    "a.com",
                    Some("/admin(?!/public)"),
                    "ImplementationSpecific",
                    backend("web", 80),
                )
                .path("a.com", Some("/ops"), "Bogus", backend("web", 80))
                .path("a.com", Some("/bucket"), "Prefix", resource_backend()),
        )
        .build();
    for path in ["/admin(?!/public)/secret", "/ops/x", "/bucket"] {
        let route = route_of(&built, "a.com", path);
        assert_eq!(route.ingress.name, "admin", "{path}");
        assert!(route.policy.refused.is_some(), "{path}");
    }
    assert_eq!(
        served_by(&built, "a.com", "/other").as_deref(),
        Some("public")
    );
    assert!(
        built
            .diagnostics
            .iter()
            .any(|d| d.message.contains("matched literally and answers 503")),
        "{:#?}",
        built.diagnostics
    );
}

#[test]
fn rule_paths_are_normalised_like_request_paths() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(
            ing("d", "odd")
                .path(
                    "a.com",
                    Some("/a//b"),
                    "ImplementationSpecific",
                    backend("web", 80),
                )
                .exact("a.com", "/%7Euser", "web", 80)
                .prefix("a.com", "/caf%c3%a9", "web", 80),
        )
        .build();
    assert_eq!(built.diagnostics, []);
    for path in ["/a/b/c", "/~user", "/caf%C3%A9/x"] {
        assert_eq!(
            served_by(&built, "a.com", path).as_deref(),
            Some("odd"),
            "{path}"
        );
    }
}

const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";

/// The canary Service and endpoints of the route serving `host` `path`, if it has one.
fn canary_of(built: &Built, host: &str, path: &str) -> Option<(String, String, Vec<String>)> {
    let canary = route_of(built, host, path).canary.clone()?;
    let endpoints = canary
        .backend
        .endpoints
        .iter()
        .map(|e| e.to_string())
        .collect();
    Some((
        canary.ingress.name.clone(),
        canary.backend.service.name.clone(),
        endpoints,
    ))
}

#[test]
fn a_canary_adds_a_second_backend_to_its_main_ingress_s_route() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "canary", &["10.0.0.2"])
        .ingress(
            ing("d", "canary")
                .created(1)
                .annotation(CANARY, "true")
                .annotation(CANARY_WEIGHT, "30")
                .prefix("a.com", "/", "canary", 80)
                .prefix("a.com", "/only-canary", "canary", 80),
        )
        .ingress(ing("d", "main").created(2).prefix("a.com", "/", "web", 80))
        .build();
    assert_eq!(
        served_by(&built, "a.com", "/").as_deref(),
        Some("main"),
        "older, but a canary: no RouteConflict"
    );
    assert_eq!(eps(&built, "a.com", "/"), ["10.0.0.1:8080"]);
    assert_eq!(
        canary_of(&built, "a.com", "/"),
        Some((
            "canary".into(),
            "canary".into(),
            vec!["10.0.0.2:8080".into()]
        ))
    );
    let route = route_of(&built, "a.com", "/");
    assert_eq!(route.canary.as_ref().unwrap().rule.weight, 30);
    // A canary path without a main Ingress is not routed, and is reported.
    assert_eq!(
        served_by(&built, "a.com", "/only-canary").as_deref(),
        Some("main")
    );
    assert_eq!(
        reasons(&built),
        [("canary".to_owned(), Reason::CanaryWithoutMain)]
    );
    assert!(
        built.ingresses.iter().any(|i| i.name == "canary"),
        "its status is still written"
    );
}

#[test]
fn a_canary_matches_host_path_and_path_type_and_the_oldest_canary_wins() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .web("d", "c1", &["10.0.0.2"])
        .web("d", "c2", &["10.0.0.3"])
        .ingress(
            ing("d", "main")
                .created(1)
                .prefix("a.com", "/app", "web", 80)
                .exact("a.com", "/exact", "web", 80),
        )
        .ingress(
            ing("d", "c1")
                .created(2)
                .annotation(CANARY, "true")
                .prefix("a.com", "/app", "c1", 80)
                .prefix("a.com", "/exact", "c1", 80)
                .prefix("b.com", "/app", "c1", 80),
        )
        .ingress(
            ing("d", "c2")
                .created(3)
                .annotation(CANARY, "true")
                .prefix("a.com", "/app", "c2", 80),
        )
        .build();
    assert_eq!(canary_of(&built, "a.com", "/app").unwrap().0, "c1");
    assert_eq!(
        canary_of(&built, "a.com", "/exact"),
        None,
        "Prefix is not Exact"
    );
    assert!(built.table.route("b.com", "/app").is_none());
    let mut got = reasons(&built);
    got.sort();
    assert_eq!(
        got,
        [
            ("c1".to_owned(), Reason::CanaryWithoutMain),
            ("c1".to_owned(), Reason::CanaryWithoutMain),
            ("c2".to_owned(), Reason::RouteConflict),
        ]
    );
}

/// Bad input: the canary takes nothing and the main route serves its main backend.
#[test]
fn an_invalid_or_missing_canary_leaves_the_main_backend_serving() {
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "main").created(1).prefix("a.com", "/", "web", 80))
        .ingress(
            ing("d", "bad")
                .created(2)
                .annotation(CANARY, "true")
                .annotation(CANARY_WEIGHT, "lots")
                .prefix("a.com", "/", "web", 80),
        )
        .build();
    assert_eq!(canary_of(&built, "a.com", "/"), None);
    assert_eq!(
        reasons(&built),
        [("bad".to_owned(), Reason::InvalidAnnotationValue)]
    );

    // A canary whose Service does not exist is added without endpoints (the data plane then
    // keeps every request on the main backend), and reported; so is one to the main Service.
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "main").created(1).prefix("a.com", "/", "web", 80))
        .ingress(
            ing("d", "missing")
                .created(2)
                .annotation(CANARY, "true")
                .prefix("a.com", "/", "nowhere", 80),
        )
        .build();
    assert_eq!(
        canary_of(&built, "a.com", "/"),
        Some(("missing".into(), "nowhere".into(), vec![]))
    );
    assert_eq!(
        reasons(&built),
        [("missing".to_owned(), Reason::ServiceNotFound)]
    );
    let built = World::default()
        .web("d", "web", &["10.0.0.1"])
        .ingress(ing("d", "main").created(1).prefix("a.com", "/", "web", 80))
        .ingress(
            ing("d", "same")
                .created(2)
                .annotation(CANARY, "true")
                .prefix("a.com", "/", "web", 80),
        )
        .build();
    assert_eq!(canary_of(&built, "a.com", "/"), None);
    assert_eq!(
        reasons(&built),
        [("same".to_owned(), Reason::CanaryWithoutMain)]
    );
}

#[test]
fn a_tls_host_s_default_backend_redirects_to_https_and_a_catch_all_keeps_no_redirect() {
    use k8s_openapi::api::networking::v1::IngressTLS;
    let mut with_tls = ing("d", "app")
        .created(1)
        .prefix("tls.com", "/api", "web", 80)
        .default_backend(backend("web", 80))
        .build();
    with_tls.spec.as_mut().unwrap().tls = Some(vec![IngressTLS {
        hosts: Some(vec!["tls.com".into()]),
        secret_name: None,
    }]);
    let mut world = World::default().web("d", "web", &["10.0.0.1"]).ingress(
        ing("d", "catch-all")
            .created(2)
            .annotation(
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://moved.test/",
            )
            .annotation(REWRITE, "/elsewhere")
            .default_backend(backend("web", 80)),
    );
    world.ingresses.push(with_tls);
    let built = world.build();
    let fallback = route_of(&built, "tls.com", "/other");
    assert!(fallback.https.tls_host && fallback.https.redirect && fallback.https.hsts.is_some());
    let catch_all = route_of(&built, "unknown.com", "/");
    assert_eq!(catch_all.ingress.name, "catch-all");
    assert!(catch_all.policy.redirect.is_none() && catch_all.policy.rewrite.target.is_none());
}

/// A Service of type ExternalName naming `external_name`, with ports `(name, port, targetPort)`.
fn external_name(
    ns: &str,
    name: &str,
    external_name: &str,
    ports: &[(Option<&str>, i32, i32)],
) -> Service {
    let mut s = service(ns, name, ports);
    let spec = s.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some(external_name.into());
    s
}

#[test]
fn external_name_services_route_to_the_addresses_of_their_names() {
    use crate::model::{ExternalNamePolicy, NameAnswer};
    let world = || {
        World::default()
            .service(external_name(
                "d",
                "db",
                "db.example.com",
                &[(Some("http"), 80, 8080)],
            ))
            .service(external_name("d", "local", "localhost", &[]))
            .ingress(
                ing("d", "i")
                    .prefix("a.com", "/", "db", "http")
                    .prefix("a.com", "/local", "local", 9000),
            )
    };
    let answers = [
        (
            "db.example.com",
            NameAnswer::Addresses(vec!["10.1.0.1".parse().unwrap()]),
        ),
        (
            "localhost",
            NameAnswer::Addresses(vec!["127.0.0.1".parse().unwrap()]),
        ),
    ];
    let input = Input {
        external_names: Arc::new(
            answers
                .into_iter()
                .map(|(name, answer)| (name.to_owned(), answer))
                .collect(),
        ),
        ..world().input()
    };
    let built = build(&input, &BuildConfig::default());
    assert_eq!(eps(&built, "a.com", "/"), ["10.1.0.1:8080"]);
    assert_eq!(eps(&built, "a.com", "/local"), Vec::<String>::new());
    assert_eq!(reasons(&built), [("i".into(), Reason::ExternalNameRefused)]);
    assert!(
        built.diagnostics[0]
            .message
            .contains("--allow-external-name-local-addresses"),
        "{}",
        built.diagnostics[0].message
    );

    let allow = BuildConfig {
        external_names: ExternalNamePolicy {
            allow_local_addresses: true,
            ..ExternalNamePolicy::default()
        },
        ..BuildConfig::default()
    };
    let built = build(&input, &allow);
    assert_eq!(eps(&built, "a.com", "/local"), ["127.0.0.1:9000"]);
    assert!(built.diagnostics.is_empty(), "{:#?}", built.diagnostics);

    let disabled = BuildConfig {
        external_names: ExternalNamePolicy {
            disabled: true,
            ..ExternalNamePolicy::default()
        },
        ..allow.clone()
    };
    let built = build(&input, &disabled);
    assert_eq!(eps(&built, "a.com", "/"), Vec::<String>::new());
    assert_eq!(
        reasons(&built),
        [
            ("i".into(), Reason::UnsupportedServiceType),
            ("i".into(), Reason::UnsupportedServiceType),
        ]
    );
    assert!(
        built.diagnostics[0]
            .message
            .contains("--disable-external-name")
    );

    // Not resolved yet: 503 and said so.
    let built = build(&world().input(), &allow);
    assert_eq!(eps(&built, "a.com", "/"), Vec::<String>::new());
    assert!(
        built
            .diagnostics
            .iter()
            .all(|d| d.reason == Reason::ExternalNameNotResolved
                && d.message.contains("not been resolved yet")),
        "{:#?}",
        built.diagnostics
    );
}

#[test]
fn service_upstream_sends_to_the_cluster_ip_per_ingress() {
    const ANNOTATION: &str = "nginx.ingress.kubernetes.io/service-upstream";
    let mut web = service("d", "web", &[(Some("http"), 80, 8080)]);
    web.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.10".into());
    let mut headless = service("d", "headless", &[(Some("http"), 80, 8080)]);
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let built = World::default()
        .service(web)
        .slice(endpoint_slice(
            "d",
            "web-1",
            "web",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.1", "10.0.0.2"], None)],
        ))
        .service(headless)
        .slice(endpoint_slice(
            "d",
            "headless-1",
            "headless",
            &[(Some("http"), 8080)],
            &[(&["10.0.0.3"], None)],
        ))
        .ingress(ing("d", "direct").prefix("a.com", "/", "web", 80))
        .ingress(
            ing("d", "upstream")
                .annotation(ANNOTATION, "true")
                .prefix("b.com", "/", "web", 80)
                .prefix("b.com", "/named", "web", "http")
                .prefix("b.com", "/headless", "headless", 80)
                .prefix("b.com", "/missing-port", "web", 81),
        )
        .build();
    assert_eq!(
        eps(&built, "a.com", "/"),
        ["10.0.0.1:8080", "10.0.0.2:8080"]
    );
    assert_eq!(eps(&built, "b.com", "/"), ["10.96.0.10:80"]);
    assert_eq!(eps(&built, "b.com", "/named"), ["10.96.0.10:80"]);
    assert_eq!(
        eps(&built, "b.com", "/headless"),
        ["10.0.0.3:8080"],
        "falls back to the endpoints"
    );
    assert_eq!(eps(&built, "b.com", "/missing-port"), Vec::<String>::new());
    assert_eq!(
        reasons(&built),
        [
            ("upstream".into(), Reason::ServicePortNotFound),
            ("upstream".into(), Reason::NoClusterIp),
        ]
    );
    // The same Service port, resolved two ways: two backends.
    let direct = built.table.route("a.com", "/").unwrap();
    let upstream = built.table.route("b.com", "/").unwrap();
    assert!(!Arc::ptr_eq(&direct.backend, &upstream.backend));
    // Routes of one Ingress to the same Service port share one backend.
    let named = built.table.route("b.com", "/named").unwrap();
    assert_eq!(named.backend.endpoints, upstream.backend.endpoints);
}

/// `ssl-passthrough: "true"` (ingress-nginx's key).
const PASSTHROUGH: &str = "nginx.ingress.kubernetes.io/ssl-passthrough";

/// Builds `world` with `--enable-ssl-passthrough`.
fn with_passthrough(world: World) -> Built {
    let config = BuildConfig {
        ssl_passthrough: true,
        ..BuildConfig::default()
    };
    build(&world.input(), &config)
}

/// Where the TLS connections for `sni` go: (Ingress, Service), `None` for the Service when
/// they are closed; `None` when they are terminated.
fn passed_to(built: &Built, sni: &str) -> Option<(String, Option<String>)> {
    let passthrough = built.table.passthrough(sni)?;
    Some((
        passthrough.ingress.name.clone(),
        passthrough.backend().map(|b| b.service.name.clone()),
    ))
}

#[test]
fn a_passthrough_host_sends_its_tls_to_the_backend_of_its_root_path() {
    let world = || {
        World::default()
            .web("d", "tls-app", &["10.0.0.1"])
            .web("d", "web", &["10.0.0.2"])
            .ingress(
                ing("d", "pass")
                    .created(1)
                    .annotation(PASSTHROUGH, "true")
                    .prefix("pass.com", "/", "tls-app", 80)
                    .prefix("pass.com", "/other", "web", 80)
                    .exact("exact.com", "/", "tls-app", 80)
                    .prefix("*.wild.com", "/", "tls-app", 80),
            )
            .ingress(
                ing("d", "plain")
                    .created(2)
                    .prefix("plain.com", "/", "web", 80),
            )
    };
    let built = with_passthrough(world());
    assert_eq!(built.diagnostics, [], "{:#?}", built.diagnostics);
    assert!(built.table.has_passthrough());
    let pass = Some(("pass".to_owned(), Some("tls-app".to_owned())));
    assert_eq!(passed_to(&built, "pass.com"), pass);
    assert_eq!(
        passed_to(&built, "exact.com"),
        pass,
        "an Exact / counts too"
    );
    // A wildcard host passes through the names it covers (one more label).
    assert_eq!(passed_to(&built, "a.wild.com"), pass);
    assert_eq!(passed_to(&built, "a.b.wild.com"), None);
    assert_eq!(passed_to(&built, "wild.com"), None);
    assert_eq!(passed_to(&built, "plain.com"), None);
    assert_eq!(passed_to(&built, "other.com"), None);
    // Plain HTTP is routed as before.
    assert_eq!(
        served_by(&built, "pass.com", "/other").as_deref(),
        Some("pass")
    );
    assert_eq!(served(&built, "pass.com", "/x").unwrap().1, "tls-app");

    // Without the flag: no passthrough, and the Ingress fails closed.
    let built = world().build();
    assert!(!built.table.has_passthrough());
    assert_eq!(passed_to(&built, "pass.com"), None);
    assert!(
        built
            .table
            .route("pass.com", "/")
            .unwrap()
            .policy
            .refused
            .is_some(),
        "not served terminated as if it were passed through"
    );
    assert!(
        built
            .table
            .route("plain.com", "/")
            .unwrap()
            .policy
            .refused
            .is_none()
    );
    assert_eq!(
        reasons(&built),
        [("pass".to_owned(), Reason::UnsupportedAnnotation)]
    );
    assert!(
        built.diagnostics[0]
            .message
            .contains("--enable-ssl-passthrough")
    );
}

#[test]
fn without_a_root_path_the_default_backend_else_connections_are_closed() {
    let built = with_passthrough(
        World::default()
            .web("d", "tls-app", &["10.0.0.1"])
            .web("d", "web", &["10.0.0.2"])
            .ingress(
                ing("d", "fallback")
                    .annotation(PASSTHROUGH, "true")
                    .default_backend(backend("tls-app", 80))
                    .prefix("a.com", "/api", "web", 80),
            )
            .ingress(
                ing("d", "nowhere")
                    .annotation(PASSTHROUGH, "true")
                    .prefix("b.com", "/api", "web", 80),
            ),
    );
    assert_eq!(
        passed_to(&built, "a.com"),
        Some(("fallback".to_owned(), Some("tls-app".to_owned())))
    );
    assert_eq!(
        passed_to(&built, "b.com"),
        Some(("nowhere".to_owned(), None)),
        "closed, never terminated in the backend's place"
    );
    assert_eq!(
        reasons(&built),
        [("nowhere".to_owned(), Reason::UnsupportedBackend)]
    );
    assert!(built.diagnostics[0].message.contains("path \"/\""));
}

#[test]
fn the_oldest_ingress_of_a_host_decides_whether_it_passes_through() {
    let built = with_passthrough(
        World::default()
            .web("d", "tls-app", &["10.0.0.1"])
            .web("d", "web", &["10.0.0.2"])
            // a.com: owned by an older Ingress without passthrough.
            .ingress(
                ing("d", "old")
                    .created(1)
                    .prefix("a.com", "/api", "web", 80),
            )
            .ingress(
                ing("d", "late")
                    .created(2)
                    .annotation(PASSTHROUGH, "true")
                    .prefix("a.com", "/", "tls-app", 80)
                    .prefix("b.com", "/", "tls-app", 80),
            )
            // b.com: a newer Ingress adds a path, reachable over plain HTTP only.
            .ingress(
                ing("d", "newer")
                    .created(3)
                    .prefix("b.com", "/web", "web", 80),
            ),
    );
    assert_eq!(
        passed_to(&built, "a.com"),
        None,
        "a newer Ingress cannot take a host's TLS"
    );
    assert_eq!(
        passed_to(&built, "b.com"),
        Some(("late".to_owned(), Some("tls-app".to_owned())))
    );
    assert_eq!(served_by(&built, "b.com", "/web").as_deref(), Some("newer"));
    let mut got = reasons(&built);
    got.sort();
    assert_eq!(
        got,
        [
            ("late".to_owned(), Reason::HostSettingConflict),
            ("newer".to_owned(), Reason::HostSettingConflict),
        ]
    );
    let message = |name: &str| {
        built
            .diagnostics
            .iter()
            .find(|d| d.object.name == name)
            .unwrap()
            .message
            .clone()
    };
    assert!(message("late").contains("\"a.com\""), "{}", message("late"));
    assert!(message("late").contains("older"), "{}", message("late"));
    assert!(
        message("newer").contains("plain HTTP only"),
        "{}",
        message("newer")
    );
}

#[test]
fn passthrough_reaches_aliases_and_not_refused_ingresses() {
    let built = with_passthrough(
        World::default()
            .web("d", "tls-app", &["10.0.0.1"])
            .ingress(
                ing("d", "aliased")
                    .annotation(PASSTHROUGH, "true")
                    .annotation("nginx.ingress.kubernetes.io/server-alias", "alias.com")
                    .prefix("a.com", "/", "tls-app", 80),
            )
            .ingress(
                ing("d", "broken")
                    .annotation(PASSTHROUGH, "true")
                    .annotation("nginx.ingress.kubernetes.io/rewrite-target", "http://x/")
                    .prefix("b.com", "/", "tls-app", 80),
            )
            .ingress(
                ing("d", "hostless")
                    .annotation(PASSTHROUGH, "true")
                    .prefix("", "/", "tls-app", 80),
            ),
    );
    let aliased = Some(("aliased".to_owned(), Some("tls-app".to_owned())));
    assert_eq!(passed_to(&built, "a.com"), aliased);
    assert_eq!(
        passed_to(&built, "alias.com"),
        aliased,
        "an alias is served like its host"
    );
    // An Ingress that fails closed keeps failing closed: weir's TLS, 503.
    assert_eq!(passed_to(&built, "b.com"), None);
    assert!(
        built
            .table
            .route("b.com", "/")
            .unwrap()
            .policy
            .refused
            .is_some()
    );
    // Without a host there is nothing to tell connections apart by.
    assert!(
        built
            .diagnostics
            .iter()
            .any(|d| d.object.name == "hostless" && d.message.contains("names no host")),
        "{:#?}",
        built.diagnostics
    );
}

#[test]
fn error_pages_go_to_the_ingress_s_default_backend_else_the_controller_s() {
    use crate::model::{ObjectKind, ObjectRef};
    const CODES: &str = "nginx.ingress.kubernetes.io/custom-http-errors";
    const OWN: &str = "nginx.ingress.kubernetes.io/default-backend";
    let world = |annotations: &[(&str, &str)]| {
        let mut app = ing("d", "app").prefix("a.test", "/", "web", 80);
        for (key, value) in annotations {
            app = app.annotation(key, value);
        }
        World::default()
            .web("d", "web", &["10.0.0.1"])
            .web("d", "pages", &["10.0.0.7"])
            .web("ingress", "fallback", &["10.0.0.9"])
            .ingress(app)
    };
    let controller = BuildConfig {
        default_backend_service: Some(ObjectRef::new(ObjectKind::Service, "ingress", "fallback")),
        ..BuildConfig::default()
    };
    let pages = |built: &Built| {
        route_of(built, "a.test", "/")
            .policy
            .custom_errors
            .as_ref()
            .map(|p| {
                let eps: Vec<String> = p.backend.endpoints.iter().map(|e| e.to_string()).collect();
                (p.codes.clone(), eps, p.when_no_endpoints)
            })
    };
    let ten = |ip: &str| vec![format!("10.0.0.{ip}:8080")];

    // The Ingress's own Service: it also serves while the route has no endpoints.
    let built = build(
        &world(&[(CODES, "404,503"), (OWN, "pages")]).input(),
        &controller,
    );
    assert_eq!(built.diagnostics, []);
    assert_eq!(pages(&built), Some((vec![404, 503], ten("7"), true)));
    // Alone, default-backend still serves a route without endpoints.
    let built = world(&[(OWN, "pages")]).build();
    assert_eq!(pages(&built), Some((vec![], ten("7"), true)));
    // Codes without default-backend: the controller's default backend.
    let built = build(&world(&[(CODES, "404")]).input(), &controller);
    assert_eq!(pages(&built), Some((vec![404], ten("9"), false)));
    // A default-backend that does not exist: reported, the controller's serves instead.
    let built = build(
        &world(&[(CODES, "404"), (OWN, "nope")]).input(),
        &controller,
    );
    assert_eq!(reasons(&built), [("app".into(), Reason::ServiceNotFound)]);
    assert_eq!(pages(&built), Some((vec![404], ten("9"), false)));
    // No error backend at all: reported, errors are sent as they are; the route serves.
    let built = world(&[(CODES, "404")]).build();
    assert_eq!(
        reasons(&built),
        [("app".into(), Reason::DefaultBackendNotUsable)]
    );
    assert_eq!(pages(&built), None);
    assert_eq!(eps(&built, "a.test", "/"), ["10.0.0.1:8080"]);
    // Nothing asked: nothing, and the route pays nothing.
    assert_eq!(pages(&build(&world(&[]).input(), &controller)), None);
}

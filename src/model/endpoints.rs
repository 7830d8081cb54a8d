//! Backend resolution: an Ingress service backend → a Service port → ready endpoint addresses.
//!
//! The Service port is found by `port.number` (a ServicePort with that `port`) or by
//! `port.name` (a ServicePort with that `name`). Endpoint ports are then found by the
//! ServicePort's **name** (an unnamed ServicePort matches an unnamed endpoint port), which is
//! how the endpoints controllers label them; their numbers are the target ports.
//!
//! EndpointSlices (`kubernetes.io/service-name` label) are used when any exist for the
//! Service; the core/v1 Endpoints object of the same name otherwise. Only ready addresses
//! count: a slice endpoint whose `conditions.ready` is `false` is skipped (unset means ready),
//! and Endpoints' `notReadyAddresses` are never used.
//!
//! Two other ways to a Service:
//! - an **ExternalName** Service's endpoints are the addresses its DNS name resolves to, with
//!   the port ingress-nginx maps ([`super::external_names`]);
//! - with `service-upstream` (per Ingress), the one endpoint is the Service's **cluster IP**
//!   with the Service port (kube-proxy balances), as in ingress-nginx. A Service without a
//!   cluster IP (headless, ExternalName) falls back to its endpoints, with a
//!   [`Reason::NoClusterIp`], as ingress-nginx falls back (and logs an error).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;

use super::Input;
use super::diagnostic::{ObjectKind, ObjectRef, Reason};
use super::external_names::{self, ExternalNamePolicy, NameAnswers};
use super::objects::{self, ByName, index_by_name, same_object};
use super::table::Backend;

/// The label that ties an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A backend as the model resolved it, with what is wrong with it (if anything).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The backend; with no endpoints when something is wrong (requests get 503).
    pub backend: Arc<Backend>,
    /// What is wrong: why the backend has no endpoints when it has none, and findings that
    /// leave it some (addresses refused, a cluster IP missing).
    pub problems: Vec<Problem>,
}

/// A finding about a backend, to be reported on every Ingress that references it.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// Machine-readable reason.
    pub reason: Reason,
    /// What is wrong, e.g. `service "default/web" not found`.
    pub what: String,
    /// What it means and how to fix it.
    pub hint: String,
}

/// How an Ingress names a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PortRef {
    Number(i32),
    Name(String),
    Missing,
}

impl PortRef {
    fn of(backend: &IngressServiceBackend) -> PortRef {
        let port = backend.port.as_ref();
        if let Some(n) = port.and_then(|p| p.number) {
            PortRef::Number(n)
        } else if let Some(name) = port
            .and_then(|p| p.name.as_deref())
            .filter(|n| !n.is_empty())
        {
            PortRef::Name(name.to_owned())
        } else {
            PortRef::Missing
        }
    }

    /// The port as the Ingress wrote it, for [`Backend::port`].
    fn as_written(&self) -> String {
        match self {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(name) => name.clone(),
            PortRef::Missing => String::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            PortRef::Number(n) => format!("port {n}"),
            PortRef::Name(name) => format!("port {name:?}"),
            PortRef::Missing => "no port".to_owned(),
        }
    }
}

/// Where a backend sends: the Service's endpoints, or its cluster IP (`service-upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Upstream {
    /// Its ready endpoints (an ExternalName Service: the addresses of its name).
    Endpoints,
    /// Its cluster IP and Service port (`service-upstream`).
    ClusterIp,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a backend was resolved with, kept from one build to the next ([`Backends::keep`]).
type CacheKey = (String, String, PortRef, Upstream);

/// Resolved backends kept between builds, each with the objects it was resolved from: a later
/// build reuses one (the same `Arc<Backend>`) while those objects are the same.
#[derive(Debug, Default)]
pub(crate) struct BackendCache(FastMap<CacheKey, (ServiceDeps, Resolved)>);

/// The objects the backends of one Service are resolved from, by identity (the input's
/// `Arc`s, kept alive here so that an address is never another object's): equal deps resolve
/// to equal backends.
#[derive(Debug, Clone)]
pub(crate) struct ServiceDeps {
    service: Option<Arc<Service>>,
    /// Its EndpointSlices, by address.
    slices: Vec<Arc<EndpointSlice>>,
    endpoints: Option<Arc<Endpoints>>,
    /// The DNS answers, for an ExternalName Service only.
    answers: Option<Arc<NameAnswers>>,
}

/// Resolves backends against the Services and endpoints of the input, once per
/// (namespace, service, port, [`Upstream`]), so that routes to the same Service port share one
/// [`Backend`], and an Ingress with `service-upstream` never shares one with an Ingress
/// without it. Backends resolved by an earlier build from the same objects are reused.
#[derive(Debug)]
pub(crate) struct Backends<'a> {
    services: ByName<'a, Service>,
    slices: FastMap<(&'a str, &'a str), Vec<&'a Arc<EndpointSlice>>>,
    endpoints: ByName<'a, Endpoints>,
    /// The DNS answers for ExternalName Services.
    answers: &'a Arc<NameAnswers>,
    /// How ExternalName Services are treated.
    external_names: ExternalNamePolicy,
    /// This build's and earlier builds' backends.
    cache: BackendCache,
    /// The Services looked at since [`Backends::take_reads`] (namespace, name).
    reads: Vec<(String, String)>,
}

impl<'a> Backends<'a> {
    /// Indexes the Services, EndpointSlices and Endpoints of `input`; ExternalName Services
    /// are resolved with `input`'s DNS answers and `external_names`. `cache` holds the
    /// backends of earlier builds.
    pub(crate) fn new(
        input: &'a Input,
        external_names: ExternalNamePolicy,
        cache: BackendCache,
    ) -> Self {
        let mut slices: FastMap<(&str, &str), Vec<&Arc<EndpointSlice>>> = FastMap::default();
        for slice in &input.endpoint_slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                let ns = objects::namespace(&slice.metadata);
                slices
                    .entry((ns, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        Backends {
            services: index_by_name(&input.services, |s| &s.metadata),
            slices,
            endpoints: index_by_name(&input.endpoints, |e| &e.metadata),
            answers: &input.external_names,
            external_names,
            cache,
            reads: Vec::new(),
        }
    }

    /// The backends to keep for the next build: those whose objects are still the same
    /// (the others would never be used again).
    pub(crate) fn keep(mut self) -> BackendCache {
        let mut cache = std::mem::take(&mut self.cache);
        cache
            .0
            .retain(|(namespace, name, _, _), (deps, _)| self.matches(namespace, name, deps));
        cache
    }

    /// The Services looked at (by [`Backends::resolve`] and [`Backends::first_port`]) since
    /// the last call, each with the objects it is resolved from now.
    pub(crate) fn take_reads(&mut self) -> Vec<(String, String, ServiceDeps)> {
        let mut reads = std::mem::take(&mut self.reads);
        reads.sort();
        reads.dedup();
        reads
            .into_iter()
            .map(|(namespace, name)| {
                let deps = self.deps(&namespace, &name);
                (namespace, name, deps)
            })
            .collect()
    }

    /// The objects the Service `namespace/name` is resolved from now.
    fn deps(&self, namespace: &str, name: &str) -> ServiceDeps {
        let key = (namespace, name);
        let service = self.services.get(&key).copied().cloned();
        let slices: Vec<Arc<EndpointSlice>> = self
            .slices
            .get(&key)
            .into_iter()
            .flatten()
            .map(|s| Arc::clone(s))
            .collect();
        let external = service
            .as_deref()
            .is_some_and(external_names::is_external_name);
        ServiceDeps {
            service,
            slices,
            endpoints: self.endpoints.get(&key).copied().cloned(),
            answers: external.then(|| self.answers.clone()),
        }
    }

    /// Whether the Service `namespace/name` is resolved from `deps` now (the same objects:
    /// nothing it resolves to can have changed).
    pub(crate) fn matches(&self, namespace: &str, name: &str, deps: &ServiceDeps) -> bool {
        let key = (namespace, name);
        let service = self.services.get(&key);
        let external = service.is_some_and(|s| external_names::is_external_name(s));
        let answers = match &deps.answers {
            Some(then) => external && Arc::ptr_eq(self.answers, then),
            None => !external,
        };
        let slices = self.slices.get(&key).map_or(&[][..], Vec::as_slice);
        answers
            && same_object(service.copied(), deps.service.as_ref())
            && same_object(self.endpoints.get(&key).copied(), deps.endpoints.as_ref())
            && slices.len() == deps.slices.len()
            && slices
                .iter()
                .all(|now| deps.slices.iter().any(|then| Arc::ptr_eq(now, then)))
    }

    /// The first TCP port of `service`, as a backend reference (how the controller's default
    /// backend and `default-backend` name their Service); `Err` says why there is none: the
    /// Service "does not exist" or "has no TCP port".
    pub(crate) fn first_port(
        &mut self,
        service: &ObjectRef,
    ) -> Result<IngressServiceBackend, &'static str> {
        self.reads
            .push((service.namespace.clone(), service.name.clone()));
        let found = self
            .services
            .get(&(service.namespace.as_str(), service.name.as_str()))
            .ok_or("does not exist")?;
        let port = found
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| matches!(p.protocol.as_deref(), None | Some("TCP")))
            })
            .ok_or("has no TCP port")?;
        Ok(IngressServiceBackend {
            name: service.name.clone(),
            port: Some(k8s_openapi::api::networking::v1::ServiceBackendPort {
                number: Some(port.port),
                name: None,
            }),
        })
    }

    /// The backend for `backend` as referenced from namespace `namespace`, sending where
    /// `upstream` says.
    pub(crate) fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressServiceBackend,
        upstream: Upstream,
    ) -> Resolved {
        self.reads
            .push((namespace.to_owned(), backend.name.clone()));
        let port = PortRef::of(backend);
        let key = (namespace.to_owned(), backend.name.clone(), port, upstream);
        if let Some((deps, resolved)) = self.cache.0.get(&key)
            && self.matches(namespace, &backend.name, deps)
        {
            return resolved.clone();
        }
        let deps = self.deps(namespace, &backend.name);
        let service = ObjectRef::new(ObjectKind::Service, namespace, &backend.name);
        let mut problems = Vec::new();
        let endpoints = match self.endpoints_for(&service, &key.2, upstream, &mut problems) {
            Ok(endpoints) => endpoints,
            Err(problem) => {
                problems.push(problem);
                Vec::new()
            }
        };
        let port = key.2.as_written();
        let resolved = Resolved {
            backend: Arc::new(Backend::new(service, port, endpoints)),
            problems,
        };
        self.cache.0.insert(key, (deps, resolved.clone()));
        resolved
    }

    /// The endpoints of `service` port `port`, or why there are none; `notes` gets what is
    /// wrong without leaving it without endpoints.
    fn endpoints_for(
        &self,
        service: &ObjectRef,
        port: &PortRef,
        upstream: Upstream,
        notes: &mut Vec<Problem>,
    ) -> Result<Vec<SocketAddr>, Problem> {
        let display = format!("{}/{}", service.namespace, service.name);
        let key = (service.namespace.as_str(), service.name.as_str());
        let Some(svc) = self.services.get(&key) else {
            return Err(Problem {
                reason: Reason::ServiceNotFound,
                what: format!("service {display:?} not found"),
                hint: "requests there are answered 503 until it exists".into(),
            });
        };
        let spec = svc.spec.as_ref();
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let port_problem = |(what, detail): (String, String)| Problem {
            reason: Reason::ServicePortNotFound,
            what: format!("service {display:?} {what}"),
            hint: format!(
                "{detail}; requests there are answered 503 until the Ingress or the Service is fixed"
            ),
        };
        if upstream == Upstream::ClusterIp {
            match cluster_ip(svc) {
                Some(ip) => {
                    let service_port = find_service_port(ports, port).map_err(port_problem)?;
                    return Ok(port_number(service_port.port)
                        .map(|n| SocketAddr::new(ip, n))
                        .into_iter()
                        .collect());
                }
                None => notes.push(Problem {
                    reason: Reason::NoClusterIp,
                    what: format!(
                        "service {display:?} has no cluster IP (it is headless, of type \
                         ExternalName or without clusterIP), which service-upstream sends to"
                    ),
                    hint: "its endpoints are used instead, as ingress-nginx does".into(),
                }),
            }
        }
        if external_names::is_external_name(svc) {
            return external_names::endpoints(
                svc,
                &display,
                port,
                self.answers,
                self.external_names,
                notes,
            );
        }
        let service_port = find_service_port(ports, port).map_err(port_problem)?;
        let port_name = service_port.name.as_deref().unwrap_or("");
        let endpoints = match self.slices.get(&key) {
            Some(slices) => slice_endpoints(slices, port_name),
            None => self
                .endpoints
                .get(&key)
                .map(|e| core_endpoints(e, port_name))
                .unwrap_or_default(),
        };
        if endpoints.is_empty() {
            return Err(Problem {
                reason: Reason::NoReadyEndpoints,
                what: format!(
                    "service {display:?} port {} has no ready endpoints",
                    describe_service_port(service_port)
                ),
                hint: "requests there are answered 503 until a pod behind it is ready".into(),
            });
        }
        Ok(endpoints)
    }
}

/// The cluster IP of `service`: `None` for a headless Service (`None`), an ExternalName one
/// (none) or one whose `clusterIP` is not an address (a manifest may leave it unset).
fn cluster_ip(service: &Service) -> Option<IpAddr> {
    if external_names::is_external_name(service) {
        return None;
    }
    service
        .spec
        .as_ref()?
        .cluster_ip
        .as_deref()?
        .trim()
        .parse()
        .ok()
}

/// Finds the ServicePort an Ingress names, or says why there is none (what is wrong, and a
/// detail that helps to fix it).
pub(crate) fn find_service_port<'p>(
    ports: &'p [ServicePort],
    port: &PortRef,
) -> Result<&'p ServicePort, (String, String)> {
    let matching: Vec<&ServicePort> = match port {
        PortRef::Number(n) => ports.iter().filter(|p| p.port == *n).collect(),
        PortRef::Name(name) => ports
            .iter()
            .filter(|p| p.name.as_deref() == Some(name.as_str()))
            .collect(),
        PortRef::Missing => {
            return Err((
                "is referenced without a port".into(),
                "set service.port.number or service.port.name".into(),
            ));
        }
    };
    let is_tcp = |p: &&&ServicePort| matches!(p.protocol.as_deref(), None | Some("TCP"));
    if let Some(tcp) = matching.iter().find(is_tcp) {
        return Ok(tcp);
    }
    if let Some(other) = matching.first() {
        return Err((
            format!(
                "{} uses protocol {}",
                port.describe(),
                other.protocol.as_deref().unwrap_or("TCP")
            ),
            "weir forwards TCP only".into(),
        ));
    }
    let known: Vec<String> = ports.iter().map(describe_service_port).collect();
    let detail = if known.is_empty() {
        "the Service has no ports".to_owned()
    } else {
        format!("its ports are {}", known.join(", "))
    };
    Err((format!("has no {}", port.describe()), detail))
}

fn describe_service_port(port: &ServicePort) -> String {
    match port.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{} ({name:?})", port.port),
        _ => port.port.to_string(),
    }
}

/// A port number usable in a socket address (1..=65535).
pub(crate) fn port_number(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// Whether an endpoint port's name matches a ServicePort's name (`""` = unnamed).
fn same_name(endpoint_port: Option<&str>, service_port: &str) -> bool {
    endpoint_port.unwrap_or("") == service_port
}

fn slice_endpoints(slices: &[&Arc<EndpointSlice>], port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices {
        let ports = slice.ports.iter().flatten();
        let numbers: Vec<u16> = ports
            .filter(|p| same_name(p.name.as_deref(), port_name))
            .filter_map(|p| p.port.and_then(port_number))
            .collect();
        let ready = slice
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
        for endpoint in ready {
            for ip in endpoint
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
            {
                out.extend(numbers.iter().map(|n| SocketAddr::new(ip, *n)));
            }
        }
    }
    out
}

fn core_endpoints(endpoints: &Endpoints, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let numbers: Vec<u16> = subset
            .ports
            .iter()
            .flatten()
            .filter(|p| same_name(p.name.as_deref(), port_name))
            .filter_map(|p| port_number(p.port))
            .collect();
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                out.extend(numbers.iter().map(|n| SocketAddr::new(ip, *n)));
            }
        }
    }
    out
}

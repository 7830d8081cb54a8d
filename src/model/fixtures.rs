//! Tiny builders for the Kubernetes objects the model tests use.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ConfigMap, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort,
    ServiceSpec, TypedLocalObjectReference,
};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::classes::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};
use super::endpoints::SERVICE_NAME_LABEL;

/// Objects as an [`Input`](super::Input) holds them: `shared([a, b])`.
pub(crate) fn shared<T>(objects: impl IntoIterator<Item = T>) -> Vec<Arc<T>> {
    objects.into_iter().map(Arc::new).collect()
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!ns.is_empty()).then(|| ns.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// How a fixture backend names a Service port: `80` or `"http"`.
#[derive(Debug, Clone)]
pub(crate) enum Port {
    Number(i32),
    Name(&'static str),
}

impl From<i32> for Port {
    fn from(n: i32) -> Self {
        Port::Number(n)
    }
}

impl From<&'static str> for Port {
    fn from(name: &'static str) -> Self {
        Port::Name(name)
    }
}

/// An Ingress backend pointing at Service `service` port `port`.
pub(crate) fn backend(service: &str, port: impl Into<Port>) -> IngressBackend {
    let port = match port.into() {
        Port::Number(n) => ServiceBackendPort {
            number: Some(n),
            name: None,
        },
        Port::Name(name) => ServiceBackendPort {
            number: None,
            name: Some(name.to_owned()),
        },
    };
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(port),
        }),
        resource: None,
    }
}

/// A resource backend (which weir does not support).
pub(crate) fn resource_backend() -> IngressBackend {
    IngressBackend {
        service: None,
        resource: Some(TypedLocalObjectReference {
            api_group: Some("k8s.example.com".into()),
            kind: "StorageBucket".into(),
            name: "static".into(),
        }),
    }
}

/// Starts an Ingress `ns/name` (an empty `ns` leaves the namespace unset).
pub(crate) fn ingress(ns: &str, name: &str) -> IngressBuilder {
    IngressBuilder(Ingress {
        metadata: meta(ns, name),
        spec: Some(IngressSpec::default()),
        status: None,
    })
}

/// Builder for [`ingress`].
#[derive(Debug, Clone)]
pub(crate) struct IngressBuilder(Ingress);

impl IngressBuilder {
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(IngressSpec::default)
    }

    fn rule_for(&mut self, host: &str) -> &mut IngressRule {
        let rules = self.spec().rules.get_or_insert_with(Vec::new);
        let host = (!host.is_empty()).then(|| host.to_owned());
        let i = match rules
            .iter()
            .position(|r| r.host == host && r.http.is_some())
        {
            Some(i) => i,
            None => {
                rules.push(IngressRule {
                    host,
                    http: Some(HTTPIngressRuleValue { paths: Vec::new() }),
                });
                rules.len() - 1
            }
        };
        &mut rules[i]
    }

    /// `spec.ingressClassName`.
    pub(crate) fn class(mut self, name: &str) -> Self {
        self.spec().ingress_class_name = Some(name.to_owned());
        self
    }

    /// The legacy `kubernetes.io/ingress.class` annotation.
    pub(crate) fn legacy_class(self, class: &str) -> Self {
        self.annotation(LEGACY_CLASS_ANNOTATION, class)
    }

    /// Any annotation.
    pub(crate) fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// `metadata.creationTimestamp`, in seconds since the epoch.
    pub(crate) fn created(mut self, seconds: i64) -> Self {
        let ts = Timestamp::from_second(seconds).expect("fixture timestamp in range");
        self.0.metadata.creation_timestamp = Some(Time(ts));
        self
    }

    /// A path of any pathType (`""` leaves it unset) and `path` (`None` leaves it unset).
    pub(crate) fn path(
        mut self,
        host: &str,
        path: Option<&str>,
        path_type: &str,
        backend: IngressBackend,
    ) -> Self {
        let rule = self.rule_for(host);
        if let Some(http) = rule.http.as_mut() {
            http.paths.push(HTTPIngressPath {
                path: path.map(str::to_owned),
                path_type: path_type.to_owned(),
                backend,
            });
        }
        self
    }

    /// A Prefix path to Service `service` port `port`.
    pub(crate) fn prefix(
        self,
        host: &str,
        path: &str,
        service: &str,
        port: impl Into<Port>,
    ) -> Self {
        self.path(host, Some(path), "Prefix", backend(service, port))
    }

    /// An Exact path to Service `service` port `port`.
    pub(crate) fn exact(
        self,
        host: &str,
        path: &str,
        service: &str,
        port: impl Into<Port>,
    ) -> Self {
        self.path(host, Some(path), "Exact", backend(service, port))
    }

    /// A rule for `host` without `http`.
    pub(crate) fn rule_without_http(mut self, host: &str) -> Self {
        self.spec()
            .rules
            .get_or_insert_with(Vec::new)
            .push(IngressRule {
                host: Some(host.to_owned()),
                http: None,
            });
        self
    }

    /// `spec.defaultBackend`.
    pub(crate) fn default_backend(mut self, backend: IngressBackend) -> Self {
        self.spec().default_backend = Some(backend);
        self
    }

    /// No `spec` at all.
    pub(crate) fn without_spec(mut self) -> Self {
        self.0.spec = None;
        self
    }

    /// The Ingress.
    pub(crate) fn build(self) -> Ingress {
        self.0
    }
}

fn service_ports(ports: &[(Option<&str>, i32, i32)]) -> Vec<ServicePort> {
    ports
        .iter()
        .map(|(name, port, target)| ServicePort {
            name: name.map(str::to_owned),
            port: *port,
            target_port: Some(IntOrString::Int(*target)),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        })
        .collect()
}

/// A ClusterIP Service with ports `(name, port, targetPort)`.
pub(crate) fn service(ns: &str, name: &str, ports: &[(Option<&str>, i32, i32)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(service_ports(ports)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// An ExternalName Service.
pub(crate) fn external_service(ns: &str, name: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A core/v1 Endpoints object with one subset: ready IPs, not-ready IPs and ports
/// `(name, port)`.
pub(crate) fn endpoints(
    ns: &str,
    name: &str,
    ready: &[&str],
    not_ready: &[&str],
    ports: &[(Option<&str>, i32)],
) -> Endpoints {
    let addresses = |ips: &[&str]| {
        Some(
            ips.iter()
                .map(|ip| EndpointAddress {
                    ip: (*ip).to_owned(),
                    ..EndpointAddress::default()
                })
                .collect(),
        )
    };
    Endpoints {
        metadata: meta(ns, name),
        subsets: Some(vec![EndpointSubset {
            addresses: addresses(ready),
            not_ready_addresses: addresses(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: name.map(str::to_owned),
                        port: *port,
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }]),
    }
}

/// An EndpointSlice `slice` of Service `service` with ports `(name, port)` and endpoints
/// `(addresses, conditions.ready)`.
pub(crate) fn endpoint_slice(
    ns: &str,
    slice: &str,
    service: &str,
    ports: &[(Option<&str>, i32)],
    endpoints: &[(&[&str], Option<bool>)],
) -> EndpointSlice {
    let mut metadata = meta(ns, slice);
    metadata.labels = Some(map(&[(SERVICE_NAME_LABEL, service)]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| discovery::EndpointPort {
                    name: name.map(str::to_owned),
                    port: Some(*port),
                    protocol: Some("TCP".into()),
                    ..discovery::EndpointPort::default()
                })
                .collect(),
        ),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(addresses, ready)| discovery::Endpoint {
                    addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
                    conditions: ready.map(|r| EndpointConditions {
                        ready: Some(r),
                        ..EndpointConditions::default()
                    }),
                    ..discovery::Endpoint::default()
                })
                .collect(),
        ),
    }
}

/// An IngressClass `name` of controller `controller`, optionally the default class.
pub(crate) fn ingress_class(name: &str, controller: &str, is_default: bool) -> IngressClass {
    let mut metadata = meta("", name);
    if is_default {
        metadata.annotations = Some(map(&[(DEFAULT_CLASS_ANNOTATION, "true")]));
    }
    IngressClass {
        metadata,
        spec: Some(IngressClassSpec {
            controller: Some(controller.to_owned()),
            parameters: None,
        }),
    }
}

/// A ConfigMap with `data`.
pub(crate) fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(ns, name),
        data: Some(map(data)),
        ..ConfigMap::default()
    }
}

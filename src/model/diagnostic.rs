//! Diagnostics: what the model reports about objects it could not use as written.
//!
//! A bad object never fails a build. It becomes a [`Diagnostic`] naming the object, a
//! machine-readable [`Reason`] and a message a user can act on. The controller turns them into
//! log lines (and, on a cluster, Kubernetes Events); tests assert on them.

use std::fmt;

/// The kinds of Kubernetes objects the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
    /// `networking.k8s.io/v1` IngressClass (cluster-scoped).
    IngressClass,
    /// core/v1 Service.
    Service,
    /// core/v1 Endpoints.
    Endpoints,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// core/v1 Secret.
    Secret,
    /// core/v1 ConfigMap.
    ConfigMap,
}

impl ObjectKind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Ingress => "Ingress",
            ObjectKind::IngressClass => "IngressClass",
            ObjectKind::Service => "Service",
            ObjectKind::Endpoints => "Endpoints",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
        }
    }

    /// The `apiVersion` of the kind as weir reads it.
    pub fn api_version(self) -> &'static str {
        match self {
            ObjectKind::Ingress | ObjectKind::IngressClass => "networking.k8s.io/v1",
            ObjectKind::EndpointSlice => "discovery.k8s.io/v1",
            ObjectKind::Service
            | ObjectKind::Endpoints
            | ObjectKind::Secret
            | ObjectKind::ConfigMap => "v1",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to one Kubernetes object. `namespace` is empty for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// What kind of object.
    pub kind: ObjectKind,
    /// Its namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn new(kind: ObjectKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why a diagnostic was raised. The string form is the Kubernetes Event `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A backend names a Service that does not exist.
    ServiceNotFound,
    /// A backend names a port the Service does not have.
    ServicePortNotFound,
    /// The Service exists but has no ready endpoints for the port.
    NoReadyEndpoints,
    /// The Service is of a type weir does not route to (ExternalName with
    /// `--disable-external-name`).
    UnsupportedServiceType,
    /// An ExternalName Service whose name does not resolve (or not yet, or is not a DNS name).
    ExternalNameNotResolved,
    /// An ExternalName Service whose name resolves to addresses weir refuses (loopback,
    /// link-local, cloud metadata, …) without `--allow-external-name-local-addresses`.
    ExternalNameRefused,
    /// `service-upstream` on a Service without a cluster IP (headless, ExternalName): its
    /// endpoints are used instead.
    NoClusterIp,
    /// A rule or TLS host is not a valid DNS name or wildcard.
    InvalidHost,
    /// A rule path is not valid for its pathType.
    InvalidPath,
    /// A backend is a resource backend or has no service.
    UnsupportedBackend,
    /// The same host and path are claimed by an older Ingress.
    RouteConflict,
    /// Another (older) Ingress already provides the catch-all default backend.
    DefaultBackendConflict,
    /// A `weir.dev/` annotation weir does not know.
    UnknownAnnotation,
    /// An `nginx.ingress.kubernetes.io/` annotation weir does not implement.
    UnsupportedAnnotation,
    /// An annotation weir knows, with a value it cannot use.
    InvalidAnnotationValue,
    /// A `spec.tls` entry names a Secret that does not exist (or is not a TLS Secret).
    TlsSecretNotFound,
    /// A TLS Secret whose certificate or key does not parse, or whose key does not match.
    InvalidTlsSecret,
    /// A TLS Secret whose certificate does not cover a host its `spec.tls` entry lists.
    TlsHostNotCovered,
    /// Two Ingresses name different Secrets for the same TLS host; the older one wins.
    TlsConflict,
    /// A host-scope annotation (`server-alias`, `from-to-www-redirect`, `app-root`) that
    /// cannot apply because of another host or Ingress.
    HostSettingConflict,
    /// The controller ConfigMap (`--configmap`) does not exist.
    ConfigMapNotFound,
    /// A controller ConfigMap key weir reads, with a value it cannot use.
    InvalidConfigMapValue,
    /// A controller ConfigMap key weir does not support (or refuses: snippets).
    UnsupportedConfigMapKey,
    /// The controller's default backend (`--default-backend-service`) cannot be used.
    DefaultBackendNotUsable,
    /// A canary Ingress's rule path has no main Ingress (another Ingress with the same host,
    /// path and pathType) to take traffic from, or its Service is the main one's.
    CanaryWithoutMain,
}

impl Reason {
    /// The CamelCase name used as the Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::NoReadyEndpoints => "NoReadyEndpoints",
            Reason::UnsupportedServiceType => "UnsupportedServiceType",
            Reason::ExternalNameNotResolved => "ExternalNameNotResolved",
            Reason::ExternalNameRefused => "ExternalNameRefused",
            Reason::NoClusterIp => "NoClusterIp",
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::RouteConflict => "RouteConflict",
            Reason::DefaultBackendConflict => "DefaultBackendConflict",
            Reason::UnknownAnnotation => "UnknownAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::InvalidAnnotationValue => "InvalidAnnotationValue",
            Reason::TlsSecretNotFound => "TlsSecretNotFound",
            Reason::InvalidTlsSecret => "InvalidTlsSecret",
            Reason::TlsHostNotCovered => "TlsHostNotCovered",
            Reason::TlsConflict => "TlsConflict",
            Reason::HostSettingConflict => "HostSettingConflict",
            Reason::ConfigMapNotFound => "ConfigMapNotFound",
            Reason::InvalidConfigMapValue => "InvalidConfigMapValue",
            Reason::UnsupportedConfigMapKey => "UnsupportedConfigMapKey",
            Reason::DefaultBackendNotUsable => "DefaultBackendNotUsable",
            Reason::CanaryWithoutMain => "CanaryWithoutMain",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The object the finding concerns (where the Event is attached).
    pub object: ObjectRef,
    /// Machine-readable reason.
    pub reason: Reason,
    /// A sentence a user can act on.
    pub message: String,
}

impl Diagnostic {
    /// A new diagnostic.
    pub fn new(object: ObjectRef, reason: Reason, message: impl Into<String>) -> Self {
        Diagnostic {
            object,
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.reason, self.message)
    }
}

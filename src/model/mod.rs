//! The pure routing model: Kubernetes objects in, a [`RouteTable`] and [`Diagnostic`]s out.
//!
//! Nothing here does I/O, reads a clock or the environment, or knows about tokio, hyper, rustls
//! or the kube client. [`build`] never fails: objects it cannot use become diagnostics and the
//! rest of the table is built regardless.

pub mod access;
pub mod annotations;
pub mod balance;
mod build;
pub mod canary;
mod classes;
pub mod client_address;
pub mod client_auth;
pub mod configmap;
pub mod connection;
pub mod diagnostic;
mod endpoints;
pub mod error_pages;
pub mod external_auth;
pub mod external_names;
#[cfg(test)]
mod fixtures;
pub mod mirror;
mod objects;
pub mod paths;
pub mod policy;
mod references;
pub mod retry;
pub mod table;
pub mod upstream;
mod validate;
pub mod variables;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

pub use access::{
    Access, BasicAuth, Cors, CorsOrigins, IpList, OriginPattern, Rate, RateLimits, Satisfy,
    Skipped, Users,
};
pub use balance::{
    Affinity, AffinityMode, Balance, CanaryBehavior, HashBy, LoadBalance, SameSite, SessionCookie,
};
pub use build::{IncrementalBuild, build};
pub use canary::{Canary, CanaryRule, Decision, HeaderRule};
pub use client_auth::{ClientAuth, VerifyClient};
pub use diagnostic::{Diagnostic, ObjectKind, ObjectRef, Reason};
pub use error_pages::ErrorPages;
pub use external_auth::{AuthCache, ExternalAuth};
pub use external_names::{ExternalNamePolicy, NameAnswer, NameAnswers, names_to_resolve};
pub use mirror::Mirror;
pub use paths::{PathRegex, Template, normalize as normalize_path, routing_path};
pub use policy::{
    Defaults, Global, Hsts, HttpsPolicy, Policy, Redirect, ResponseRate, Rewrite, Timeouts,
};
pub use references::{Fetched, References, class_filter, fetched, references};
pub use retry::{Retry, RetryOn};
#[cfg(test)]
pub(crate) use table::test_route;
pub use table::{
    Backend, HostMatch, HostRedirect, HostSettings, Lookup, Passthrough, PathKind, PathMatch,
    PathRule, Route, RouteTable, RouteTableBuilder, RuleHost, TableEntry, normalize_host,
};
pub use upstream::{ClientIdentity, Protocol, TlsVersions, Upstream, UpstreamTls};

/// Every object the model reads, as a source (cluster watchers or a manifests directory)
/// collected them. Order does not matter: the same set in any order builds the same table.
///
/// Objects are shared (`Arc`), not owned: a source builds a new `Input` for every change, and
/// copying every object each time allocated and freed all of them per change and kept two or
/// three copies of each alive (the source's, the served input's, the next one's). The cluster
/// source hands over its reflector stores' `Arc`s and the manifests source its per-file cache's,
/// so building an `Input` only bumps reference counts. [`build`] reads the objects through the
/// `Arc`s and never changes them.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// `networking.k8s.io/v1` Ingresses.
    pub ingresses: Vec<Arc<Ingress>>,
    /// `networking.k8s.io/v1` IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// core/v1 Services.
    pub services: Vec<Arc<Service>>,
    /// `discovery.k8s.io/v1` EndpointSlices (used for a Service when any exist for it).
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// core/v1 Endpoints (used for a Service that has no EndpointSlices).
    pub endpoints: Vec<Arc<Endpoints>>,
    /// core/v1 Secrets (TLS certificates, and those annotations name: htpasswd files).
    pub secrets: Vec<Arc<Secret>>,
    /// core/v1 ConfigMaps (the controller ConfigMap, `--configmap`).
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// The DNS answers for the names of the ExternalName Services weir's Ingresses reference
    /// ([`names_to_resolve`]), looked up outside the model (`source::external_names`); a name
    /// missing here has not been resolved yet.
    pub external_names: Arc<NameAnswers>,
}

/// The settings that change how objects are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildConfig {
    /// Which Ingresses are weir's.
    pub classes: ClassConfig,
    /// The flags' defaults for what annotations change (the ConfigMap overrides them).
    pub defaults: Defaults,
    /// The controller ConfigMap (`--configmap`): ingress-nginx-style global defaults.
    pub config_map: Option<ObjectRef>,
    /// The controller's default backend (`--default-backend-service`): serves what no rule
    /// and no Ingress's defaultBackend serves (its first TCP port).
    pub default_backend_service: Option<ObjectRef>,
    /// `--allow-cross-namespace-resources`: annotations may name Secrets in other namespaces
    /// (`auth-secret: namespace/name`).
    pub allow_cross_namespace: bool,
    /// ExternalName Services: whether weir routes to them, and to which addresses.
    pub external_names: ExternalNamePolicy,
    /// `--enable-ssl-passthrough`: `ssl-passthrough: "true"` makes a host's TLS connections go
    /// to its backend unopened; without the flag such an Ingress fails closed (503).
    pub ssl_passthrough: bool,
}

/// Which Ingresses are weir's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassConfig {
    /// The IngressClass name weir serves (`--ingress-class`).
    pub ingress_class: String,
    /// The `spec.controller` value of IngressClasses weir owns (`--controller-name`).
    pub controller_name: String,
    /// Also serve Ingresses that name no class at all (`--watch-ingress-without-class`).
    pub watch_ingress_without_class: bool,
}

impl Default for ClassConfig {
    fn default() -> Self {
        ClassConfig {
            ingress_class: "weir".to_owned(),
            controller_name: "weir.dev/ingress-controller".to_owned(),
            watch_ingress_without_class: false,
        }
    }
}

/// One host of a `spec.tls` entry of one of weir's Ingresses: the Secret whose certificate
/// serves it. Bindings are resolved like routes: the oldest Ingress wins a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsBinding {
    /// The host as matched against SNI: lower-case, exact (`a.example.com`) or wildcard
    /// (`*.example.com`).
    pub host: String,
    /// The `kubernetes.io/tls` Secret (namespace and name).
    pub secret: ObjectRef,
    /// The Ingress whose `spec.tls` entry names it.
    pub ingress: ObjectRef,
}

/// The result of [`build`].
#[derive(Debug)]
pub struct Built {
    /// The routing table.
    pub table: RouteTable,
    /// What was wrong with the input, sorted so that equal inputs give equal lists.
    pub diagnostics: Vec<Diagnostic>,
    /// Which Secret serves which TLS host, sorted by host (one binding per host).
    pub tls: Vec<TlsBinding>,
    /// Every Ingress of weir's class, sorted, including those with diagnostics (the controller
    /// writes their status). Shared: an incremental build hands out the same list until the
    /// set of Ingresses changes, and a new list shares the names of the old.
    pub ingresses: Arc<[Arc<ObjectRef>]>,
}

//! Command line and environment: every flag `--some-name` also reads `WEIR_SOME_NAME`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;

pub use crate::access_log::LogFormat;
use crate::metrics::{ControllerLabels, MetricsConfig, RequestLabels};
use crate::model::access::IpList;
use crate::model::client_address::ClientAddress;
use crate::model::connection::ConnectionLimits;
use crate::model::{
    BuildConfig, ClassConfig, Defaults, ExternalNamePolicy, Hsts, ObjectKind, ObjectRef, Timeouts,
};
use crate::source::cluster::{ClusterConfig, EndpointsApi};

/// weir: a Kubernetes ingress controller with an embedded HTTP/1.1 and HTTP/2 data plane.
///
/// With `--manifests DIR` weir needs no cluster: it serves the Ingresses, Services and
/// Endpoints/EndpointSlices found in the YAML/JSON files of DIR and reloads them when they change.
#[derive(Debug, Clone, Parser)]
#[command(name = "weir", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Config {
    /// Something else than serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serve the Kubernetes objects in the YAML/JSON files of this directory (no cluster needed).
    #[arg(long, env = "WEIR_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Kubeconfig of the cluster to serve (default: `KUBECONFIG`, then `~/.kube/config`, then
    /// the in-cluster service account). Ignored with `--manifests`.
    #[arg(long, env = "WEIR_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WEIR_WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Where Service endpoints are read from: `discovery.k8s.io/v1` EndpointSlices, core/v1
    /// Endpoints, or `auto` (EndpointSlices when the API server serves them).
    #[arg(long, env = "WEIR_ENDPOINTS_API", value_enum, default_value = "auto")]
    pub endpoints_api: EndpointsApi,

    /// Write the load-balancer addresses of this Service (or its cluster IP when it has none)
    /// into the status of weir's Ingresses.
    #[arg(long, env = "WEIR_PUBLISH_SERVICE", value_name = "NAMESPACE/NAME", value_parser = parse_namespaced, conflicts_with = "publish_status_address")]
    pub publish_service: Option<(String, String)>,

    /// Write these IPs or hostnames (comma-separated) into the status of weir's Ingresses.
    #[arg(
        long,
        env = "WEIR_PUBLISH_STATUS_ADDRESS",
        value_delimiter = ',',
        value_name = "IP|HOSTNAME"
    )]
    pub publish_status_address: Vec<String>,

    /// Name of the `coordination.k8s.io/v1` Lease that elects the replica writing status and Events.
    #[arg(long, env = "WEIR_ELECTION_ID", default_value = "weir-leader")]
    pub election_id: String,

    /// Namespace of the election Lease (default: the pod's namespace, else the kubeconfig's).
    #[arg(long, env = "WEIR_ELECTION_NAMESPACE")]
    pub election_namespace: Option<String>,

    /// How long the Lease is valid without renewal: the longest a dead leader stays leader.
    #[arg(long, env = "WEIR_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = positive_duration)]
    pub election_lease_duration: Duration,

    /// How often replicas try to acquire or renew the Lease.
    #[arg(long, env = "WEIR_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = positive_duration)]
    pub election_retry_period: Duration,

    /// This replica's name in the election and in Events (set it to the pod name; default:
    /// the host name plus a random suffix).
    #[arg(long, env = "WEIR_IDENTITY")]
    pub identity: Option<String>,

    /// What an Ingress can change per route; its annotations, then the `--configmap`, override
    /// these defaults.
    #[command(
        flatten,
        next_help_heading = "Route defaults (annotations and the --configmap override them)"
    )]
    pub routes: RouteFlags,

    /// Address of the plain HTTP listener (HTTP/1.1 and HTTP/2 with prior knowledge).
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Address of the TLS listener (HTTP/1.1 and HTTP/2 by ALPN; certificates by SNI).
    #[arg(long, env = "WEIR_HTTPS_ADDR", default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,

    /// The certificate for TLS hosts without one of their own and for clients without SNI
    /// (a `kubernetes.io/tls` Secret); default: a self-signed certificate made at start-up.
    #[arg(long, env = "WEIR_DEFAULT_SSL_CERTIFICATE", value_name = "NAMESPACE/NAME", value_parser = parse_namespaced)]
    pub default_ssl_certificate: Option<(String, String)>,

    /// The HTTPS port clients see (behind a load balancer); redirects name it unless it is 443.
    #[arg(long, env = "WEIR_HTTPS_PORT_EXTERNAL", default_value_t = 443)]
    pub https_port_external: u16,

    /// Time allowed for a client to complete the TLS handshake.
    #[arg(long, env = "WEIR_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub tls_handshake_timeout: Duration,

    /// Honour `ssl-passthrough: "true"`: TLS connections whose SNI names such an Ingress's host
    /// go, unterminated, to the backend of its path `/`, as ingress-nginx's flag of that name
    /// does. Without it such Ingresses answer 503 (fail closed), with a Diagnostic. TLS
    /// connections to other hosts are terminated as always.
    #[arg(long, env = "WEIR_ENABLE_SSL_PASSTHROUGH")]
    pub enable_ssl_passthrough: bool,

    /// Address of the admin listener: /healthz, /readyz.
    #[arg(long, env = "WEIR_ADMIN_ADDR", default_value = "0.0.0.0:10254")]
    pub admin_addr: SocketAddr,

    /// The IngressClass name weir serves.
    #[arg(long, env = "WEIR_INGRESS_CLASS", default_value = "weir")]
    pub ingress_class: String,

    /// The `spec.controller` value of the IngressClasses weir owns.
    #[arg(
        long,
        env = "WEIR_CONTROLLER_NAME",
        default_value = "weir.dev/ingress-controller"
    )]
    pub controller_name: String,

    /// Also serve Ingresses that name no IngressClass at all.
    #[arg(long, env = "WEIR_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,

    /// How long idle pooled connections to endpoints are kept.
    #[arg(long, env = "WEIR_UPSTREAM_KEEPALIVE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub upstream_keepalive_timeout: Duration,

    /// Most idle pooled connections kept per endpoint.
    #[arg(
        long,
        env = "WEIR_UPSTREAM_KEEPALIVE_CONNECTIONS",
        default_value_t = 320
    )]
    pub upstream_keepalive_connections: usize,

    /// Time allowed for a client to send a complete HTTP/1 request head. The timer also runs
    /// while a keep-alive connection waits for its next request, so it bounds idleness too.
    #[arg(long, env = "WEIR_CLIENT_HEADER_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub client_header_timeout: Duration,

    /// How long a client may pause while sending a request body (then 408).
    #[arg(long, env = "WEIR_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub client_body_timeout: Duration,

    /// Threads serving connections (default: the CPUs this process may use, cgroup limits
    /// included). With 1, the runtime is tokio's single-threaded scheduler, which costs less
    /// per request than the work-stealing one.
    #[arg(long, env = "WEIR_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// Close client connections (HTTP/1.1 keep-alive and HTTP/2) idle for this long.
    #[arg(long, env = "WEIR_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = positive_duration)]
    pub keepalive_timeout: Duration,

    /// An HTTP/1.1 connection idle this long after a request gives back its buffers and keeps
    /// only its socket until the client sends again (saves ~25 KiB per idle connection).
    #[arg(long, env = "WEIR_KEEPALIVE_PARK_AFTER", default_value = "1s", value_parser = positive_duration)]
    pub keepalive_park_after: Duration,

    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(long, env = "WEIR_MAX_REQUEST_HEADER_SIZE", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_request_header_size: u32,

    /// Most request headers; more gets 431.
    #[arg(long, env = "WEIR_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_headers: u32,

    /// Longest request-target (path and query) in bytes; longer gets 414, as from nginx past
    /// its 8 KiB header buffer (`large-client-header-buffers`).
    #[arg(long, env = "WEIR_MAX_REQUEST_TARGET_SIZE", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u32).range(256..=1024 * 1024))]
    pub max_request_target_size: u32,

    /// Most client connections open at once (plain, TLS and passed through); at the cap,
    /// accepting pauses and new connections wait in the listen backlog. Default: half the
    /// process's open-files limit (the other half is for endpoint connections); 0: no cap.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections open at once from one client address (after a PROXY protocol header,
    /// the address it names); more are closed as soon as they are accepted. 0: no cap.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 0)]
    pub max_connections_per_client: usize,

    /// Most requests in flight at once on one HTTP/2 connection (nginx's
    /// `http2_max_concurrent_streams`; the controller ConfigMap's `http2-max-concurrent-streams`
    /// overrides it).
    #[arg(long, env = "WEIR_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub http2_max_concurrent_streams: u32,

    /// Requests served on one client connection before weir closes it (ingress-nginx's
    /// `keep-alive-requests`, which overrides it): HTTP/1 gets `Connection: close` on the last
    /// response, HTTP/2 a GOAWAY. 0: no cap.
    #[arg(long, env = "WEIR_KEEPALIVE_REQUESTS", default_value_t = 1000)]
    pub keepalive_requests: u64,

    /// Peers (comma-separated IPs or CIDRs) whose forwarding headers are believed: their
    /// X-Forwarded-For names the client, their X-Forwarded-Proto/-Host/-Port are passed on;
    /// from anyone else they are replaced. The controller ConfigMap's `use-forwarded-headers`
    /// (with `proxy-real-ip-cidr`) overrides it.
    #[arg(long, env = "WEIR_TRUST_FORWARDED_FROM", value_delimiter = ',', value_parser = parse_net)]
    pub trust_forwarded_from: Vec<IpNet>,

    /// Every client connection (plain and TLS) starts with a PROXY protocol header (v1 or v2),
    /// as behind an AWS NLB or another L4 load balancer that sends one; a connection without a
    /// valid header is closed. The controller ConfigMap's `use-proxy-protocol: "true"` turns it
    /// on too.
    #[arg(long, env = "WEIR_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// How long a connection may take to send its PROXY protocol header (then it is closed).
    #[arg(long, env = "WEIR_PROXY_PROTOCOL_HEADER_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub proxy_protocol_header_timeout: Duration,

    /// The load balancers (comma-separated IPs or CIDRs) whose PROXY protocol headers name the
    /// client; from any other peer the header is still required, and the peer stays the
    /// client. Default: every peer (ingress-nginx's `proxy-real-ip-cidr` default).
    #[arg(long, env = "WEIR_PROXY_PROTOCOL_TRUSTED_FROM", value_delimiter = ',', value_parser = parse_net)]
    pub proxy_protocol_trusted_from: Vec<IpNet>,

    /// On SIGTERM/SIGINT, how long weir keeps accepting connections while reporting unready,
    /// so that load balancers stop sending before the listeners close. A second signal skips it.
    #[arg(long, env = "WEIR_SHUTDOWN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// After the shutdown delay, how long requests in flight and open tunnels (WebSockets) may
    /// take to finish; what is still open then is closed.
    #[arg(long, env = "WEIR_SHUTDOWN_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub shutdown_timeout: Duration,

    /// Log filter (`info`, `debug`, `weir=debug,hyper=info`, …); `RUST_LOG` takes precedence.
    #[arg(long, env = "WEIR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Format of weir's logs and of the access log.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Where the access log (one line per request) goes.
    #[arg(long, env = "WEIR_ACCESS_LOG", value_enum, default_value = "stdout")]
    pub access_log: AccessLogTarget,

    /// Count requests in the `weir_request*` / `weir_upstream_*_duration` metrics.
    #[arg(long, env = "WEIR_REQUEST_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub request_metrics: bool,

    /// Label request metrics with the Ingress rule's host (bounded by the rules, not by what
    /// clients send).
    #[arg(long, env = "WEIR_METRICS_PER_HOST")]
    pub metrics_per_host: bool,

    /// Label request metrics with the Ingress rule's path (bounded by the rules, not by what
    /// clients send).
    #[arg(long, env = "WEIR_METRICS_PER_PATH")]
    pub metrics_per_path: bool,

    /// Label request metrics with the status class (`2xx`) instead of the code.
    #[arg(long, env = "WEIR_METRICS_STATUS_CLASSES")]
    pub metrics_status_classes: bool,

    /// Also export request and certificate metrics under another controller's names.
    #[arg(long, env = "WEIR_METRICS_COMPAT", value_enum)]
    pub metrics_compat: Option<MetricsCompat>,
}

/// The flags for what an Ingress can change per route (`Config::routes`).
#[derive(Debug, Clone, clap::Args)]
pub struct RouteFlags {
    /// The ingress-nginx-style controller ConfigMap: global defaults with ingress-nginx's keys
    /// (`proxy-body-size`, `proxy-read-timeout`, `ssl-redirect`, `hsts`, …), changed live. With
    /// `--manifests`, a ConfigMap of that name in the directory.
    #[arg(long, env = "WEIR_CONFIGMAP", value_name = "NAMESPACE/NAME", value_parser = parse_namespaced)]
    pub configmap: Option<(String, String)>,

    /// The Service that serves requests no rule and no Ingress's defaultBackend serves (its
    /// first TCP port); without it, weir answers them 404.
    #[arg(long, env = "WEIR_DEFAULT_BACKEND_SERVICE", value_name = "NAMESPACE/NAME", value_parser = parse_namespaced)]
    pub default_backend_service: Option<(String, String)>,

    /// Let annotations name objects in other namespaces (`auth-secret: namespace/name`), as
    /// ingress-nginx's flag of that name does. Off: a Secret in another namespace makes the
    /// route refuse (503), so one tenant cannot use another's users.
    #[arg(long, env = "WEIR_ALLOW_CROSS_NAMESPACE_RESOURCES")]
    pub allow_cross_namespace_resources: bool,

    /// Do not route to Services of type ExternalName (they answer 503 with a Diagnostic), as
    /// ingress-nginx's `--disable-svc-external-name` (accepted as an alias).
    #[arg(
        long,
        env = "WEIR_DISABLE_EXTERNAL_NAME",
        visible_alias = "disable-svc-external-name"
    )]
    pub disable_external_name: bool,

    /// Let ExternalName Services resolve to addresses weir refuses by default: loopback,
    /// unspecified, link-local, multicast and the cloud metadata services (169.254.169.254,
    /// fd00:ec2::254, …). Off, a name that resolves only to those answers 503, so that whoever
    /// may create a Service cannot make weir fetch from the node itself. Private ranges are
    /// always allowed.
    #[arg(long, env = "WEIR_ALLOW_EXTERNAL_NAME_LOCAL_ADDRESSES")]
    pub allow_external_name_local_addresses: bool,

    /// Status of HTTP→HTTPS redirects: 308 (keeps the method and body), 301, 302 or 307.
    #[arg(long, env = "WEIR_HTTP_REDIRECT_CODE", default_value_t = 308, value_parser = parse_redirect_code)]
    pub http_redirect_code: u16,

    /// Send `Strict-Transport-Security` on HTTPS responses of hosts with TLS.
    #[arg(long, env = "WEIR_HSTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub hsts: bool,

    /// The HSTS `max-age`.
    #[arg(long, env = "WEIR_HSTS_MAX_AGE", default_value = "365d", value_parser = humantime::parse_duration)]
    pub hsts_max_age: Duration,

    /// Add `includeSubDomains` to HSTS.
    #[arg(long, env = "WEIR_HSTS_INCLUDE_SUBDOMAINS")]
    pub hsts_include_subdomains: bool,

    /// Time allowed to open a TCP connection to an endpoint (then: next endpoint, or 504).
    #[arg(long, env = "WEIR_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub upstream_connect_timeout: Duration,

    /// How long an endpoint may stay silent: after the request body until its response head
    /// (then 504), and between reads of its response body (then the response is cut off).
    /// An Ingress's `proxy-read-timeout` annotation overrides it for its routes.
    #[arg(long, env = "WEIR_UPSTREAM_RESPONSE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub upstream_response_timeout: Duration,

    /// How long an upgraded connection (WebSocket) may carry no byte either way before both
    /// sides are closed. An Ingress's `proxy-read-timeout` annotation overrides it.
    #[arg(long, env = "WEIR_TUNNEL_IDLE_TIMEOUT", default_value = "1h", value_parser = positive_duration)]
    pub tunnel_idle_timeout: Duration,

    /// How long an endpoint may take no request data (then 504). An Ingress's
    /// `proxy-send-timeout` annotation overrides it.
    #[arg(long, env = "WEIR_UPSTREAM_SEND_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub upstream_send_timeout: Duration,

    /// The largest request body, in nginx's size syntax (`1m`, `512k`, `0` = no limit); larger
    /// gets 413. An Ingress's `proxy-body-size` annotation overrides it.
    #[arg(long, env = "WEIR_PROXY_BODY_SIZE", default_value = "1m", value_parser = parse_size)]
    pub proxy_body_size: BodySize,
}

/// A body size limit: `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodySize(pub Option<u64>);

fn parse_size(s: &str) -> Result<BodySize, String> {
    crate::model::annotations::values::size(s)
        .map(BodySize)
        .ok_or_else(|| format!("{s:?} is not a size like 1m, 512k, 1g or 0 (no limit)"))
}

impl RouteFlags {
    /// The defaults these flags give (the ConfigMap overrides them in the model).
    pub fn defaults(&self) -> Defaults {
        Defaults {
            timeouts: Timeouts {
                connect: self.upstream_connect_timeout,
                send: self.upstream_send_timeout,
                read: self.upstream_response_timeout,
                tunnel_idle: self.tunnel_idle_timeout,
            },
            max_body_size: self.proxy_body_size.0,
            https_redirect_code: http::StatusCode::from_u16(self.http_redirect_code)
                .unwrap_or(http::StatusCode::PERMANENT_REDIRECT),
            hsts: Hsts {
                enabled: self.hsts,
                max_age: self.hsts_max_age,
                include_subdomains: self.hsts_include_subdomains,
                preload: false,
            },
            ..Defaults::default()
        }
    }
}

/// The subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Report what weir would serve for a set of Ingresses, before switching to it: per
    /// Ingress its routes, what weir does with each annotation, and every Diagnostic. Reads a
    /// directory of manifests or a cluster (read-only). Exits 1 when an Ingress would lose
    /// behaviour (an annotation weir does not implement, a value it cannot use), 2 when the
    /// check cannot run.
    Check(CheckArgs),
}

/// `weir check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Check the objects of this directory (as `--manifests` serves them) instead of a cluster.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Kubeconfig of the cluster to check (default: `KUBECONFIG`, then `~/.kube/config`, then
    /// the in-cluster service account).
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,

    /// Check only this namespace of the cluster.
    #[arg(long, value_name = "NAMESPACE", conflicts_with = "manifests")]
    pub namespace: Option<String>,

    /// The IngressClass whose Ingresses are checked: `nginx` checks the Ingresses
    /// ingress-nginx serves today, as they are.
    #[arg(long, default_value = "weir")]
    pub ingress_class: String,

    /// The controller ConfigMap (ingress-nginx's, e.g. `ingress-nginx/ingress-nginx-controller`).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_namespaced)]
    pub configmap: Option<(String, String)>,

    /// The controller's default backend Service.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_namespaced)]
    pub default_backend_service: Option<(String, String)>,

    /// Let annotations name Secrets in other namespaces, as `weir --allow-cross-namespace-resources`.
    #[arg(long)]
    pub allow_cross_namespace_resources: bool,

    /// Check as `weir --disable-external-name` would serve (ExternalName Services answer 503).
    #[arg(long, visible_alias = "disable-svc-external-name")]
    pub disable_external_name: bool,

    /// Check as `weir --allow-external-name-local-addresses` would serve.
    #[arg(long)]
    pub allow_external_name_local_addresses: bool,
    /// Honour `ssl-passthrough`, as `weir --enable-ssl-passthrough` (and ingress-nginx's flag).
    #[arg(long)]
    pub enable_ssl_passthrough: bool,

    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: CheckOutput,
}

/// `weir check --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    /// A readable report.
    Text,
    /// The report as JSON.
    Json,
}

impl CheckArgs {
    /// The model's settings for checking `input`: Ingresses of `--ingress-class`, read with
    /// the controller of the IngressClass of that name when there is one (so that
    /// `--ingress-class nginx` selects what ingress-nginx serves, its default class included),
    /// and ingress-nginx's defaults.
    pub fn build_config(&self, input: &crate::model::Input) -> BuildConfig {
        let object = |kind, (ns, name): &(String, String)| ObjectRef::new(kind, ns, name);
        let mut classes = ClassConfig {
            ingress_class: self.ingress_class.clone(),
            ..ClassConfig::default()
        };
        if let Some(controller) = input
            .ingress_classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(self.ingress_class.as_str()))
            .and_then(|c| c.spec.as_ref()?.controller.clone())
        {
            classes.controller_name = controller;
        }
        BuildConfig {
            classes,
            defaults: Defaults::default(),
            config_map: self
                .configmap
                .as_ref()
                .map(|c| object(ObjectKind::ConfigMap, c)),
            default_backend_service: self
                .default_backend_service
                .as_ref()
                .map(|s| object(ObjectKind::Service, s)),
            allow_cross_namespace: self.allow_cross_namespace_resources,
            external_names: ExternalNamePolicy {
                disabled: self.disable_external_name,
                allow_local_addresses: self.allow_external_name_local_addresses,
            },
            ssl_passthrough: self.enable_ssl_passthrough,
        }
    }
}

/// Where the access log goes (`--access-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogTarget {
    /// Standard output (weir's own logs go to standard error).
    Stdout,
    /// Standard error, with weir's own logs.
    Stderr,
    /// No access log.
    Off,
}

/// Another controller's metric names (`--metrics-compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsCompat {
    /// ingress-nginx: `nginx_ingress_controller_requests`, `…_request_duration_seconds`, …
    IngressNginx,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_redirect_code(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(code @ (301 | 302 | 307 | 308)) => Ok(code),
        _ => Err(format!("{s:?} is not one of 301, 302, 307, 308")),
    }
}

fn parse_namespaced(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR"))
}

impl Config {
    /// The settings the model needs.
    pub fn build_config(&self) -> BuildConfig {
        let object = |kind, (ns, name): &(String, String)| ObjectRef::new(kind, ns, name);
        BuildConfig {
            classes: ClassConfig {
                ingress_class: self.ingress_class.clone(),
                controller_name: self.controller_name.clone(),
                watch_ingress_without_class: self.watch_ingress_without_class,
            },
            defaults: Defaults {
                client_address: ClientAddress {
                    proxy_protocol: self.proxy_protocol,
                    proxy_protocol_header_timeout: self.proxy_protocol_header_timeout,
                    proxy_protocol_from: match self.proxy_protocol_trusted_from.as_slice() {
                        [] => IpList::everyone(),
                        nets => IpList::from_nets(nets),
                    },
                    forwarded_from: IpList::from_nets(&self.trust_forwarded_from),
                    ..ClientAddress::default()
                },
                connection_limits: ConnectionLimits {
                    keepalive_requests: self.keepalive_requests,
                    http2_max_concurrent_streams: self.http2_max_concurrent_streams,
                },
                ..self.routes.defaults()
            },
            config_map: self
                .routes
                .configmap
                .as_ref()
                .map(|c| object(ObjectKind::ConfigMap, c)),
            default_backend_service: self
                .routes
                .default_backend_service
                .as_ref()
                .map(|s| object(ObjectKind::Service, s)),
            allow_cross_namespace: self.routes.allow_cross_namespace_resources,
            external_names: ExternalNamePolicy {
                disabled: self.routes.disable_external_name,
                allow_local_addresses: self.routes.allow_external_name_local_addresses,
            },
            ssl_passthrough: self.enable_ssl_passthrough,
        }
    }

    /// Checks the flags that constrain each other; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.election_retry_period * 3 > self.election_lease_duration {
            return Err(format!(
                "--election-retry-period ({:?}) must be at most a third of --election-lease-duration ({:?}), \
                 so that a leader gets several chances to renew before its term ends",
                self.election_retry_period, self.election_lease_duration
            ));
        }
        if let Some(empty) = self
            .publish_status_address
            .iter()
            .find(|a| a.trim().is_empty())
        {
            return Err(format!(
                "--publish-status-address has an empty entry ({empty:?})"
            ));
        }
        Ok(())
    }

    /// How the metrics look. `pod` and `namespace` name this replica in the ingress-nginx
    /// labels.
    pub fn metrics_config(&self, pod: &str, namespace: &str) -> MetricsConfig {
        MetricsConfig {
            labels: RequestLabels {
                per_host: self.metrics_per_host,
                per_path: self.metrics_per_path,
                status_classes: self.metrics_status_classes,
            },
            requests: self.request_metrics,
            ingress_nginx: self.metrics_compat.map(|MetricsCompat::IngressNginx| {
                ControllerLabels {
                    class: self.controller_name.clone(),
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                }
            }),
        }
    }

    /// The settings the cluster source needs.
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig {
            namespace: self.watch_namespace.clone(),
            endpoints_api: self.endpoints_api,
            debounce: Duration::from_millis(5),
            debounce_max: Duration::from_millis(500),
            default_certificate: self.default_ssl_certificate.clone(),
            config_map: self.routes.configmap.clone(),
            default_backend_service: self.routes.default_backend_service.clone(),
            build: self.build_config(),
        }
    }

    /// The settings the data plane needs.
    pub fn proxy_config(&self) -> crate::proxy::ProxyConfig {
        crate::proxy::ProxyConfig {
            upstream_keepalive_timeout: self.upstream_keepalive_timeout,
            upstream_keepalive_connections: self.upstream_keepalive_connections,
            client_header_timeout: self.client_header_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            ssl_passthrough: self.enable_ssl_passthrough,
            https_port_external: self.https_port_external,
            client_body_timeout: self.client_body_timeout,
            keepalive_timeout: self.keepalive_timeout,
            keepalive_park_after: self.keepalive_park_after,
            max_request_header_size: self.max_request_header_size as usize,
            max_headers: self.max_headers as usize,
            max_request_target_size: self.max_request_target_size as usize,
            max_connections: self
                .max_connections
                .or_else(crate::proxy::default_max_connections)
                .unwrap_or(0),
            max_connections_per_client: self.max_connections_per_client,
            access_log: None,
            mirror: crate::proxy::MirrorLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_parse() {
        let c = Config::try_parse_from(["weir"]).unwrap();
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_addr.to_string(), "0.0.0.0:10254");
        assert_eq!(c.ingress_class, "weir");
        assert_eq!(c.routes.upstream_connect_timeout, Duration::from_secs(5));
        assert_eq!(c.routes.proxy_body_size, BodySize(Some(1 << 20)));
        assert_eq!(c.max_request_header_size, 32768);

        let c = Config::try_parse_from([
            "weir",
            "--upstream-connect-timeout=250ms",
            "--trust-forwarded-from=10.0.0.0/8, 192.0.2.1",
        ])
        .unwrap();
        assert_eq!(
            c.routes.upstream_connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(c.trust_forwarded_from.len(), 2);
        assert!(Config::try_parse_from(["weir", "--trust-forwarded-from=nope"]).is_err());
        assert!(Config::try_parse_from(["weir", "--max-headers=0"]).is_err());
        assert!(Config::try_parse_from(["weir", "--upstream-response-timeout=0s"]).is_err());
        assert!(Config::try_parse_from(["weir", "--shutdown-delay=0s"]).is_ok());
        let c = Config::try_parse_from([
            "weir",
            "--keepalive-requests=0",
            "--http2-max-concurrent-streams=9",
        ])
        .unwrap();
        assert_eq!(
            c.build_config().defaults.connection_limits,
            ConnectionLimits {
                keepalive_requests: 0,
                http2_max_concurrent_streams: 9
            }
        );
        let c = Config::try_parse_from(["weir", "--upstream-connect-timeout=250ms"]).unwrap();
        assert!(!c.enable_ssl_passthrough && !c.build_config().ssl_passthrough);
        let c = Config::try_parse_from(["weir", "--enable-ssl-passthrough"]).unwrap();
        assert!(c.build_config().ssl_passthrough && c.proxy_config().ssl_passthrough);
        let c = Config::try_parse_from(["weir", "--publish-service=ingress/weir"]).unwrap();
        assert_eq!(c.publish_service, Some(("ingress".into(), "weir".into())));
        assert!(Config::try_parse_from(["weir", "--publish-service=weir"]).is_err());
        assert!(
            Config::try_parse_from([
                "weir",
                "--publish-service=a/b",
                "--publish-status-address=1.2.3.4"
            ])
            .is_err()
        );
    }

    #[test]
    fn external_name_flags_and_the_ingress_nginx_alias() {
        let c = Config::try_parse_from(["weir"]).unwrap();
        assert_eq!(
            c.build_config().external_names,
            ExternalNamePolicy::default()
        );
        for flag in ["--disable-external-name", "--disable-svc-external-name"] {
            let c = Config::try_parse_from(["weir", flag]).unwrap();
            assert!(c.build_config().external_names.disabled, "{flag}");
        }
        let c = Config::try_parse_from(["weir", "--allow-external-name-local-addresses"]).unwrap();
        let policy = c.build_config().external_names;
        assert!(policy.allow_local_addresses && !policy.disabled);
    }

    #[test]
    fn every_flag_documents_its_environment_variable() {
        use clap::CommandFactory;
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let want = format!("WEIR_{}", id.to_ascii_uppercase());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(want.as_str()), "flag {id}");
        }
    }
}

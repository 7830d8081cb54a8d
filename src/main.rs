//! The `weir` binary: parse flags, start the source, the rebuild loop, the data plane and the
//! admin listener, then wait for a signal and drain.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::Reporter;
use weir::access_log::AccessLog;
use weir::admin::serve_admin;
use weir::config::{AccessLogTarget, CheckArgs, CheckOutput, Command, Config, LogFormat};
use weir::controller::events::run_event_writer;
use weir::controller::leader::{ElectionConfig, run_election};
use weir::controller::status::{PublishFrom, run_status_writer};
use weir::controller::{DefaultCertificate, Published, run_rebuild_loop};
use weir::metrics::Metrics;
use weir::model::{ObjectKind, ObjectRef};
use weir::proxy::Proxy;
use weir::source::cluster::ClusterSource;
use weir::source::external_names::{ExternalNames, SystemResolver, resolve_once};
use weir::source::manifests::ManifestSource;
use weir::state::State;
use weir::tls::{CertStore, LiveResolver};

/// jemalloc, because a proxy's memory comes and goes in bursts (connections, table rebuilds):
/// with glibc's malloc, buffers freed by idle connections stayed in the process's RSS.
#[cfg(feature = "jemalloc")]
mod allocator {
    #[global_allocator]
    static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// Read by jemalloc when it starts (`_RJEM_MALLOC_CONF` in the environment overrides it):
    /// one background thread returns pages freed for about a second to the system, at once
    /// rather than lazily (MADV_FREE pages would still count in RSS).
    #[unsafe(export_name = "_rjem_malloc_conf")]
    static MALLOC_CONF: &[u8; 85] =
        b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
}

fn main() -> anyhow::Result<ExitCode> {
    let config = Config::parse();
    if let Some(Command::Check(args)) = &config.command {
        // 1 means "would lose behaviour"; failing to check at all is 2.
        return Ok(check(args).unwrap_or_else(|error| {
            eprintln!("weir check: {error:#}");
            ExitCode::from(2)
        }));
    }
    if let Err(message) = config.validate() {
        Config::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    init_tracing(&config.log_level, config.log_format)?;
    // One process-wide TLS crypto provider, chosen here (the Kubernetes client uses rustls).
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let runtime = runtime(config.worker_threads)?;
    runtime.block_on(run(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `weir check`: prints what weir would serve for the Ingresses of a directory or a cluster;
/// exit status 1 when one of them would lose behaviour (2 when the check could not run).
fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    // Manifests that do not parse are reported as warnings on standard error.
    init_tracing("warn", LogFormat::Text)?;
    let input = match &args.manifests {
        Some(dir) => {
            let mut source = ManifestSource::new(dir)
                .with_context(|| format!("cannot read --manifests {}", dir.display()))?;
            source.load().input
        }
        None => {
            rustls::crypto::aws_lc_rs::default_provider()
                .install_default()
                .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
            let runtime = runtime(Some(1))?;
            runtime.block_on(async {
                let client = kube_client(args.kubeconfig.as_deref()).await?;
                weir::source::cluster::list_once(
                    &client,
                    args.namespace.as_deref(),
                    args.configmap.as_ref(),
                )
                .await
                .context("cannot list the cluster's objects")
            })?
        }
    };
    // What the ExternalName Services' names resolve to here and now.
    let config = args.build_config(&input);
    let input = runtime(Some(1))?.block_on(async {
        let resolver = SystemResolver::new();
        resolve_once(&resolver, input, &config).await
    });
    let report = weir::check::report(&input, &config);
    match args.output {
        CheckOutput::Text => print!("{}", report.to_text()),
        CheckOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.loses_behaviour() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A client of the cluster `kubeconfig` names, else the one `KUBECONFIG`, `~/.kube/config` or
/// the in-cluster service account names.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let kube_config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("cannot use --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no --manifests DIR given and no cluster found (KUBECONFIG, ~/.kube/config or in-cluster); \
             pass --manifests DIR to use a directory of Kubernetes YAML without a cluster",
        )?,
    };
    info!(api_server = %kube_config.cluster_url, "connecting to the cluster");
    kube::Client::try_from(kube_config).context("cannot create the Kubernetes client")
}

/// The tokio runtime with `threads` workers (default: the CPUs available): the work-stealing
/// scheduler, or the single-threaded one when there is one worker (~6% less CPU per request
/// than a one-worker work-stealing runtime).
fn runtime(threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn init_tracing(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => {
            EnvFilter::try_new(from_env).context("invalid RUST_LOG")?
        }
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}"))?,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}

/// The access log `config` asks for, counting drops in `metrics`.
fn access_log(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<AccessLog>> {
    let out: Box<dyn std::io::Write + Send> = match config.access_log {
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::Stderr => Box::new(std::io::stderr()),
        AccessLogTarget::Off => return Ok(None),
    };
    let dropped = metrics.connections.access_log_dropped.clone();
    let log = AccessLog::start(config.log_format, out, dropped)
        .context("cannot start the access log writer")?;
    Ok(Some(log))
}

/// This replica's pod name and namespace for the ingress-nginx metric labels: `POD_NAME` and
/// `POD_NAMESPACE` (the Downward API), else the host name and the service account's namespace.
fn pod_identity() -> (String, String) {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pod = from_env("POD_NAME")
        .or_else(|| read_trimmed(HOSTNAME_FILE))
        .unwrap_or_default();
    let namespace = from_env("POD_NAMESPACE")
        .or_else(|| read_trimmed(NAMESPACE_FILE))
        .unwrap_or_default();
    (pod, namespace)
}

/// The host name (in a pod: the pod's name).
const HOSTNAME_FILE: &str = "/etc/hostname";
/// The namespace of the pod's ServiceAccount.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The contents of a one-line file, trimmed; `None` when it cannot be read.
fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Where the Kubernetes objects come from.
enum Source {
    Manifests(ManifestSource),
    Cluster(Box<ClusterSource>, kube::Client),
}

async fn source(config: &Config, metrics: &Metrics) -> anyhow::Result<Source> {
    if let Some(dir) = &config.manifests {
        let source = ManifestSource::new(dir)
            .with_context(|| format!("cannot serve --manifests {}", dir.display()))?;
        info!(manifests = %dir.display(), "serving a directory of manifests");
        return Ok(Source::Manifests(source));
    }
    let client = kube_client(config.kubeconfig.as_deref()).await?;
    Ok(Source::Cluster(
        Box::new(
            ClusterSource::new(client.clone(), config.cluster_config())
                .with_watch_restarts(metrics.control.watch_restarts.clone()),
        ),
        client,
    ))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (pod, namespace) = pod_identity();
    let metrics = Arc::new(Metrics::new(config.metrics_config(&pod, &namespace)));
    let source = source(&config, &metrics).await?;

    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let https = TcpListener::bind(config.https_addr)
        .await
        .with_context(|| format!("cannot listen on --https-addr {}", config.https_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", config.admin_addr))?;
    info!(http = %http.local_addr()?, https = %https.local_addr()?, admin = %admin.local_addr()?, ssl_passthrough = config.enable_ssl_passthrough, "weir listening");

    let generated =
        weir::tls::self_signed_default().context("cannot make the default certificate")?;
    let state = Arc::new(State::with_metrics(
        Arc::new(CertStore::new(generated.clone())),
        metrics.clone(),
    ));
    let default_certificate = DefaultCertificate {
        generated,
        secret: config
            .default_ssl_certificate
            .as_ref()
            .map(|(ns, name)| ObjectRef::new(ObjectKind::Secret, ns.clone(), name.clone())),
    };
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();

    let access_log = access_log(&config, &metrics)?;
    let proxy_config = weir::proxy::ProxyConfig {
        access_log: access_log.clone(),
        ..config.proxy_config()
    };
    let proxy = Proxy::new(state.clone(), proxy_config, tasks.clone(), cancel.clone());
    tasks.spawn(proxy.clone().serve_http(http, cancel.clone()));
    let current = state.clone();
    let resolver = LiveResolver::new(move || current.snapshot().certs.clone());
    let tls = weir::tls::ServerConfigs::new(Arc::new(resolver)).context("cannot configure TLS")?;
    let tls = Arc::new(tls);
    tasks.spawn(proxy.serve_https(https, tls, cancel.clone()));
    tasks.spawn(serve_admin(
        admin,
        state.clone(),
        tasks.clone(),
        cancel.clone(),
    ));
    // The source's inputs go through the stage that resolves ExternalName Services' names.
    let (inputs_tx, source_rx) = watch::channel(None);
    let (resolved_tx, inputs_rx) = watch::channel(None);
    let external_names = ExternalNames::new(SystemResolver::new(), config.build_config());
    tasks.spawn(external_names.run(source_rx, resolved_tx, cancel.clone()));
    let (published_tx, published_rx) = watch::channel(None);
    tasks.spawn(run_rebuild_loop(
        inputs_rx,
        state.clone(),
        config.build_config(),
        default_certificate,
        published_tx,
        cancel.clone(),
    ));
    let source_task = match source {
        Source::Manifests(source) => {
            let cancel = cancel.clone();
            tasks.spawn(async move {
                source
                    .run(inputs_tx, cancel)
                    .await
                    .context("the manifests source failed")
            })
        }
        Source::Cluster(source, client) => {
            let ingresses = source.ingresses();
            spawn_api_writers(
                &config,
                client,
                ingresses,
                published_rx,
                metrics.control.clone(),
                &tasks,
                &cancel,
            )
            .await;
            let cancel = cancel.clone();
            tasks.spawn(async move {
                source
                    .run(inputs_tx, cancel)
                    .await
                    .context("the cluster source failed")
            })
        }
    };

    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, delay = ?config.shutdown_delay, "shutting down: unready now, closing listeners after the delay");
            state.start_draining();
            tokio::select! {
                _ = tokio::time::sleep(config.shutdown_delay) => {}
                signal = shutdown_signal() => info!(signal, "second signal: skipping the shutdown delay"),
            }
            Ok(())
        }
        ended = source_task => match ended {
            Ok(result) => result,
            Err(e) => Err(anyhow::Error::new(e).context("the source panicked")),
        },
    };

    state.start_draining();
    cancel.cancel();
    tasks.close();
    info!(timeout = ?config.shutdown_timeout, "listeners closed; draining requests in flight and open tunnels");
    if tokio::time::timeout(config.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        warn!(timeout = ?config.shutdown_timeout, tasks = tasks.len(), "connections still open at the shutdown timeout; closing them and exiting");
    }
    if let Some(log) = access_log {
        let flushed = tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(2))).await;
        if !matches!(flushed, Ok(true)) {
            warn!("the last access log lines could not be written");
        }
    }
    if let Err(e) = &outcome {
        error!("{e:#}");
    }
    outcome
}

/// Starts what only the leader does on a cluster: the election, the status writer and Events.
async fn spawn_api_writers(
    config: &Config,
    client: kube::Client,
    ingresses: kube::runtime::reflector::Store<k8s_openapi::api::networking::v1::Ingress>,
    published: watch::Receiver<Option<Arc<Published>>>,
    metrics: weir::metrics::ControlMetrics,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let namespace = match &config.election_namespace {
        Some(ns) => ns.clone(),
        None => {
            read_trimmed(NAMESPACE_FILE).unwrap_or_else(|| client.default_namespace().to_owned())
        }
    };
    let election = ElectionConfig {
        namespace,
        name: config.election_id.clone(),
        identity: identity.clone(),
        lease_duration: config.election_lease_duration,
        retry_period: config.election_retry_period,
    };
    info!(lease = %format!("{}/{}", election.namespace, election.name), %identity, "joining the leader election");
    let (leader_tx, leader_rx) = watch::channel(false);
    tasks.spawn(run_election(
        client.clone(),
        election,
        leader_tx,
        cancel.clone(),
    ));
    let mut leading = leader_rx.clone();
    let leader_gauge = metrics.leader.clone();
    tasks.spawn(async move {
        loop {
            leader_gauge.set(i64::from(*leading.borrow_and_update()));
            if leading.changed().await.is_err() {
                return;
            }
        }
    });

    let reporter = Reporter {
        controller: config.controller_name.clone(),
        instance: Some(identity),
    };
    tasks.spawn(run_event_writer(
        client.clone(),
        reporter,
        published.clone(),
        leader_rx.clone(),
        metrics,
        cancel.clone(),
    ));

    let from = match (
        &config.publish_service,
        config.publish_status_address.is_empty(),
    ) {
        (Some((namespace, name)), _) => Some(PublishFrom::Service {
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        (None, false) => Some(PublishFrom::Addresses(
            config.publish_status_address.clone(),
        )),
        (None, true) => None,
    };
    match from {
        Some(from) => {
            tasks.spawn(run_status_writer(
                client,
                from,
                ingresses,
                published,
                leader_rx,
                cancel.clone(),
            ));
        }
        None => {
            info!("no --publish-service or --publish-status-address: Ingress status is not written")
        }
    }
}

/// The host name plus a random suffix, so that replicas on one host never share an identity.
fn default_identity() -> String {
    let host = read_trimmed(HOSTNAME_FILE)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weir".to_owned());
    format!("{host}-{:05x}", fastrand::u32(..0x100000))
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

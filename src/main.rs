//! The `weir` binary: parse flags, start the source, the rebuild loop, the data plane and the
//! admin listener, then wait for a signal and drain.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use kube::config::{KubeConfigOptions, Kubeconfig};
use weir::admin::serve_admin;
use weir::config::Config;
use weir::controller::run_rebuild_loop;
use weir::proxy::Proxy;
use weir::source::cluster::ClusterSource;
use weir::source::manifests::ManifestSource;
use weir::state::State;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(&config.log_level)?;
    // One process-wide TLS crypto provider, chosen here (the Kubernetes client uses rustls).
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(config))
}

fn init_tracing(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => {
            EnvFilter::try_new(from_env).context("invalid RUST_LOG")?
        }
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Where the Kubernetes objects come from.
enum Source {
    Manifests(ManifestSource),
    Cluster(ClusterSource),
}

async fn source(config: &Config) -> anyhow::Result<Source> {
    if let Some(dir) = &config.manifests {
        let source = ManifestSource::new(dir)
            .with_context(|| format!("cannot serve --manifests {}", dir.display()))?;
        info!(manifests = %dir.display(), "serving a directory of manifests");
        return Ok(Source::Manifests(source));
    }
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("cannot use --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no --manifests DIR given and no cluster found (KUBECONFIG, ~/.kube/config or in-cluster); \
             pass --manifests DIR to serve a directory of Kubernetes YAML without a cluster",
        )?,
    };
    info!(api_server = %kube_config.cluster_url, "serving a cluster");
    let client =
        kube::Client::try_from(kube_config).context("cannot create the Kubernetes client")?;
    Ok(Source::Cluster(ClusterSource::new(
        client,
        config.cluster_config(),
    )))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let source = source(&config).await?;

    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", config.admin_addr))?;
    info!(http = %http.local_addr()?, admin = %admin.local_addr()?, "weir listening");

    let state = Arc::new(State::new());
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();

    let proxy = Proxy::new(
        state.clone(),
        config.proxy_config(),
        tasks.clone(),
        cancel.clone(),
    );
    tasks.spawn(proxy.serve_http(http, cancel.clone()));
    tasks.spawn(serve_admin(
        admin,
        state.clone(),
        tasks.clone(),
        cancel.clone(),
    ));
    let (inputs_tx, inputs_rx) = watch::channel(None);
    tasks.spawn(run_rebuild_loop(
        inputs_rx,
        state.clone(),
        config.build_config(),
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
        Source::Cluster(source) => {
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
    if tokio::time::timeout(config.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        warn!(timeout = ?config.shutdown_timeout, "connections still open at the shutdown timeout; exiting");
    }
    if let Err(e) = &outcome {
        error!("{e:#}");
    }
    outcome
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

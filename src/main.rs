//! The `weir` binary: parse flags, start the source, the rebuild loop, the data plane and the
//! admin listener, then wait for a signal and drain.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use weir::admin::serve_admin;
use weir::config::Config;
use weir::controller::run_rebuild_loop;
use weir::proxy::Proxy;
use weir::source::manifests::ManifestSource;
use weir::state::State;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(&config.log_level)?;
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

async fn run(config: Config) -> anyhow::Result<()> {
    let Some(dir) = config.manifests.clone() else {
        bail!(
            "no source of Kubernetes objects: pass --manifests DIR (or set WEIR_MANIFESTS) to serve the \
             Ingresses, Services and Endpoints in a directory of YAML files"
        );
    };
    let source = ManifestSource::new(&dir)
        .with_context(|| format!("cannot serve --manifests {}", dir.display()))?;

    let http = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let admin = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on --admin-addr {}", config.admin_addr))?;
    info!(http = %http.local_addr()?, admin = %admin.local_addr()?, manifests = %dir.display(), "weir listening");

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
    let source_task = tasks.spawn(source.run(inputs_tx, cancel.clone()));

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
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the manifests source failed")),
            Err(e) => Err(anyhow::Error::new(e).context("the manifests source panicked")),
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

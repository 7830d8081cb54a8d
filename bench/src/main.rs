//! `weir-bench`: the parts of weir's benchmark (`bench/run.sh`) that wrk and h2load cannot do.
//!
//! One binary with a subcommand per job:
//!
//! - `backend`: the fast endpoint behind every proxy (HTTP/1.1 keep-alive, tiny and 1 KiB
//!   bodies, WebSocket echo);
//! - `grpc-backend`: a unary gRPC echo method over HTTP/2 cleartext, and `grpc-message` the
//!   request h2load sends to it;
//! - `ws-load`: closed-loop WebSocket echo load (messages/s, round-trip percentiles);
//! - `hold`: opens N idle keep-alive HTTP connections or WebSockets and holds them;
//! - `rate`: fixed-rate HTTP/1.1 keep-alive load with error accounting;
//! - `conn`: new connections per second, plain TCP or full TLS handshakes;
//! - `gen` and `change`: configuration generation and change-to-routable latency (files, or
//!   objects created in a Kubernetes API server);
//! - `callgrind`: instructions per request from callgrind dumps (the A/B of two weir binaries);
//! - `percentiles` and `report`: numbers to JSON and the final markdown/JSON report.
//!
//! Every measuring subcommand prints one JSON object on stdout.

mod backend;
mod callgrind;
mod change;
mod conn;
mod gen_config;
mod grpc;
mod hold;
mod kube;
mod rate;
mod report;
mod stats;
mod util;
mod wsload;

use clap::{Parser, Subcommand};

/// Command line of `weir-bench`.
#[derive(Parser)]
#[command(
    version,
    about = "Backend, load generators and report of weir's benchmark"
)]
struct Cli {
    /// Tokio worker threads (default: the CPUs this process may run on).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Serve the benchmark backend: tiny or 1 KiB bodies over HTTP/1.1, WebSocket echo.
    Backend(backend::Args),
    /// Serve a unary gRPC echo method over HTTP/2 cleartext (prior knowledge), with /stats.
    GrpcBackend(grpc::Args),
    /// Write the request body of a call to the gRPC backend (one length-prefixed message).
    GrpcMessage(grpc::MessageArgs),
    /// WebSocket echo load over N connections: messages/s and round-trip percentiles.
    WsLoad(wsload::Args),
    /// Open N idle keep-alive HTTP connections or WebSockets and hold them until SIGTERM.
    Hold(hold::Args),
    /// HTTP/1.1 keep-alive load at a fixed request rate, with errors counted by kind.
    Rate(rate::Args),
    /// New connections per second: one request per connection, plain or TLS.
    Conn(conn::Args),
    /// Write N copies of a template (`{{i}}` replaced by the index) to files, or create them in
    /// a Kubernetes API server.
    Gen(gen_config::Args),
    /// Time from a configuration change (a written file or a created object) to the first
    /// request that sees it.
    Change(change::Args),
    /// Instructions per request from callgrind dumps; functions that differ, baseline vs current.
    Callgrind(callgrind::Args),
    /// Percentiles of one column of numbers read from stdin.
    Percentiles(stats::PercentilesArgs),
    /// Build the markdown and JSON report from the records of a run.
    Report(report::Args),
    /// Print one field of the JSON object read from stdin (for the shell).
    Field {
        /// The key.
        key: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Pure file and text work: no runtime needed.
        Command::Gen(args) if args.post.is_none() => return gen_config::run(args),
        Command::Percentiles(args) => return stats::run_percentiles(args),
        Command::Report(args) => return report::run(args),
        Command::Callgrind(args) => return callgrind::run(args),
        Command::GrpcMessage(args) => return grpc::write_message(args),
        Command::Field { key } => return print_field(&key),
        _ => {}
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Backend(args) => backend::run(args).await,
            Command::GrpcBackend(args) => grpc::run(args).await,
            Command::WsLoad(args) => wsload::run(args).await,
            Command::Hold(args) => hold::run(args).await,
            Command::Rate(args) => rate::run(args).await,
            Command::Conn(args) => conn::run(args).await,
            Command::Change(args) => change::run(args).await,
            Command::Gen(args) => gen_config::post(args).await,
            Command::Percentiles(_)
            | Command::Report(_)
            | Command::Callgrind(_)
            | Command::GrpcMessage(_)
            | Command::Field { .. } => unreachable!(),
        }
    })
}

/// Prints `key` of the JSON object on stdin: strings bare, anything else as JSON, and nothing
/// (with a non-zero exit) when it is missing.
fn print_field(key: &str) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_reader(std::io::stdin().lock())?;
    match value.get(key) {
        Some(serde_json::Value::String(s)) => println!("{s}"),
        Some(v) => println!("{v}"),
        None => anyhow::bail!("no {key:?} in the JSON object"),
    }
    Ok(())
}

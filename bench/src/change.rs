//! Time from a configuration change to the first request that sees it.
//!
//! For each change `k`: the instantiated template is written atomically (a hidden temporary
//! file renamed into place) to the destination, or with `--post` created in the Kubernetes API
//! server (one kept-alive connection, as a controller's client would use), the `--after-write`
//! command runs if given (nginx: `nginx -s reload`) and must succeed, and then new connections
//! ask for the new host in a tight loop until one answers 200. The time counted runs from just
//! before the write (or the `POST`) to that 200 response; with `--post` the API server's answer
//! time is reported too (`write_p50_ms`), the part of the whole that is not the proxy's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::gen_config::instantiate;
use crate::stats::Samples;
use crate::util::{connect, merge, parse_secs, status_of, write_get};

/// Arguments of `change`.
#[derive(clap::Args)]
pub struct Args {
    /// The template of one change (`{{i}}` becomes the change's index).
    #[arg(long)]
    template: std::path::PathBuf,
    /// The file each change writes (`{{i}}` becomes the index).
    #[arg(long, required_unless_present = "post", conflicts_with = "post")]
    dest: Option<String>,
    /// Instead of writing a file, `POST` each change to this API path.
    #[arg(long)]
    post: Option<String>,
    /// The API server (with `--post`).
    #[command(flatten)]
    api: crate::kube::ApiArgs,
    /// The `Host` that the change makes routable (`{{i}}` becomes the index).
    #[arg(long)]
    host: String,
    /// Path of the probing requests.
    #[arg(long, default_value = "/")]
    path: String,
    /// The proxy to probe.
    #[arg(long)]
    addr: SocketAddr,
    /// Index of the first change.
    #[arg(long, default_value_t = 1_000_000)]
    start: u64,
    /// How many changes.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// A shell command run after each write (its time is counted).
    #[arg(long)]
    after_write: Option<String>,
    /// Seconds a change may take before it counts as lost.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// Seconds to wait between a change being seen and the next change.
    #[arg(long, default_value = "0.2", value_parser = parse_secs)]
    gap: Duration,
}

/// Makes the changes and prints `{"changes", "seen", "lost", "p50_ms", "p99_ms", "max_ms",
/// "samples_ms"}` (and `write_p50_ms`, `write_max_ms` with `--post`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(&args.template)
        .with_context(|| format!("cannot read {}", args.template.display()))?;
    let mut api = match &args.post {
        Some(_) => Some(crate::kube::ApiClient::connect(&args.api).await?),
        None => None,
    };
    let mut samples = Samples::default();
    let mut writes = Samples::default();
    let mut list = Vec::new();
    let mut lost = 0u64;
    let mut probes = 0u64;
    for i in args.start..args.start + args.count {
        let host = instantiate(&args.host, i);
        let began = Instant::now();
        let change = instantiate(&template, i);
        match (&mut api, &args.post, &args.dest) {
            (Some(api), Some(path), _) => {
                api.post(path, change, false).await?;
                writes.push(began.elapsed());
            }
            (_, _, Some(dest)) => {
                write_atomically(Path::new(&instantiate(dest, i)), change.as_bytes())?
            }
            _ => anyhow::bail!("--dest or --post is required"),
        }
        if let Some(command) = &args.after_write {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
                .await?;
            anyhow::ensure!(status.success(), "{command:?} failed: {status}");
        }
        let deadline = began + args.timeout;
        let seen = loop {
            probes += 1;
            if let Ok(200) = probe(args.addr, &host, &args.path).await {
                break Some(began.elapsed());
            }
            if Instant::now() >= deadline {
                break None;
            }
        };
        match seen {
            Some(elapsed) => {
                samples.push(elapsed);
                list.push((elapsed.as_secs_f64() * 1e4).round() / 10.0);
            }
            None => lost += 1,
        }
        tokio::time::sleep(args.gap).await;
    }
    let mut out = json!({
        "changes": args.count,
        "seen": samples.len(),
        "lost": lost,
        "probes": probes,
        "samples_ms": list,
    });
    merge(&mut out, samples.summary_ms());
    if !writes.is_empty() {
        let writes = writes.summary_ms();
        merge(
            &mut out,
            json!({ "write_p50_ms": writes["p50_ms"], "write_max_ms": writes["max_ms"] }),
        );
    }
    println!("{out}");
    Ok(())
}

/// Writes `data` to a hidden file next to `dest`, then renames it to `dest`.
fn write_atomically(dest: &Path, data: &[u8]) -> anyhow::Result<()> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .context("destination without a file name")?;
    let tmp = dest.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("cannot rename to {}", dest.display()))?;
    Ok(())
}

/// One request on a new connection; the response's status.
async fn probe(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<u16> {
    let attempt = async {
        let mut stream = connect(addr).await?;
        write_get(&mut stream, host, path, true).await?;
        let mut response = Vec::with_capacity(1024);
        stream.read_to_end(&mut response).await?;
        status_of(&String::from_utf8_lossy(&response))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| anyhow::anyhow!("probe timed out"))?
}

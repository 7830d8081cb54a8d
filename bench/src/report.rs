//! Records of a run and the final report.
//!
//! `weir-bench report record …` appends one line of JSON per measurement to a records file:
//! `{"test", "target", "run", "metrics": {…}}`, with the metrics taken from the JSON output of
//! another subcommand, or parsed from the text output of wrk or h2load, plus `--set` values.
//! `weir-bench report render …` reads the records, takes the median of every metric over the
//! runs, and writes the markdown table and the JSON document: the main table compares the
//! targets `direct`, `weir`, `nginx-classic`, `nginx-ingress` and `haproxy`, with weir over the
//! stronger nginx of each row and over HAProxy; the CPU scaling test (12) compares weir,
//! nginx-classic and HAProxy with one and two workers (`weir-1`, `weir-2`, …); the telemetry
//! test (9) compares variants of weir (`bare`, `metrics`, `metrics_log`) in a table of its own;
//! the A/B (`run.sh --baseline REV`, tests `ab_instr` and `ab_cpu`) compares a `baseline` and a
//! `current` weir in another. A last section checks the targets of issue 18 on the medians.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use crate::stats::{percentile, round3};

/// Arguments of `report`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The two report steps.
#[derive(clap::Subcommand)]
enum Command {
    /// Append one measurement to a records file.
    Record(RecordArgs),
    /// Render the records as markdown and JSON.
    Render(RenderArgs),
}

/// Arguments of `report record`.
#[derive(clap::Args)]
pub struct RecordArgs {
    /// The records file (JSON lines) to append to.
    #[arg(long)]
    records: PathBuf,
    /// Test id (`h1_tiny`, `ws_echo`, …).
    #[arg(long)]
    test: String,
    /// `direct`, `weir`, `nginx-classic`, `nginx-ingress` or `haproxy`; in the telemetry test
    /// `bare`, `metrics` or `metrics_log`; in the scaling test `weir-1`, `haproxy-2`, ….
    #[arg(long)]
    target: String,
    /// Run number.
    #[arg(long, default_value_t = 1)]
    run: u32,
    /// Metrics as a JSON object (a subcommand's output).
    #[arg(long)]
    json: Option<String>,
    /// Metrics parsed from a file of wrk output (`wrk --latency`).
    #[arg(long)]
    wrk: Option<PathBuf>,
    /// Metrics parsed from a file of h2load output.
    #[arg(long)]
    h2load: Option<PathBuf>,
    /// h2load's `--log-file` (per-request times) for its latency percentiles.
    #[arg(long)]
    h2load_log: Option<PathBuf>,
    /// Extra metrics, `key=value` (numbers stay numbers).
    #[arg(long = "set", value_parser = parse_kv)]
    set: Vec<(String, String)>,
}

/// Arguments of `report render`.
#[derive(clap::Args)]
pub struct RenderArgs {
    /// The records file written by `report record`.
    #[arg(long)]
    records: PathBuf,
    /// Facts about the run, `key=value`, in the order to print them.
    #[arg(long = "meta", value_parser = parse_kv)]
    meta: Vec<(String, String)>,
    /// Where to write the markdown.
    #[arg(long)]
    markdown: PathBuf,
    /// Where to write the JSON.
    #[arg(long)]
    json: PathBuf,
    /// The A/B's baseline revision (as shown).
    #[arg(long, default_value = "baseline")]
    ab_baseline: String,
    /// The A/B's current revision (as shown).
    #[arg(long, default_value = "current")]
    ab_current: String,
    /// The A/B's acceptance: instructions per request, current/baseline, at most this.
    #[arg(long, default_value_t = 1.01)]
    ab_budget: f64,
    /// How the A/B was run (one line).
    #[arg(long)]
    ab_settings: Option<String>,
    /// A markdown file (`weir-bench callgrind functions`) to show under the A/B's table.
    #[arg(long)]
    ab_functions: Option<PathBuf>,
    /// How many CPUs the proxies ran on in the main table (the req/s target is for one).
    #[arg(long, default_value_t = 1)]
    proxy_cpu_count: usize,
    /// The scaling test's pinning, said under its table (one line).
    #[arg(long)]
    scale_note: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Runs `report record` or `report render`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Record(args) => record(args),
        Command::Render(args) => render(args),
    }
}

fn record(args: RecordArgs) -> anyhow::Result<()> {
    let mut metrics = Map::new();
    if let Some(text) = &args.json {
        match serde_json::from_str(text).with_context(|| format!("not JSON: {text:?}"))? {
            Value::Object(map) => metrics.extend(map),
            _ => bail!("--json is not an object"),
        }
    }
    if let Some(path) = &args.wrk {
        metrics.extend(parse_wrk(&std::fs::read_to_string(path)?)?);
    }
    if let Some(path) = &args.h2load {
        metrics.extend(parse_h2load(&std::fs::read_to_string(path)?)?);
    }
    if let Some(path) = &args.h2load_log {
        metrics.extend(h2load_percentiles(&std::fs::read_to_string(path)?));
    }
    for (key, value) in args.set {
        let value = value
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(value), Value::Number);
        metrics.insert(key, value);
    }
    grpc_accounting(&mut metrics);
    // The proxy's CPU time per request (message, handshake): comparable even when the load
    // generator, not the proxy, limited the throughput.
    let rate = ["rps", "msgs_per_s", "conns_per_s"]
        .iter()
        .find_map(|k| metrics.get(*k).and_then(Value::as_f64));
    // The same for the part of it spent in the kernel (system time).
    for (pct, us) in [
        ("proxy_cpu_pct", "proxy_cpu_us"),
        ("proxy_sys_pct", "proxy_sys_us"),
    ] {
        if let (Some(pct), Some(rate)) = (metrics.get(pct).and_then(Value::as_f64), rate)
            && rate > 0.0
        {
            insert(&mut metrics, us, Some(round3(pct / 100.0 / rate * 1e6)));
        }
    }
    // And the part in user space, per run: the kernel's part moves with the machine's state
    // (the same run slots show it at about 7 or about 13 µs for every proxy), user time not.
    if let (Some(cpu), Some(sys)) = (
        metrics.get("proxy_cpu_us").and_then(Value::as_f64),
        metrics.get("proxy_sys_us").and_then(Value::as_f64),
    ) {
        insert(&mut metrics, "proxy_user_us", Some(round3(cpu - sys)));
    }
    let line =
        json!({"test": args.test, "target": args.target, "run": args.run, "metrics": metrics});
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.records)?;
    writeln!(file, "{line}")?;
    println!("{line}");
    Ok(())
}

/// Test 11 (gRPC): h2load counts a call as a success on HTTP 2xx, but a failed gRPC call is
/// an HTTP 200 too, its outcome in `grpc-status` (and weir answers the calls it refuses
/// itself in that shape). So the script also records what the gRPC backend counted during the
/// measured run, `backend_ok` (answered `grpc-status: 0`) and `backend_not_ok`, and for weir
/// `weir_grpc_not_ok` (calls weir's own metric saw end with another status). Failed calls:
///
/// - `unanswered`: 2xx responses beyond the calls the backend answered (a proxy's own
///   refusals);
///   h2load stops with up to connections × streams calls in flight, which the backend may have
///   answered uncounted: they can hide as many refusals, never make a false failure;
/// - `backend_not_ok`: calls the backend answered with another status;
/// - weir's count, when it is larger than the two above;
///
/// added to h2load's own errors (non-2xx, reset, timed out) in `errors`.
fn grpc_accounting(metrics: &mut Map<String, Value>) {
    let get = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
    let Some(backend_ok) = get(metrics, "backend_ok") else {
        return;
    };
    let answered_2xx = get(metrics, "status_2xx").unwrap_or(0.0);
    let backend_not_ok = get(metrics, "backend_not_ok").unwrap_or(0.0);
    let unanswered = (answered_2xx - backend_ok - backend_not_ok).max(0.0);
    let weir_not_ok = get(metrics, "weir_grpc_not_ok").unwrap_or(0.0);
    let failed = (unanswered + backend_not_ok).max(weir_not_ok);
    let errors = get(metrics, "errors").unwrap_or(0.0) + failed;
    insert(metrics, "unanswered", Some(unanswered));
    insert(metrics, "grpc_failed", Some(failed));
    insert(metrics, "errors", Some(errors));
}

/// A duration as wrk prints it (`512.00us`, `1.20ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(round3(number * factor))
}

/// `rps`, `p50_ms`, `p99_ms`, `requests`, `errors` from `wrk --latency` output.
fn parse_wrk(text: &str) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    let mut errors = 0.0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => insert(&mut m, "p50_ms", wrk_ms(v)),
            ["99%", v] => insert(&mut m, "p99_ms", wrk_ms(v)),
            ["Requests/sec:", v] => insert(&mut m, "rps", v.parse().ok().map(round3)),
            [n, "requests", "in", ..] => insert(&mut m, "requests", n.parse().ok()),
            ["Socket", "errors:", rest @ ..] => {
                // connect 0, read 0, write 0, timeout 0
                for pair in rest.chunks(2) {
                    if let [kind, n] = pair {
                        let n: f64 = n.trim_end_matches(',').parse().unwrap_or(0.0);
                        errors += n;
                        insert(&mut m, &format!("socket_{kind}"), Some(n));
                    }
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                let n: f64 = n.parse().unwrap_or(0.0);
                errors += n;
                insert(&mut m, "non_2xx", Some(n));
            }
            _ => {}
        }
    }
    if !m.contains_key("rps") {
        bail!("no Requests/sec in the wrk output:\n{text}");
    }
    insert(&mut m, "errors", Some(errors));
    Ok(m)
}

/// `rps`, `requests`, `errors` from h2load output.
fn parse_h2load(text: &str) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // finished in 2.00s, 41234.50 req/s, 5.12MB/s
            let rps = rest
                .split(", ")
                .nth(1)
                .and_then(|f| f.strip_suffix(" req/s"));
            insert(&mut m, "rps", rps.and_then(|v| v.parse().ok()).map(round3));
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            // 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
            let mut errors = 0.0;
            for field in rest.split(", ") {
                if let Some((n, what)) = field.split_once(' ') {
                    let n: f64 = n.parse().unwrap_or(0.0);
                    match what {
                        "succeeded" => insert(&mut m, "requests", Some(n)),
                        "failed" | "errored" | "timeout" => errors += n,
                        _ => {}
                    }
                }
            }
            insert(&mut m, "request_errors", Some(errors));
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            // 100 2xx, 0 3xx, 0 4xx, 0 5xx
            let mut non_2xx = 0.0;
            for field in rest.split(", ") {
                if let Some((n, class)) = field.split_once(' ') {
                    let n = n.parse::<f64>().unwrap_or(0.0);
                    if class == "2xx" {
                        insert(&mut m, "status_2xx", Some(n));
                    } else {
                        non_2xx += n;
                    }
                }
            }
            insert(&mut m, "non_2xx", Some(non_2xx));
        }
    }
    if !m.contains_key("rps") {
        bail!("no 'finished in' line in the h2load output:\n{text}");
    }
    let errors = ["request_errors", "non_2xx"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_f64))
        .sum::<f64>();
    insert(&mut m, "errors", Some(errors));
    Ok(m)
}

/// `p50_ms`, `p99_ms` from h2load's per-request log (third column: microseconds).
fn h2load_percentiles(log: &str) -> Map<String, Value> {
    let mut micros: Vec<f64> = log
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    micros.sort_by(f64::total_cmp);
    let mut m = Map::new();
    insert(
        &mut m,
        "p50_ms",
        percentile(&micros, 50.0).map(|v| round3(v / 1000.0)),
    );
    insert(
        &mut m,
        "p99_ms",
        percentile(&micros, 99.0).map(|v| round3(v / 1000.0)),
    );
    m
}

fn insert(m: &mut Map<String, Value>, key: &str, value: Option<f64>) {
    if let Some(n) = value.and_then(serde_json::Number::from_f64) {
        m.insert(key.to_owned(), Value::Number(n));
    }
}

/// Which way a metric is better.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
    /// Context, not a score.
    Info,
}

/// A metric shown in the table.
struct Shown {
    key: &'static str,
    label: &'static str,
    better: Better,
}

/// A test in the table, in the order of the table.
struct Test {
    id: &'static str,
    title: &'static str,
    metrics: &'static [Shown],
}

const fn shown(key: &'static str, label: &'static str, better: Better) -> Shown {
    Shown { key, label, better }
}

use Better::{Higher, Info, Lower};

/// Throughput, latency and errors of a load test.
const LOAD: &[Shown] = &[
    shown("rps", "req/s", Higher),
    shown("p50_ms", "p50 latency (ms)", Lower),
    shown("p99_ms", "p99 latency (ms)", Lower),
    shown("proxy_cpu_pct", "proxy CPU (% of one core)", Info),
    shown("proxy_cpu_us", "proxy CPU per request (µs)", Lower),
    shown("proxy_sys_us", "… of it in the kernel (µs)", Info),
    shown("errors", "errors", Lower),
];

/// Test 11's ids: gRPC unary calls, over h2c and over TLS.
const GRPC_H2C: &str = "grpc_h2c";
const GRPC_TLS: &str = "grpc_tls";

/// Tests whose runs with errors are shown as failed: a target with any such run gets
/// "failed" instead of its numbers (a gRPC call that failed is as fast as one that worked,
/// or faster).
const STRICT: &[&str] = &[GRPC_H2C, GRPC_TLS];

/// A gRPC load test's rows.
const GRPC: &[Shown] = &[
    shown("rps", "calls/s", Higher),
    shown("p50_ms", "p50 latency (ms)", Lower),
    shown("p99_ms", "p99 latency (ms)", Lower),
    shown("proxy_cpu_pct", "proxy CPU (% of one core)", Info),
    shown("proxy_cpu_us", "proxy CPU per call (µs)", Lower),
    shown(
        "errors",
        "failed calls, most in a run (non-2xx, reset, grpc-status ≠ 0)",
        Lower,
    ),
];

/// The tests, in table order.
const TESTS: &[Test] = &[
    Test {
        id: "h1_tiny",
        title: "1a. HTTP/1.1 keep-alive, 64 conns, 13 B body (wrk)",
        metrics: LOAD,
    },
    Test {
        id: "h1_1k",
        title: "1b. HTTP/1.1 keep-alive, 64 conns, 1 KiB body (wrk)",
        metrics: LOAD,
    },
    Test {
        id: "newconn",
        title: "2. New connection per request, 64 clients (wrk, Connection: close)",
        metrics: &[
            shown("rps", "conn/s", Higher),
            shown("p50_ms", "p50 latency (ms)", Lower),
            shown("p99_ms", "p99 latency (ms)", Lower),
            shown("proxy_cpu_pct", "proxy CPU (% of one core)", Info),
            shown("proxy_cpu_us", "proxy CPU per connection (µs)", Lower),
            shown("proxy_sys_us", "… of it in the kernel (µs)", Info),
            shown("errors", "errors", Lower),
        ],
    },
    Test {
        id: "h2_tls",
        title: "3a. HTTP/2 over TLS, 16 conns × 10 streams (h2load)",
        metrics: LOAD,
    },
    Test {
        id: "tls_handshake",
        title: "3b. New TLS connections: full handshake (RSA-2048, no resumption) + 1 request, 32 clients",
        metrics: &[
            shown("conns_per_s", "handshakes/s", Higher),
            shown("p50_ms", "p50 connect→response (ms)", Lower),
            shown("p99_ms", "p99 connect→response (ms)", Lower),
            shown("proxy_cpu_pct", "proxy CPU (% of one core)", Info),
            shown("proxy_cpu_us", "proxy CPU per handshake (µs)", Lower),
            shown("proxy_sys_us", "… of it in the kernel (µs)", Info),
            shown("errors", "errors", Lower),
        ],
    },
    Test {
        id: "ws_echo",
        title: "4. WebSocket echo, 100 connections, 64 B messages",
        metrics: &[
            shown("msgs_per_s", "messages/s", Higher),
            shown("p50_ms", "p50 round trip (ms)", Lower),
            shown("p99_ms", "p99 round trip (ms)", Lower),
            shown("proxy_cpu_pct", "proxy CPU (% of one core)", Info),
            shown("proxy_cpu_us", "proxy CPU per message (µs)", Lower),
            shown("proxy_sys_us", "… of it in the kernel (µs)", Info),
            shown("errors", "errors", Lower),
        ],
    },
    Test {
        id: "mem_http",
        title: "5a. Idle HTTP/1.1 keep-alive connections held open (one request each)",
        metrics: &[
            shown("kib_per_conn", "RSS per connection (KiB)", Lower),
            shown("rss_before_mib", "RSS before (MiB)", Info),
            shown("rss_held_mib", "RSS holding them (MiB)", Info),
            shown("opened", "opened", Info),
            shown("alive_at_end", "still open at the end", Higher),
        ],
    },
    Test {
        id: "mem_ws",
        title: "5b. Idle WebSockets held open (one echo each)",
        metrics: &[
            shown("kib_per_conn", "RSS per WebSocket (KiB)", Lower),
            shown("rss_before_mib", "RSS before (MiB)", Info),
            shown("rss_held_mib", "RSS holding them (MiB)", Info),
            shown("opened", "opened", Info),
            shown("alive_at_end", "still open at the end", Higher),
        ],
    },
    Test {
        id: "mem_tls",
        title: "5c. Idle HTTP/1.1 keep-alive connections over TLS held open (one request each)",
        metrics: &[
            shown("kib_per_conn", "RSS per connection (KiB)", Lower),
            shown("rss_before_mib", "RSS before (MiB)", Info),
            shown("rss_held_mib", "RSS holding them (MiB)", Info),
            shown("opened", "opened", Info),
            shown("alive_at_end", "still open at the end", Higher),
        ],
    },
    Test {
        id: "mem_h2",
        title: "5d. Idle HTTP/2 connections over TLS held open (one request each)",
        metrics: &[
            shown("kib_per_conn", "RSS per connection (KiB)", Lower),
            shown("rss_before_mib", "RSS before (MiB)", Info),
            shown("rss_held_mib", "RSS holding them (MiB)", Info),
            shown("opened", "opened", Info),
            shown("alive_at_end", "still open at the end", Higher),
        ],
    },
    Test {
        id: "cpu_rate",
        title: "6. CPU at a fixed rate (64 keep-alive conns, 13 B body)",
        metrics: &[
            shown("cpu_s_per_100k", "CPU-seconds per 100,000 requests", Lower),
            shown("achieved_rps", "achieved req/s", Info),
            shown("p99_ms", "p99 latency (ms)", Lower),
            shown("errors", "errors", Lower),
        ],
    },
    Test {
        id: "cfg_latency",
        title: "8a. Change → first request that sees it, 10,000 Ingresses loaded",
        metrics: &[
            shown("p50_ms", "p50 (ms)", Lower),
            shown("p99_ms", "p99 (ms)", Lower),
            shown("max_ms", "max (ms)", Lower),
            shown("rebuild_p50_ms", "weir's table rebuild, median (ms)", Info),
            shown("seen", "changes seen", Info),
            shown("lost", "changes never seen", Lower),
        ],
    },
    Test {
        id: "cfg_memory",
        title: "8b. Memory of the configuration: 10,000 Ingresses vs 1",
        metrics: &[
            shown("table_mib", "RSS(10,000) − RSS(1) (MiB)", Lower),
            shown("rss_1_mib", "RSS with 1 (MiB)", Info),
            shown("rss_10k_mib", "RSS with 10,000 (MiB)", Info),
            shown("pss_10k_mib", "PSS with 10,000 (MiB)", Info),
            shown("load_s", "start → last host routable (s)", Lower),
        ],
    },
    Test {
        id: "cfg_errors",
        title: "8c. Client errors under load (fixed rate, keep-alive) during changes",
        metrics: &[
            shown("errors", "errors seen by clients", Lower),
            shown("io_errors", "… reset/closed mid-request", Lower),
            shown("non_2xx", "… non-2xx responses", Lower),
            shown("connect_errors", "… connects refused", Lower),
            shown("reconnects", "idle connections closed by the proxy", Info),
            shown(
                "requests",
                "requests sent while the changes ran (faster changes, fewer requests)",
                Info,
            ),
            shown("changes", "changes", Info),
        ],
    },
    Test {
        id: "cfg_cluster",
        title: "8d. Cluster mode: an Ingress `POST`ed to a real kube-apiserver → first request \
                that sees it, 10,000 Ingresses there",
        metrics: &[
            shown("p50_ms", "p50 (ms)", Lower),
            shown("p99_ms", "p99 (ms)", Lower),
            shown("max_ms", "max (ms)", Lower),
            shown(
                "write_p50_ms",
                "… of which the API server's answer, p50 (ms)",
                Info,
            ),
            shown("load_s", "start → last host routable (s)", Lower),
            shown("rss_mib", "RSS with 10,000 (MiB)", Info),
            shown("seen", "changes seen", Info),
            shown("lost", "changes never seen", Lower),
        ],
    },
    Test {
        id: GRPC_H2C,
        title: "11a. gRPC unary over h2c, 16 conns × 10 streams (h2load)",
        metrics: GRPC,
    },
    Test {
        id: GRPC_TLS,
        title: "11b. gRPC unary over h2 (TLS), 16 conns × 10 streams (h2load)",
        metrics: GRPC,
    },
];

/// The targets of the main table, in column order.
const TARGETS: [&str; 5] = ["direct", "weir", NGINX_CLASSIC, NGINX_INGRESS, HAPROXY];
const NGINX_CLASSIC: &str = "nginx-classic";
const NGINX_INGRESS: &str = "nginx-ingress";
const HAPROXY: &str = "haproxy";

/// weir's value over another's.
fn ratio(weir: Option<f64>, other: Option<f64>) -> Option<f64> {
    match (weir, other) {
        (Some(w), Some(o)) if o != 0.0 => Some(round3(w / o)),
        _ => None,
    }
}

/// The stronger of the two nginx values (the lower for ↓, the higher for ↑; nginx-classic for
/// Info rows), with its target; one alone when the other is missing.
fn best_nginx(
    better: Better,
    classic: Option<f64>,
    ingress: Option<f64>,
) -> Option<(&'static str, f64)> {
    match (classic, ingress) {
        (Some(c), Some(i)) => {
            let ingress_wins = match better {
                Lower => i < c,
                Higher => i > c,
                Info => false,
            };
            Some(if ingress_wins {
                (NGINX_INGRESS, i)
            } else {
                (NGINX_CLASSIC, c)
            })
        }
        (Some(c), None) => Some((NGINX_CLASSIC, c)),
        (None, Some(i)) => Some((NGINX_INGRESS, i)),
        (None, None) => None,
    }
}

/// One test's records: metric -> target -> values over runs.
type ByMetric = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

/// The test id of the telemetry test (9), rendered apart from the main table.
const TELEMETRY: &str = "telemetry";

const TELEMETRY_TITLE: &str =
    "9. Cost of weir's telemetry (64 keep-alive conns, 13 B body; weir vs weir)";

/// A variant of weir in the telemetry test: its target in the records, its row label.
struct Variant {
    target: &'static str,
    label: &'static str,
}

/// The variants, in table order; the first one is what the last column compares with.
const VARIANTS: &[Variant] = &[
    Variant {
        target: "bare",
        label: "bare",
    },
    Variant {
        target: "metrics",
        label: "metrics (request metrics)",
    },
    Variant {
        target: "metrics_log",
        label: "metrics + access log",
    },
];

/// For a test in [`STRICT`]: the targets with runs that had errors, with (such runs, runs).
fn failed_runs(test: &str, metrics: &ByMetric) -> BTreeMap<String, (usize, usize)> {
    let mut failed = BTreeMap::new();
    if !STRICT.contains(&test) {
        return failed;
    }
    for (target, errors) in metrics.get("errors").into_iter().flatten() {
        let bad = errors.iter().filter(|e| **e > 0.0).count();
        if bad > 0 {
            failed.insert(target.clone(), (bad, errors.len()));
        }
    }
    failed
}

/// The telemetry table's columns of medians: metric and header.
const TELEMETRY_COLUMNS: &[(&str, &str)] = &[
    ("rps", "req/s"),
    ("p99_ms", "p99 (ms)"),
    ("proxy_cpu_us", "proxy CPU per request (µs)"),
];

/// Metrics of the telemetry test that are in its JSON only (medians and runs).
const TELEMETRY_JSON_ONLY: &[&str] = &[
    "p50_ms",
    "proxy_cpu_pct",
    "proxy_sys_pct",
    "proxy_sys_us",
    "proxy_user_us",
    "requests",
    "errors",
    "access_log_lines",
    "access_log_dropped",
];

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.records)
        .with_context(|| format!("cannot read {}", args.records.display()))?;
    // test -> metric -> target -> values over runs
    let mut runs: BTreeMap<String, ByMetric> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line)?;
        let (Some(test), Some(target), Some(metrics)) = (
            record["test"].as_str(),
            record["target"].as_str(),
            record["metrics"].as_object(),
        ) else {
            bail!("malformed record: {line}");
        };
        for (key, value) in metrics {
            if let Some(v) = value.as_f64() {
                runs.entry(test.to_owned())
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .entry(target.to_owned())
                    .or_default()
                    .push(v);
            }
        }
    }

    let main_table = TESTS.iter().any(|t| runs.contains_key(t.id));
    let mut md = String::from(if main_table {
        "# weir vs nginx and HAProxy\n\n"
    } else {
        "# weir benchmark\n\n"
    });
    for (key, value) in &args.meta {
        md.push_str(&format!("- {key}: {value}\n"));
    }
    if main_table {
        md.push_str(
            "\nMedians over the runs. `direct` is the load generator against the backend with \
             no proxy: the physical limit. `nginx-classic` is a classic reverse proxy \
             configuration of nginx, `nginx-ingress` one shaped like ingress-nginx's, `haproxy` \
             Debian's HAProxy in a classic configuration (bench/README.md has all three). \
             **weir/best nginx** divides weir's value by the stronger nginx of the row: the \
             lower of the two for ↓ metrics, the higher for ↑ ones (the letter says which: \
             c = nginx-classic, i = nginx-ingress); weir/haproxy likewise. ↑ higher is \
             better, ↓ lower is better.\n\n",
        );
        md.push_str(&format!(
            "| test | metric | {} | weir/best nginx | weir/haproxy |\n",
            TARGETS.join(" | ")
        ));
        md.push_str(&format!(
            "|---|---|{}---:|---:|\n",
            "---:|".repeat(TARGETS.len())
        ));
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    // test -> metric -> target -> median, for the targets section.
    let mut medians: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, f64>>> = BTreeMap::new();
    for test in TESTS {
        let Some(metrics) = runs.get(test.id) else {
            continue;
        };
        let failed = failed_runs(test.id, metrics);
        for (target, (bad, of)) in &failed {
            failures.push(format!(
                "- **{} — {target}: calls failed in {bad} of {of} runs** (see `errors` and \
                 `grpc_failed` in the JSON): its numbers are not shown.\n",
                test.title
            ));
        }
        let mut first = true;
        for shown in test.metrics {
            let Some(by_target) = metrics.get(shown.key) else {
                continue;
            };
            // A failed target's numbers are left out (its errors stay: in a strict test, the
            // most of a run, as a median could hide them).
            let strict = STRICT.contains(&test.id);
            let median_of = |t: &str| {
                if shown.key != "errors" && failed.contains_key(t) {
                    return None;
                }
                let values = by_target.get(t)?;
                if strict && shown.key == "errors" {
                    return values.iter().copied().reduce(f64::max);
                }
                Some(median(values))
            };
            let values: BTreeMap<&str, Option<f64>> =
                TARGETS.iter().map(|t| (*t, median_of(t))).collect();
            let weir = values["weir"];
            let best = best_nginx(shown.better, values[NGINX_CLASSIC], values[NGINX_INGRESS]);
            let ratio_best = ratio(weir, best.map(|(_, v)| v));
            let ratio_haproxy = ratio(weir, values[HAPROXY]);
            for (t, v) in &values {
                if let Some(v) = v {
                    medians
                        .entry(test.id)
                        .or_default()
                        .entry(shown.key)
                        .or_default()
                        .insert(*t, *v);
                }
            }
            let cell = |t: &str, v: Option<f64>| {
                if v.is_none() && failed.contains_key(t) {
                    "failed".to_owned()
                } else {
                    fmt(v)
                }
            };
            let arrow = match shown.better {
                Higher => " ↑",
                Lower => " ↓",
                Info => "",
            };
            let cells: Vec<String> = TARGETS.iter().map(|t| cell(t, values[t])).collect();
            let best_cell = match (ratio_best, best) {
                (Some(r), Some((which, _))) if !matches!(shown.better, Info) => {
                    format!("{r:.2} ({})", &which[6..7])
                }
                _ => "–".to_owned(),
            };
            let haproxy_cell = match ratio_haproxy {
                Some(r) if !matches!(shown.better, Info) => format!("{r:.2}"),
                _ => "–".to_owned(),
            };
            md.push_str(&format!(
                "| {} | {}{} | {} | {} | {} |\n",
                if first { test.title } else { "" },
                shown.label,
                arrow,
                cells.join(" | "),
                best_cell,
                haproxy_cell,
            ));
            first = false;
            let mut row = json!({
                "test": test.id,
                "title": test.title,
                "metric": shown.key,
                "label": shown.label,
                "better": match shown.better { Higher => "higher", Lower => "lower", Info => "info" },
                "best_nginx": best.map(|(t, _)| t),
                "ratio_best_nginx": ratio_best,
                "ratio_haproxy": ratio_haproxy,
                "ratio_nginx_classic": ratio(weir, values[NGINX_CLASSIC]),
                "ratio_nginx_ingress": ratio(weir, values[NGINX_INGRESS]),
                "failed_runs": failed.iter()
                    .map(|(t, (bad, _))| (t.to_string(), json!(bad)))
                    .collect::<Map<_, _>>(),
                "runs": TARGETS.iter()
                    .filter_map(|t| by_target.get(*t).map(|v| (t.to_string(), json!(v))))
                    .collect::<Map<_, _>>(),
            });
            for (t, v) in &values {
                row[*t] = json!(v);
            }
            results.push(row);
        }
    }
    if !failures.is_empty() {
        md.push('\n');
        for line in &failures {
            md.push_str(line);
        }
    }
    let scale = runs
        .get(SCALE)
        .map(|m| scale_table(m, args.scale_note.as_deref()));
    if let Some((table, _)) = &scale {
        md.push_str(table);
    }
    let telemetry = runs.get(TELEMETRY).map(telemetry_table);
    if let Some((table, _)) = &telemetry {
        md.push_str(table);
    }
    let ab = if runs.contains_key(AB_INSTR) || runs.contains_key(AB_CPU) {
        let functions = match &args.ab_functions {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let ab = AbLabels {
            baseline: &args.ab_baseline,
            current: &args.ab_current,
            budget: args.ab_budget,
            settings: args.ab_settings.as_deref(),
            functions: functions.as_deref(),
        };
        Some(ab_table(&runs, &ab))
    } else {
        None
    };
    if let Some((table, _)) = &ab {
        md.push_str(table);
    }
    let targets = if main_table {
        let (table, json) = targets_section(&medians, args.proxy_cpu_count);
        md.push_str(&table);
        md.push_str(&cpu_split_section(&medians));
        Some(json)
    } else {
        None
    };
    let meta: Map<String, Value> = args
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let document = json!({
        "meta": meta,
        "results": results,
        "targets": targets,
        "scale": scale.map(|(_, json)| json),
        "telemetry": telemetry.map(|(_, json)| json),
        "ab": ab.map(|(_, json)| json),
        "all_runs": runs,
    });
    std::fs::write(&args.markdown, &md)?;
    std::fs::write(&args.json, serde_json::to_string_pretty(&document)? + "\n")?;
    print!("{md}");
    Ok(())
}

/// A goal of the performance issue, checked on the medians of the main table.
#[derive(Clone, Copy)]
enum Goal {
    /// weir / the stronger nginx at most this (lower is better).
    RatioAtMost(f64),
    /// weir / the stronger nginx at least this (higher is better).
    RatioAtLeast(f64),
    /// weir's own value at most this.
    AtMost(f64, &'static str),
}

/// One line of the targets section.
struct Goalpost {
    what: &'static str,
    test: &'static str,
    metric: &'static str,
    goal: Goal,
}

const fn goalpost(
    what: &'static str,
    test: &'static str,
    metric: &'static str,
    goal: Goal,
) -> Goalpost {
    Goalpost {
        what,
        test,
        metric,
        goal,
    }
}

/// The targets of issue 18, in the order they are listed.
const GOALS: &[Goalpost] = &[
    goalpost(
        "CPU per request ≤ 0.8× nginx: HTTP/1.1 keep-alive, 13 B (1a)",
        "h1_tiny",
        "proxy_cpu_us",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "CPU per request ≤ 0.8× nginx: HTTP/1.1 keep-alive, 13 B, fixed rate (6)",
        "cpu_rate",
        "cpu_s_per_100k",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "CPU per request ≤ 0.8× nginx: HTTP/1.1 keep-alive, 1 KiB (1b)",
        "h1_1k",
        "proxy_cpu_us",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "CPU per request ≤ 0.8× nginx: new connections (2)",
        "newconn",
        "proxy_cpu_us",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "CPU per request ≤ 0.8× nginx: HTTP/2 over TLS (3a)",
        "h2_tls",
        "proxy_cpu_us",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "CPU per request ≤ 0.8× nginx: WebSocket messages (4)",
        "ws_echo",
        "proxy_cpu_us",
        Goal::RatioAtMost(0.8),
    ),
    goalpost(
        "req/s ≥ 1.0× nginx, proxy on one core: HTTP/1.1 13 B (1a)",
        "h1_tiny",
        "rps",
        Goal::RatioAtLeast(1.0),
    ),
    goalpost(
        "req/s ≥ 1.0× nginx, proxy on one core: HTTP/1.1 1 KiB (1b)",
        "h1_1k",
        "rps",
        Goal::RatioAtLeast(1.0),
    ),
    goalpost(
        "req/s ≥ 1.0× nginx, proxy on one core: new connections (2)",
        "newconn",
        "rps",
        Goal::RatioAtLeast(1.0),
    ),
    goalpost(
        "req/s ≥ 1.0× nginx, proxy on one core: HTTP/2 over TLS (3a)",
        "h2_tls",
        "rps",
        Goal::RatioAtLeast(1.0),
    ),
    goalpost(
        "req/s ≥ 1.0× nginx, proxy on one core: WebSocket messages (4)",
        "ws_echo",
        "msgs_per_s",
        Goal::RatioAtLeast(1.0),
    ),
    goalpost(
        "p99 ≤ nginx: HTTP/1.1 13 B (1a)",
        "h1_tiny",
        "p99_ms",
        Goal::RatioAtMost(1.0),
    ),
    goalpost(
        "p99 ≤ nginx: HTTP/1.1 1 KiB (1b)",
        "h1_1k",
        "p99_ms",
        Goal::RatioAtMost(1.0),
    ),
    goalpost(
        "p99 ≤ nginx: new connections (2)",
        "newconn",
        "p99_ms",
        Goal::RatioAtMost(1.0),
    ),
    goalpost(
        "p99 ≤ nginx: HTTP/2 over TLS (3a)",
        "h2_tls",
        "p99_ms",
        Goal::RatioAtMost(1.0),
    ),
    goalpost(
        "p99 ≤ nginx: WebSocket round trip (4)",
        "ws_echo",
        "p99_ms",
        Goal::RatioAtMost(1.0),
    ),
    goalpost(
        "idle keep-alive connection ≤ 1 KiB RSS, plain TCP (5a)",
        "mem_http",
        "kib_per_conn",
        Goal::AtMost(1.0, "KiB"),
    ),
    goalpost(
        "idle keep-alive connection ≤ 1 KiB RSS, TLS (5c)",
        "mem_tls",
        "kib_per_conn",
        Goal::AtMost(1.0, "KiB"),
    ),
    goalpost(
        "idle HTTP/2 connection ≤ 4 KiB RSS, TLS (5d)",
        "mem_h2",
        "kib_per_conn",
        Goal::AtMost(4.0, "KiB"),
    ),
    goalpost(
        "change → routable p99 ≤ 30 ms, 10,000 Ingresses (8a)",
        "cfg_latency",
        "p99_ms",
        Goal::AtMost(30.0, "ms"),
    ),
    goalpost(
        "change → routable p99 ≤ 30 ms, 10,000 Ingresses, cluster mode (8d)",
        "cfg_cluster",
        "p99_ms",
        Goal::AtMost(30.0, "ms"),
    ),
    goalpost(
        "start-up with 10,000 Ingresses ready ≤ 5 s, cluster mode (8d)",
        "cfg_cluster",
        "load_s",
        Goal::AtMost(5.0, "s"),
    ),
    goalpost(
        "start-up with 10,000 Ingresses ready ≤ 5 s (8b)",
        "cfg_memory",
        "load_s",
        Goal::AtMost(5.0, "s"),
    ),
];

/// Medians of the main table: test -> metric -> target -> median.
type Medians<'a> = BTreeMap<&'a str, BTreeMap<&'a str, BTreeMap<&'a str, f64>>>;

/// The targets section: each goal of the issue, what was measured, met or not.
fn targets_section(medians: &Medians, proxy_cpu_count: usize) -> (String, Value) {
    let mut md = String::from(
        "\n## Targets (issue 18)\n\n\
         Ratios are weir over the stronger nginx of the row (c = nginx-classic, i = \
         nginx-ingress), from the medians above; weir/haproxy is for reference. A goal whose \
         test did not run is \"not measured\".\n\n\
         | target | weir | best nginx | weir/best nginx | weir/haproxy | verdict |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    let mut rows = Vec::new();
    for g in GOALS {
        let values = medians.get(g.test).and_then(|m| m.get(g.metric));
        let get = |t: &str| values.and_then(|v| v.get(t)).copied();
        let weir = get("weir");
        let better = match g.goal {
            Goal::RatioAtLeast(_) => Higher,
            _ => Lower,
        };
        let best = best_nginx(better, get(NGINX_CLASSIC), get(NGINX_INGRESS));
        let ratio_best = ratio(weir, best.map(|(_, v)| v));
        let ratio_haproxy = ratio(weir, get(HAPROXY));
        let met = match g.goal {
            Goal::RatioAtMost(limit) => ratio_best.map(|r| r <= limit),
            Goal::RatioAtLeast(limit) => ratio_best.map(|r| r >= limit),
            Goal::AtMost(limit, _) => weir.map(|w| w <= limit),
        };
        let off_setting = matches!(g.goal, Goal::RatioAtLeast(_)) && proxy_cpu_count != 1;
        let verdict = match met {
            None => "not measured".to_owned(),
            Some(true) => "met".to_owned(),
            Some(false) => "**not met**".to_owned(),
        } + if off_setting && met.is_some() {
            " (the proxies ran on more than one CPU: not the target's setting)"
        } else {
            ""
        };
        let weir_cell = match (g.goal, weir) {
            (Goal::AtMost(_, unit), Some(w)) => format!("{} {unit}", fmt(Some(w))),
            _ => fmt(weir),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            g.what,
            weir_cell,
            best.map_or("–".to_owned(), |(t, v)| format!(
                "{} ({})",
                fmt(Some(v)),
                &t[6..7]
            )),
            if matches!(g.goal, Goal::AtMost(..)) {
                "–".to_owned()
            } else {
                ratio_best.map_or("–".to_owned(), |r| format!("{r:.2}"))
            },
            ratio_haproxy.map_or("–".to_owned(), |r| format!("{r:.2}")),
            verdict,
        ));
        let (kind, limit) = match g.goal {
            Goal::RatioAtMost(l) => ("ratio_at_most", l),
            Goal::RatioAtLeast(l) => ("ratio_at_least", l),
            Goal::AtMost(l, _) => ("at_most", l),
        };
        rows.push(json!({
            "target": g.what,
            "test": g.test,
            "metric": g.metric,
            "goal": kind,
            "limit": limit,
            "weir": weir,
            "best_nginx": best.map(|(t, _)| t),
            "best_nginx_value": best.map(|(_, v)| v),
            "ratio_best_nginx": ratio_best,
            "ratio_haproxy": ratio_haproxy,
            "met": met,
            "proxy_cpus": proxy_cpu_count,
        }));
    }
    (md, Value::Array(rows))
}

/// The tests whose CPU per request the CPU split section divides into user and kernel time.
const CPU_SPLIT_TESTS: &[(&str, &str)] = &[
    ("h1_tiny", "1a. HTTP/1.1 keep-alive, 13 B"),
    ("h1_1k", "1b. HTTP/1.1 keep-alive, 1 KiB"),
    ("newconn", "2. new connection per request"),
    ("h2_tls", "3a. HTTP/2 over TLS"),
    ("tls_handshake", "3b. full TLS handshakes"),
    ("ws_echo", "4. WebSocket messages"),
];

/// Where the CPU per request goes: each proxy's time in user space and in the kernel (system
/// time, mostly the system calls that move the bytes); weir's kernel time over the whole CPU
/// time of the stronger nginx (the lowest CPU ratio weir could reach while it makes the same
/// system calls, with its own code costing nothing); and the user time weir would need for
/// 0.8× that nginx's CPU with its kernel time as measured.
fn cpu_split_section(medians: &Medians) -> String {
    let mut md = String::from(
        "\n## Where the CPU per request goes: user space and kernel\n\n\
         µs per request (connection, handshake, message), medians over the runs: user / kernel \
         (system time). The nginx column is the stronger nginx of the CPU row (c = \
         nginx-classic, i = nginx-ingress). The kernel's part moves with the machine's state, \
         for every proxy alike (run slots at about 7 or about 13 µs on HTTP/1.1 keep-alive on \
         the 2-core machine); user time does not: compare user times, and read the last two \
         columns as depending on that state. \"floor\" is weir's kernel time over that nginx's \
         whole CPU time: the lowest CPU ratio weir could reach with its own code costing \
         nothing, while it makes the same system calls; the last column is the user time weir \
         would need for 0.8× that nginx's CPU.\n\n\
         | test | weir | best nginx | haproxy | floor | weir's user time for 0.8× |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let mut any = false;
    for (test, title) in CPU_SPLIT_TESTS {
        let Some(metrics) = medians.get(test) else {
            continue;
        };
        let get = |metric: &str, target: &str| metrics.get(metric)?.get(target).copied();
        let Some(weir_sys) = get("proxy_sys_us", "weir") else {
            continue;
        };
        let user = |target: &str| {
            get("proxy_user_us", target)
                .or_else(|| Some(get("proxy_cpu_us", target)? - get("proxy_sys_us", target)?))
        };
        let split = |target: &str| match (user(target), get("proxy_sys_us", target)) {
            (Some(user), Some(sys)) => format!("{} / {}", fmt(Some(user)), fmt(Some(sys))),
            _ => "–".to_owned(),
        };
        let best = best_nginx(
            Lower,
            get("proxy_cpu_us", NGINX_CLASSIC),
            get("proxy_cpu_us", NGINX_INGRESS),
        );
        let floor = ratio(Some(weir_sys), best.map(|(_, v)| v));
        let needed = best.map(|(_, cpu)| 0.8 * cpu - weir_sys);
        any = true;
        md.push_str(&format!(
            "| {title} | {} | {} | {} | {} | {} |\n",
            split("weir"),
            best.map_or("–".to_owned(), |(t, _)| format!(
                "{} ({})",
                split(t),
                &t[6..7]
            )),
            split(HAPROXY),
            floor.map_or("–".to_owned(), |r| format!("{r:.2}")),
            match needed {
                None => "–".to_owned(),
                Some(n) if n <= 0.0 => "none would do".to_owned(),
                Some(n) => format!("≤ {}", fmt(Some(n))),
            },
        ));
    }
    if any { md } else { String::new() }
}

/// The test id of the CPU scaling test, rendered apart from the main table.
const SCALE: &str = "scale_h1";

/// The scaling test's rows: target in the records, label, proxy family (for the factor).
const SCALE_VARIANTS: &[(&str, &str)] = &[
    ("weir-1", "weir, 1 worker thread"),
    ("weir-2", "weir, 2 worker threads"),
    ("nginx-classic-1", "nginx-classic, 1 worker"),
    ("nginx-classic-2", "nginx-classic, 2 workers"),
    ("haproxy-1", "haproxy, nbthread 1"),
    ("haproxy-2", "haproxy, nbthread 2"),
];

/// The scaling test's columns.
const SCALE_COLUMNS: &[(&str, &str)] = &[
    ("cpus", "proxy CPUs"),
    ("rps", "req/s ↑"),
    ("p99_ms", "p99 (ms) ↓"),
    ("proxy_cpu_pct", "proxy CPU (% of one core)"),
    ("proxy_cpu_us", "proxy CPU per request (µs) ↓"),
    ("errors", "errors"),
];

/// The CPU scaling table (markdown) and its JSON: per variant the medians, req/s relative to
/// the same proxy with one worker, and every run's values.
fn scale_table(metrics: &ByMetric, note: Option<&str>) -> (String, Value) {
    let median_of = |key: &str, target: &str| {
        metrics
            .get(key)
            .and_then(|t| t.get(target))
            .map(|v| median(v))
    };
    let headers: Vec<&str> = SCALE_COLUMNS.iter().map(|(_, h)| *h).collect();
    let mut md = format!(
        "\n## CPU scaling: 1 and 2 workers, HTTP/1.1 keep-alive, 13 B body (wrk, 64 conns)\n\n\
         Each proxy with one worker and with two (weir `--worker-threads`, nginx-classic \
         `worker_processes`, HAProxy `nbthread`). The last column is req/s over the same \
         proxy's with one worker.{}\n\n\
         | variant | {} | req/s vs 1 worker |\n|---|{}---:|\n",
        note.map(|n| format!(" {n}")).unwrap_or_default(),
        headers.join(" | "),
        "---:|".repeat(SCALE_COLUMNS.len()),
    );
    let mut rows = Vec::new();
    for (target, label) in SCALE_VARIANTS {
        if !SCALE_COLUMNS
            .iter()
            .any(|(k, _)| median_of(k, target).is_some())
        {
            continue;
        }
        let one = format!("{}1", &target[..target.len() - 1]);
        let relative = match (median_of("rps", target), median_of("rps", &one)) {
            (Some(v), Some(base)) if base != 0.0 => Some(round3(v / base)),
            _ => None,
        };
        let cells: Vec<String> = SCALE_COLUMNS
            .iter()
            .map(|(k, _)| fmt(median_of(k, target)))
            .collect();
        md.push_str(&format!(
            "| {label} | {} | {} |\n",
            cells.join(" | "),
            relative.map_or("–".to_owned(), |r| format!("{r:.2}")),
        ));
        let mut row = Map::new();
        row.insert("variant".to_owned(), json!(target));
        row.insert("label".to_owned(), json!(label));
        let mut runs = Map::new();
        for (key, values) in metrics
            .iter()
            .filter_map(|(k, t)| Some((k, t.get(*target)?)))
        {
            row.insert(key.clone(), json!(median(values)));
            runs.insert(key.clone(), json!(values));
        }
        row.insert("rps_vs_1_worker".to_owned(), json!(relative));
        row.insert("runs".to_owned(), Value::Object(runs));
        rows.push(Value::Object(row));
    }
    let json = json!({"test": SCALE, "note": note, "variants": rows});
    (md, json)
}

/// The telemetry test's table (markdown, after the main table) and its JSON: per variant the
/// medians, req/s relative to bare, and every run's values.
fn telemetry_table(metrics: &ByMetric) -> (String, Value) {
    let median_of = |key: &str, target: &str| {
        metrics
            .get(key)
            .and_then(|t| t.get(target))
            .map(|v| median(v))
    };
    let bare_rps = median_of("rps", VARIANTS[0].target);
    let headers: Vec<&str> = TELEMETRY_COLUMNS
        .iter()
        .map(|(_, header)| *header)
        .collect();
    let mut md = format!(
        "\n## {TELEMETRY_TITLE}\n\n\
         Test 1a's load on three weirs: `bare` runs with `--access-log off \
         --request-metrics=false`, `metrics` with `--access-log off` (the weir of the table \
         above), `metrics + access log` with request metrics and the access log on stdout, \
         appended to a file. Medians over the runs; the last column is the variant's median \
         req/s over bare's (0.970: 3 % fewer requests).\n\n\
         | variant | {} | req/s relative to bare |\n|---|{}---:|\n",
        headers.join(" | "),
        "---:|".repeat(TELEMETRY_COLUMNS.len()),
    );
    let mut rows = Vec::new();
    for variant in VARIANTS {
        let relative = match (median_of("rps", variant.target), bare_rps) {
            (Some(v), Some(bare)) if bare != 0.0 => Some(round3(v / bare)),
            _ => None,
        };
        let cells: Vec<String> = TELEMETRY_COLUMNS
            .iter()
            .map(|(key, _)| fmt(median_of(key, variant.target)))
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            variant.label,
            cells.join(" | "),
            relative.map_or("–".to_owned(), |r| format!("{r:.3}")),
        ));
        rows.push(telemetry_row(metrics, variant, relative));
    }
    md.push_str(&telemetry_notes(metrics));
    let json = json!({"test": TELEMETRY, "title": TELEMETRY_TITLE, "variants": rows});
    (md, json)
}

/// A variant's row in the telemetry JSON: the medians of its metrics, `rps_vs_bare`, and under
/// `runs` the values of every run.
fn telemetry_row(metrics: &ByMetric, variant: &Variant, rps_vs_bare: Option<f64>) -> Value {
    let keys = TELEMETRY_COLUMNS
        .iter()
        .map(|(key, _)| *key)
        .chain(TELEMETRY_JSON_ONLY.iter().copied());
    let mut row = Map::new();
    row.insert("variant".to_owned(), json!(variant.target));
    row.insert("label".to_owned(), json!(variant.label));
    let mut runs = Map::new();
    for key in keys {
        if let Some(values) = metrics.get(key).and_then(|t| t.get(variant.target)) {
            row.insert(key.to_owned(), json!(median(values)));
            runs.insert(key.to_owned(), json!(values));
        }
    }
    row.insert("rps_vs_bare".to_owned(), json!(rps_vs_bare));
    row.insert("runs".to_owned(), Value::Object(runs));
    Value::Object(row)
}

/// What to say under the telemetry table: the access log's lines against the requests (so
/// that its writes are seen to be real), and errors, if any.
fn telemetry_notes(metrics: &ByMetric) -> String {
    let sum = |key: &str, target: &str| {
        metrics
            .get(key)
            .and_then(|t| t.get(target))
            .map(|v| v.iter().sum::<f64>())
    };
    let mut notes = String::new();
    if let Some(lines) = sum("access_log_lines", "metrics_log") {
        notes.push_str(&format!(
            "\nmetrics + access log, over all runs: {} access log lines written for {} requests \
             answered, {} lines dropped (writer behind).\n",
            fmt(Some(lines)),
            fmt(sum("requests", "metrics_log")),
            fmt(sum("access_log_dropped", "metrics_log")),
        ));
    }
    let errors: Vec<String> = VARIANTS
        .iter()
        .filter_map(|v| Some((v.label, sum("errors", v.target)?)))
        .filter(|(_, n)| *n > 0.0)
        .map(|(label, n)| format!("{label} {}", fmt(Some(n))))
        .collect();
    if !errors.is_empty() {
        notes.push_str(&format!("\nErrors (all runs): {}.\n", errors.join(", ")));
    }
    notes
}

/// The A/B's tests: instructions per request under callgrind (the acceptance measure) and CPU
/// per request at a fixed rate (the noisy corroboration).
const AB_INSTR: &str = "ab_instr";
const AB_CPU: &str = "ab_cpu";

/// The A/B table's rows: test, metric, label, which way is better, decimals of the ratio.
const AB_ROWS: &[(&str, Shown, usize)] = &[
    (
        AB_INSTR,
        shown(
            "instr_per_req",
            "**instructions per request**, (Ir(2N) − Ir(N)) / N: the acceptance measure",
            Lower,
        ),
        4,
    ),
    (
        AB_INSTR,
        shown("instr_per_req_n", "… check: Ir(N) / N", Info),
        4,
    ),
    (
        AB_INSTR,
        shown("instr_per_req_2n", "… check: Ir(2N) / 2N", Info),
        4,
    ),
    (
        AB_INSTR,
        shown(
            "idle_instr_per_s",
            "… idle instructions per second (background: adds this ÷ the rate to each request above)",
            Info,
        ),
        3,
    ),
    (
        AB_CPU,
        shown(
            "cpu_us_per_req",
            "CPU per request at a fixed rate, schedstat (µs): noisy corroboration",
            Lower,
        ),
        3,
    ),
    (
        AB_CPU,
        shown(
            "cpu_s_per_100k",
            "CPU-seconds per 100,000 requests at a fixed rate, clock ticks: noisy corroboration",
            Lower,
        ),
        3,
    ),
    (AB_CPU, shown("achieved_rps", "… achieved req/s", Info), 3),
    (AB_CPU, shown("p99_ms", "… p99 latency (ms)", Lower), 3),
    (AB_CPU, shown("errors", "… errors", Lower), 3),
];

/// What the A/B table says besides the records.
struct AbLabels<'a> {
    baseline: &'a str,
    current: &'a str,
    budget: f64,
    settings: Option<&'a str>,
    functions: Option<&'a str>,
}

/// The A/B's section (markdown) and its JSON: per metric the medians of baseline and current,
/// current/baseline and every run's values; the verdict on instructions per request.
fn ab_table(runs: &BTreeMap<String, ByMetric>, labels: &AbLabels) -> (String, Value) {
    let values = |test: &str, key: &str, target: &str| -> Option<&Vec<f64>> {
        runs.get(test)?.get(key)?.get(target)
    };
    let mut md = format!(
        "\n## A/B: per-request CPU of a route without annotations, baseline vs current\n\n\
         - baseline: {}\n- current: {}\n",
        labels.baseline, labels.current
    );
    if let Some(settings) = labels.settings {
        md.push_str(&format!("- how: {settings}\n"));
    }
    md.push_str(
        "\nBoth binaries in the same run, on the same CPU, with the same manifests and load, \
         on a host whose Ingress has no annotation, both built with one codegen unit. \
         **Instructions per request** (callgrind, counted not timed: little moved by other \
         work on the machine, though a busy one can shift a run by about 1 %) is the acceptance \
         measure; the CPU time at a fixed rate is noisy corroboration (medians of interleaved \
         runs). Ratio: current/baseline, lower is better below 1.\n\n\
         | metric | baseline | current | current/baseline | runs: baseline; current |\n\
         |---|---:|---:|---:|---|\n",
    );
    let mut rows = Vec::new();
    let mut verdict = Value::Null;
    let mut verdict_md = String::new();
    for (test, shown, decimals) in AB_ROWS {
        let (Some(base), Some(cur)) = (
            values(test, shown.key, "baseline"),
            values(test, shown.key, "current"),
        ) else {
            continue;
        };
        let (b, c) = (median(base), median(cur));
        let ratio = (b != 0.0).then(|| c / b);
        let list = |v: &Vec<f64>| v.iter().map(|x| fmt_ab(*x)).collect::<Vec<_>>().join(" / ");
        md.push_str(&format!(
            "| {} | {} | {} | {} | {}; {} |\n",
            shown.label,
            fmt_ab(b),
            fmt_ab(c),
            ratio.map_or("–".to_owned(), |r| format!("{r:.decimals$}")),
            list(base),
            list(cur),
        ));
        if shown.key == "instr_per_req"
            && let Some(r) = ratio
        {
            let pass = r <= labels.budget;
            verdict = json!({"ratio": r, "budget": labels.budget, "pass": pass});
            let change = (r - 1.0) * 100.0;
            verdict_md = format!(
                "\n**Acceptance** (instructions per request, current/baseline ≤ {}): \
                 {r:.4} ({change:+.2} %): {}.\n",
                labels.budget,
                if pass {
                    "within the budget"
                } else {
                    "**over the budget**"
                }
            );
        }
        rows.push(json!({
            "test": test,
            "metric": shown.key,
            "label": shown.label,
            "better": match shown.better { Higher => "higher", Lower => "lower", Info => "info" },
            "baseline": b,
            "current": c,
            "ratio": ratio,
            "runs": {"baseline": base, "current": cur},
        }));
    }
    md.push_str(&verdict_md);
    if let Some(functions) = labels.functions {
        md.push_str(
            "\n### Where the instructions go (callgrind, run 1 of each binary)\n\n\
             Per function, computed like the total: (cost in the 2N dump − cost in the N \
             dump) / N. Names come from each binary's symbols: a function inlined in one \
             binary and not in the other moves its instructions to its caller, so read the \
             self table together with the inclusive one (weir's own functions, callees \
             included).\n\n",
        );
        md.push_str(functions);
    }
    let json = json!({
        "baseline": labels.baseline,
        "current": labels.current,
        "settings": labels.settings,
        "acceptance": verdict,
        "rows": rows,
    });
    (md, json)
}

/// An A/B number: like `fmt`, but counts of a thousand and more keep one decimal.
fn fmt_ab(v: f64) -> String {
    if v.abs() < 1000.0 {
        return fmt(Some(v));
    }
    let text = format!("{:.1}", v.abs());
    let (int, frac) = text.split_once('.').expect("one decimal");
    let grouped = fmt(int.parse().ok());
    format!("{}{grouped}.{frac}", if v < 0.0 { "−" } else { "" })
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A number for the table: thousands separated, decimals by size.
fn fmt(value: Option<f64>) -> String {
    let Some(v) = value else {
        return "–".to_owned();
    };
    let abs = v.abs();
    if abs >= 1000.0 {
        let digits = format!("{:.0}", abs);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("−{out}") } else { out }
    } else if abs >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if abs >= 10.0 {
        format!("{v:.1}")
    } else if abs >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 2s test @ http://127.0.0.1:19000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   520.22us  100.00us   3.00ms   90.00%
  Latency Distribution
     50%  500.00us
     75%  550.00us
     90%  600.00us
     99%    1.20ms
  120000 requests in 2.00s, 15.00MB read
  Socket errors: connect 0, read 10, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  60000.00
Transfer/sec:      7.50MB
";

    #[test]
    fn wrk_output() {
        let m = parse_wrk(WRK).unwrap();
        assert_eq!(m["rps"], json!(60000.0));
        assert_eq!(m["p50_ms"], json!(0.5));
        assert_eq!(m["p99_ms"], json!(1.2));
        assert_eq!(m["requests"], json!(120000.0));
        assert_eq!(m["socket_read"], json!(10.0));
        assert_eq!(m["errors"], json!(17.0));
    }

    #[test]
    fn h2load_output() {
        let text = "finished in 2.00s, 41234.50 req/s, 5.12MB/s
requests: 82469 total, 82469 started, 82469 done, 82400 succeeded, 69 failed, 0 errored, 0 timeout
status codes: 82400 2xx, 0 3xx, 3 4xx, 0 5xx
";
        let m = parse_h2load(text).unwrap();
        assert_eq!(m["rps"], json!(41234.5));
        assert_eq!(m["requests"], json!(82400.0));
        assert_eq!(m["errors"], json!(72.0));
        let log = "1\t200\t100\n2\t200\t300\n3\t200\t200\n";
        let p = h2load_percentiles(log);
        assert_eq!(p["p50_ms"], json!(0.2));
        assert_eq!(p["p99_ms"], json!(0.3));
    }

    #[test]
    fn grpc_failures() {
        // h2load saw 1000 calls answered 200.
        let accounted = |extra: &[(&str, f64)]| {
            let mut m = parse_h2load(
                "finished in 2.00s, 500.00 req/s, 1MB/s
requests: 1000 total, 1010 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx
",
            )
            .unwrap();
            for (k, v) in extra {
                m.insert((*k).to_owned(), json!(v));
            }
            grpc_accounting(&mut m);
            m
        };
        // The backend answered 990 of them OK: 10 were refused by the proxy itself (HTTP 200,
        // grpc-status ≠ 0 in the headers).
        let m = accounted(&[("backend_ok", 990.0), ("backend_not_ok", 0.0)]);
        assert_eq!(m["unanswered"], json!(10.0));
        assert_eq!(m["errors"], json!(10.0));
        // Calls in flight when h2load stopped, answered by the backend, are no failure.
        let m = accounted(&[("backend_ok", 1100.0), ("weir_grpc_not_ok", 0.0)]);
        assert_eq!(m["errors"], json!(0.0));
        // The backend answered some with another status; weir saw them too.
        let m = accounted(&[
            ("backend_ok", 997.0),
            ("backend_not_ok", 3.0),
            ("weir_grpc_not_ok", 3.0),
        ]);
        assert_eq!(m["unanswered"], json!(0.0));
        assert_eq!(m["errors"], json!(3.0));
        // Without the backend's counts (any other h2load test) nothing changes.
        assert!(!accounted(&[]).contains_key("grpc_failed"));

        let mut runs: ByMetric = BTreeMap::new();
        let mut add = |key: &str, target: &str, values: &[f64]| {
            runs.entry(key.to_owned())
                .or_default()
                .insert(target.to_owned(), values.to_vec());
        };
        add("rps", "weir", &[900.0, 1000.0, 950.0]);
        add("rps", "nginx", &[800.0, 800.0, 800.0]);
        add("errors", "weir", &[0.0, 12.0, 0.0]);
        add("errors", "nginx", &[0.0, 0.0, 0.0]);
        let failed = failed_runs(GRPC_H2C, &runs);
        assert_eq!(failed.get("weir"), Some(&(1, 3)));
        assert!(!failed.contains_key("nginx"));
        assert!(failed_runs("h2_tls", &runs).is_empty());
    }

    #[test]
    fn cpu_split_shows_user_and_kernel_time_and_the_floor() {
        let mut medians: Medians = BTreeMap::new();
        let mut put = |metric: &'static str, target: &'static str, v: f64| {
            medians
                .entry("h1_tiny")
                .or_default()
                .entry(metric)
                .or_default()
                .insert(target, v);
        };
        put("proxy_cpu_us", "weir", 22.0);
        put("proxy_sys_us", "weir", 13.0);
        put("proxy_cpu_us", NGINX_CLASSIC, 16.0);
        put("proxy_sys_us", NGINX_CLASSIC, 12.0);
        put("proxy_cpu_us", NGINX_INGRESS, 20.0);
        put("proxy_sys_us", NGINX_INGRESS, 13.0);
        put("proxy_user_us", "weir", 8.5);
        let md = cpu_split_section(&medians);
        // weir's user time is the median per run when recorded; nginx's the difference.
        assert!(
            md.contains("| 1a. HTTP/1.1 keep-alive, 13 B | 8.50 / 13 | 4 / 12 (c) | – | 0.81 | none would do |"),
            "{md}"
        );
        let sys = medians
            .get_mut("h1_tiny")
            .and_then(|m| m.get_mut("proxy_sys_us"));
        sys.expect("put above").insert("weir", 7.0);
        let md = cpu_split_section(&medians);
        assert!(md.contains("| 0.44 | ≤ 5.80 |"), "{md}");
        // No kernel time recorded for weir (records from before it was): no section.
        let mut old: Medians = BTreeMap::new();
        old.entry("h1_tiny")
            .or_default()
            .entry("proxy_cpu_us")
            .or_default()
            .insert("weir", 22.0);
        assert_eq!(cpu_split_section(&old), "");
        assert_eq!(cpu_split_section(&BTreeMap::new()), "");
    }

    #[test]
    fn best_nginx_and_targets() {
        assert_eq!(
            best_nginx(Lower, Some(2.0), Some(1.0)),
            Some((NGINX_INGRESS, 1.0))
        );
        assert_eq!(
            best_nginx(Higher, Some(2.0), Some(1.0)),
            Some((NGINX_CLASSIC, 2.0))
        );
        assert_eq!(
            best_nginx(Lower, None, Some(3.0)),
            Some((NGINX_INGRESS, 3.0))
        );
        let mut medians: Medians = BTreeMap::new();
        let mut put = |test: &'static str, metric: &'static str, target: &'static str, v: f64| {
            medians
                .entry(test)
                .or_default()
                .entry(metric)
                .or_default()
                .insert(target, v);
        };
        put("h1_tiny", "proxy_cpu_us", "weir", 7.0);
        put("h1_tiny", "proxy_cpu_us", NGINX_CLASSIC, 10.0);
        put("h1_tiny", "proxy_cpu_us", NGINX_INGRESS, 12.0);
        put("h1_tiny", "proxy_cpu_us", HAPROXY, 14.0);
        put("h1_tiny", "rps", "weir", 90.0);
        put("h1_tiny", "rps", NGINX_CLASSIC, 100.0);
        put("h1_tiny", "rps", NGINX_INGRESS, 80.0);
        put("mem_h2", "kib_per_conn", "weir", 5.0);
        let (md, json) = targets_section(&medians, 1);
        assert!(
            md.contains("| CPU per request ≤ 0.8× nginx: HTTP/1.1 keep-alive, 13 B (1a) | 7 | 10 (c) | 0.70 | 0.50 | met |"),
            "{md}"
        );
        assert!(
            md.contains("| 90 | 100 (c) | 0.90 | – | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| idle HTTP/2 connection ≤ 4 KiB RSS, TLS (5d) | 5 KiB | – | – | – | **not met** |"
            ),
            "{md}"
        );
        assert!(md.contains("(3a) | – | – | – | – | not measured |"), "{md}");
        let rows = json.as_array().unwrap();
        assert_eq!(rows[0]["met"], json!(true));
        assert_eq!(rows[0]["best_nginx"], json!(NGINX_CLASSIC));
        let (md, _) = targets_section(&medians, 2);
        assert!(md.contains("not the target's setting"), "{md}");
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt(Some(1234567.8)), "1,234,568");
        assert_eq!(fmt(Some(0.1234)), "0.123");
        assert_eq!(fmt(Some(12.34)), "12.3");
        assert_eq!(fmt(Some(3.0)), "3");
        assert_eq!(fmt(None), "–");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn ab() {
        let mut runs: BTreeMap<String, ByMetric> = BTreeMap::new();
        let mut add = |test: &str, key: &str, target: &str, values: &[f64]| {
            runs.entry(test.to_owned())
                .or_default()
                .entry(key.to_owned())
                .or_default()
                .insert(target.to_owned(), values.to_vec());
        };
        add(AB_INSTR, "instr_per_req", "baseline", &[40000.0, 40002.0]);
        add(AB_INSTR, "instr_per_req", "current", &[40500.0, 40502.0]);
        add(AB_CPU, "cpu_us_per_req", "baseline", &[20.0, 21.0, 22.0]);
        add(AB_CPU, "cpu_us_per_req", "current", &[20.5, 21.5, 22.5]);
        let labels = AbLabels {
            baseline: "ee4bbb3",
            current: "86cebd3",
            budget: 1.01,
            settings: None,
            functions: Some("| f | 1 | 2 | +1 |\n"),
        };
        let (md, json) = ab_table(&runs, &labels);
        assert!(
            md.contains("- baseline: ee4bbb3\n- current: 86cebd3\n"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 40,001.0 | 40,501.0 | 1.0125 | 40,000.0 / 40,002.0; 40,500.0 / 40,502.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 21 | 21.5 | 1.024 | 20 / 21 / 22; 20.5 / 21.5 / 22.5 |"),
            "{md}"
        );
        assert!(md.contains("1.0125 (+1.25 %): **over the budget**"), "{md}");
        assert!(md.ends_with("| f | 1 | 2 | +1 |\n"));
        assert_eq!(json["acceptance"]["pass"], json!(false));
        assert_eq!(json["rows"].as_array().unwrap().len(), 2);
        assert_eq!(fmt_ab(-1234.56), "−1,234.6");
    }

    #[test]
    fn telemetry() {
        let mut metrics = ByMetric::new();
        let mut add = |key: &str, target: &str, values: &[f64]| {
            metrics
                .entry(key.to_owned())
                .or_default()
                .insert(target.to_owned(), values.to_vec());
        };
        add("rps", "bare", &[40000.0, 42000.0, 41000.0]);
        add("rps", "metrics", &[39000.0, 40000.0, 39500.0]);
        add("rps", "metrics_log", &[36900.0]);
        add("p99_ms", "bare", &[2.5]);
        add("proxy_cpu_us", "metrics", &[21.26]);
        add("requests", "metrics_log", &[73800.0]);
        add("access_log_lines", "metrics_log", &[73850.0]);
        add("access_log_dropped", "metrics_log", &[0.0]);
        let (md, json) = telemetry_table(&metrics);
        assert!(md.contains(&format!("## {TELEMETRY_TITLE}")));
        assert!(
            md.contains("| bare | 41,000 | 2.50 | – | 1.000 |\n"),
            "{md}"
        );
        assert!(md.contains("| metrics (request metrics) | 39,500 | – | 21.3 | 0.963 |\n"));
        assert!(md.contains("| metrics + access log | 36,900 | – | – | 0.900 |\n"));
        assert!(md.contains("73,850 access log lines written for 73,800 requests"));
        assert!(!md.contains("Errors"));
        let variants = json["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 3);
        assert_eq!(variants[1]["variant"], json!("metrics"));
        assert_eq!(variants[1]["rps"], json!(39500.0));
        assert_eq!(variants[1]["rps_vs_bare"], json!(0.963));
        assert_eq!(
            variants[1]["runs"]["rps"],
            json!([39000.0, 40000.0, 39500.0])
        );
        assert_eq!(variants[2]["access_log_lines"], json!(73850.0));
    }
}

//! Instructions per request from `valgrind --tool=callgrind` dumps (the A/B of `run.sh --baseline`).
//!
//! The A/B runs each weir under callgrind, zeroes the counters after a warm-up
//! (`callgrind_control -z`), sends N requests and dumps (`callgrind_control -d`, file `OUT.1`),
//! then sends 2N more and dumps again (`OUT.2`). Every dump holds the instructions (`Ir`) of the
//! whole process (all threads) since the previous zero or dump, so:
//!
//! - `weir-bench callgrind measure --n OUT.1 --double OUT.2 --requests N` prints
//!   `instr_per_req = (Ir(2N) − Ir(N)) / N`: whatever a phase costs apart from its requests
//!   (the dump itself, timers due meanwhile) cancels out; and, as a check, `Ir(N) / N` and
//!   `Ir(2N) / 2N`, which should agree with it within a fraction of a percent; with
//!   `--idle DUMP --idle-seconds S`, the instructions per second of a dump taken after S seconds
//!   without requests (timers, the allocator's background thread);
//! - `weir-bench callgrind functions …` prints a markdown table of the functions whose *self*
//!   instructions per request (computed the same way, per function) differ most between a
//!   baseline and a current binary: where extra instructions go.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use crate::stats::round3;

/// Arguments of `callgrind`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Instructions per request of one binary from its N and 2N dumps (JSON on stdout).
    Measure {
        /// The dump after N requests.
        #[arg(long)]
        n: PathBuf,
        /// The dump after 2N more requests.
        #[arg(long)]
        double: PathBuf,
        /// N.
        #[arg(long)]
        requests: u64,
        /// A dump after a time without requests: weir's background instructions.
        #[arg(long, requires = "idle_seconds")]
        idle: Option<PathBuf>,
        /// How long that idle time was.
        #[arg(long)]
        idle_seconds: Option<f64>,
    },
    /// Markdown table: self instructions per request by function, baseline against current.
    Functions {
        /// Baseline's dump after N requests.
        #[arg(long)]
        baseline_n: PathBuf,
        /// Baseline's dump after 2N more requests.
        #[arg(long)]
        baseline_double: PathBuf,
        /// Current's dump after N requests.
        #[arg(long)]
        current_n: PathBuf,
        /// Current's dump after 2N more requests.
        #[arg(long)]
        current_double: PathBuf,
        /// N.
        #[arg(long)]
        requests: u64,
        /// Rows of the self table (functions with the largest differences).
        #[arg(long, default_value_t = 30)]
        top: usize,
        /// The inclusive table shows the functions whose name contains this.
        #[arg(long, default_value = "weir::")]
        inclusive_match: String,
        /// Rows of the inclusive table.
        #[arg(long, default_value_t = 25)]
        top_inclusive: usize,
    },
}

/// Runs `callgrind measure` or `callgrind functions`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Measure {
            n,
            double,
            requests,
            idle,
            idle_seconds,
        } => {
            anyhow::ensure!(requests > 0, "--requests must be positive");
            let (one, two) = (Profile::read(&n)?, Profile::read(&double)?);
            let per_req = |ir: u64, reqs: u64| round3(ir as f64 / reqs as f64);
            let idle_per_s = match (idle, idle_seconds) {
                (Some(path), Some(secs)) if secs > 0.0 => {
                    Some(round3(Profile::read(&path)?.total as f64 / secs))
                }
                _ => None,
            };
            let out = json!({
                "idle_instr_per_s": idle_per_s,
                "instr_per_req": round3((two.total as f64 - one.total as f64) / requests as f64),
                "instr_per_req_n": per_req(one.total, requests),
                "instr_per_req_2n": per_req(two.total, 2 * requests),
                "ir_n": one.total,
                "ir_2n": two.total,
                "requests": requests,
            });
            println!("{out}");
            Ok(())
        }
        Command::Functions {
            baseline_n,
            baseline_double,
            current_n,
            current_double,
            requests,
            top,
            inclusive_match,
            top_inclusive,
        } => {
            anyhow::ensure!(requests > 0, "--requests must be positive");
            let (base_self, base_incl) = per_request(&baseline_n, &baseline_double, requests)?;
            let (cur_self, cur_incl) = per_request(&current_n, &current_double, requests)?;
            println!("Self instructions per request (a function's own, not its callees'):\n");
            print!(
                "{}",
                functions_table(&base_self, &cur_self, top, "function, self", true)
            );
            println!(
                "\nInclusive instructions per request (the function and everything it calls) \
                 of the functions whose name contains `{}`:\n",
                cell(&inclusive_match)
            );
            let only = |m: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
                m.into_iter()
                    .filter(|(k, _)| k.contains(inclusive_match.as_str()))
                    .collect()
            };
            print!(
                "{}",
                functions_table(
                    &only(base_incl),
                    &only(cur_incl),
                    top_inclusive,
                    "function, inclusive",
                    false
                )
            );
            Ok(())
        }
    }
}

/// What one callgrind dump says: total `Ir`, self `Ir` by function, and inclusive `Ir` by
/// function (self plus its calls to other functions; a call to itself is not added again).
#[derive(Debug, Default)]
struct Profile {
    total: u64,
    functions: HashMap<String, u64>,
    inclusive: HashMap<String, u64>,
}

impl Profile {
    fn read(path: &Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Profile::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses callgrind's format (version 1): `positions:` and `events:` say which columns
    /// a cost line has; `fn=` starts a function, the cost line after a `calls=` line is the
    /// inclusive cost of a call (not the caller's own), names may be compressed (`(id) name`
    /// once, then `(id)`).
    fn parse(text: &str) -> anyhow::Result<Profile> {
        let mut positions = 1;
        let mut ir_column = 0;
        let mut names: HashMap<String, String> = HashMap::new();
        let mut current: Option<String> = None;
        let mut callee: Option<String> = None;
        let mut after_calls = false;
        let mut totals = None;
        let mut summary = None;
        let mut profile = Profile::default();
        for line in text.lines() {
            let Some(first) = line.chars().next() else {
                continue;
            };
            if first.is_ascii_digit() || matches!(first, '+' | '-' | '*') {
                let ir = line
                    .split_whitespace()
                    .nth(positions + ir_column)
                    .map_or(Ok(0), str::parse::<u64>)
                    .with_context(|| format!("bad cost line {line:?}"))?;
                let Some(function) = &current else {
                    continue;
                };
                if std::mem::take(&mut after_calls) {
                    // The inclusive cost of a call made by `function`.
                    if callee.as_ref() != Some(function) {
                        *profile.inclusive.entry(function.clone()).or_default() += ir;
                    }
                    continue;
                }
                *profile.functions.entry(function.clone()).or_default() += ir;
                *profile.inclusive.entry(function.clone()).or_default() += ir;
                continue;
            }
            if let Some(rest) = line.strip_prefix("fn=") {
                current = Some(resolve(&mut names, rest));
            } else if let Some(rest) = line.strip_prefix("cfn=") {
                callee = Some(resolve(&mut names, rest));
            } else if line.starts_with("calls=") {
                after_calls = true;
            } else if let Some(rest) = line.strip_prefix("positions:") {
                positions = rest.split_whitespace().count().max(1);
            } else if let Some(rest) = line.strip_prefix("events:") {
                ir_column = rest
                    .split_whitespace()
                    .position(|e| e == "Ir")
                    .context("no Ir event in the dump")?;
            } else if let Some(rest) = line.strip_prefix("totals:") {
                totals = rest
                    .split_whitespace()
                    .nth(ir_column)
                    .map(str::parse)
                    .transpose()?;
            } else if let Some(rest) = line.strip_prefix("summary:") {
                let v: Option<u64> = rest
                    .split_whitespace()
                    .nth(ir_column)
                    .map(str::parse)
                    .transpose()?;
                summary = Some(summary.unwrap_or(0) + v.unwrap_or(0));
            }
        }
        profile.total = match totals.or(summary) {
            Some(t) => t,
            None if !profile.functions.is_empty() => profile.functions.values().sum(),
            None => bail!("neither totals: nor summary: nor costs: not a callgrind dump"),
        };
        Ok(profile)
    }
}

/// The name of a `fn=`/`cfn=` value, remembering compressed ones; recursion levels (`'2`)
/// are folded into the function.
fn resolve(names: &mut HashMap<String, String>, value: &str) -> String {
    let name = match value.strip_prefix('(').and_then(|v| v.split_once(')')) {
        Some((id, rest)) => {
            let rest = rest.trim_start();
            if rest.is_empty() {
                names.get(id).cloned().unwrap_or_else(|| format!("({id})"))
            } else {
                names.insert(id.to_owned(), rest.to_owned());
                rest.to_owned()
            }
        }
        None => value.to_owned(),
    };
    match name.rsplit_once('\'') {
        Some((base, level)) if !level.is_empty() && level.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => name,
    }
}

/// Per request by function, (cost in the 2N dump − cost in the N dump) / N: the self costs
/// (with the total the same way under the key "") and the inclusive ones.
type PerRequest = BTreeMap<String, f64>;

fn per_request(n: &Path, double: &Path, requests: u64) -> anyhow::Result<(PerRequest, PerRequest)> {
    let (one, two) = (Profile::read(n)?, Profile::read(double)?);
    let diff = |a: &HashMap<String, u64>, b: &HashMap<String, u64>| -> PerRequest {
        a.keys()
            .chain(b.keys())
            .map(|name| {
                let x = a.get(name).copied().unwrap_or(0) as f64;
                let y = b.get(name).copied().unwrap_or(0) as f64;
                (name.clone(), (y - x) / requests as f64)
            })
            .collect()
    };
    let mut own = diff(&one.functions, &two.functions);
    own.insert(
        String::new(),
        (two.total as f64 - one.total as f64) / requests as f64,
    );
    Ok((own, diff(&one.inclusive, &two.inclusive)))
}

/// The markdown table of the `top` functions with the largest |current − baseline|; with
/// `sums`, then the rest and the total (the key "").
fn functions_table(
    baseline: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
    top: usize,
    header: &str,
    sums: bool,
) -> String {
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let mut rows: Vec<(&str, f64, f64)> = baseline
        .keys()
        .chain(current.keys())
        .filter(|k| !k.is_empty())
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| (k, get(baseline, k), get(current, k)))
        .collect();
    rows.sort_by(|x, y| {
        let (dx, dy) = ((x.2 - x.1).abs(), (y.2 - y.1).abs());
        dy.total_cmp(&dx)
            .then(y.2.max(y.1).total_cmp(&x.2.max(x.1)))
            .then(x.0.cmp(y.0))
    });
    let mut md =
        format!("| {header} | baseline | current | current − baseline |\n|---|---:|---:|---:|\n");
    let row =
        |name: &str, a: f64, b: f64| format!("| {name} | {a:.1} | {b:.1} | {:+.1} |\n", b - a);
    for (name, a, b) in rows.iter().take(top) {
        md.push_str(&row(&format!("`{}`", cell(name)), *a, *b));
    }
    if !sums {
        return md;
    }
    if rows.len() > top {
        let rest = &rows[top..];
        md.push_str(&row(
            &format!("{} other functions", rest.len()),
            rest.iter().map(|r| r.1).sum(),
            rest.iter().map(|r| r.2).sum(),
        ));
    }
    md.push_str(&row("**total**", get(baseline, ""), get(current, "")));
    md
}

/// A function name for a table cell: `|` escaped, long names shortened in the middle.
fn cell(name: &str) -> String {
    const MAX: usize = 140;
    let chars: Vec<char> = name.chars().collect();
    let short = if chars.len() > MAX {
        let head: String = chars[..MAX / 2].iter().collect();
        let tail: String = chars[chars.len() - MAX / 2..].iter().collect();
        format!("{head}…{tail}")
    } else {
        name.to_owned()
    };
    short.replace('|', "\\|").replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1000

ob=(1) /bin/weir
fl=(1) ???
fn=(1) main
0 100
cfn=(2) work
calls=3 0
0 600
fn=(2)
0 550
fn=(3) work'2
+2 50
fn=(4) idle
* 300

totals: 1000
";

    #[test]
    fn self_costs() {
        let p = Profile::parse(DUMP).unwrap();
        assert_eq!(p.total, 1000);
        assert_eq!(p.functions["main"], 100);
        assert_eq!(p.functions["work"], 600); // 550 + 50 of its recursion level 2
        assert_eq!(p.functions["idle"], 300);
        assert_eq!(p.functions.values().sum::<u64>(), 1000);
        assert_eq!(p.inclusive["main"], 700); // 100 + its call of work (600)
        assert_eq!(p.inclusive["work"], 600);
    }

    #[test]
    fn two_events_and_positions() {
        let text = "positions: instr line\nevents: Dr Ir\nfn=f\n0x10 3 7 11\n0x14 4 1\n";
        let p = Profile::parse(text).unwrap();
        assert_eq!(p.functions["f"], 11); // Ir is the second cost: 11, then missing (0)
        assert_eq!(p.total, 11);
    }

    #[test]
    fn table() {
        let base = BTreeMap::from([
            (String::new(), 100.0),
            ("a".to_owned(), 60.0),
            ("b|c".to_owned(), 40.0),
        ]);
        let cur = BTreeMap::from([
            (String::new(), 110.0),
            ("a".to_owned(), 60.0),
            ("b|c".to_owned(), 45.0),
            ("new".to_owned(), 5.0),
        ]);
        let md = functions_table(&base, &cur, 2, "function", true);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], "| `b\\|c` | 40.0 | 45.0 | +5.0 |");
        assert_eq!(lines[3], "| `new` | 0.0 | 5.0 | +5.0 |");
        assert_eq!(lines[4], "| 1 other functions | 60.0 | 60.0 | +0.0 |");
        assert_eq!(lines[5], "| **total** | 100.0 | 110.0 | +10.0 |");
    }
}

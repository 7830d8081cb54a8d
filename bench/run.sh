#!/usr/bin/env bash
# shellcheck disable=SC2046,SC2086  # lists of pids are split into words on purpose
# weir's benchmark: weir, nginx in two configurations (a classic reverse proxy and one shaped
# like ingress-nginx) and HAProxy (and the backend direct, the physical limit) doing the same job
# on the same machine, in one run. See bench/README.md for what each test does exactly.
#
#   bench/run.sh            # the full run: 5 interleaved runs of every test (about half an hour)
#   bench/run.sh --quick    # a smoke run: 1 run of 2 s per test (a few minutes)
#   bench/run.sh --only ab --baseline ee4bbb3   # A/B: per-request CPU of this tree vs a revision
#   bench/run.sh --help
#
# Writes bench/results/latest.md and bench/results/latest.json (or into --out DIR).
set -Eeuo pipefail
trap '[ -n "${ERR_SEEN:-}" ] || echo "bench/run.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2; ERR_SEEN=1' ERR

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
COMMAND_LINE="bench/run.sh${*:+ $*}"

# ---------------------------------------------------------------------------------------------
# Settings (flags below override them)

RUNS=5                # interleaved runs per test; the table shows medians
DURATION=4            # seconds measured per load test
WARMUP=1              # seconds of load before measuring (tool-driven tests)
CPU_REQUESTS=100000   # requests of the fixed-rate CPU test
RATE=10000            # its rate (req/s): well below what either proxy can do on one core
MEM_CONNS=5000        # idle connections / WebSockets held open in the memory tests
CFG_INGRESSES=10000   # Ingresses (nginx: server blocks) loaded for the configuration tests
CFG_CHANGES=20        # changes timed from write to routable (nginx-ingress: a reload each)
CFG_WEIR_CHANGES=100  # the same for weir (8a and 8d): enough for a p99 that is not the maximum
CFG_LOAD_CHANGES=100  # changes (nginx: reloads) made while clients send requests
CFG_LOAD_RATE=2000    # the rate of those clients (req/s, 64 keep-alive connections)
# CPUs (taskset lists) of the proxy under test, and of the load generators and the backend
# (--proxy-cpus, --load-cpus; PROXY_CPU=… LOAD_CPU=… in the environment too). Default: the proxy
# on CPU 1 (0 on a one-CPU machine), the load on every other CPU (CPU 0 when none is left).
PROXY_CPUS=${PROXY_CPU:-}
LOAD_CPUS=${LOAD_CPU:-}
MEM_TLS_CONNS=5000    # idle TLS connections (HTTP/1.1 and HTTP/2) held open in the memory tests
MEM_RUNS=3            # at most this many runs of the memory tests (a fresh proxy each)
QUICK=0
ONLY=""               # comma-separated test groups (default: all)
KEEP=0                # keep the work directory (configs, logs, raw outputs)
OUT=""                # where latest.md and latest.json are written (default below)
BASELINE=""           # git revision of the A/B's baseline weir (--baseline; enables group ab)
AB_CG_REQUESTS=2000   # A/B under callgrind: N, the requests of the first measured phase (2N next)
AB_CG_RATE=500        # their rate (req/s) on one keep-alive connection
AB_CG_WARMUP=500      # requests before the counters are zeroed
AB_CG_RUNS=2          # callgrind processes per binary (interleaved)
AB_CG_IDLE=3          # seconds idle after them: the instructions weir spends with no request
AB_BUDGET=1.01        # the A/B's acceptance: instructions per request, current/baseline
# Both A/B binaries are built with one codegen unit and fat LTO, whatever the profile of the
# baseline's Cargo.toml says: with several units, which unit a function of hyper or tokio lands
# in, and so whether it is inlined, depends on unrelated code elsewhere in weir, and moves the
# count by about ±1% between builds whose request path is the same (measured: 0.9905 and 1.0117
# for two trees that differ only in code no request of the A/B runs). One unit takes that noise
# out of the comparison; since 2026-12-04 it is also the release profile (Cargo.toml), and
# baselines from before it are built the same way.
AB_CODEGEN_UNITS=1
AB_LTO=fat
# Baseline builds: a git worktree and a target directory of their own, the binary kept per commit.
BASELINE_CACHE=${WEIR_BENCH_BASELINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/bench-baseline}

GROUPS_ALL="h1,newconn,h2,tls,ws,cpu,mem,cfg,telemetry,grpc,scale"
# scale (CPU scaling, 1 and 2 workers) is left out of --quick unless --only names it.
# ab (baseline against current weir) runs only with --baseline REV: all groups + ab without
# --only, the A/B alone with --only ab.

BACKEND_PORT=19000
GRPC_BACKEND_PORT=19001  # the gRPC backend (test 11): HTTP/2 cleartext only
WEIR_HTTP=19080 WEIR_HTTPS=19443 WEIR_ADMIN=19254
# nginx's gRPC over h2c has a port of its own: nginx 1.22's `listen … http2` on a plain port
# speaks HTTP/2 with prior knowledge only (weir's plain port takes HTTP/1.1 and h2c alike).
NGINX_HTTP=19081 NGINX_HTTPS=19444 NGINX_H2C=19087
# nginx in the classic reverse proxy configuration, and HAProxy.
NGINXC_HTTP=19088 NGINXC_HTTPS=19450
HAPROXY_HTTP=19089 HAPROXY_HTTPS=19451
# Fresh instances for the memory and configuration tests.
WEIR2_HTTP=19180 WEIR2_HTTPS=19543 WEIR2_ADMIN=19354
NGINX2_HTTP=19181 NGINX2_HTTPS=19544 NGINX2_H2C=19187
NGINXC2_HTTP=19188 NGINXC2_HTTPS=19550
HAPROXY2_HTTP=19189 HAPROXY2_HTTPS=19551
# The CPU scaling test's proxies (one or two workers).
SCALE_WEIR_HTTP=19090 SCALE_WEIR_HTTPS=19452 SCALE_WEIR_ADMIN=19260
SCALE_NGINX_HTTP=19091 SCALE_NGINX_HTTPS=19453
SCALE_HAPROXY_HTTP=19092 SCALE_HAPROXY_HTTPS=19454
# The variants of weir in the telemetry test (the third one is the main weir above).
BARE_HTTP=19082 BARE_HTTPS=19445 BARE_ADMIN=19255
LOGGED_HTTP=19083 LOGGED_HTTPS=19446 LOGGED_ADMIN=19256
# The A/B: the baseline and the current weir side by side, and one weir at a time under callgrind.
ABBASE_HTTP=19084 ABBASE_HTTPS=19447 ABBASE_ADMIN=19257
ABCUR_HTTP=19085 ABCUR_HTTPS=19448 ABCUR_ADMIN=19258
CG_HTTP=19086 CG_HTTPS=19449 CG_ADMIN=19259
# Every port above. WEIR_BENCH_PORT_OFFSET=N in the environment moves them all by N (on a
# machine where another program holds one of them).
PORT_VARS="BACKEND_PORT GRPC_BACKEND_PORT WEIR_HTTP WEIR_HTTPS WEIR_ADMIN
  NGINX_HTTP NGINX_HTTPS NGINX_H2C WEIR2_HTTP WEIR2_HTTPS WEIR2_ADMIN
  NGINX2_HTTP NGINX2_HTTPS NGINX2_H2C BARE_HTTP BARE_HTTPS BARE_ADMIN
  NGINXC_HTTP NGINXC_HTTPS HAPROXY_HTTP HAPROXY_HTTPS NGINXC2_HTTP NGINXC2_HTTPS
  HAPROXY2_HTTP HAPROXY2_HTTPS SCALE_WEIR_HTTP SCALE_WEIR_HTTPS SCALE_WEIR_ADMIN
  SCALE_NGINX_HTTP SCALE_NGINX_HTTPS SCALE_HAPROXY_HTTP SCALE_HAPROXY_HTTPS
  LOGGED_HTTP LOGGED_HTTPS LOGGED_ADMIN ABBASE_HTTP ABBASE_HTTPS ABBASE_ADMIN
  ABCUR_HTTP ABCUR_HTTPS ABCUR_ADMIN CG_HTTP CG_HTTPS CG_ADMIN"
PORT_OFFSET=${WEIR_BENCH_PORT_OFFSET:-0}
for port_var in $PORT_VARS; do printf -v "$port_var" '%s' "$((${!port_var} + PORT_OFFSET))"; done

HOST=bench.local
PLAIN_HOST=plain.$HOST  # the A/B's host: an Ingress without any annotation
GRPC_HOST=grpc.$HOST    # test 11's host: an Ingress with backend-protocol GRPC
GRPC_PATH=/weir.bench.Echo/Echo  # the gRPC backend's one method (unary echo)

usage() {
  cat <<EOF
usage: bench/run.sh [--quick] [--runs N] [--duration SECONDS] [--only GROUPS] [--keep] [--out DIR]
                    [--baseline REV] [--proxy-cpus LIST] [--load-cpus LIST]

  --quick           1 run of 2 s per test, fewer configuration changes, no scale group
                    (a smoke run)
  --runs N          interleaved runs per test (default $RUNS; the table shows medians)
  --duration S      seconds measured per load test (default $DURATION)
  --only GROUPS     comma-separated subset of: $GROUPS_ALL, ab (needs --baseline)
  --keep            keep the work directory (configs, logs, raw tool outputs)
  --out DIR         write latest.md and latest.json into DIR (default bench/results;
                    bench/results/ab with --only ab)
  --baseline REV    A/B (group ab): weir built at git revision REV (cached in
                    $BASELINE_CACHE) against the current tree, on a route without
                    annotations: instructions per request under callgrind (the acceptance:
                    current/baseline <= $AB_BUDGET) and CPU per request at a fixed rate ($RUNS runs)

  --proxy-cpus LIST CPUs of the proxy under test (a taskset list: 1, 2-3, 1,3); default 1
                    (0 on a one-CPU machine). weir's worker threads, nginx's workers and
                    HAProxy's nbthread follow its count (the scale group sets 1 and 2)
  --load-cpus LIST  CPUs of the load generators and the backend; default every CPU not in
                    --proxy-cpus (CPU 0 when none is left)

PROXY_CPU=LIST and LOAD_CPU=LIST in the environment set the same defaults.
EOF
}

parse_flags() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick)
        RUNS=1 DURATION=2 WARMUP=0.5 CPU_REQUESTS=20000
        CFG_CHANGES=5 CFG_WEIR_CHANGES=5 CFG_LOAD_CHANGES=10 MEM_TLS_CONNS=2000 QUICK=1 ;;
      --proxy-cpus) PROXY_CPUS=$2; shift ;;
      --load-cpus) LOAD_CPUS=$2; shift ;;
      --runs) RUNS=$2; shift ;;
      --duration) DURATION=$2; shift ;;
      --only) ONLY=$2; shift ;;
      --keep) KEEP=1 ;;
      --out) OUT=$2; shift ;;
      --baseline) BASELINE=$2; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "unknown flag: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
  done
  if [[ ",$ONLY," == *",ab,"* ]] && [ -z "$BASELINE" ]; then
    die "group ab needs --baseline REV (the git revision to compare with)"
  fi
  if [ -z "$OUT" ]; then
    # An A/B alone does not replace the full run's results.
    if [ "$ONLY" = ab ]; then OUT=$BENCH/results/ab; else OUT=$BENCH/results; fi
  fi
  WARMUP_MS=$(awk "BEGIN { printf \"%d\", $WARMUP * 1000 }")
  resolve_cpus
}

# The CPUs of a taskset list ("0-2,5" -> "0 1 2 5"), one per word.
expand_cpus() {
  local part cpus=""
  for part in ${1//,/ }; do
    [[ "$part" =~ ^[0-9]+(-[0-9]+)?$ ]] || die "not a CPU list: $1"
    if [[ "$part" == *-* ]]; then
      cpus="$cpus $(seq -s ' ' "${part%-*}" "${part#*-}")"
    else
      cpus="$cpus $part"
    fi
  done
  echo "${cpus# }"
}

# Sets PROXY_CPUS and LOAD_CPUS (defaults above), PROXY_CPU_LIST and LOAD_CPU_LIST (arrays),
# PROXY_NCPU and LOAD_NCPU, and PIN_CPUS (where start_weir/start_nginx/start_haproxy pin).
resolve_cpus() {
  local n c rest=() cpus
  n=$(nproc --all)
  [ -n "$PROXY_CPUS" ] || PROXY_CPUS=$((n > 1 ? 1 : 0))
  cpus=$(expand_cpus "$PROXY_CPUS") || exit 1
  read -r -a PROXY_CPU_LIST <<<"$cpus"
  if [ -z "$LOAD_CPUS" ]; then
    for c in $(seq 0 $((n - 1))); do
      [[ " ${PROXY_CPU_LIST[*]} " == *" $c "* ]] || rest+=("$c")
    done
    if [ ${#rest[@]} -gt 0 ]; then LOAD_CPUS=$(IFS=,; echo "${rest[*]}"); else LOAD_CPUS=0; fi
  fi
  cpus=$(expand_cpus "$LOAD_CPUS") || exit 1
  read -r -a LOAD_CPU_LIST <<<"$cpus"
  PROXY_NCPU=${#PROXY_CPU_LIST[@]} LOAD_NCPU=${#LOAD_CPU_LIST[@]}
  taskset -c "$PROXY_CPUS" true 2>/dev/null || die "--proxy-cpus $PROXY_CPUS: not CPUs of this machine"
  taskset -c "$LOAD_CPUS" true 2>/dev/null || die "--load-cpus $LOAD_CPUS: not CPUs of this machine"
  PIN_CPUS=$PROXY_CPUS
}

# ---------------------------------------------------------------------------------------------
# Small helpers

STARTED=$(date +%s)
log() { printf '\n==> [%ss] %s\n' "$(($(date +%s) - STARTED))" "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

wants() {
  [ "$1" != ab ] || [ -n "$BASELINE" ] || return 1
  if [ -z "$ONLY" ]; then [ "$1" != scale ] || [ "$QUICK" = 0 ]; return; fi
  [[ ",$ONLY," == *",$1,"* ]]
}

# Whether a group other than ab runs (they use the main weir, nginx and HAProxy).
wants_main() {
  local g
  for g in ${GROUPS_ALL//,/ }; do wants "$g" && return 0; done
  return 1
}

# awk arithmetic: calc '1 + 2' prints 3 (with up to 3 decimals).
calc() { awk "BEGIN { v = $1; printf \"%.3f\n\", v }"; }

now() { date +%s.%N; }

# The JSON field $1 of the JSON object given as $2.
field() { printf '%s' "$2" | "$TOOL" field "$1"; }

# wrk's and h2load's versions, on one line.
tool_versions() {
  local wrk_v h2_v
  wrk_v=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)
  h2_v=$(h2load --version 2>&1 | awk 'NR == 1' || true)
  echo "$wrk_v, $h2_v"
}

# Load generators and the backend run here.
on_load_cpu() { taskset -c "$LOAD_CPUS" "$@"; }

# ---------------------------------------------------------------------------------------------
# Processes: everything started is recorded and stopped on exit, Ctrl-C included.

PIDS=()
WORK=""

cleanup() {
  local status=$? pid children=()
  trap - EXIT INT TERM ERR
  for pid in "${PIDS[@]}"; do
    # nginx workers are children of a started master: stop them by pid too.
    mapfile -t -O "${#children[@]}" children < <(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for pid in "${children[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ] || [ "$status" -ne 0 ]; then
      echo "work directory kept: $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}

# Starts "$@" in the background, records its pid in PIDS and in the variable named $1.
# "$@" must be a program (taskset, …), never a shell function: a function would run in a
# subshell whose pid is not the program's, and stopping it would orphan the program.
spawn() {
  local spawn_var_=$1; shift
  "$@" &
  local spawn_pid_=$!
  PIDS+=("$spawn_pid_")
  printf -v "$spawn_var_" '%s' "$spawn_pid_"
}

# Stops one process started by spawn (SIGTERM, then SIGKILL after $2 s, default 5) and
# forgets it.
stop() {
  local pid=$1 rest=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((${2:-5} * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
  PIDS=("${rest[@]}")
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

# Waits until an HTTP request to port $1 with Host $2 answers status $3 (default 200).
wait_http() {
  local port=$1 host=$2 want=${3:-200} code
  for _ in $(seq 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $host" \
      "http://127.0.0.1:$port/" 2>/dev/null || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.05
  done
  die "port $port (Host: $host) never answered $want (last: $code)"
}

# ---------------------------------------------------------------------------------------------
# /proc readings

# The pids of a target's proxy: weir's process, nginx's master and workers, HAProxy's process.
proxy_pids() {
  case "$1" in
    weir|metrics) echo "$WEIR_PID" ;;
    bare) echo "$BARE_PID" ;;
    metrics_log) echo "$LOGGED_PID" ;;
    nginx-ingress) nginx_pids "$NGINX_PID" ;;
    nginx-classic) nginx_pids "$NGINXC_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    weir-[12]) echo "$SCALE_WEIR_PID" ;;
    nginx-classic-[12]) nginx_pids "$SCALE_NGINX_PID" ;;
    haproxy-[12]) echo "$SCALE_HAPROXY_PID" ;;
    direct) ;;
  esac
}

nginx_pids() { echo "$1" $(pgrep -P "$1" || true); }

# Sum of VmRSS (KiB) of the given pids.
rss_kib() {
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# Sum of Pss (KiB) of the given pids (shared pages divided among their sharers).
pss_kib() {
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# Sum of utime + stime (clock ticks) of the given pids.
cpu_ticks() { proc_stat_ticks '$12 + $13' "$@"; }

# Sum of stime (clock ticks: the time spent in the kernel on their behalf) of the given pids.
sys_ticks() { proc_stat_ticks '$13' "$@"; }

# Sum over the pids $2… of the awk expression $1 of the fields of /proc/PID/stat after
# "pid (comm) " ($12 is utime, $13 stime).
proc_stat_ticks() {
  local expr=$1 p sum=0 v
  shift
  for p in "$@"; do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk "{ print $expr }" || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Installation and build (idempotent)

install_packages() {
  local missing=() cmd pkg extra=()
  # The A/B runs weir under callgrind (callgrind_control comes with it).
  [ -z "$BASELINE" ] || extra=(valgrind:valgrind callgrind_control:valgrind)
  for pair in nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl \
              taskset:util-linux ss:iproute2 "${extra[@]}"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Keep the Debian nginx and haproxy services from starting: this script runs its own.
  local guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" ||
    { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
  [ "$guard" = 0 ] || $sudo rm -f /usr/sbin/policy-rc.d
}

build() {
  log "building weir (scripts/build.sh: cargo build --release --locked) and weir-bench"
  "$ROOT/scripts/build.sh" --quiet
  (cd "$BENCH" && cargo build --release --locked --quiet)
  WEIR_BIN=$ROOT/target/release/weir
  TOOL=$BENCH/target/release/weir-bench
  CURRENT_REV=$(git -C "$ROOT" rev-parse --short=12 HEAD)
  if ! git -C "$ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null ||
     [ -n "$(git -C "$ROOT" ls-files --others --exclude-standard -- . ':!bench' 2>/dev/null)" ]; then
    CURRENT_REV="$CURRENT_REV + uncommitted changes"
  fi
  if [ -n "$BASELINE" ]; then
    log "building weir for the A/B (codegen units: $AB_CODEGEN_UNITS, LTO: $AB_LTO) into target/ab"
    CARGO_TARGET_DIR=$ROOT/target/ab CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$AB_CODEGEN_UNITS \
      CARGO_PROFILE_RELEASE_LTO=$AB_LTO "$ROOT/scripts/build.sh" --quiet
    # The A/B measures copies: another build into target/ during the run changes nothing.
    cp "$ROOT/target/ab/release/weir" "$WORK/weir-current"
    CURRENT_BIN=$WORK/weir-current
    build_baseline
    cp "$BASELINE_CACHED" "$WORK/weir-baseline"
    BASELINE_BIN=$WORK/weir-baseline
  fi
}

# Builds weir at git revision $BASELINE (a detached git worktree under
# $BASELINE_CACHE/<commit>-cgu<units>-<lto>, with $AB_CODEGEN_UNITS codegen units and LTO $AB_LTO,
# CARGO_TARGET_DIR $BASELINE_CACHE/target, shared by every baseline and apart from the
# repository's target/), the way that revision builds its release binary (its scripts/build.sh
# when it has one). The binary is kept as $BASELINE_CACHE/<commit>-cgu<units>-<lto>/weir and reused; the worktree
# is removed once built. Sets BASELINE_SHA, BASELINE_REV (short) and BASELINE_CACHED.
build_baseline() {
  BASELINE_SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}") ||
    die "--baseline $BASELINE: not a commit of this repository"
  BASELINE_REV=$(git -C "$ROOT" rev-parse --short=12 "$BASELINE_SHA")
  local dir=$BASELINE_CACHE/$BASELINE_SHA-cgu$AB_CODEGEN_UNITS-$AB_LTO
  BASELINE_CACHED=$dir/weir
  if [ -x "$BASELINE_CACHED" ]; then
    note "baseline $BASELINE ($BASELINE_REV): cached binary $BASELINE_CACHED"
    return 0
  fi
  log "building the baseline: weir at $BASELINE ($BASELINE_REV) in a git worktree, cached in $dir"
  local tree=$dir/tree
  mkdir -p "$dir"
  # A worktree left by an interrupted build: remove it and its registration.
  git -C "$ROOT" worktree remove --force "$tree" >/dev/null 2>&1 || true
  rm -rf "$tree"
  git -C "$ROOT" worktree prune
  git -C "$ROOT" worktree add --quiet --detach "$tree" "$BASELINE_SHA"
  local build=(cargo build --release --locked --bin weir --quiet)
  [ -x "$tree/scripts/build.sh" ] && build=("$tree/scripts/build.sh" --quiet)
  (cd "$tree" && CARGO_TARGET_DIR=$BASELINE_CACHE/target \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$AB_CODEGEN_UNITS CARGO_PROFILE_RELEASE_LTO=$AB_LTO \
    "${build[@]}")
  cp "$BASELINE_CACHE/target/release/weir" "$BASELINE_CACHED.tmp"
  mv "$BASELINE_CACHED.tmp" "$BASELINE_CACHED"
  git -C "$ROOT" worktree remove --force "$tree"
}

# ---------------------------------------------------------------------------------------------
# Configuration: a self-signed certificate, weir's manifests and nginx's configuration

make_certificate() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST,DNS:*.$HOST" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  # HAProxy takes the certificate and its key in one file.
  cat "$WORK/tls.crt" "$WORK/tls.key" >"$WORK/tls.pem"
}

# weir's manifests: the Service and EndpointSlice of the backend, the TLS Secret, one Ingress.
write_weir_manifests() {
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/backend.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: $BACKEND_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-1
  namespace: default
  labels: {kubernetes.io/service-name: bench}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
ports: [{name: http, port: $BACKEND_PORT, protocol: TCP}]
EOF
  cat >"$dir/secret.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$WORK/tls.crt")
  tls.key: $(base64 -w0 "$WORK/tls.key")
EOF
  # ssl-redirect off: plain HTTP is served as such, as in the nginx configuration.
  cat >"$dir/ingress.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}
spec:
  ingressClassName: weir
  tls: [{hosts: [$HOST], secretName: bench-tls}]
  rules:
    - host: $HOST
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: bench, port: {name: http}}}}
EOF
  # Test 11: the gRPC backend behind an Ingress of its own, spoken to in HTTP/2 cleartext
  # (backend-protocol GRPC), on plain HTTP (h2c) and TLS (h2 by ALPN) alike.
  cat >"$dir/grpc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: default}
spec:
  ports: [{name: grpc, port: 80, targetPort: $GRPC_BACKEND_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: grpc-1
  namespace: default
  labels: {kubernetes.io/service-name: grpc}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
ports: [{name: grpc, port: $GRPC_BACKEND_PORT, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: grpc
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/backend-protocol: GRPC
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  ingressClassName: weir
  tls: [{hosts: [$GRPC_HOST], secretName: bench-tls}]
  rules:
    - host: $GRPC_HOST
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: grpc, port: {name: grpc}}}}
EOF
}

# The template of one more Ingress ({{i}} is the index).
weir_ingress_template() {
  cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: h{{i}}
  namespace: default
spec:
  ingressClassName: weir
  rules:
    - host: h{{i}}.$HOST
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: bench
                port:
                  name: http
EOF
}

# What ingress-nginx puts in a location that proxies to a Service (its defaults).
nginx_location() {
  cat <<'EOF'
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header Proxy "";
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
            proxy_buffering off;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_request_buffering on;
            proxy_next_upstream error timeout;
            proxy_pass http://bench_backend;
EOF
}

# What ingress-nginx puts in a location whose Ingress says backend-protocol: GRPC: grpc_pass
# instead of proxy_pass, its proxy_set_header lines as grpc_set_header (Host left out, as
# ingress-nginx does for gRPC: the grpc module sends the client's authority). ingress-nginx
# writes its proxy_*_timeout lines there, which grpc_pass ignores; their grpc_* twins here.
nginx_grpc_location() {
  cat <<'EOF'
            grpc_set_header Upgrade $http_upgrade;
            grpc_set_header Connection $connection_upgrade;
            grpc_set_header X-Request-ID $req_id;
            grpc_set_header X-Real-IP $remote_addr;
            grpc_set_header X-Forwarded-For $remote_addr;
            grpc_set_header X-Forwarded-Host $host;
            grpc_set_header X-Forwarded-Port $server_port;
            grpc_set_header X-Forwarded-Proto $scheme;
            grpc_set_header X-Scheme $scheme;
            grpc_set_header Proxy "";
            grpc_connect_timeout 5s;
            grpc_send_timeout 60s;
            grpc_read_timeout 60s;
            grpc_next_upstream error timeout;
            grpc_pass grpc://grpc_backend;
EOF
}

# The template of one more server block ({{i}} is the index) on port $1.
nginx_server_template() {
  cat <<EOF
    server {
        listen 127.0.0.1:$1;
        server_name h{{i}}.$HOST;
        location / {
$(nginx_location)
        }
    }
EOF
}

# nginx.conf (the ingress-nginx-like configuration, target nginx-ingress) for prefix $1, ports
# $2 (HTTP), $3 (HTTPS) and $4 (gRPC over h2c), with conf.d/*.conf included; one worker per
# proxy CPU.
write_nginx_conf() {
  local prefix=$1 http=$2 https=$3 h2c=$4 workers=$PROXY_NCPU
  mkdir -p "$prefix/conf.d" "$prefix/tmp"
  cat >"$prefix/nginx.conf" <<EOF
# ingress-nginx's shape: one worker per CPU the proxy may use, upstream keep-alive,
# the WebSocket map, TLS with HTTP/2; access_log off (weir runs with --access-log off too).
# The certificate is set in the servers that listen with TLS only: set at the http level (as
# ingress-nginx does for its default certificate) every server block, TLS or not, builds its
# own SSL context, which at 10,000 servers costs 5 s per parse and about 1 GB.
user root;
worker_processes $workers;
worker_rlimit_nofile $(ulimit -n);
daemon off;
master_process on;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;

events {
    worker_connections $(($(ulimit -n) - 100));
    multi_accept on;
}

http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;

    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 128;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 10m;
    ssl_session_tickets off;

    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }
    map \$http_x_request_id \$req_id {
        default \$http_x_request_id;
        ''      \$request_id;
    }

    upstream bench_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 320;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    # The gRPC backend (test 11). grpc_pass carries one call per upstream connection at a
    # time: kept-alive connections are what saves a connect per call.
    upstream grpc_backend {
        server 127.0.0.1:$GRPC_BACKEND_PORT;
        keepalive 320;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    # Hosts without a rule: 404, as ingress-nginx's default backend.
$(nginx_front_servers "$http" "$https" "$(nginx_location)")

    # gRPC (test 11): h2c with prior knowledge on a port of its own (nginx 1.22 cannot tell
    # HTTP/1.1 from HTTP/2 on one plain port), h2 by ALPN on the TLS port.
    server {
        listen 127.0.0.1:$h2c http2 backlog=4096;
        listen 127.0.0.1:$https ssl http2;
        server_name $GRPC_HOST;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        location / {
$(nginx_grpc_location)
        }
    }

    include $prefix/conf.d/*.conf;
}
EOF
}

# nginx.conf of the classic reverse proxy (target nginx-classic) for prefix $1, ports $2 (HTTP)
# and $3 (HTTPS), $4 workers (default: one per proxy CPU): the configuration a sceptical user
# would write by hand and compare with. One upstream with keep-alive, HTTP/1.1 to it, the
# WebSocket map, X-Forwarded-For and X-Forwarded-Proto only, proxy buffering on (nginx's
# default), TLS 1.2/1.3 with a session cache and http2; a default server answering 404 for
# other hosts, as weir and the other configurations do.
write_nginx_classic_conf() {
  local prefix=$1 http=$2 https=$3 workers=${4:-$PROXY_NCPU}
  mkdir -p "$prefix/conf.d" "$prefix/tmp"
  cat >"$prefix/nginx.conf" <<EOF
# The classic reverse proxy: nginx's defaults but for what a reverse proxy needs.
user root;
worker_processes $workers;
worker_rlimit_nofile $(ulimit -n);
daemon off;
master_process on;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;

events {
    worker_connections $(($(ulimit -n) - 100));
}

http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;

    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 10m;

    # '' maps to '' (no Connection header to the upstream), not to close: with close, nginx
    # would drop the upstream connection after every request and lose its keep-alive.
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }

    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }

$(nginx_front_servers "$http" "$https" "$(nginx_classic_location)")
}
EOF
}

# haproxy.cfg (target haproxy) at $1, ports $2 (HTTP) and $3 (HTTPS), $4 threads (default: one
# per proxy CPU): Debian's HAProxy as a classic reverse proxy. HTTP mode, keep-alive on both
# sides with idle backend connections shared (http-reuse always), HTTP/1.1 to the backend,
# X-Forwarded-For (option forwardfor) and X-Forwarded-Proto, TLS 1.2/1.3 with the same
# certificate, ALPN h2 and http/1.1, its session cache; WebSocket upgrades pass in HTTP mode
# (timeout tunnel for idle ones). Host bench.local goes to the backend, other hosts get 404.
write_haproxy_conf() {
  local file=$1 http=$2 https=$3 threads=${4:-$PROXY_NCPU} maxconn
  maxconn=$((($(ulimit -n) - 1000) / 2))
  cat >"$file" <<EOF
global
    nbthread $threads
    maxconn $maxconn
    tune.ssl.cachesize 20000
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    maxconn $maxconn
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 75s
    timeout tunnel 1h

frontend bench
    bind 127.0.0.1:$http backlog 4096
    bind 127.0.0.1:$https ssl crt $WORK/tls.pem alpn h2,http/1.1 backlog 4096
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    use_backend bench if { req.hdr(host),field(1,:) -i $HOST }
    default_backend not_found

backend bench
    server backend 127.0.0.1:$BACKEND_PORT

backend not_found
    http-request return status 404
EOF
}

# The location of the classic reverse proxy (nginx-classic).
nginx_classic_location() {
  cat <<EOF
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
EOF
}

# The two server blocks both nginx configurations have: a default_server answering 404 for
# other hosts, and $HOST on ports $1 (HTTP) and $2 (HTTPS) whose `location /` holds $3.
nginx_front_servers() {
  cat <<EOF
    server {
        listen 127.0.0.1:$1 default_server backlog=4096;
        listen 127.0.0.1:$2 ssl http2 default_server backlog=4096;
        server_name _;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        return 404;
    }

    server {
        listen 127.0.0.1:$1;
        listen 127.0.0.1:$2 ssl http2;
        server_name $HOST;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        location / {
$3
        }
    }
EOF
}

nginx_cmd() { echo "nginx -p $1 -e $1/error.log -c $1/nginx.conf"; }


# ---------------------------------------------------------------------------------------------
# Starting the servers

start_backend() {
  spawn BACKEND_PID taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 backend \
    --listen "127.0.0.1:$BACKEND_PORT" 2>"$WORK/backend.log"
  wait_http "$BACKEND_PORT" "$HOST"
}

# start_weir VAR DIR HTTP HTTPS ADMIN [WEIR FLAGS…]: weir in --manifests mode on the proxy CPU,
# with --access-log off (as nginx's access_log off) unless the extra flags set --access-log; its
# request metrics stay on unless they say --request-metrics=false. weir's own log (stderr) goes
# to $WORK/weir-HTTP.log, its stdout (the access log, when it is on) to $WORK/weir-HTTP.stdout.
start_weir() { start_weir_bin "$WEIR_BIN" "$@"; }

# The command weir runs under (valgrind …): set around a start_weir_bin call, empty otherwise.
WEIR_WRAP=()

# start_weir_bin BIN VAR DIR HTTP HTTPS ADMIN [WEIR FLAGS…]: start_weir with the weir binary BIN,
# run under "${WEIR_WRAP[@]}" when set (then given up to 5 minutes to become ready).
start_weir_bin() {
  local bin=$1 var=$2 dir=$3 http=$4 https=$5 admin=$6; shift 6
  local flags=("$@") tries=600
  [[ " $* " == *" --access-log"[=\ ]* ]] || flags=(--access-log off "${flags[@]}")
  [ ${#WEIR_WRAP[@]} -eq 0 ] || tries=6000
  local code attempt lines
  # A port of the previous weir on these ports can linger (TIME_WAIT) for a moment: a start
  # that fails on "Address already in use" is retried, up to 5 times a second apart.
  for attempt in 1 2 3 4 5 6; do
    lines=0
    [ ! -e "$WORK/weir-$http.log" ] || lines=$(wc -l <"$WORK/weir-$http.log")
    # As nginx here (keepalive_requests 1000000); set by the environment, which a weir of a
    # revision before the flag ignores.
    spawn "$var" env WEIR_KEEPALIVE_REQUESTS=1000000 \
      taskset -c "$PIN_CPUS" "${WEIR_WRAP[@]}" "$bin" --manifests "$dir" \
      --http-addr "127.0.0.1:$http" --https-addr "127.0.0.1:$https" \
      --admin-addr "127.0.0.1:$admin" --shutdown-delay 0s --shutdown-timeout 1s "${flags[@]}" \
      >>"$WORK/weir-$http.stdout" 2>>"$WORK/weir-$http.log"
    for _ in $(seq "$tries"); do
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)
      [ "$code" = 200 ] && return 0
      kill -0 "${!var}" 2>/dev/null || break
      sleep 0.05
    done
    kill -0 "${!var}" 2>/dev/null && die "weir on $http never became ready (see $WORK/weir-$http.log)"
    stop "${!var}"
    tail -n +"$((lines + 1))" "$WORK/weir-$http.log" | grep -q 'Address already in use' ||
      die "weir on $http exited (see $WORK/weir-$http.log)"
    note "weir on $http: address in use (attempt $attempt), retrying in 1 s"
    sleep 1
  done
  die "weir on $http: its addresses stayed in use (see $WORK/weir-$http.log; a port in the ephemeral range, $EPHEMERAL, can be held by a client connection: choose a WEIR_BENCH_PORT_OFFSET that keeps the ports out of it)"
}

# start_nginx VAR PREFIX HTTP: nginx (master + workers) on the proxy CPUs.
start_nginx() {
  local var=$1 prefix=$2 http=$3
  spawn "$var" taskset -c "$PIN_CPUS" $(nginx_cmd "$prefix")
  wait_http "$http" "$HOST"
}

# start_haproxy VAR CONFIG HTTP: HAProxy (one process, in the foreground) on the proxy CPUs;
# its own messages go to CONFIG.log.
start_haproxy() {
  local var=$1 config=$2 http=$3
  haproxy -c -q -f "$config" >"$config.check" 2>&1 ||
    die "haproxy -c -f $config: $(cat "$config.check")"
  spawn "$var" taskset -c "$PIN_CPUS" haproxy -db -f "$config" 2>>"$config.log"
  wait_http "$http" "$HOST"
}

# ---------------------------------------------------------------------------------------------
# The tests. Each takes the target (direct, weir, nginx-classic, nginx-ingress, haproxy) and the
# run number and appends one record to $RECORDS.

record() { "$TOOL" report record --records "$RECORDS" "$@" >/dev/null; }

http_port() {
  case "$1" in
    direct) echo "$BACKEND_PORT" ;; weir|metrics) echo "$WEIR_HTTP" ;;
    nginx-ingress) echo "$NGINX_HTTP" ;; nginx-classic) echo "$NGINXC_HTTP" ;;
    haproxy) echo "$HAPROXY_HTTP" ;;
    bare) echo "$BARE_HTTP" ;; metrics_log) echo "$LOGGED_HTTP" ;;
    weir-[12]) echo "$SCALE_WEIR_HTTP" ;; nginx-classic-[12]) echo "$SCALE_NGINX_HTTP" ;;
    haproxy-[12]) echo "$SCALE_HAPROXY_HTTP" ;;
  esac
}
https_port() {
  case "$1" in
    weir) echo "$WEIR_HTTPS" ;; nginx-ingress) echo "$NGINX_HTTPS" ;;
    nginx-classic) echo "$NGINXC_HTTPS" ;; haproxy) echo "$HAPROXY_HTTPS" ;;
  esac
}

# Runs "$@" (a load generator) and sets the proxy's CPU use meanwhile, in % of one core:
# PROXY_CPU_PCT in all, PROXY_SYS_PCT of it in the kernel.
PROXY_CPU_PCT=""
PROXY_SYS_PCT=""
with_cpu() {
  local target=$1; shift
  local pids t0 c0 s0 t1 c1 s1
  pids=$(proxy_pids "$target")
  t0=$(now); c0=$(cpu_ticks $pids); s0=$(sys_ticks $pids)
  "$@"
  t1=$(now); c1=$(cpu_ticks $pids); s1=$(sys_ticks $pids)
  if [ -n "$pids" ]; then
    PROXY_CPU_PCT=$(calc "($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100")
    PROXY_SYS_PCT=$(calc "($s1 - $s0) / $CLK_TCK / ($t1 - $t0) * 100")
  else
    PROXY_CPU_PCT=""
    PROXY_SYS_PCT=""
  fi
}

cpu_set() {
  [ -n "$PROXY_CPU_PCT" ] && echo "--set proxy_cpu_pct=$PROXY_CPU_PCT --set proxy_sys_pct=$PROXY_SYS_PCT" || true
}

# wrk_load TARGET PATH OUT [WRK FLAGS…]: wrk, 64 connections, one thread on the load CPU, on
# the target's HTTP port, output in OUT; the proxy's CPU use meanwhile in PROXY_CPU_PCT (and
# PROXY_SYS_PCT).
wrk_load() {
  local target=$1 path=$2 out=$3; shift 3
  with_cpu "$target" on_load_cpu timeout $((DURATION + 30)) \
    wrk -t1 -c64 -d"${DURATION}s" --latency -H "Host: $HOST" "$@" \
    "http://127.0.0.1:$(http_port "$target")$path" >"$out"
}

# 1. HTTP/1.1 keep-alive: wrk_load, recorded as test $1.
t_wrk() {
  local test=$1 path=$2 target=$3 run=$4; shift 4
  local out=$WORK/out/$test-$target-$run.txt
  wrk_load "$target" "$path" "$out" "$@"
  record --test "$test" --target "$target" --run "$run" --wrk "$out" $(cpu_set)
}

t_h1_tiny() { t_wrk h1_tiny / "$@"; }
t_h1_1k() { t_wrk h1_1k /1k "$@"; }
# 2. One request per connection: wrk reconnects after every response to Connection: close.
t_newconn() { t_wrk newconn / "$@" -H 'Connection: close'; }

# 3a. HTTP/2 over TLS: h2load, 16 connections × 10 concurrent streams.
t_h2_tls() {
  local target=$1 run=$2 port
  [ "$target" = direct ] && return 0 # the backend speaks neither TLS nor HTTP/2
  port=$(https_port "$target")
  local out=$WORK/out/h2_tls-$target-$run.txt log=$WORK/out/h2_tls-$target-$run.log
  with_cpu "$target" on_load_cpu timeout $((DURATION + 30)) \
    h2load -t1 -c16 -m10 -D "$DURATION" --warm-up-time="${WARMUP_MS}ms" \
    --connect-to="127.0.0.1:$port" --log-file="$log" "https://$HOST:$port/" >"$out"
  record --test h2_tls --target "$target" --run "$run" --h2load "$out" --h2load-log "$log" $(cpu_set)
  rm -f "$log"
}

# 3b. TLS handshakes: new connection, full handshake, one request, 32 concurrent clients.
t_tls_handshake() {
  local target=$1 run=$2 json
  [ "$target" = direct ] && return 0
  with_cpu "$target" on_load_cpu "$TOOL" --threads 1 conn --tls \
    --addr "127.0.0.1:$(https_port "$target")" --host "$HOST" --connections 32 \
    --duration "$DURATION" --warmup "$WARMUP" >"$WORK/out/tls-$target-$run.json"
  json=$(cat "$WORK/out/tls-$target-$run.json")
  record --test tls_handshake --target "$target" --run "$run" --json "$json" $(cpu_set)
}

# 4. WebSocket echo: 100 connections, closed loop, 64-byte binary messages.
t_ws_echo() {
  local target=$1 run=$2 json
  with_cpu "$target" on_load_cpu "$TOOL" --threads 1 ws-load \
    --addr "127.0.0.1:$(http_port "$target")" --host "$HOST" --connections 100 \
    --duration "$DURATION" --warmup "$WARMUP" --size 64 >"$WORK/out/ws-$target-$run.json"
  json=$(cat "$WORK/out/ws-$target-$run.json")
  record --test ws_echo --target "$target" --run "$run" --json "$json" $(cpu_set)
}

# 11. gRPC unary: h2load calls the gRPC backend's echo method (POST $GRPC_PATH, one
# length-prefixed message, content-type application/grpc, te: trailers), 16 connections × 10
# streams, over h2c (HTTP/2 with prior knowledge) or h2 over TLS (ALPN); direct over h2c only
# (the backend speaks no TLS). weir: the Ingress $GRPC_HOST with backend-protocol GRPC;
# nginx: grpc_pass to an upstream with keepalive (write_nginx_conf).

GRPC_REQUEST=""  # the request body, written by weir-bench grpc-message

start_grpc_backend() {
  GRPC_REQUEST=$WORK/grpc-request.bin
  "$TOOL" grpc-message --out "$GRPC_REQUEST"
  spawn GRPC_BACKEND_PID taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 grpc-backend \
    --listen "127.0.0.1:$GRPC_BACKEND_PORT" 2>"$WORK/grpc-backend.log"
  for _ in $(seq 200); do grpc_backend_stats >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "the gRPC backend never answered on port $GRPC_BACKEND_PORT"
}

# The gRPC backend's counts so far: "OK NOT_OK" (calls answered grpc-status 0, and otherwise).
grpc_backend_stats() {
  local json
  json=$(curl -sS --fail --max-time 2 --http2-prior-knowledge \
    "http://127.0.0.1:$GRPC_BACKEND_PORT/stats") || return 1
  echo "$(field ok "$json") $(field not_ok "$json")"
}

# gRPC calls of weir's Ingress grpc that ended with a grpc-status other than 0, by weir's own
# count (weir_grpc_requests_total; its refusals included, which never reach the backend).
weir_grpc_not_ok() {
  curl -s --max-time 2 "http://127.0.0.1:$WEIR_ADMIN/metrics" |
    awk '/^weir_grpc_requests_total\{/ && /ingress="grpc"/ && !/grpc_status="0"/ { n += $NF }
         END { print n + 0 }'
}

# grpc_port TARGET MODE: the port a gRPC client of TARGET connects to over MODE (h2c or tls).
grpc_port() {
  case "$1-$2" in
    direct-h2c) echo "$GRPC_BACKEND_PORT" ;;
    weir-h2c) echo "$WEIR_HTTP" ;;
    nginx-ingress-h2c) echo "$NGINX_H2C" ;;
    weir-tls) echo "$WEIR_HTTPS" ;;
    nginx-ingress-tls) echo "$NGINX_HTTPS" ;;
  esac
}

# grpc_url TARGET MODE: the URL of the echo method through TARGET over MODE.
grpc_url() {
  local scheme=http
  [ "$2" = tls ] && scheme=https
  echo "$scheme://$GRPC_HOST:$(grpc_port "$1" "$2")$GRPC_PATH"
}

# grpc_probe TARGET MODE: one call with curl through TARGET over MODE. The benchmark stops
# unless the answer is HTTP/2 200 with content-type application/grpc, the echoed message, and
# grpc-status 0 in the trailers, with no other grpc-status anywhere (weir's refusals carry
# theirs in the headers).
grpc_probe() {
  local target=$1 mode=$2 port out=$WORK/out/grpc-probe-$1-$2 flags=(--http2-prior-knowledge)
  port=$(grpc_port "$target" "$mode")
  [ "$mode" = tls ] && flags=(--http2 --insecure)
  curl -sS --max-time 5 "${flags[@]}" --resolve "$GRPC_HOST:$port:127.0.0.1" \
    -H 'content-type: application/grpc' -H 'te: trailers' --data-binary "@$GRPC_REQUEST" \
    -D "$out.head" -o "$out.body" "$(grpc_url "$target" "$mode")" 2>"$out.err" ||
    die "gRPC call through $target ($mode) failed: $(cat "$out.err")"
  # curl -D writes the response head, an empty line, then the trailers.
  local head trailers problem=""
  head=$(tr -d '\r' <"$out.head" | awk 'NF == 0 { exit } { print }')
  trailers=$(tr -d '\r' <"$out.head" | awk 'NF == 0 { seen = 1; next } seen { print }')
  if ! head -n1 <<<"$head" | grep -q '^HTTP/2 200'; then
    problem="not an HTTP/2 200"
  elif ! grep -qi '^content-type: application/grpc' <<<"$head"; then
    problem="no content-type application/grpc"
  elif grep -i '^grpc-status:' <<<"$head$trailers" | grep -qvi '^grpc-status: *0$'; then
    problem="a grpc-status other than 0"
  elif ! grep -qi '^grpc-status: *0$' <<<"$trailers"; then
    problem="no grpc-status 0 in the trailers"
  elif ! cmp -s "$out.body" "$GRPC_REQUEST"; then
    problem="not the echoed message"
  fi
  [ -z "$problem" ] ||
    die "gRPC call through $target ($mode): $problem; response head and trailers:
$(cat "$out.head")"
}

# t_grpc MODE TARGET RUN: the load test. A time-based warm-up of $WARMUP s gives the rate; the
# measured run then makes a fixed number of calls, that rate × $DURATION s, so that it lasts
# about as long and every call it starts runs to its end (a time-based run stops with 160
# calls in flight, which the proxies and the backend count as cancelled). The backend's counts
# and weir's taken around it then cover exactly its calls, for grpc_accounting in weir-bench
# report: a call answered 2xx that the backend never answered, or that ended with a
# grpc-status other than 0, is a failed call. A stalled connection is closed after 10 s
# without activity and its calls count as failed (h2load's "timeout").
t_grpc() {
  local mode=$1 target=$2 run=$3 test=grpc_$1
  [ "$mode" = tls ] && [ "$target" = direct ] && return 0
  local url out=$WORK/out/$test-$target-$run.txt log=$WORK/out/$test-$target-$run.log
  url=$(grpc_url "$target" "$mode")
  local load=(-t1 -c16 -m10 -d "$GRPC_REQUEST" -H 'content-type: application/grpc'
    -H 'te: trailers' --connect-to="127.0.0.1:$(grpc_port "$target" "$mode")"
    --connection-inactivity-timeout=10)
  grpc_probe "$target" "$mode"
  on_load_cpu timeout $((DURATION + 60)) h2load "${load[@]}" -D "${WARMUP_MS}ms" "$url" \
    >"$out.warmup"
  local rate calls
  rate=$(awk '/^finished in/ { gsub(",", ""); print $4 }' "$out.warmup")
  calls=$(awk -v r="${rate:-0}" -v d="$DURATION" 'BEGIN { n = int(r * d); print (n < 1000 ? 1000 : n) }')
  # The warm-up's last calls, cut off when it stopped, are counted by now.
  sleep 0.5
  local stats ok0 not0 ok1 not1 weir0=0 extra=()
  stats=$(grpc_backend_stats) || die "no counts from the gRPC backend"
  read -r ok0 not0 <<<"$stats"
  [ "$target" != weir ] || weir0=$(weir_grpc_not_ok)
  with_cpu "$target" on_load_cpu timeout $((DURATION * 10 + 60)) \
    h2load "${load[@]}" -n "$calls" --log-file="$log" "$url" >"$out"
  stats=$(grpc_backend_stats) || die "no counts from the gRPC backend"
  read -r ok1 not1 <<<"$stats"
  [ "$target" != weir ] || extra=(--set "weir_grpc_not_ok=$(($(weir_grpc_not_ok) - weir0))")
  record --test "$test" --target "$target" --run "$run" --h2load "$out" --h2load-log "$log" \
    $(cpu_set) --set "calls=$calls" --set "backend_ok=$((ok1 - ok0))" \
    --set "backend_not_ok=$((not1 - not0))" "${extra[@]}"
  rm -f "$log"
}

t_grpc_h2c() { t_grpc h2c "$@"; }
t_grpc_tls() { t_grpc tls "$@"; }

# 6. CPU-seconds of the proxy per 100,000 requests at a fixed rate.
t_cpu_rate() {
  local target=$1 run=$2 json pids c0 c1 requests
  [ "$target" = direct ] && return 0
  pids=$(proxy_pids "$target")
  c0=$(cpu_ticks $pids)
  json=$(on_load_cpu "$TOOL" --threads 1 rate --addr "127.0.0.1:$(http_port "$target")" \
    --host "$HOST" --rate "$RATE" --requests "$CPU_REQUESTS" --connections 64)
  c1=$(cpu_ticks $pids)
  requests=$(field requests "$json")
  [ "$requests" -gt 0 ] || die "no request answered by $target: $json"
  record --test cpu_rate --target "$target" --run "$run" --json "$json" \
    --set cpu_s="$(calc "($c1 - $c0) / $CLK_TCK")" \
    --set cpu_s_per_100k="$(calc "($c1 - $c0) / $CLK_TCK * 100000 / $requests")"
}

# 5. Memory per idle connection: a fresh proxy, its RSS before and while $MEM_CONNS idle
# connections (http) or WebSockets (ws), or $MEM_TLS_CONNS idle HTTP/1.1 connections over TLS
# (tls) or HTTP/2 connections over TLS (h2), are held open through it.
t_mem() {
  local kind=$1 target=$2 run=$3 pid pids before held hold_pid ready=$WORK/hold-ready
  local port tls_port conns=$MEM_CONNS
  case "$target" in
    direct) return 0 ;;
    weir)
      start_weir pid "$WORK/weir-base" "$WEIR2_HTTP" "$WEIR2_HTTPS" "$WEIR2_ADMIN"
      port=$WEIR2_HTTP tls_port=$WEIR2_HTTPS ;;
    nginx-ingress)
      start_nginx pid "$WORK/nginx-mem" "$NGINX2_HTTP"
      port=$NGINX2_HTTP tls_port=$NGINX2_HTTPS ;;
    nginx-classic)
      start_nginx pid "$WORK/nginx-classic-mem" "$NGINXC2_HTTP"
      port=$NGINXC2_HTTP tls_port=$NGINXC2_HTTPS ;;
    haproxy)
      start_haproxy pid "$WORK/haproxy-mem.cfg" "$HAPROXY2_HTTP"
      port=$HAPROXY2_HTTP tls_port=$HAPROXY2_HTTPS ;;
  esac
  # One request first, so that lazily built state (pools, buffers) is in the baseline: over
  # TLS for the TLS kinds (TLS context, session cache), in HTTP/2 for h2.
  case "$kind" in
    http|ws) curl -s -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$port/" ;;
    tls) curl -sk -o /dev/null --http1.1 --resolve "$HOST:$tls_port:127.0.0.1" \
      "https://$HOST:$tls_port/" ;;
    h2) curl -sk -o /dev/null --http2 --resolve "$HOST:$tls_port:127.0.0.1" \
      "https://$HOST:$tls_port/" ;;
  esac
  case "$kind" in tls|h2) port=$tls_port conns=$MEM_TLS_CONNS ;; esac
  sleep 0.5
  case "$target" in nginx-*) pids=$(nginx_pids "$pid") ;; *) pids=$pid ;; esac
  before=$(rss_kib $pids)
  rm -f "$ready"
  spawn hold_pid taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 hold --kind "$kind" \
    --addr "127.0.0.1:$port" --host "$HOST" --path "$([ "$kind" = ws ] && echo /ws || echo /)" \
    --connections "$conns" --ready-file "$ready" >"$WORK/out/mem_$kind-$target-$run.json"
  for _ in $(seq 1200); do [ -s "$ready" ] && break; sleep 0.1; done
  [ -s "$ready" ] || die "the holder never got its $conns connections open"
  # weir parks HTTP/1 connections idle for 1 s (--keepalive-park-after) and its allocator
  # returns the freed pages over about a second more; nginx frees its buffers at once.
  # Measure once both have settled.
  sleep 3
  held=$(rss_kib $pids)
  stop "$hold_pid"
  stop "$pid"
  local json opened
  json=$(cat "$WORK/out/mem_$kind-$target-$run.json")
  opened=$(field opened "$json")
  [ "$opened" -gt 0 ] || die "no connection opened through $target: $json"
  record --test "mem_$kind" --target "$target" --run "$run" --json "$json" \
    --set rss_before_mib="$(calc "$before / 1024")" --set rss_held_mib="$(calc "$held / 1024")" \
    --set kib_per_conn="$(calc "($held - $before) / $opened")"
}

t_mem_http() { t_mem http "$@"; }
t_mem_ws() { t_mem ws "$@"; }
t_mem_tls() { t_mem tls "$@"; }
t_mem_h2() { t_mem h2 "$@"; }

# ---------------------------------------------------------------------------------------------
# 8. Configuration changes with $CFG_INGRESSES Ingresses (nginx: server blocks) loaded.

# The elapsed times (ms) of weir's table rebuilds logged after line $2 of log $1.
weir_rebuilds_ms() {
  tail -n +"$(($2 + 1))" "$1" | sed 's/\x1b\[[0-9;]*m//g' | grep 'published routing table' |
    sed -n 's/.*elapsed=\([0-9.]*\)\([µun]*s\|ms\|s\).*/\1 \2/p' |
    awk '{ f = ($2 == "s") ? 1000 : ($2 == "ms") ? 1 : ($2 == "ns") ? 1e-6 : 0.001; print $1 * f }'
}

cfg_tests() {
  local n=$CFG_INGRESSES
  log "8. configuration: $n Ingresses (nginx-ingress: $n server blocks)"
  local wdir=$WORK/weir-10k ndir=$WORK/nginx-10k
  write_weir_manifests "$wdir"
  weir_ingress_template >"$WORK/ingress.tmpl"
  "$TOOL" gen --template "$WORK/ingress.tmpl" --dest "$wdir/ing-{{i}}.yaml" --count "$n"
  write_nginx_conf "$ndir" "$NGINX2_HTTP" "$NGINX2_HTTPS" "$NGINX2_H2C"
  nginx_server_template "$NGINX2_HTTP" >"$WORK/server.tmpl"
  "$TOOL" gen --template "$WORK/server.tmpl" --dest "$ndir/conf.d/servers.conf" --count "$n"
  local last="h$((n - 1)).$HOST"

  # Memory: one Ingress against n, and the time from start to the last host routable.
  local target pid pids rss1 rss pss t0 load_s
  for target in weir nginx-ingress; do
    if [ "$target" = weir ]; then
      start_weir pid "$WORK/weir-base" "$WEIR2_HTTP" "$WEIR2_HTTPS" "$WEIR2_ADMIN"
      curl -s -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$WEIR2_HTTP/"
      sleep 0.5; rss1=$(rss_kib "$pid")
    else
      start_nginx pid "$WORK/nginx-mem" "$NGINX2_HTTP"
      curl -s -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$NGINX2_HTTP/"
      sleep 0.5; rss1=$(rss_kib $(nginx_pids "$pid"))
    fi
    stop "$pid"
    t0=$(now)
    if [ "$target" = weir ]; then
      start_weir WEIR10K_PID "$wdir" "$WEIR2_HTTP" "$WEIR2_HTTPS" "$WEIR2_ADMIN"
      wait_http "$WEIR2_HTTP" "$last"
      load_s=$(calc "$(now) - $t0")
      sleep 0.5; pids=$WEIR10K_PID
    else
      start_nginx NGINX10K_PID "$ndir" "$NGINX2_HTTP"
      wait_http "$NGINX2_HTTP" "$last"
      load_s=$(calc "$(now) - $t0")
      sleep 0.5; pids=$(nginx_pids "$NGINX10K_PID")
    fi
    rss=$(rss_kib $pids); pss=$(pss_kib $pids)
    record --test cfg_memory --target "$target" \
      --set rss_1_mib="$(calc "$rss1 / 1024")" --set rss_10k_mib="$(calc "$rss / 1024")" \
      --set pss_10k_mib="$(calc "$pss / 1024")" --set table_mib="$(calc "($rss - $rss1) / 1024")" \
      --set load_s="$load_s"
    note "$target: RSS $((rss1 / 1024)) MiB with 1, $((rss / 1024)) MiB with $n; loaded in ${load_s}s"
    if [ "$target" = weir ]; then stop "$WEIR10K_PID"; else stop "$NGINX10K_PID"; fi
  done

  # Change → routable, then errors under load during changes.
  printf '%s\n' "$(weir_ingress_template | sed "s/name: h{{i}}/name: c{{i}}/; s/host: h{{i}}/host: c{{i}}/")" \
    >"$WORK/change-weir.tmpl"
  nginx_server_template "$NGINX2_HTTP" | sed 's/server_name h{{i}}/server_name c{{i}}/' \
    >"$WORK/change-nginx.tmpl"
  local reload
  reload="$(nginx_cmd "$ndir") -s reload"
  for target in weir nginx-ingress; do
    local dest tmpl after=() lines=0 port
    if [ "$target" = weir ]; then
      port=$WEIR2_HTTP
      start_weir pid "$wdir" "$WEIR2_HTTP" "$WEIR2_HTTPS" "$WEIR2_ADMIN"
      wait_http "$WEIR2_HTTP" "$last"
      dest="$wdir/change-{{i}}.yaml" tmpl=$WORK/change-weir.tmpl
      lines=$(wc -l <"$WORK/weir-$WEIR2_HTTP.log")
    else
      start_nginx pid "$ndir" "$NGINX2_HTTP"
      wait_http "$NGINX2_HTTP" "$last"
      dest="$ndir/conf.d/change-{{i}}.conf" tmpl=$WORK/change-nginx.tmpl
      after=(--after-write "$reload")
      port=$NGINX2_HTTP
    fi
    local json count=$CFG_CHANGES
    [ "$target" = weir ] && count=$CFG_WEIR_CHANGES
    json=$(on_load_cpu "$TOOL" --threads 1 change --template "$tmpl" --dest "$dest" \
      --host "c{{i}}.$HOST" --addr "127.0.0.1:$port" --start 100000 \
      --count "$count" "${after[@]}" 2>>"$WORK/change.log")
    local extra=()
    if [ "$target" = weir ]; then
      local rebuild
      rebuild=$(weir_rebuilds_ms "$WORK/weir-$WEIR2_HTTP.log" "$lines" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
      [ -z "$rebuild" ] || extra=(--set "rebuild_p50_ms=$rebuild")
    fi
    record --test cfg_latency --target "$target" --json "$json" "${extra[@]}"
    note "$target: change → routable p50 $(field p50_ms "$json") ms, p99 $(field p99_ms "$json") ms"

    # Errors under load: clients at a fixed rate on keep-alive connections, meanwhile changes.
    local load_pid load_out=$WORK/out/cfg_errors-$target.json
    spawn load_pid taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 rate --addr "127.0.0.1:$port" \
      --host "h1.$HOST" --rate "$CFG_LOAD_RATE" --connections 64 >"$load_out"
    sleep 1
    on_load_cpu "$TOOL" --threads 1 change --template "$tmpl" --dest "$dest" \
      --host "c{{i}}.$HOST" --addr "127.0.0.1:$port" --start 200000 \
      --count "$CFG_LOAD_CHANGES" --gap 0.05 "${after[@]}" >"$WORK/out/cfg_errors-changes-$target.json" \
      2>>"$WORK/change.log"
    sleep 1
    stop "$load_pid"
    record --test cfg_errors --target "$target" --json "$(cat "$load_out")" \
      --set changes="$(field seen "$(cat "$WORK/out/cfg_errors-changes-$target.json")")"
    note "$target: $(field errors "$(cat "$load_out")") client errors in $(field requests "$(cat "$load_out")") requests during $CFG_LOAD_CHANGES changes"
    stop "$pid"
    rm -f "$wdir"/change-*.yaml "$ndir"/conf.d/change-*.conf
  done
  cfg_cluster_test
}

# 8d. Cluster mode: weir only (nginx-ingress's reload is test 8a's), in scripts/e2e-env.sh's
# private namespaces with a real etcd and kube-apiserver; needs root, like the e2e tests.
cfg_cluster_test() {
  if [ "$(id -u)" != 0 ]; then
    note "8d (cluster mode) skipped: scripts/e2e-env.sh needs root"
    return
  fi
  log "8d. cluster mode: $CFG_INGRESSES Ingresses in a real kube-apiserver"
  local json
  json=$("$ROOT/scripts/e2e-env.sh" -- "$BENCH/cluster.sh" "$TOOL" "$WEIR_BIN" "$CFG_INGRESSES" \
    "$CFG_WEIR_CHANGES" "$PIN_CPUS" "$LOAD_CPUS" "$WORK/weir-cluster.log" 2>>"$WORK/cluster.log") ||
    die "8d (cluster mode) failed (see $WORK/cluster.log and $WORK/weir-cluster.log)"
  record --test cfg_cluster --target weir --json "$json"
  note "weir: change → routable p50 $(field p50_ms "$json") ms, p99 $(field p99_ms "$json") ms (the API server's answer: $(field write_p50_ms "$json") ms p50); start-up $(field load_s "$json") s"
}

# ---------------------------------------------------------------------------------------------
# 9. The cost of weir's telemetry: weir against weir, test 1a's load on three variants:
# bare (no request metrics, no access log), metrics (request metrics: the weir of every other
# test) and metrics_log (request metrics and the access log, to a file).

# weir_metric ADMIN NAME: the value of the unlabelled metric NAME on weir's /metrics (0 if absent).
weir_metric() {
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
    awk -v name="$2" '$1 == name { v = $2 } END { print v + 0 }'
}

# weir_series ADMIN NAME: how many series of metric NAME weir's /metrics has.
weir_series() {
  curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | grep -c "^$2{" || true
}

# 9. Test 1a's wrk run on a variant of weir. metrics_log also records the lines its access log
# got (emptied before the run) and the lines it dropped (a writer behind) during the run.
t_telemetry() {
  local target=$1 run=$2 out=$WORK/out/telemetry-$1-$2.txt extra=() dropped0=0 lines
  if [ "$target" = metrics_log ]; then
    : >"$LOGGED_LOG" # weir appends (O_APPEND): it goes on writing at the new end
    dropped0=$(weir_metric "$LOGGED_ADMIN" weir_access_log_dropped_total)
  fi
  wrk_load "$target" / "$out"
  if [ "$target" = metrics_log ]; then
    sleep 0.5 # the writer thread writes in batches: let it catch up
    lines=$(wc -l <"$LOGGED_LOG")
    [ "$lines" -gt 0 ] || die "metrics_log: nothing in its access log $LOGGED_LOG"
    extra=(--set "access_log_lines=$lines" --set "access_log_dropped=$(($(
      weir_metric "$LOGGED_ADMIN" weir_access_log_dropped_total) - dropped0))")
  fi
  record --test telemetry --target "$target" --run "$run" --wrk "$out" $(cpu_set) "${extra[@]}"
}

telemetry_tests() {
  log "9. cost of weir's telemetry: weir without request metrics, with them, with them and the access log"
  start_weir BARE_PID "$WORK/weir-base" "$BARE_HTTP" "$BARE_HTTPS" "$BARE_ADMIN" \
    --access-log off --request-metrics=false
  # The access log goes to stdout, which start_weir appends to a file on disk.
  LOGGED_LOG=$WORK/weir-$LOGGED_HTTP.stdout
  start_weir LOGGED_PID "$WORK/weir-base" "$LOGGED_HTTP" "$LOGGED_HTTPS" "$LOGGED_ADMIN" \
    --access-log stdout
  local target run order
  for target in bare metrics metrics_log; do
    on_load_cpu wrk -t1 -c64 -d1s -H "Host: $HOST" "http://127.0.0.1:$(http_port "$target")/" >/dev/null
  done
  # Are the variants what they claim? (series of weir_requests_total, lines in the access log)
  note "weir_requests_total series: bare $(weir_series "$BARE_ADMIN" weir_requests_total), metrics $(weir_series "$WEIR_ADMIN" weir_requests_total), metrics_log $(weir_series "$LOGGED_ADMIN" weir_requests_total); access log of metrics_log: $(wc -l <"$LOGGED_LOG") lines after the warm-up"
  # Interleaved, the order reversed in even runs.
  for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="bare metrics metrics_log"; else order="metrics_log metrics bare"; fi
    for target in $order; do
      note "t_telemetry $target (run $run/$RUNS)"
      t_telemetry "$target" "$run"
    done
  done
  stop "$BARE_PID"
  stop "$LOGGED_PID"
}

# ---------------------------------------------------------------------------------------------
# 10. A/B (group ab, with --baseline REV): the baseline weir (REV) against the current tree's, on
# the same machine in the same run, the same manifests ($WORK/weir-ab: the base manifests plus an
# Ingress without any annotation) and the same load on that Ingress's host ($PLAIN_HOST).

# The A/B's Ingress in directory $1: no annotation, no tls.
write_plain_ingress() {
  cat >"$1/plain.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain
  namespace: default
spec:
  ingressClassName: weir
  rules:
    - host: $PLAIN_HOST
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: bench, port: {name: http}}}}
EOF
}

ab_bin() { case "$1" in baseline) echo "$BASELINE_BIN" ;; current) echo "$CURRENT_BIN" ;; esac; }

# cg_load PORT REQUESTS WHAT: REQUESTS GETs to $PLAIN_HOST on one keep-alive connection at
# $AB_CG_RATE req/s; fails unless every one was answered 2xx.
cg_load() {
  local json
  json=$(on_load_cpu "$TOOL" --threads 1 rate --addr "127.0.0.1:$1" --host "$PLAIN_HOST" \
    --rate "$AB_CG_RATE" --connections 1 --requests "$2")
  [ "$(field ok "$json")" = "$2" ] || die "$3: not all of $2 requests answered 2xx: $json"
  # The client has closed its connection: let weir finish with it before the next step.
  sleep 0.3
}

# Waits until callgrind's dump $1 is complete (its last line is totals:).
cg_wait_dump() {
  for _ in $(seq 600); do grep -q '^totals:' "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "callgrind never wrote $1"
}

# 10a. The acceptance measure, deterministic: instructions per request. The target's weir under
# callgrind (--worker-threads 1, pinned on the proxy CPU): a warm-up, counters zeroed
# (callgrind_control -z), N requests, dump (.1), 2N requests, dump (.2), $AB_CG_IDLE s idle,
# dump (.3), then SIGTERM. Instructions per request = (Ir(2N) − Ir(N)) / N: start-up, the warm-up
# and what a phase costs apart from its requests (the dump, the client's connect and close)
# cancel out. The idle dump gives weir's background instructions per second (timers, the
# allocator's purge thread); the longer 2N phase adds (N / rate) s of them, i.e. their rate
# divided by $AB_CG_RATE per request, to both binaries alike.
t_ab_instr() {
  local target=$1 run=$2 pid out=$WORK/out/callgrind-$1-$2.out json
  WEIR_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$out"
    --log-file="$WORK/valgrind-$target-$run.log")
  start_weir_bin "$(ab_bin "$target")" pid "$WORK/weir-ab" "$CG_HTTP" "$CG_HTTPS" "$CG_ADMIN" \
    --worker-threads 1
  WEIR_WRAP=()
  cg_load "$CG_HTTP" "$AB_CG_WARMUP" "$target, warm-up"
  callgrind_control -z "$pid" >/dev/null
  cg_load "$CG_HTTP" "$AB_CG_REQUESTS" "$target, N"
  callgrind_control -d "$pid" >/dev/null
  cg_wait_dump "$out.1"
  cg_load "$CG_HTTP" $((2 * AB_CG_REQUESTS)) "$target, 2N"
  callgrind_control -d "$pid" >/dev/null
  cg_wait_dump "$out.2"
  local t0
  t0=$(now)
  sleep "$AB_CG_IDLE"
  callgrind_control -d "$pid" >/dev/null
  cg_wait_dump "$out.3"
  local idle_s
  idle_s=$(calc "$(now) - $t0")
  stop "$pid" 60
  json=$("$TOOL" callgrind measure --n "$out.1" --double "$out.2" --requests "$AB_CG_REQUESTS" \
    --idle "$out.3" --idle-seconds "$idle_s")
  record --test ab_instr --target "$target" --run "$run" --json "$json"
  note "$target: $(field instr_per_req "$json") instructions per request (N alone: $(field instr_per_req_n "$json"), 2N alone: $(field instr_per_req_2n "$json"))"
}

# "tid ns" for every thread of pid $1: its time on CPU (schedstat), in nanoseconds.
thread_ns() {
  local f
  for f in /proc/"$1"/task/*/schedstat; do
    [ -e "$f" ] || continue
    f=${f%/schedstat}
    printf '%s %s\n' "${f##*/}" "$(cut -d' ' -f1 "$f/schedstat" 2>/dev/null || echo 0)"
  done
}

# ns on CPU between two thread_ns readings (files $1, $2), over the threads of the second
# (a thread started meanwhile counts from 0).
ns_between() {
  awk 'NR == FNR { before[$1] = $2; next } { sum += $2 - before[$1] } END { printf "%.0f\n", sum }' \
    "$1" "$2"
}

# 10b. The corroboration, noisy: t_cpu_rate's load (the fixed rate over 64 keep-alive
# connections) on $PLAIN_HOST; the proxy's CPU as clock ticks (utime+stime, as t_cpu_rate) and as
# schedstat nanoseconds, per request.
t_ab_cpu() {
  local target=$1 run=$2 pid port json c0 c1 requests
  case "$target" in
    baseline) pid=$ABBASE_PID port=$ABBASE_HTTP ;;
    current) pid=$ABCUR_PID port=$ABCUR_HTTP ;;
  esac
  c0=$(cpu_ticks "$pid"); thread_ns "$pid" >"$WORK/ns0"
  json=$(on_load_cpu "$TOOL" --threads 1 rate --addr "127.0.0.1:$port" --host "$PLAIN_HOST" \
    --rate "$RATE" --requests "$CPU_REQUESTS" --connections 64)
  c1=$(cpu_ticks "$pid"); thread_ns "$pid" >"$WORK/ns1"
  requests=$(field requests "$json")
  [ "$requests" -gt 0 ] || die "no request answered by the $target weir: $json"
  record --test ab_cpu --target "$target" --run "$run" --json "$json" \
    --set cpu_s_per_100k="$(calc "($c1 - $c0) / $CLK_TCK * 100000 / $requests")" \
    --set cpu_us_per_req="$(calc "$(ns_between "$WORK/ns0" "$WORK/ns1") / 1000 / $requests")"
}

ab_tests() {
  log "10. A/B: baseline $BASELINE ($BASELINE_REV) against current ($CURRENT_REV) on $PLAIN_HOST (an Ingress without annotations)"
  note "binaries: baseline sha256 $(sha256sum "$BASELINE_BIN" | cut -c1-16), current sha256 $(sha256sum "$CURRENT_BIN" | cut -c1-16)"
  local run target order port
  log "10a. instructions per request under callgrind: $AB_CG_RUNS process(es) per binary, N = $AB_CG_REQUESTS then 2N requests at $AB_CG_RATE req/s on one connection"
  for run in $(seq "$AB_CG_RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="baseline current"; else order="current baseline"; fi
    for target in $order; do
      note "t_ab_instr $target (run $run/$AB_CG_RUNS)"
      t_ab_instr "$target" "$run"
    done
  done
  # Where the instructions go, function by function (run 1 of each).
  local cg=$WORK/out/callgrind
  "$TOOL" callgrind functions --requests "$AB_CG_REQUESTS" \
    --baseline-n "$cg-baseline-1.out.1" --baseline-double "$cg-baseline-1.out.2" \
    --current-n "$cg-current-1.out.1" --current-double "$cg-current-1.out.2" >"$WORK/ab-functions.md"

  log "10b. CPU per request at $RATE req/s × $CPU_REQUESTS requests: $RUNS interleaved runs"
  start_weir_bin "$BASELINE_BIN" ABBASE_PID "$WORK/weir-ab" "$ABBASE_HTTP" "$ABBASE_HTTPS" "$ABBASE_ADMIN"
  start_weir_bin "$CURRENT_BIN" ABCUR_PID "$WORK/weir-ab" "$ABCUR_HTTP" "$ABCUR_HTTPS" "$ABCUR_ADMIN"
  for port in "$ABBASE_HTTP" "$ABCUR_HTTP"; do
    on_load_cpu wrk -t1 -c64 -d1s -H "Host: $PLAIN_HOST" "http://127.0.0.1:$port/" >/dev/null
  done
  for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="baseline current"; else order="current baseline"; fi
    for target in $order; do
      note "t_ab_cpu $target (run $run/$RUNS)"
      t_ab_cpu "$target" "$run"
    done
  done
  stop "$ABBASE_PID"
  stop "$ABCUR_PID"
}

# ---------------------------------------------------------------------------------------------
# 12. CPU scaling (group scale): test 1a's load on weir with 1 and 2 worker threads, nginx-classic
# with 1 and 2 workers, HAProxy with nbthread 1 and 2, each on fresh instances.

SCALE_NOTE=""  # how the scaling test was pinned (for the report)

# scale_cpus N: the CPUs (taskset list) of a proxy with N workers: the first N of --proxy-cpus,
# completed with load CPUs when --proxy-cpus has fewer (then the proxy shares them with the load).
scale_cpus() {
  local n=$1 cpus=() c
  for c in "${PROXY_CPU_LIST[@]}"; do [ ${#cpus[@]} -lt "$n" ] && cpus+=("$c"); done
  for c in "${LOAD_CPU_LIST[@]}"; do
    [ ${#cpus[@]} -lt "$n" ] && [[ " ${cpus[*]} " != *" $c "* ]] && cpus+=("$c")
  done
  (IFS=,; echo "${cpus[*]}")
}

# The scaling test's load: wrk with one thread per load CPU, 64 connections, on / (13 B).
t_scale() {
  local target=$1 run=$2 out=$WORK/out/scale-$1-$2.txt
  with_cpu "$target" on_load_cpu timeout $((DURATION + 30)) \
    wrk -t"$LOAD_NCPU" -c64 -d"${DURATION}s" --latency -H "Host: $HOST" \
    "http://127.0.0.1:$(http_port "$target")/" >"$out"
  record --test scale_h1 --target "$target" --run "$run" --wrk "$out" $(cpu_set) \
    --set "cpus=${target##*-}"
}

scale_tests() {
  log "12. CPU scaling: weir, nginx-classic and haproxy with 1 and 2 workers"
  local n cpus run target order shared=""
  for n in 1 2; do
    cpus=$(scale_cpus "$n")
    if [ "$n" -gt "$PROXY_NCPU" ]; then
      shared=" With 2 workers the proxy ran on CPUs $(scale_cpus 2): --proxy-cpus has fewer than 2, so it shared CPU(s) with the load generator and the backend (CPUs $LOAD_CPUS); run with --proxy-cpus and --load-cpus apart (e.g. --proxy-cpus 2,3 --load-cpus 0,1) for a clean figure."
    fi
    note "$n worker(s) on CPUs $cpus"
    PIN_CPUS=$cpus
    start_weir SCALE_WEIR_PID "$WORK/weir-base" "$SCALE_WEIR_HTTP" "$SCALE_WEIR_HTTPS" \
      "$SCALE_WEIR_ADMIN" --worker-threads "$n"
    write_nginx_classic_conf "$WORK/nginx-scale-$n" "$SCALE_NGINX_HTTP" "$SCALE_NGINX_HTTPS" "$n"
    start_nginx SCALE_NGINX_PID "$WORK/nginx-scale-$n" "$SCALE_NGINX_HTTP"
    write_haproxy_conf "$WORK/haproxy-scale-$n.cfg" "$SCALE_HAPROXY_HTTP" "$SCALE_HAPROXY_HTTPS" "$n"
    start_haproxy SCALE_HAPROXY_PID "$WORK/haproxy-scale-$n.cfg" "$SCALE_HAPROXY_HTTP"
    PIN_CPUS=$PROXY_CPUS
    for target in "weir-$n" "nginx-classic-$n" "haproxy-$n"; do
      on_load_cpu wrk -t"$LOAD_NCPU" -c64 -d1s -H "Host: $HOST" "http://127.0.0.1:$(http_port "$target")/" >/dev/null
    done
    for run in $(seq "$RUNS"); do
      if [ $((run % 2)) = 1 ]; then order="weir-$n nginx-classic-$n haproxy-$n"
      else order="haproxy-$n nginx-classic-$n weir-$n"; fi
      for target in $order; do
        note "t_scale $target (run $run/$RUNS)"
        t_scale "$target" "$run"
      done
    done
    stop "$SCALE_WEIR_PID"
    stop "$SCALE_NGINX_PID"
    stop "$SCALE_HAPROXY_PID"
  done
  SCALE_NOTE="1 worker on CPU $(scale_cpus 1), 2 workers on CPUs $(scale_cpus 2); wrk with $LOAD_NCPU thread(s) on CPUs $LOAD_CPUS.$shared"
}

# The pinning, for the report.
pinning_note() {
  local note="proxies on CPU(s) $PROXY_CPUS ($PROXY_NCPU: weir's tokio runtime sizes itself from its affinity, nginx worker_processes $PROXY_NCPU, haproxy nbthread $PROXY_NCPU); load generators and backend on CPU(s) $LOAD_CPUS"
  if wants scale; then
    note="$note; CPU scaling: 1 worker on CPU(s) $(scale_cpus 1), 2 on CPUs $(scale_cpus 2)"
    [ "$PROXY_NCPU" -ge 2 ] || note="$note (shared with the load: this machine's figure for 2 workers is not clean)"
  fi
  echo "$note"
}

# ---------------------------------------------------------------------------------------------
# Main

# Counts (and samples) what the servers logged as going wrong during the run.
problems() {
  local f n
  for f in "$WORK"/weir-*.log; do
    [ -e "$f" ] || continue
    n=$(sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -cE ' (WARN|ERROR) ' || true)
    note "$(basename "$f"): $n WARN/ERROR lines"
    sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -E ' (WARN|ERROR) ' | sed 's/^/      /' | head -5 >&2 || true
  done
  for f in "$WORK"/nginx*/error.log; do
    [ -e "$f" ] || continue
    n=$(grep -cE '\[(warn|error|crit|alert|emerg)\]' "$f" || true)
    note "$(basename "$(dirname "$f")")/error.log: $n warn/error lines"
    grep -E '\[(warn|error|crit|alert|emerg)\]' "$f" | sed 's/^/      /' | head -5 >&2 || true
  done
  for f in "$WORK"/haproxy*.cfg.log; do
    [ -e "$f" ] || continue
    n=$(grep -ciE 'warn|alert|emerg|error' "$f" || true)
    note "$(basename "$f"): $n warning/alert lines"
    grep -iE 'warn|alert|emerg|error' "$f" | sed 's/^/      /' | head -5 >&2 || true
  done
  for f in "$WORK"/backend.log "$WORK"/grpc-backend.log; do
    [ -e "$f" ] || continue
    note "$(basename "$f"): $(grep -c . "$f" || true) lines"
  done
}

# The targets of the main table, in the order of odd runs.
MAIN_TARGETS="direct weir nginx-classic nginx-ingress haproxy"

# interleaved FN [TARGETS]: runs test function FN for every run, interleaving the targets
# (default $MAIN_TARGETS): direct first, then the proxies in the given order in odd runs and in
# the reverse order in even ones.
interleaved() {
  local fn=$1 targets=${2:-$MAIN_TARGETS} run target order reversed="" t
  for t in ${targets#direct }; do reversed="$t $reversed"; done
  for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order=$targets; else order="direct $reversed"; fi
    for target in $order; do
      note "$fn $target (run $run/$RUNS)"
      "$fn" "$target" "$run"
    done
  done
}

main() {
  parse_flags "$@"
  [ "$(nproc --all)" -ge 2 ] || note "fewer than 2 CPUs: proxy and load generators share one"
  install_packages
  WORK=$(mktemp -d /tmp/weir-bench.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  build
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -ge $((2 * MEM_CONNS + 1000)) ] ||
    die "ulimit -n is $(ulimit -n): too low for $MEM_CONNS connections"
  local port_var
  EPHEMERAL=$(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768-60999)
  for port_var in $PORT_VARS; do
    if [ "${!port_var}" -ge "${EPHEMERAL%-*}" ] && [ "${!port_var}" -le "${EPHEMERAL#*-}" ]; then
      note "port ${!port_var} ($port_var) is in the ephemeral range $EPHEMERAL: a client connection may hold it when a server starts (WEIR_BENCH_PORT_OFFSET=N moves every port by N)"
      break
    fi
  done
  for port_var in $PORT_VARS; do
    port_free "${!port_var}" ||
      die "port ${!port_var} ($port_var) is in use (WEIR_BENCH_PORT_OFFSET=N moves every port by N)"
  done

  # Other work on the machine shows up as noise: say how busy it was.
  LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
  mkdir -p "$WORK/out"
  RECORDS=$WORK/records.jsonl
  : >"$RECORDS"
  make_certificate
  write_weir_manifests "$WORK/weir-base"
  write_nginx_conf "$WORK/nginx-ingress" "$NGINX_HTTP" "$NGINX_HTTPS" "$NGINX_H2C"
  write_nginx_conf "$WORK/nginx-mem" "$NGINX2_HTTP" "$NGINX2_HTTPS" "$NGINX2_H2C"
  write_nginx_classic_conf "$WORK/nginx-classic" "$NGINXC_HTTP" "$NGINXC_HTTPS"
  write_nginx_classic_conf "$WORK/nginx-classic-mem" "$NGINXC2_HTTP" "$NGINXC2_HTTPS"
  write_haproxy_conf "$WORK/haproxy.cfg" "$HAPROXY_HTTP" "$HAPROXY_HTTPS"
  write_haproxy_conf "$WORK/haproxy-mem.cfg" "$HAPROXY2_HTTP" "$HAPROXY2_HTTPS"
  if wants ab; then
    write_weir_manifests "$WORK/weir-ab"
    write_plain_ingress "$WORK/weir-ab"
  fi

  if wants_main; then
    log "starting the backend (CPUs $LOAD_CPUS), weir, nginx-classic, nginx-ingress and haproxy (CPUs $PROXY_CPUS)"
    start_backend
    start_weir WEIR_PID "$WORK/weir-base" "$WEIR_HTTP" "$WEIR_HTTPS" "$WEIR_ADMIN"
    start_nginx NGINXC_PID "$WORK/nginx-classic" "$NGINXC_HTTP"
    start_nginx NGINX_PID "$WORK/nginx-ingress" "$NGINX_HTTP"
    start_haproxy HAPROXY_PID "$WORK/haproxy.cfg" "$HAPROXY_HTTP"
    if wants grpc; then start_grpc_backend; fi
    note "weir pid $WEIR_PID ($(ls /proc/"$WEIR_PID"/task | wc -l) threads), nginx-classic master $NGINXC_PID, workers $(pgrep -P "$NGINXC_PID" | tr '\n' ' '), nginx-ingress master $NGINX_PID, workers $(pgrep -P "$NGINX_PID" | tr '\n' ' '), haproxy $HAPROXY_PID ($(ls /proc/"$HAPROXY_PID"/task | wc -l) threads)"

    log "warm-up"
    local target
    for target in $MAIN_TARGETS; do
      on_load_cpu wrk -t1 -c64 -d1s -H "Host: $HOST" "http://127.0.0.1:$(http_port "$target")/" >/dev/null
    done
  else
    log "starting the backend (CPUs $LOAD_CPUS)"
    start_backend
  fi

  if wants h1; then log "1. HTTP/1.1 keep-alive"; interleaved t_h1_tiny; interleaved t_h1_1k; fi
  if wants newconn; then log "2. new connections"; interleaved t_newconn; fi
  if wants h2; then log "3a. HTTP/2 over TLS"; interleaved t_h2_tls; fi
  if wants tls; then log "3b. TLS handshakes"; interleaved t_tls_handshake; fi
  if wants ws; then log "4. WebSocket echo"; interleaved t_ws_echo; fi
  if wants grpc; then
    # gRPC: weir against ingress-nginx's grpc_pass only (see bench/README.md).
    log "11. gRPC unary (h2load, 16 conns × 10 streams): over h2c, then over TLS"
    interleaved t_grpc_h2c "direct weir nginx-ingress"
    interleaved t_grpc_tls "direct weir nginx-ingress"
  fi
  if wants cpu; then log "6. CPU at $RATE req/s"; interleaved t_cpu_rate; fi
  if wants mem; then
    log "5. memory: $MEM_CONNS idle connections and WebSockets, $MEM_TLS_CONNS idle TLS and HTTP/2 connections, fresh proxies"
    # A fresh proxy per measurement takes a few seconds: --quick compares weir with
    # nginx-classic only here.
    # Memory moves little from run to run: at most $MEM_RUNS runs.
    local mem_targets=$MAIN_TARGETS all_runs=$RUNS
    [ "$QUICK" = 0 ] || mem_targets="direct weir nginx-classic"
    [ "$RUNS" -le "$MEM_RUNS" ] || RUNS=$MEM_RUNS
    interleaved t_mem_http "$mem_targets"
    interleaved t_mem_ws "$mem_targets"
    interleaved t_mem_tls "$mem_targets"
    interleaved t_mem_h2 "$mem_targets"
    RUNS=$all_runs
  fi
  if wants scale; then scale_tests; fi
  if wants cfg; then cfg_tests; fi
  if wants telemetry; then telemetry_tests; fi
  if wants ab; then ab_tests; fi

  log "problems logged by the servers"
  problems
  log "report"
  local commit cpu ab_args=() scale_args=()
  [ -z "$SCALE_NOTE" ] || scale_args=(--scale-note "$SCALE_NOTE")
  if wants ab; then
    ab_args=(--ab-baseline "$BASELINE → $BASELINE_REV"
      --ab-current "$CURRENT_REV (the working tree at build time)"
      --ab-budget "$AB_BUDGET" --ab-functions "$WORK/ab-functions.md"
      --ab-settings "callgrind: $AB_CG_RUNS process(es) per binary, --worker-threads 1, $AB_CG_WARMUP warm-up requests, then N = $AB_CG_REQUESTS and 2N requests at $AB_CG_RATE req/s on one keep-alive connection, valgrind $(valgrind --version | sed 's/valgrind-//'); fixed rate: $RUNS interleaved runs of $CPU_REQUESTS requests at $RATE req/s over 64 keep-alive connections; binaries built with $AB_CODEGEN_UNITS codegen unit(s) and $AB_LTO LTO, sha256 baseline $(sha256sum "$BASELINE_BIN" | cut -c1-16), current $(sha256sum "$CURRENT_BIN" | cut -c1-16)")
  fi
  commit=$(git -C "$ROOT" rev-parse --short=12 HEAD)
  git -C "$ROOT" diff --quiet HEAD -- . ':!bench/results' 2>/dev/null || commit="$commit (with uncommitted changes)"
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mkdir -p "$OUT"
  "$TOOL" report render --records "$RECORDS" \
    --markdown "$OUT/latest.md" --json "$OUT/latest.json" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --meta "machine=$cpu, $(nproc --all) cores, $(uname -sr)" \
    --meta "pinning=$(pinning_note)" \
    --meta "load average=$LOADAVG_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine is noise)" \
    --meta "weir=commit $commit" \
    --meta "nginx=$(nginx -v 2>&1 | sed 's/.*: //'), $PROXY_NCPU worker(s) in both configurations, access_log off (weir: --access-log off too, request metrics on)" \
    --meta "haproxy=$(haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 }'), nbthread $PROXY_NCPU, no log" \
    --meta "tools=$(tool_versions)" \
    --meta "command=$COMMAND_LINE" \
    --meta "settings=runs $RUNS, $DURATION s per load test, fixed rate $RATE req/s × $CPU_REQUESTS requests, $MEM_CONNS idle connections and WebSockets, $MEM_TLS_CONNS idle TLS and HTTP/2 connections (memory: at most $MEM_RUNS runs), $CFG_INGRESSES Ingresses, $CFG_WEIR_CHANGES timed changes (nginx-ingress: $CFG_CHANGES reloads), $CFG_LOAD_CHANGES changes under $CFG_LOAD_RATE req/s" \
    --proxy-cpu-count "$PROXY_NCPU" "${scale_args[@]}" "${ab_args[@]}"
  echo
  echo "written: $OUT/latest.md, $OUT/latest.json"
}

# On one line: bash reads no further once main returns, even if this file was edited meanwhile.
main "$@"; exit

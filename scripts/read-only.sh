#!/usr/bin/env bash
# The image's promises, without a container engine: the release binary runs as the Helm chart's
# securityContext runs it — uid/gid 65532, no capabilities, no new privileges, a read-only root
# file system (bubblewrap: every mount read-only but a fresh /dev and /proc) — and must start,
# serve plain HTTP and TLS (its self-signed default certificate is made in memory), keep no file
# open for writing, and exit 0 on SIGTERM. Installs Debian's `bubblewrap` when missing and
# running as root. The last line is a test runner's summary line.
#
# Usage: scripts/read-only.sh [WEIR_BINARY]     (default: target/release/weir, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "read-only.sh: $*" >&2; }
die() {
  log "$*"
  [[ -z ${WEIR_LOG:-} || ! -e $WEIR_LOG ]] || { log "weir's log:"; cat "$WEIR_LOG" >&2; }
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored"
  exit 1
}

if ! command -v bwrap >/dev/null; then
  [[ $(id -u) == 0 ]] || die "bwrap missing and not root: install Debian's 'bubblewrap' package"
  log "apt-get install bubblewrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends bubblewrap >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends bubblewrap >&2; } ||
    die "apt-get install bubblewrap failed"
fi
command -v setpriv >/dev/null || die "setpriv (util-linux) missing"
[[ $(id -u) == 0 ]] || die "run as root: setpriv changes to uid 65532"

bin=${1:-target/release/weir}
if [[ ! -x $bin ]]; then
  log "building $bin"
  cargo build --release --locked >&2
fi
bin=$(realpath "$bin")

work=$(mktemp -d)
WEIR_LOG=$work/weir.log
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # weir itself: setpriv's change of uid clears the parent-death signal bwrap set.
  pkill -9 -f "^$bin --manifests $work/manifests" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(free_port) http=$(free_port) https=$(free_port) admin=$(free_port)

# An endpoint, and manifests that route ro.local to it (readable by uid 65532).
mkdir -p "$work/www" "$work/manifests"
echo "served read-only" >"$work/www/index.html"
python3 -m http.server "$backend" --bind 127.0.0.1 --directory "$work/www" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$backend/" && break
  sleep 0.05
done
cat >"$work/manifests/site.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: site, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: $backend}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: site, namespace: default}
subsets:
- addresses: [{ip: 127.0.0.1}]
  ports: [{name: http, port: $backend}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: default}
spec:
  ingressClassName: weir
  tls: [{hosts: [ro.local]}]
  rules:
  - host: ro.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: site, port: {name: http}}}}
EOF
chmod -R a+rX "$work"

bwrap --ro-bind / / --dev /dev --proc /proc --die-with-parent -- \
  setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all --bounding-set=-all \
  --no-new-privs \
  "$bin" --manifests "$work/manifests" --http-addr "127.0.0.1:$http" \
  --https-addr "127.0.0.1:$https" --admin-addr "127.0.0.1:$admin" --shutdown-delay 0s \
  > >(cat >"$work/access.log") 2> >(cat >"$WEIR_LOG") &
sandbox=$!
pids+=("$sandbox")

ready=0
for _ in $(seq 200); do
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz") == 200 ]]; then
    ready=1
    break
  fi
  kill -0 "$sandbox" 2>/dev/null || die "weir exited before it was ready"
  sleep 0.05
done
[[ $ready == 1 ]] || die "weir never became ready"

# The process is weir itself (setpriv exec'd it), as uid 65532 without capabilities.
pid=$(pgrep -f "^$bin --manifests $work/manifests" | head -n1)
[[ -n $pid ]] || die "cannot find weir's process"
status=/proc/$pid/status
grep -qE '^Uid:\s+65532\s+65532\s+65532\s+65532$' "$status" || die "not uid 65532: $(grep ^Uid "$status")"
grep -qE '^CapEff:\s+0+$' "$status" || die "capabilities left: $(grep ^Cap "$status")"
grep -qE '^NoNewPrivs:\s+1$' "$status" || die "new privileges allowed"

answer=$(curl -s --max-time 5 -H 'Host: ro.local' "http://127.0.0.1:$http/" -o /dev/null -w '%{http_code}')
[[ $answer == 308 ]] || die "plain HTTP to a TLS host: $answer, not the redirect 308"
body=$(curl -sk --max-time 5 --resolve "ro.local:$https:127.0.0.1" "https://ro.local:$https/")
[[ $body == "served read-only" ]] || die "HTTPS answered: $body"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$admin/metrics")
grep -q '^weir_tls_handshakes_total' <<<"$metrics" || die "no TLS handshake counted"

# Nothing open for writing but sockets, pipes and /dev (the access log and the log are the
# sandbox's stdout and stderr pipes).
written=$(for fd in /proc/"$pid"/fd/*; do
  target=$(readlink "$fd") || continue
  case $target in socket:* | pipe:* | anon_inode:* | /dev/*) continue ;; esac
  flags=$(awk '/^flags:/ {print $2}' "/proc/$pid/fdinfo/${fd##*/}")
  # O_WRONLY (1) or O_RDWR (2) in the access mode bits.
  if (( (8#$flags & 3) != 0 )); then echo "$target"; fi
done)
[[ -z $written ]] || die "files open for writing: $written"
if grep -qiE 'read-only file system|permission denied|os error 30|os error 13' "$WEIR_LOG"; then
  die "weir tried to write"
fi

kill -TERM "$pid"
code=0
wait "$sandbox" || code=$?
[[ $code == 0 ]] || die "exit status $code after SIGTERM"
# The log reaches its file through a pipe and `cat`: give the last lines a moment.
for _ in $(seq 40); do
  grep -q 'listeners closed' "$WEIR_LOG" && break
  sleep 0.05
done
grep -q 'listeners closed' "$WEIR_LOG" || die "no clean shutdown in the log"
log "ok: uid 65532, no capabilities, read-only root: served HTTP (308) and HTTPS (200), no file open for writing, exit 0 on SIGTERM"
echo "test result: ok. 1 passed; 0 failed; 0 ignored"

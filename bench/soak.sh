#!/usr/bin/env bash
# The soak run (not part of .ci/run): the release weir, with its default flags, in --manifests
# mode under mixed traffic — HTTP/1.1 keep-alive at a fixed rate, new plain and TLS connections,
# WebSocket echoes — while an Ingress changes every second, for --minutes (default 10). Every
# round (--round seconds, default 60) it prints weir's resident memory, open file descriptors and
# threads, the work each load did and the errors it saw; at the end the verdict: memory and file
# descriptors flat (the last round within 10% / 16 descriptors of the second: the first warms up),
# no errors, and every Ingress change served.
#
# Usage: bench/soak.sh [--minutes N] [--round SECONDS] [--rate REQ_PER_S] [--out DIR]
# Builds weir and weir-bench (release) first. Exit status 0 when the verdict is "flat, flat, zero".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench

MINUTES=10
ROUND=60
RATE=2000
OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --round) ROUND=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
ROUNDS=$(( (MINUTES * 60 + ROUND - 1) / ROUND ))
# The second round is the baseline (the first warms up): at least one more to compare.
[ "$ROUNDS" -ge 3 ] || { echo "soak.sh: at least three rounds are needed" >&2; exit 2; }

log() { echo "soak.sh: $*" >&2; }
die() { log "$*"; exit 1; }

(cd "$ROOT" && cargo build --release --locked -q) || die "building weir"
(cd "$BENCH" && cargo build --release --locked -q) || die "building weir-bench"
WEIR=$ROOT/target/release/weir
TOOL=$BENCH/target/release/weir-bench

WORK=$(mktemp -d)
[ -n "$OUT" ] || OUT=$WORK/out
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND=$(free_port) HTTP=$(free_port) HTTPS=$(free_port) ADMIN=$(free_port)
HOST=soak.local

"$TOOL" backend --listen "127.0.0.1:$BACKEND" 2>"$WORK/backend.log" &
PIDS+=($!)

M=$WORK/manifests
mkdir -p "$M"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$HOST" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
cat >"$M/site.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: soak, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: $BACKEND}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: soak-1
  namespace: default
  labels: {kubernetes.io/service-name: soak}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
ports: [{name: http, port: $BACKEND, protocol: TCP}]
---
apiVersion: v1
kind: Secret
metadata: {name: soak-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$WORK/tls.crt")
  tls.key: $(base64 -w0 "$WORK/tls.key")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: soak
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}
spec:
  ingressClassName: weir
  tls: [{hosts: [$HOST], secretName: soak-tls}]
  rules:
    - host: $HOST
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: soak, port: {name: http}}}}
EOF
# The Ingress that changes: its path moves from /churn-N to /churn-N+1 every second.
churn_ingress() {
  cat >"$M/.churn.tmp" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: churn
  namespace: default
  # The backend answers /: the new path answers 200 only once weir routes it.
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    nginx.ingress.kubernetes.io/ssl-redirect: "false"
spec:
  ingressClassName: weir
  rules:
    - host: $HOST
      http:
        paths:
          - {path: /churn-$1, pathType: Prefix, backend: {service: {name: soak, port: {name: http}}}}
EOF
  mv "$M/.churn.tmp" "$M/churn.yaml"
}
churn_ingress 0

"$WEIR" --manifests "$M" --http-addr "127.0.0.1:$HTTP" --https-addr "127.0.0.1:$HTTPS" \
  --admin-addr "127.0.0.1:$ADMIN" --access-log off >"$WORK/weir.stdout" 2>"$OUT/weir.log" &
WEIR_PID=$!
PIDS+=("$WEIR_PID")
ready=0
for _ in $(seq 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")" = 200 ] &&
    { ready=1; break; }
  kill -0 "$WEIR_PID" 2>/dev/null || die "weir exited (see $OUT/weir.log)"
  sleep 0.05
done
[ $ready = 1 ] || die "weir never became ready (see $OUT/weir.log)"

# Changes every second; each must be served (the new path answers 200) before the next.
(
  i=0 missed=0
  while :; do
    i=$((i + 1))
    churn_ingress "$i"
    served=0
    for _ in $(seq 100); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:$HTTP/churn-$i") || true
      [ "$code" = 200 ] && { served=1; break; }
      sleep 0.01
    done
    [ $served = 1 ] || missed=$((missed + 1))
    echo "$i $missed" >"$WORK/churn.tmp" && mv "$WORK/churn.tmp" "$WORK/churn.count"
    sleep 1
  done
) &
PIDS+=($!)

status_field() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$WEIR_PID/status"; }
field() { "$TOOL" field "$1" <"$2"; }

printf '%-6s %-9s %-5s %-8s %-11s %-8s %-11s %-8s %-11s %-7s %-8s\n' \
  round rss_kib fds threads keepalive errors conns errors ws_msgs errors changes | tee "$OUT/soak.txt"
errors_total=0
first_rss="" first_fds="" last_rss="" last_fds=""
for round in $(seq "$ROUNDS"); do
  "$TOOL" --threads 1 rate --addr "127.0.0.1:$HTTP" --host "$HOST" --rate "$RATE" --connections 32 \
    --duration "$ROUND" >"$WORK/rate.json" 2>/dev/null &
  rate=$!
  "$TOOL" --threads 1 conn --addr "127.0.0.1:$HTTPS" --host "$HOST" --tls --connections 4 \
    --duration "$ROUND" --warmup 0 >"$WORK/conn.json" 2>/dev/null &
  conn=$!
  "$TOOL" --threads 1 ws-load --addr "127.0.0.1:$HTTP" --host "$HOST" --path /ws --connections 20 \
    --duration "$ROUND" --warmup 0 >"$WORK/ws.json" 2>/dev/null &
  ws=$!
  for pid in "$rate" "$conn" "$ws"; do
    wait "$pid" || die "a load generator failed"
  done
  rss=$(status_field VmRSS) fds=$(ls "/proc/$WEIR_PID/fd" | wc -l) threads=$(status_field Threads)
  read -r changes missed <"$WORK/churn.count"
  e1=$(field errors "$WORK/rate.json") e2=$(field errors "$WORK/conn.json")
  e3=$(( $(field errors "$WORK/ws.json") + $(field connect_errors "$WORK/ws.json") ))
  errors_total=$((errors_total + e1 + e2 + e3))
  printf '%-6s %-9s %-5s %-8s %-11s %-8s %-11s %-8s %-11s %-7s %-8s\n' "$round" "$rss" "$fds" \
    "$threads" "$(field requests "$WORK/rate.json")" "$e1" "$(field conns "$WORK/conn.json")" "$e2" \
    "$(field messages "$WORK/ws.json")" "$e3" "$changes" | tee -a "$OUT/soak.txt"
  [ "$round" != 2 ] || { first_rss=$rss first_fds=$fds; }
  last_rss=$rss last_fds=$fds
  kill -0 "$WEIR_PID" 2>/dev/null || die "weir exited (see $OUT/weir.log)"
done

read -r changes missed <"$WORK/churn.count"
rss_flat=$(( last_rss * 10 <= first_rss * 11 ))
fds_flat=$(( last_fds <= first_fds + 16 ))
verdict="memory $( [ $rss_flat = 1 ] && echo flat || echo GROWS) (${first_rss} -> ${last_rss} KiB), \
fds $( [ $fds_flat = 1 ] && echo flat || echo GROW) (${first_fds} -> ${last_fds}), \
errors ${errors_total}, Ingress changes ${changes} (${missed} not served within 1 s)"
echo "$verdict" | tee -a "$OUT/soak.txt"
[ $rss_flat = 1 ] && [ $fds_flat = 1 ] && [ "$errors_total" = 0 ] && [ "$missed" = 0 ]

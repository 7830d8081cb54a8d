#!/usr/bin/env bash
# Test 8d of bench/run.sh, run by it inside scripts/e2e-env.sh (a private network namespace
# with a real etcd and kube-apiserver): weir in cluster mode with N Ingresses in the API
# server, start-up until the last one is routable, then change → routable for CHANGES
# Ingresses created one at a time. Prints one JSON object (the `change` subcommand's, plus
# load_s and rss_mib).
#
#   scripts/e2e-env.sh -- bench/cluster.sh TOOL WEIR N CHANGES PROXY_CPUS LOAD_CPUS LOG
set -Eeuo pipefail

TOOL=$1 WEIR=$2 N=$3 CHANGES=$4 PROXY_CPUS=$5 LOAD_CPUS=$6 LOG=$7
HTTP=18080 HTTPS=18443 ADMIN=18081 BACKEND_PORT=39000
IP=${WEIR_E2E_BACKEND_IPS%% *}
NS=bench HOST=bench.local
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export WEIR_BENCH_KUBE_TOKEN=$WEIR_E2E_ADMIN_TOKEN
api=(--apiserver "$WEIR_E2E_APISERVER" --ca "$WEIR_E2E_CA")

now() { echo "${EPOCHREALTIME/,/.}"; }
# Creates the object of JSON $2 at API path $1 (kept when it exists).
create() {
  printf '%s' "$2" >"$WORK/object.json"
  "$TOOL" gen --template "$WORK/object.json" --post "$1" --count 1 "${api[@]}"
}

create /api/v1/namespaces "{\"metadata\":{\"name\":\"$NS\"}}"
create "/api/v1/namespaces/$NS/services" "{\"metadata\":{\"name\":\"bench\"},\"spec\":{\"ports\":[
  {\"name\":\"http\",\"port\":80,\"targetPort\":$BACKEND_PORT}]}}"
create "/api/v1/namespaces/$NS/endpoints" "{\"metadata\":{\"name\":\"bench\"},\"subsets\":[{
  \"addresses\":[{\"ip\":\"$IP\"}],\"ports\":[{\"name\":\"http\",\"port\":$BACKEND_PORT}]}]}"
# One Ingress; {{p}} is its name's prefix (h: loaded before the start, c: the changes).
cat >"$WORK/ingress.json" <<EOF
{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"{{p}}{{i}}"},
 "spec":{"ingressClassName":"weir","rules":[{"host":"{{p}}{{i}}.$HOST","http":{"paths":[
  {"path":"/","pathType":"Prefix","backend":{"service":{"name":"bench","port":{"name":"http"}}}}]}}]}}
EOF
sed 's/{{p}}/h/g' "$WORK/ingress.json" >"$WORK/h.json"
sed 's/{{p}}/c/g' "$WORK/ingress.json" >"$WORK/c.json"
ingresses=/apis/networking.k8s.io/v1/namespaces/$NS/ingresses
t0=$(now)
"$TOOL" gen --template "$WORK/h.json" --post "$ingresses" --count "$N" "${api[@]}"
echo "cluster.sh: created $N Ingresses in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s" >&2

taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 backend --listen "$IP:$BACKEND_PORT" >/dev/null 2>&1 &
backend=$!
t0=$(now)
taskset -c "$PROXY_CPUS" "$WEIR" --kubeconfig "$WEIR_E2E_KUBECONFIG" \
  --http-addr "127.0.0.1:$HTTP" --https-addr "127.0.0.1:$HTTPS" --admin-addr "127.0.0.1:$ADMIN" \
  --access-log off --shutdown-delay 0s --shutdown-timeout 1s >>"$LOG" 2>&1 &
weir=$!
last=h$((N - 1)).$HOST
for _ in $(seq 6000); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $last" \
    "http://127.0.0.1:$HTTP/" 2>/dev/null || true)
  [ "$code" = 200 ] && break
  kill -0 "$weir" || { echo "cluster.sh: weir exited (see $LOG)" >&2; exit 1; }
  sleep 0.01
done
[ "$code" = 200 ] || { echo "cluster.sh: $last never routable (see $LOG)" >&2; exit 1; }
load_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
sleep 1

json=$(taskset -c "$LOAD_CPUS" "$TOOL" --threads 1 change --template "$WORK/c.json" \
  --post "$ingresses" "${api[@]}" --host "c{{i}}.$HOST" --addr "127.0.0.1:$HTTP" \
  --start 100000 --count "$CHANGES" --gap 0.1)
rss_kib=$(awk '/^VmRSS/ { print $2 }' "/proc/$weir/status")
kill -INT "$weir" "$backend"
wait "$weir" || true
printf '%s' "$json" | sed "s/}\$/,\"load_s\":$load_s,\"rss_mib\":$(awk -v k="$rss_kib" 'BEGIN { printf "%.1f", k / 1024 }')}/"
echo

#!/usr/bin/env bash
# Runs a command inside a private, throw-away Kubernetes API environment for weir's e2e tests:
#
#   scripts/e2e-env.sh [--] COMMAND [ARGS...]
#
# Must be run as root. Steps:
#   1. scripts/kube-apiserver.sh install (needs the network only the first time: apt, build).
#   2. Re-executes itself in new network, PID and mount namespaces (`unshare --net --pid
#      --mount-proc --fork`): only loopback exists there, nothing leaves it, and when this script
#      ends every process started inside (etcd, kube-apiserver, whatever COMMAND left behind) is
#      killed by the kernel, even if this script itself is SIGKILLed.
#   3. Brings `lo` up and adds 192.0.2.1/32 ... 192.0.2.20/32 to it: addresses for test backends
#      (the API server rejects Endpoints in 127.0.0.0/8).
#   4. In a temp work dir: a CA and a serving cert for 127.0.0.1/localhost, a service-account
#      key pair, an admin token (group system:masters), an admin kubeconfig.
#   5. Starts etcd and kube-apiserver v1.20.2 on 127.0.0.1 (RBAC, token auth, TokenRequest) and
#      waits for /readyz.
#   6. Runs COMMAND with these variables and exits with its status:
#        WEIR_E2E_APISERVER          https://127.0.0.1:6443
#        WEIR_E2E_CA                 CA certificate (PEM) that signed the API server's cert
#        WEIR_E2E_ADMIN_TOKEN        bearer token of user "admin" in group system:masters
#        WEIR_E2E_KUBECONFIG         kubeconfig for that admin (token, embedded CA)
#        WEIR_E2E_WORKDIR            the work dir (certs, logs, etcd data)
#        WEIR_E2E_BACKEND_IPS        "192.0.2.1 192.0.2.2 ... 192.0.2.20" (on lo, usable for Endpoints)
#        WEIR_E2E_APISERVER_CTL      $WORKDIR/apiserver-ctl.sh {start|stop|kill|restart|status|wait-ready}
#        WEIR_E2E_APISERVER_BIN      the kube-apiserver binary
#        WEIR_E2E_APISERVER_ARGS_FILE  its flags, one per line (what apiserver-ctl.sh start uses)
#        WEIR_E2E_APISERVER_LOG      its log file
#        WEIR_E2E_ETCD_BIN           the etcd binary
#        WEIR_E2E_ETCD               http://127.0.0.1:2379
#        WEIR_E2E_ETCD_LOG           etcd's log file
#   7. On exit (also on failure or INT/TERM/HUP) stops kube-apiserver and etcd and removes the
#      work dir, unless WEIR_E2E_KEEP=1.
#
# WEIR_E2E_READY_TIMEOUT (seconds, default 90) bounds each wait for etcd and /readyz.
# shellcheck disable=SC2317 # functions run from traps look unreachable to shellcheck
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPTS=$(dirname "$SELF")
readonly SELF SCRIPTS
readonly INNER_FLAG=--in-private-namespaces # internal: marks the re-executed copy
readonly APISERVER_URL=https://127.0.0.1:6443
readonly ETCD_URL=http://127.0.0.1:2379
readonly ETCD_PEER_URL=http://127.0.0.1:2380
readonly SA_ISSUER=https://kubernetes.default.svc
readonly BACKEND_IP_COUNT=20
READY_TIMEOUT=${WEIR_E2E_READY_TIMEOUT:-90}

log() { echo "e2e-env.sh: $*" >&2; }
die() { echo "e2e-env.sh: ERROR: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 [--] COMMAND [ARGS...]   (as root; see the comment at the top of this script)" >&2
  exit 2
}

# Prints the current time in seconds with fractions.
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# =============================================================================================
# Outside: install, then run the inside part in private namespaces.

outside() {
  [[ ${1-} == -- ]] && shift
  [[ $# -gt 0 ]] || usage
  [[ $(id -u) == 0 ]] || die "must run as root (network namespace, addresses on lo)"

  "$SCRIPTS/kube-apiserver.sh" install || die "scripts/kube-apiserver.sh install failed"
  WEIR_E2E_APISERVER_BIN=$("$SCRIPTS/kube-apiserver.sh" path)
  WEIR_E2E_ETCD_BIN=$(command -v etcd) || die "etcd not found (package etcd-server)"
  export WEIR_E2E_APISERVER_BIN WEIR_E2E_ETCD_BIN

  # unshare --fork blocks INT/TERM in itself while it waits, so this shell stays in between and
  # forwards INT/TERM/HUP to the inside part (PID 1 of the new PID namespace), which cleans up.
  # --kill-child: if unshare itself is killed, the inside part (and with it the namespace) dies.
  # Started in the background so that our traps run at once; `env --default-signal` undoes the
  # SIGINT/SIGQUIT-ignored disposition bash gives background jobs (ignored signals are inherited
  # and could then not be trapped inside), `<&0` keeps stdin (instead of /dev/null).
  env --default-signal=INT,QUIT \
    unshare --net --pid --mount-proc --fork --kill-child -- "$SELF" "$INNER_FLAG" "$@" <&0 &
  local unshare_pid=$!
  local sig
  for sig in INT TERM HUP; do
    # shellcheck disable=SC2064
    trap "forward_signal $unshare_pid $sig" "$sig"
  done

  local status=0
  while kill -0 "$unshare_pid" 2>/dev/null; do
    # `wait` returns early (> 128) when a trapped signal arrives; then wait again.
    wait "$unshare_pid" && status=0 || status=$?
  done
  exit "$status"
}

forward_signal() {
  local unshare_pid=$1 sig=$2 inside
  inside=$(pgrep -P "$unshare_pid" || true)
  if [[ -n $inside ]]; then
    kill -s "$sig" "$inside" 2>/dev/null || true
  fi
}

# =============================================================================================
# Inside: PID 1 of a private PID namespace, in a private network namespace.

WORKDIR=
COMMAND_PID=

inside() {
  setup_network
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-e2e.XXXXXX")
  trap cleanup EXIT
  trap 'on_signal INT 130' INT
  trap 'on_signal TERM 143' TERM
  trap 'on_signal HUP 129' HUP
  log "work dir $WORKDIR"

  local t0
  t0=$(now)
  make_pki
  make_tokens
  start_etcd
  write_apiserver_ctl
  "$WORKDIR/apiserver-ctl.sh" start
  write_kubeconfig
  log "environment ready after $(elapsed_since "$t0")s; running: $*"

  export WEIR_E2E_APISERVER=$APISERVER_URL
  export WEIR_E2E_CA=$WORKDIR/pki/ca.pem
  export WEIR_E2E_ADMIN_TOKEN=$ADMIN_TOKEN
  export WEIR_E2E_KUBECONFIG=$WORKDIR/kubeconfig
  export WEIR_E2E_WORKDIR=$WORKDIR
  export WEIR_E2E_BACKEND_IPS=$BACKEND_IPS
  export WEIR_E2E_APISERVER_CTL=$WORKDIR/apiserver-ctl.sh
  export WEIR_E2E_APISERVER_ARGS_FILE=$WORKDIR/apiserver.args
  export WEIR_E2E_APISERVER_LOG=$WORKDIR/apiserver.log
  export WEIR_E2E_ETCD=$ETCD_URL
  export WEIR_E2E_ETCD_LOG=$WORKDIR/etcd.log
  # WEIR_E2E_APISERVER_BIN and WEIR_E2E_ETCD_BIN come exported from the outside part.

  # In the background so that INT/TERM/HUP reach our traps at once (bash runs traps only after
  # a foreground command ends); `<&0` keeps stdin (a background job would get /dev/null);
  # `env --default-signal` gives COMMAND default SIGINT/SIGQUIT (bash would leave them ignored
  # in a background job, and COMMAND's children, e.g. a server a test stops with SIGINT, would
  # inherit that).
  env --default-signal=INT,QUIT "$@" <&0 &
  COMMAND_PID=$!
  local status=0
  while process_alive "$COMMAND_PID"; do
    wait "$COMMAND_PID" && status=0 || status=$?
  done
  COMMAND_PID=
  log "command exited with status $status"
  exit "$status"
}

# True while the process exists and is not a zombie.
process_alive() {
  [[ -r /proc/$1/stat ]] || return 1
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# lo up, backend addresses on lo; refuses to run if any other interface is present.
setup_network() {
  local links
  links=$(ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | tr '\n' ' ')
  [[ $links == "lo " ]] || die "not in a private network namespace (interfaces: $links)"
  ip link set lo up
  BACKEND_IPS=
  local i
  for ((i = 1; i <= BACKEND_IP_COUNT; i++)); do
    ip addr add "192.0.2.$i/32" dev lo
    BACKEND_IPS+="${BACKEND_IPS:+ }192.0.2.$i"
  done
}

# CA, API server serving cert (127.0.0.1, localhost and the in-cluster names), SA key pair.
make_pki() {
  local d=$WORKDIR/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
    openssl req -x509 -new -key ca-key.pem -sha256 -days 30 -subj "/CN=weir-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver-key.pem
    openssl req -new -key apiserver-key.pem -subj "/CN=kube-apiserver" -out apiserver.csr
    cat >apiserver.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.96.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 \
      -days 30 -extfile apiserver.ext -out apiserver.pem
    # Service-account token signing key (RS256).
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$WORKDIR/pki.log" 2>&1 || { cat "$WORKDIR/pki.log" >&2; die "generating certificates failed"; }
}

make_tokens() {
  ADMIN_TOKEN=$(openssl rand -hex 24)
  # token,user,uid,"group1,group2"
  printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$WORKDIR/tokens.csv"
  chmod 600 "$WORKDIR/tokens.csv"
}

# Polls until CHECK (a command) succeeds, PID dies, or READY_TIMEOUT passes.
wait_for() {
  local what=$1 pid=$2 log_file=$3
  shift 3
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@"; do
    if ! process_alive "$pid"; then
      tail -n 30 "$log_file" >&2
      die "$what exited during start-up (last lines of $log_file above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$log_file" >&2
      die "$what not ready after ${READY_TIMEOUT}s (last lines of $log_file above)"
    fi
    sleep 0.2
  done
}

etcd_healthy() {
  curl -fsS --noproxy '*' --max-time 2 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'
}

start_etcd() {
  local t0
  t0=$(now)
  mkdir -p "$WORKDIR/etcd"
  # The data lives in memory: fast (no real fsync), and gone with the mount namespace.
  mount -t tmpfs -o size=2g,mode=0700 weir-e2e-etcd "$WORKDIR/etcd"
  "$WEIR_E2E_ETCD_BIN" --name weir-e2e --data-dir "$WORKDIR/etcd/data" --logger zap \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
    --initial-cluster "weir-e2e=$ETCD_PEER_URL" \
    >"$WORKDIR/etcd.log" 2>&1 </dev/null &
  ETCD_PID=$!
  echo "$ETCD_PID" >"$WORKDIR/etcd.pid"
  wait_for etcd "$ETCD_PID" "$WORKDIR/etcd.log" etcd_healthy
  log "etcd ready after $(elapsed_since "$t0")s (pid $ETCD_PID)"
}

# Writes the API server's flags and $WORKDIR/apiserver-ctl.sh, which starts and stops it.
write_apiserver_ctl() {
  local pki=$WORKDIR/pki
  local args=(
    --etcd-servers="$ETCD_URL"
    --bind-address=127.0.0.1
    --advertise-address=127.0.0.1
    --secure-port=6443
    --tls-cert-file="$pki/apiserver.pem"
    --tls-private-key-file="$pki/apiserver-key.pem"
    --client-ca-file="$pki/ca.pem"
    --token-auth-file="$WORKDIR/tokens.csv"
    --authorization-mode=RBAC
    --service-cluster-ip-range=10.96.0.0/16
    # TokenRequest (serviceaccounts/NAME/token) needs issuer, verifying and signing keys;
    # --api-audiences would default to the issuer, it is spelled out here.
    --service-account-issuer="$SA_ISSUER"
    --api-audiences="$SA_ISSUER"
    --service-account-key-file="$pki/sa.pub"
    --service-account-signing-key-file="$pki/sa.key"
    --cert-dir="$WORKDIR/apiserver-certs"
    --profiling=false
  )
  printf '%s\n' "${args[@]}" >"$WORKDIR/apiserver.args"

  local ctl=$WORKDIR/apiserver-ctl.sh
  {
    echo '#!/usr/bin/env bash'
    echo "# Generated by weir's scripts/e2e-env.sh: controls this environment's kube-apiserver."
    echo '#   apiserver-ctl.sh start       start it (same flags as before) and wait for /readyz'
    echo '#   apiserver-ctl.sh stop        SIGTERM, wait for it to exit (SIGKILL after 30 s)'
    echo '#   apiserver-ctl.sh kill        SIGKILL, wait for it to exit'
    echo '#   apiserver-ctl.sh restart     stop, then start'
    echo '#   apiserver-ctl.sh status      exit 0 if running'
    echo '#   apiserver-ctl.sh wait-ready  wait for /readyz'
    echo 'set -euo pipefail'
    printf 'BIN=%q\n' "$WEIR_E2E_APISERVER_BIN"
    printf 'ARGS_FILE=%q\n' "$WORKDIR/apiserver.args"
    printf 'PID_FILE=%q\n' "$WORKDIR/apiserver.pid"
    printf 'LOG=%q\n' "$WORKDIR/apiserver.log"
    printf 'CA=%q\n' "$pki/ca.pem"
    printf 'TOKEN=%q\n' "$ADMIN_TOKEN"
    printf 'URL=%q\n' "$APISERVER_URL"
    # shellcheck disable=SC2016 # expanded by the generated script
    printf 'READY_TIMEOUT=${WEIR_E2E_READY_TIMEOUT:-%q}\n' "$READY_TIMEOUT"
    cat <<'EOF'

log() { echo "apiserver-ctl.sh: $*" >&2; }
die() { echo "apiserver-ctl.sh: ERROR: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }

# The recorded pid, if that process is alive and still our kube-apiserver.
running_pid() {
  local pid state
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]] || return 1
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$BIN")" ]] || return 1
  echo "$pid"
}

ready() {
  [[ $(curl -sS --noproxy '*' --max-time 2 --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
    "$URL/readyz" 2>/dev/null) == ok ]]
}

wait_ready() {
  local t0 deadline=$((SECONDS + READY_TIMEOUT))
  t0=$(now)
  until ready; do
    if ! running_pid >/dev/null; then
      tail -n 40 "$LOG" >&2
      die "kube-apiserver is not running (last lines of $LOG above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$LOG" >&2
      die "kube-apiserver: $URL/readyz not ok after ${READY_TIMEOUT}s (last lines of $LOG above)"
    fi
    sleep 0.2
  done
  log "ready after $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
}

start() {
  if pid=$(running_pid); then
    log "already running (pid $pid)"
  else
    local args
    mapfile -t args <"$ARGS_FILE"
    echo "=== apiserver-ctl.sh start $(date -u +%FT%T.%NZ)" >>"$LOG"
    "$BIN" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    log "started kube-apiserver (pid $!)"
  fi
  wait_ready
}

# stop SIGNAL GRACE_SECONDS
stop() {
  local pid
  if ! pid=$(running_pid); then
    log "not running"
    return 0
  fi
  kill -s "$1" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + $2))
  while running_pid >/dev/null; do
    if ((SECONDS >= deadline)); then
      log "still running ${2}s after SIG$1; SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
    fi
    sleep 0.1
  done
  log "stopped (pid $pid, SIG$1)"
}

case ${1-} in
  start) start ;;
  stop) stop TERM 30 ;;
  kill) stop KILL 10 ;;
  restart) stop TERM 30; start ;;
  status) if pid=$(running_pid); then echo "running (pid $pid)"; else echo "not running"; exit 1; fi ;;
  wait-ready) wait_ready ;;
  *) echo "usage: $0 {start|stop|kill|restart|status|wait-ready}" >&2; exit 2 ;;
esac
EOF
  } >"$ctl"
  chmod +x "$ctl"
}

write_kubeconfig() {
  local ca_data
  ca_data=$(base64 -w0 "$WORKDIR/pki/ca.pem")
  cat >"$WORKDIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-e2e
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $ca_data
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: weir-e2e
  context:
    cluster: weir-e2e
    user: admin
    namespace: default
current-context: weir-e2e
EOF
  chmod 600 "$WORKDIR/kubeconfig"
}

STOPPING=0
on_signal() {
  trap '' INT TERM HUP # one clean-up is enough (Ctrl-C arrives directly and forwarded)
  [[ $STOPPING == 0 ]] || return 0
  STOPPING=1
  log "SIG$1: stopping"
  if [[ -n $COMMAND_PID ]] && process_alive "$COMMAND_PID"; then
    kill -s TERM "$COMMAND_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while process_alive "$COMMAND_PID" && ((SECONDS < deadline)); do sleep 0.1; done
    kill -s KILL "$COMMAND_PID" 2>/dev/null || true
  fi
  exit "$2"
}

# Stops kube-apiserver and etcd, removes the work dir (unless WEIR_E2E_KEEP=1). Exits with the
# status the script was exiting with. Whatever is left is killed by the kernel when this
# process (PID 1 of the namespace) exits.
cleanup() {
  local status=$?
  trap '' INT TERM HUP
  set +e
  if [[ -x $WORKDIR/apiserver-ctl.sh ]]; then
    "$WORKDIR/apiserver-ctl.sh" stop 2>/dev/null
  fi
  if [[ -n ${ETCD_PID-} ]] && process_alive "$ETCD_PID"; then
    kill -s TERM "$ETCD_PID" 2>/dev/null
    local deadline=$((SECONDS + 10))
    while process_alive "$ETCD_PID" && ((SECONDS < deadline)); do sleep 0.1; done
    process_alive "$ETCD_PID" && kill -s KILL "$ETCD_PID" 2>/dev/null
  fi
  if [[ -n $WORKDIR && -d $WORKDIR ]]; then
    if [[ ${WEIR_E2E_KEEP:-0} == 1 ]]; then
      log "kept work dir $WORKDIR (WEIR_E2E_KEEP=1; etcd data was in memory and is gone)"
    else
      mountpoint -q "$WORKDIR/etcd" && umount "$WORKDIR/etcd"
      rm -rf "$WORKDIR"
    fi
  fi
  exit "$status"
}

if [[ ${1-} == "$INNER_FLAG" ]]; then
  shift
  inside "$@"
else
  outside "$@"
fi

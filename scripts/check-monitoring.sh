#!/usr/bin/env bash
# Checks deploy/monitoring: the alert and recording rules (`promtool check rules`), their unit
# tests (`promtool test rules`) and the Grafana dashboard's JSON. (That both use only metrics
# weir exports is a unit test: src/metrics/mod.rs.) Installs Debian's `prometheus` package
# (promtool, and the Prometheus server tests/observability.rs scrapes weir with) when missing
# and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "check-monitoring.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  [[ $(id -u) == 0 ]] || die "promtool/prometheus missing and not root: install Debian's 'prometheus' package"
  log "apt-get install prometheus"
  export DEBIAN_FRONTEND=noninteractive
  # Only the binaries are wanted: on a machine with systemd, keep the package from starting
  # its Prometheus service.
  no_start=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    no_start=/usr/sbin/policy-rc.d
  fi
  installed=0
  apt-get install -y -q --no-install-recommends prometheus >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends prometheus >&2; } &&
    installed=1
  [[ -z $no_start ]] || rm -f "$no_start"
  [[ $installed == 1 ]] || die "apt-get install prometheus failed"
fi

promtool check rules deploy/monitoring/prometheus-rules.yaml
promtool test rules deploy/monitoring/unit-tests.yaml
python3 -m json.tool deploy/monitoring/grafana-dashboard.json >/dev/null ||
  die "deploy/monitoring/grafana-dashboard.json is not valid JSON"
echo "deploy/monitoring: rules valid, rule unit tests pass, dashboard is valid JSON ($(promtool --version 2>&1 | head -n1))"

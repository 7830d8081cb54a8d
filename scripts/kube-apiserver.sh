#!/usr/bin/env bash
# Provides a real kube-apiserver (v1.20.2) and etcd for weir's end-to-end tests, offline.
#
#   scripts/kube-apiserver.sh install   install what is missing, build kube-apiserver once, cache it
#   scripts/kube-apiserver.sh path      print the cached binary's path (exit 1 if not installed)
#
# kube-apiserver is built from Debian bookworm's source package `kubernetes`
# (1.20.5+really1.20.2), which ships the whole upstream tree with vendor/, so it builds with
# Debian's Go and no network beyond the Debian mirror. etcd comes from Debian's `etcd-server`.
# The built binary is cached in
#   ${WEIR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}/kube-apiserver-v1.20.2/kube-apiserver
# and later runs only check that it still runs. See /work/shared/notes/kube-apiserver.md.
#
# One patch is applied: kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which
# declares reflect.mapiterinit with the pre-Go-1.18 signature (go:linkname). Built with Go >= 1.18
# (bookworm has 1.19) the API server corrupts memory whenever JSON encodes or decodes a map and
# panics at random ("invalid memory address or nil pointer dereference" in reflect2, HTTP/2
# INTERNAL_ERROR for the client), e.g. on POST of a ServiceAccount or a TokenRequest.
# reflect2 v1.0.2 (modern-go/reflect2#24, #25) fixes this; its source comes from bookworm's
# `golang-github-modern-go-reflect2` source package and replaces the vendored copy.
#
# `install` is idempotent and safe to run on every CI run: it calls `apt-get update` only when
# it has something to install, and it holds a lock so that two runs never build at once.
set -euo pipefail

readonly KUBE_VERSION=v1.20.2
readonly DEB_SOURCE=kubernetes            # Debian source package
readonly DEB_SUITE=bookworm               # pinned: later suites ship a "+ds" source without vendor/
readonly DEBSRC_FILE=/etc/apt/sources.list.d/weir-kubernetes-deb-src.sources
readonly CACHE_ROOT=${WEIR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}
readonly BIN_DIR=$CACHE_ROOT/kube-apiserver-$KUBE_VERSION
readonly BIN=$BIN_DIR/kube-apiserver
# Bumped whenever the build recipe changes, so that a binary built by an older recipe (or by
# hand, following the note, without the reflect2 fix) is rebuilt.
readonly RECIPE="2 (reflect2 v1.0.2)"
readonly RECIPE_FILE=$BIN_DIR/RECIPE
readonly REFLECT2_SOURCE=golang-github-modern-go-reflect2
readonly REFLECT2_VERSION=1.0.2

# Needed to run the e2e environment (scripts/e2e-env.sh): checked on every install.
readonly RUNTIME_PACKAGES=(etcd-server openssl iproute2 curl util-linux procps)
# Needed only to build kube-apiserver.
readonly BUILD_PACKAGES=(golang-go rsync make)

log() { echo "kube-apiserver.sh: $*" >&2; }
die() { echo "kube-apiserver.sh: ERROR: $*" >&2; exit 1; }

usage() {
  cat >&2 <<EOF
usage: $0 install   install etcd and a cached kube-apiserver $KUBE_VERSION (builds it once)
       $0 path      print the path of the cached kube-apiserver (exit 1 if not installed)
EOF
  exit 2
}

# True if the cached binary exists, runs and was built by the current recipe.
binary_works() {
  [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1 && [[ $(cat "$RECIPE_FILE" 2>/dev/null) == "$RECIPE" ]]
}

# ---------------------------------------------------------------------------------------------
# apt

APT_UPDATED=0
apt_update_once() {
  if [[ $APT_UPDATED == 0 ]]; then
    log "apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
}

# Installs those of the given packages that are not installed yet.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      missing+=("$p")
    fi
  done
  [[ ${#missing[@]} == 0 ]] && return 0
  [[ $(id -u) == 0 ]] || die "packages missing (${missing[*]}) and not root: cannot apt-get install"
  apt_update_once
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# Prints "URI SIGNED-BY" of the Debian mirror that the machine's apt sources already use for
# the bookworm suite with the main component (deb822 *.sources files and one-line *.list files).
find_debian_mirror() {
  local files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  local f
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f && $f != "$DEBSRC_FILE" ]] && files+=("$f")
  done
  [[ ${#files[@]} -gt 0 ]] || return 1
  awk -v suite="$DEB_SUITE" '
    function has(list, word,   n, a, i) { n = split(list, a, /[ \t]+/); for (i = 1; i <= n; i++) if (a[i] == word) return 1; return 0 }
    function flush() {
      if (types != "" && has(types, "deb") && has(suites, suite) && has(comps, "main") && uris != "" && !found) {
        split(uris, u, /[ \t]+/); print u[1], (signed == "" ? "-" : signed); found = 1
      }
      types = suites = comps = uris = signed = ""; enabled = 1
    }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    deb822 && /^[ \t]*$/ { flush(); next }
    deb822 && /^[ \t]*#/ { next }
    deb822 {
      key = $1; sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
      if (key == "Types") types = val; else if (key == "URIs") uris = val
      else if (key == "Suites") suites = val; else if (key == "Components") comps = val
      else if (key == "Signed-By") signed = val
      else if (key == "Enabled" && val == "no") types = ""
      next
    }
    # one-line format: deb [options] URI SUITE COMPONENT...
    $1 == "deb" {
      line = $0; signed = ""
      if (match(line, /\[[^]]*\]/)) {
        opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
        if (match(opts, /signed-by=[^ \t]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
      }
      n = split(line, w, /[ \t]+/)
      if (w[3] == suite && !found) { for (i = 4; i <= n; i++) if (w[i] == "main") { print w[2], (signed == "" ? "-" : signed); found = 1; break } }
      signed = ""
    }
    END { flush() }
  ' "${files[@]}" | head -n1 | grep .
}

# True if apt knows both source packages (apt-cache showsrc does not take a /suite;
# `apt-get source` below does).
source_package_known() {
  apt-cache showsrc "$DEB_SOURCE" 2>/dev/null | grep -q "^Version: .*${KUBE_VERSION#v}" &&
    apt-cache showsrc "$REFLECT2_SOURCE" 2>/dev/null | grep -q "^Version: $REFLECT2_VERSION"
}

# Makes `apt-get source kubernetes/bookworm` possible: a deb-src entry for the same mirror.
ensure_deb_src() {
  local mirror uri signed content
  mirror=$(find_debian_mirror) \
    || die "no Debian mirror for '$DEB_SUITE main' found in /etc/apt/sources.list{,.d/*}"
  read -r uri signed <<<"$mirror"
  [[ $signed == - ]] && signed=/usr/share/keyrings/debian-archive-keyring.gpg
  content="# Written by weir's scripts/kube-apiserver.sh: source packages, to build kube-apiserver.
Types: deb-src
URIs: $uri
Suites: $DEB_SUITE
Components: main
Signed-By: $signed"
  if [[ ! -f $DEBSRC_FILE ]] || [[ $(cat "$DEBSRC_FILE") != "$content" ]]; then
    log "writing $DEBSRC_FILE (deb-src $uri $DEB_SUITE main)"
    printf '%s\n' "$content" >"$DEBSRC_FILE"
    APT_UPDATED=0 # the new entry needs an update even if one ran already
  fi
  if ! source_package_known; then
    apt_update_once
    source_package_known || die "apt does not know source package $DEB_SOURCE/$DEB_SUITE after apt-get update"
  fi
}

# ---------------------------------------------------------------------------------------------
# build

BUILD_DIR=
cleanup_build() {
  if [[ -n $BUILD_DIR && -d $BUILD_DIR ]]; then
    chmod -R u+w "$BUILD_DIR" 2>/dev/null || true # Go leaves read-only files behind
    rm -rf "$BUILD_DIR"
  fi
}

# Replaces the vendored reflect2 v1.0.1 (broken with Go >= 1.18, see the top) by v1.0.2.
patch_reflect2() {
  local tree=$1 orig new vendored=$1/vendor/github.com/modern-go/reflect2
  orig=$(find "$BUILD_DIR" -maxdepth 1 -name "${REFLECT2_SOURCE}_${REFLECT2_VERSION}.orig.tar.gz" | head -n1)
  [[ -n $orig ]] || die "no ${REFLECT2_SOURCE}_${REFLECT2_VERSION}.orig.tar.gz in $BUILD_DIR"
  [[ -f $vendored/unsafe_link.go ]] || die "no vendored reflect2 at $vendored"
  new=$BUILD_DIR/reflect2
  mkdir "$new"
  tar -xzf "$orig" -C "$new" --strip-components=1 || die "cannot unpack $orig"
  [[ -f $new/go_above_118.go ]] || die "$orig does not look like reflect2 $REFLECT2_VERSION"
  log "replacing vendored reflect2 v1.0.1 by v$REFLECT2_VERSION (Go >= 1.18 fix)"
  rm -f "$vendored"/*.go "$vendored"/*.s
  find "$new" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$vendored/" \;
}

build() {
  mkdir -p "$CACHE_ROOT"
  BUILD_DIR=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
  trap cleanup_build EXIT
  local start=$SECONDS

  log "downloading source package $DEB_SOURCE/$DEB_SUITE into $BUILD_DIR"
  (cd "$BUILD_DIR" && apt-get source -q --download-only "$DEB_SOURCE/$DEB_SUITE" >&2) \
    || die "apt-get source --download-only $DEB_SOURCE/$DEB_SUITE failed"
  (cd "$BUILD_DIR" && apt-get source -q --download-only "$REFLECT2_SOURCE/$DEB_SUITE" >&2) \
    || die "apt-get source --download-only $REFLECT2_SOURCE/$DEB_SUITE failed"
  local orig
  orig=$(find "$BUILD_DIR" -maxdepth 1 -name "${DEB_SOURCE}_*.orig.tar.gz" | head -n1)
  [[ -n $orig ]] || die "no ${DEB_SOURCE}_*.orig.tar.gz in $BUILD_DIR: $(ls "$BUILD_DIR")"

  log "unpacking $(basename "$orig")"
  mkdir "$BUILD_DIR/src"
  tar -xzf "$orig" -C "$BUILD_DIR/src" || die "cannot unpack $orig"
  local tree
  tree=$(dirname "$(find "$BUILD_DIR/src" -maxdepth 3 -path '*/cmd/kube-apiserver' -type d | head -n1)")
  tree=$(dirname "$tree")
  [[ -f $tree/Makefile && -d $tree/vendor ]] || die "unexpected source tree layout under $BUILD_DIR/src"
  patch_reflect2 "$tree"

  # There is no .git: pin the version the binary reports (otherwise "v0.0.0-master").
  cat >"$BUILD_DIR/version.env" <<EOF
KUBE_GIT_VERSION='$KUBE_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
KUBE_GIT_TREE_STATE='archive'
KUBE_GIT_COMMIT=''
EOF

  log "building: make WHAT=cmd/kube-apiserver with $(go version) (takes a few minutes)"
  # Everything Go writes stays in the build dir; no network is used (vendor/, GOPROXY=off).
  (
    cd "$tree"
    export GOCACHE=$BUILD_DIR/gocache GOPATH=$BUILD_DIR/gopath GOMODCACHE=$BUILD_DIR/gopath/pkg/mod
    export GOPROXY=off GOFLAGS='' GOTOOLCHAIN=local KUBE_GIT_VERSION_FILE=$BUILD_DIR/version.env
    make WHAT=cmd/kube-apiserver
  ) >"$BUILD_DIR/build.log" 2>&1 || {
    tail -n 40 "$BUILD_DIR/build.log" >&2
    die "make WHAT=cmd/kube-apiserver failed (last lines of the build log above)"
  }
  local built=$tree/_output/bin/kube-apiserver
  [[ -x $built ]] || die "the build finished but $built is missing"

  mkdir -p "$BIN_DIR"
  cp -L "$built" "$BIN.tmp"
  mv -f "$BIN.tmp" "$BIN"
  echo "$RECIPE" >"$RECIPE_FILE"
  local took=$((SECONDS - start))
  printf 'built %s from %s in %ss on %s\n' "$("$BIN" --version)" "$(basename "$orig")" "$took" "$(date -u +%FT%TZ)" \
    >"$BIN_DIR/BUILD-INFO"
  log "build took $((took / 60))m$((took % 60))s"
  cleanup_build
  trap - EXIT
}

install() {
  ensure_packages "${RUNTIME_PACKAGES[@]}"
  command -v etcd >/dev/null || die "etcd not found after installing etcd-server"

  # Serialise concurrent installs (two CI jobs, two terminals).
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/kube-apiserver.lock"
  flock 9

  if binary_works; then
    log "cached: $("$BIN" --version)"
  else
    [[ -e $BIN ]] && log "cached $BIN does not run or predates recipe $RECIPE; rebuilding"
    [[ $(id -u) == 0 ]] || die "building needs root (apt-get source, apt-get install)"
    ensure_packages "${BUILD_PACKAGES[@]}"
    ensure_deb_src
    build
    binary_works || die "$BIN was built but does not run"
    log "installed: $("$BIN" --version)"
  fi
  log "ready: $BIN"
}

case ${1-} in
  install) install ;;
  path)
    if binary_works; then echo "$BIN"; else
      echo "kube-apiserver.sh: not installed (run: $0 install)" >&2
      exit 1
    fi
    ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# Builds the release binary of weir: target/release/weir. The one build command of the project:
# the container image (Dockerfile) and the benchmark (bench/run.sh, which scripts/test.sh runs
# as a smoke test) both call it, so the binary an image contains is built the way the binary
# the tests exercise is.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin weir "$@"

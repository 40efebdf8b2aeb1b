#!/usr/bin/env bash
# Builds the release binary (installing libtorch once, see scripts/libtorch.sh) and runs it.
# With no arguments it serves the shipped models on 127.0.0.1:8080; any arguments are
# passed to `drsn` instead (e.g. `scripts/run.sh train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/libtorch.sh)"
cargo build --locked --release --bin drsn
if [ $# -eq 0 ]; then set -- serve; fi
exec target/release/drsn "$@"

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs libtorch once (scripts/libtorch.sh),
# then builds and runs every test. Real data is read from DRSN_SHARED_DATA (default
# ../shared/data); tests that need it say so plainly when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/libtorch.sh)"
cargo test --locked "$@"

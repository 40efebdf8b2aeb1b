#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs libtorch once (scripts/libtorch.sh),
# then builds and runs every test. Real data is read from DRSN_SHARED_DATA (default
# ../shared/data); tests that need it say so plainly when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/libtorch.sh)"
# The image's files first: they cannot be built here (no Docker engine), so lint them.
# hadolint fails on any finding, info included; the ignores in the Dockerfile say why.
hadolint docker/Dockerfile
for script in scripts/*.sh docker/*.sh; do bash -n "$script"; done
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check || { echo "run cargo fmt (rustfmt.toml holds the settings)" >&2; exit 1; }
else
    echo "rustfmt is not installed (rustup component add rustfmt): format check skipped" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --locked --all-targets -- -D warnings
else
    echo "clippy is not installed (rustup component add clippy): lint skipped" >&2
fi
# The dashboard's tests drive Debian's headless Chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    install() { DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver >/dev/null; }
    install || { $sudo apt-get update -q >/dev/null && install; } \
        || { echo "cannot install chromium and chromium-driver, which the browser tests need" >&2; exit 1; }
fi
cargo test --locked "$@"
# The API description against the handlers: schemathesis on a real server (its own binary,
# built by the tests above).
bash scripts/schemathesis.sh

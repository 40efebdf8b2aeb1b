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
# The Kubernetes manifests against the API's schemas (offline, kubernetes-validate from PyPI;
# the kustomization is kustomize's, not an API object).
kubernetes-validate --strict $(ls deploy/k8s/*.yaml | grep -v kustomization.yaml)
# Debian packages the tests use: the dashboard's tests drive headless Chromium through its
# chromedriver; the store and replica tests start throw-away PostgreSQL servers.
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
    local install="DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $* >/dev/null"
    eval "$install" || { $sudo apt-get update -q >/dev/null && eval "$install"; } \
        || { echo "cannot install $*, which the tests need" >&2; exit 1; }
}
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
fi
cargo test --locked "$@"
# The API description against the handlers: schemathesis on a real server (its own binary,
# built by the tests above).
bash scripts/schemathesis.sh

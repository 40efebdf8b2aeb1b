#!/usr/bin/env bash
# The README's dashboard pictures (docs/img/dashboard-*.png) and its page weight and time to
# the first chart (docs/img/dashboard-figures.json), taken in headless Chromium from a real
# server with the shipped models and a real training job. Needs what scripts/test.sh
# installs (libtorch, chromium, chromium-driver) and the real data.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/libtorch.sh)"
cargo test --locked --test service dashboard::screenshots -- --ignored --exact --nocapture

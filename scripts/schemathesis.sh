#!/usr/bin/env bash
# Schemathesis (PyPI, installed by scripts/libtorch.sh) against a real `drsn serve` built by
# the test command: every operation of /openapi.json with every check; the exceptions and
# why are in schemathesis.toml. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${DRSN_BIN:-target/debug/drsn}"
DATA="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DRSN_TOKEN=schemathesis-token "$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 240); do
  if curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$DATA/serve.log" >&2; echo "drsn serve exited early" >&2; exit 1; fi
  sleep 0.5
done
st run "http://127.0.0.1:$PORT/openapi.json" -H "Authorization: Bearer schemathesis-token" --no-color

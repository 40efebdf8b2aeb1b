#!/usr/bin/env bash
# The GPU proof in one prepared run (a few minutes on a machine with an NVIDIA GPU):
#
#   scripts/gpu-check.sh pack [DIR]        # here, with cargo: builds what the run needs into DIR
#   scripts/gpu-check.sh run [DIR] [OUT]   # there, in the repository's root: runs it, logs to OUT
#
# `pack` release-builds the model tests and the forward and training benchmarks (against the
# libtorch of scripts/libtorch.sh: PyPI's torch 2.11.0, a CUDA 13 build, so the same binaries
# run on a CPU or a GPU) and copies them, stripped, into DIR (default .gpu-check, ignored by
# git). `run` needs no cargo and no network: it takes libtorch from the machine's own
# `python3 -c 'import torch'` (which must be torch 2.11.0, with numpy and safetensors beside
# it, and a C compiler for torch.compile), then
#   1. the CUDA parity test (tests/model/cuda.rs: every architecture, both dimensions, within
#      1e-4 of the CPU, and a training step on the GPU); a skip fails the run;
#   2. the forward benchmark on the GPU: drsn on libtorch against the PyTorch twin eager and
#      through torch.compile, batch 256 and 4096;
#   3. the training benchmark on the GPU at batch 256 and 4096, against the twin eager and
#      then through torch.compile.
# Every step's output goes to OUT/gpu-check.log (default $OUT or ./gpu-check-out) as it runs,
# so a run cut short still reports the steps it finished.
#
# DRSN_GPU_CHECK_DEVICE=cpu runs the same steps on the CPU at small sizes (a rehearsal of the
# script on a machine without a GPU; the parity test then says it skipped, as it should).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
dir="${2:-.gpu-check}"
device="${DRSN_GPU_CHECK_DEVICE:-cuda}"

pack() {
  mkdir -p "$dir"
  eval "$(bash scripts/libtorch.sh)"
  local built
  rm -f "$dir/model" "$dir/forward" "$dir/train"
  # `&&`: inside $( ... ) `set -e` is off, and a failed build must not leave an old binary.
  built="$( (cargo test --locked --release --test model --no-run --message-format=json &&
             cargo bench --locked --bench forward --bench train --no-run --message-format=json) |
           python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("model", "forward", "train"):
        print(m["target"]["name"], m["executable"])')"
  while read -r name path; do
    cp "$path" "$dir/$name"
    strip "$dir/$name"
  done <<< "$built"
  for name in model forward train; do
    [ -x "$dir/$name" ] || { echo "gpu-check: $name was not built" >&2; exit 1; }
  done
  git check-ignore -q "$dir" 2>/dev/null || echo "/$dir/" >> .git/info/exclude
  du -sh "$dir"/* >&2
}

run() {
  local out="${3:-${OUT:-gpu-check-out}}"
  mkdir -p "$out"
  local log="$out/gpu-check.log"
  : > "$log"
  step() { echo "== $*" | tee -a "$log"; }
  python="${DRSN_PYTHON:-python3}"
  "$python" -c 'import numpy, safetensors, torch' ||
    { echo "gpu-check: $python needs torch 2.11.0, numpy and safetensors (the twin reads safetensors files)" >&2; exit 1; }
  command -v cc >/dev/null || echo "gpu-check: no C compiler: torch.compile (Triton) will fail" | tee -a "$log"
  torch_dir="$("$python" -c 'import os, torch; assert torch.__version__.startswith("2.11.0"), torch.__version__; print(os.path.dirname(torch.__file__))')"
  # The binaries look for libtorch where `pack` found it; here it is wherever pip put it.
  export LD_LIBRARY_PATH="$torch_dir/lib:$torch_dir/../nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export DRSN_PYTHON="$python" PYTHONUNBUFFERED=1
  local batches=256,4096 train_batches=(256 4096) steps=8 rounds=5
  if [ "$device" = cpu ]; then
    batches=1,8 train_batches=(32) steps=2 rounds=2
  fi

  step "machine: $(date -u +%FT%TZ), torch $("$python" -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"
  { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | tee -a "$log"; } || true

  local failed=0
  step "1. parity on $device (tests/model/cuda.rs)"
  "$dir/model" cuda --nocapture 2>&1 | tee "$out/parity.txt" | tee -a "$log" || failed=1
  if [ "$device" != cpu ] && grep -q SKIPPED "$out/parity.txt"; then
    echo "gpu-check: the CUDA test skipped: libtorch saw no GPU" | tee -a "$log"
    exit 1
  fi

  # A step that fails is logged and the next one still runs.
  step "2. forward on $device, batch $batches: drsn against eager PyTorch and torch.compile"
  "$dir/forward" --device "$device" --compile --batches "$batches" --threads 1 --rounds "$rounds" --seconds 0.2 2>&1 |
    grep -v "UserWarning\|_C._jit\|^ *warnings.warn" | tee -a "$log" || failed=1

  for twin in eager compile; do
    for batch in "${train_batches[@]}"; do
      step "3. training on $device, batch $batch, the twin $twin"
      DRSN_BENCH_DEVICE="$device" DRSN_BENCH_BATCH="$batch" DRSN_BENCH_BATCHES="$steps" \
        DRSN_BENCH_ROUNDS="$rounds" DRSN_BENCH_TWIN="$twin" "$dir/train" 2>&1 | tee -a "$log" || failed=1
    done
  done
  step "done$([ "$failed" = 0 ] || echo ', with failures (above)')"
  return "$failed"
}

case "$mode" in
  pack) pack ;;
  run) run "$@" ;;
  *) sed -n '2,25p' scripts/gpu-check.sh >&2; exit 2 ;;
esac

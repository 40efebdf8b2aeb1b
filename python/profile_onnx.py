"""Where a forward pass on ONNX Runtime spends its time: the graph `drsn serve` runs (written
by `drsn export-onnx`), after ONNX Runtime's own rewrites (batch norm folded into
convolutions, element-wise fusions), profiled by onnxruntime's profiler at batch 1 and 64,
with kernel time summed per operator type. The counterpart of profile_forward.py (libtorch).

    eval "$(bash scripts/libtorch.sh)"
    cargo run --release -- export-onnx --model models/cwru-bearing --out /tmp/m.onnx --diagnostics
    python python/profile_onnx.py /tmp/m.onnx [--threads 2] [--seconds 3]
"""

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
import onnxruntime


def profile(path, batch, threads, seconds):
    """Share of kernel time per operator type, kernels per forward, and the forward's time."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    plain = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    shape = [batch] + [d for d in plain.get_inputs()[0].shape[1:]]
    feed = {plain.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    for _ in range(20):
        plain.run(None, feed)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        plain.run(None, feed)
        runs += 1
    per_forward = (time.perf_counter() - start) / runs

    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feed)
        profiled = 200 if batch == 1 else 20
        for _ in range(profiled):
            session.run(None, feed)
        events = json.load(open(session.end_profiling()))
    by_op, kernels = defaultdict(float), 0
    # The last `profiled` runs' kernels (the first 20 and the session's set-up are warm-up).
    kernel_events = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernel_events) // (profiled + 20)
    for e in kernel_events[-per_run * profiled:]:
        by_op[e["args"]["op_name"]] += e["dur"]
        kernels += 1
    total = sum(by_op.values())
    return {op: t / total for op, t in by_op.items()}, kernels / profiled, per_forward


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an .onnx file written by `drsn export-onnx`")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    results = {b: profile(args.model, b, args.threads, args.seconds) for b in (1, 64)}
    ops = sorted({op for shares, _, _ in results.values() for op in shares}, key=lambda op: -results[64][0].get(op, 0))
    print(f"{args.model}, onnxruntime {onnxruntime.__version__}, {args.threads} threads: share of kernel time")
    print("| operator (after ONNX Runtime's rewrites) | batch 1 | batch 64 |")
    print("|---|---|---|")
    for op in ops:
        print(f"| {op} | {100 * results[1][0].get(op, 0):.1f}% | {100 * results[64][0].get(op, 0):.1f}% |")
    print(f"| one forward, unprofiled | {1e3 * results[1][2]:.3f} ms | {1e3 * results[64][2]:.2f} ms |")
    print(f"| kernels per forward | {results[1][1]:.0f} | {results[64][1]:.0f} |")


if __name__ == "__main__":
    main()

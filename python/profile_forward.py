"""Where a forward pass of a shipped model spends its time, per part of the network, at
batch 1 and 64: torch.profiler over the PyTorch twin (the same libtorch kernels the Rust
forward calls), with every module's forward labelled through hooks, so that the twin itself
is not changed. Diagnostics are included (the twin always computes them).

    eval "$(bash scripts/libtorch.sh)"
    python python/profile_forward.py models/cwru-bearing [--threads 2] [--seconds 3]

Prints, per batch size, the share of the forward's operator time in: convolutions, the
units' batch norms, their ReLUs, identity path and sum, the shrinkage branch's dense layers
and batch norm, the shrinkage's element-wise work (mean |x|, sigmoid, thresholds, soft
thresholding, zeroed share), and the head; and the operator calls per forward.
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drsn_twin import ResidualUnit, Shrinkage, build  # noqa: E402


# The labels a module's forward is recorded under (the innermost label wins per operator).
def label_of(name, module):
    if isinstance(module, Shrinkage):
        return "shrinkage: element-wise and diagnostics"
    if name.endswith("shrink.fc1") or name.endswith("shrink.fc2"):
        return "shrinkage: dense layers"
    if name.endswith("shrink.bn"):
        return "shrinkage: batch norm"
    if name.endswith(("conv1", "conv2")) or name.endswith("stem.conv"):
        return "convolutions"
    if name.endswith(("bn1", "bn2")):
        return "batch norms"
    if isinstance(module, ResidualUnit):
        return "unit: ReLUs, identity, sum"
    if name.endswith("head"):
        return "head (BN, ReLU, pooling, FC, softmax)"
    return None


def instrument(model):
    """Forward hooks that open and close a profiler range around each labelled module;
    returns their handles (the hooks cost time of their own: remove them to time)."""
    handles = []
    for name, module in model.named_modules():
        label = label_of(name, module)
        if label is None:
            continue

        def enter(_module, _inputs, label=label):
            _module._range = torch.ops.profiler._record_function_enter_new(label, None)

        def leave(_module, _inputs, _outputs):
            torch.ops.profiler._record_function_exit._RecordFunction(_module._range)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def self_times_by_label(prof):
    """CPU time of every outermost operator (its inner operators included), charged to the
    innermost label around it; and the operator calls per forward, all levels counted."""
    def owner(event):
        parent = event.cpu_parent
        while parent is not None:
            if parent.name in LABELS:
                return parent.name
            parent = parent.cpu_parent
        return "other (the final softmax)"

    totals, calls = defaultdict(float), 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        calls += 1
        parent = event.cpu_parent
        if parent is not None and parent.name.startswith("aten::"):
            continue
        totals[owner(event)] += event.cpu_time_total
    return totals, calls


LABELS = {
    "shrinkage: element-wise and diagnostics",
    "shrinkage: dense layers",
    "shrinkage: batch norm",
    "convolutions",
    "batch norms",
    "unit: ReLUs, identity, sum",
    "head (BN, ReLU, pooling, FC, softmax)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model folder (card.json, weights.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="profiled time per batch size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    card = json.loads((args.model / "card.json").read_text())
    model = build(card["spec"])
    state = load_file(str(args.model / "weights.safetensors"))
    model.load_state_dict(state, strict=False)
    model.eval()
    shape = [card["spec"]["in_channels"], *card["spec"]["input_size"]]
    print(f"{args.model.name}: {card['spec']['arch']} {card['spec']['dim']}, {args.threads} threads")
    for batch in (1, 64):
        x = torch.randn(batch, *shape)
        with torch.inference_mode():
            for _ in range(20):
                model(x)
            start = time.perf_counter()
            n = 0
            while time.perf_counter() - start < 0.5:
                model(x)
                n += 1
            per_pass = (time.perf_counter() - start) / n
            iterations = max(1, int(args.seconds / per_pass))
            hooks = instrument(model)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(iterations):
                    model(x)
            for hook in hooks:
                hook.remove()
        totals, calls = self_times_by_label(prof)
        whole = sum(totals.values())
        print(f"\nbatch {batch}: {per_pass * 1e3:.3f} ms per forward unprofiled, "
              f"{calls / iterations:.0f} operator calls per forward")
        print("| part | share of operator time | µs per forward |")
        print("|---|---|---|")
        for label, t in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"| {label} | {100 * t / whole:.1f}% | {t / iterations:.1f} |")


if __name__ == "__main__":
    main()

"""Training throughput of the PyTorch twin (`drsn_twin.Network`), the counterpart of
`benches/train.rs`: the same network (from the same JSON ModelSpec), the same data, batch,
optimiser and regularisation as `drsn::train::train`, written as a PyTorch user would.

Per step: a shuffled batch of raw windows, z-score per window and channel, forward,
cross-entropy, backward, SGD with momentum whose weight decay (2 * L2, the gradient of
`l2 * w^2`) is on the convolution and dense kernels only, as the Rust loop does; the loss
and the batch accuracy are read back every step, as the Rust loop does for its progress.

    python train_bench.py --spec spec.json --data data.safetensors --batch 128 [--compile]

`--compile` runs the forward pass and the loss through `torch.compile` (backward through
AOTAutograd), the other PyTorch a performance-minded user would try; the first round compiles.

Serves timing requests on stdin so that a caller can interleave them with its own: each
line holds a number of epochs; each answer is a JSON line with the samples trained, the
wall-clock seconds and the CPU seconds (all threads of this process) they took.
"""

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from torch import nn
except ImportError as err:
    sys.exit(f"train_bench: {err}. Run it with the Python of `scripts/libtorch.sh` (DRSN_PYTHON).")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drsn_twin import build  # noqa: E402  (the twin lives beside this file)


def loss_and_logits(model, x, y):
    """Each member's cross-entropy summed (as drsn trains an ensemble), and the mean logits."""
    logits, _ = model.member_logits(x)
    if len(logits) == 1:
        return F.cross_entropy(logits[0], y), logits[0]
    return sum(F.cross_entropy(member, y) for member in logits), torch.stack(logits).mean(dim=0)


def zscore(x):
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False).clamp_min(1e-12)
    return (x - mean) / std


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help=".safetensors with `x` (N x C x L) and `y` (N)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass and loss")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = build(json.loads(args.spec.read_text())).to(device).train()
    kernels = [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    kernel_ids = {id(k) for k in kernels}
    others = [p for p in model.parameters() if id(p) not in kernel_ids]
    opt = torch.optim.SGD(
        [{"params": kernels, "weight_decay": 2 * args.l2}, {"params": others, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
    )
    def forward_loss(xb, yb):
        return loss_and_logits(model, xb, yb)

    if args.compile:
        forward_loss = torch.compile(forward_loss)
    data = load_file(str(args.data))
    x, y = data["x"], data["y"].long()
    n = len(y)
    steps = n // args.batch + (1 if n % args.batch >= 2 else 0)

    def epoch():
        order = torch.randperm(n)
        samples = correct = 0
        for step in range(steps):
            idx = order[step * args.batch:(step + 1) * args.batch]
            xb = zscore(x[idx]).to(device)
            yb = y[idx].to(device)
            loss, out = forward_loss(xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            correct += (out.argmax(-1) == yb).sum().item()
            samples += len(idx)
        return samples

    print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "compile": args.compile}), flush=True)
    for line in sys.stdin:
        epochs = int(line)
        wall, cpu = time.perf_counter(), time.process_time()
        samples = sum(epoch() for _ in range(epochs))
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(json.dumps({"samples": samples, "seconds": wall, "cpu_seconds": cpu}), flush=True)


if __name__ == "__main__":
    main()

"""The PyTorch twin of the Rust networks in src/nn: ResNet, DRSN-CS and DRSN-CW, 1-D and 2-D.

Built from the JSON ModelSpec that Rust serialises (`drsn spec ...`), with module names chosen
so that `state_dict()` keys equal the Rust `.safetensors` variable names. Written as plain,
idiomatic PyTorch from the paper, not translated op by op, so that agreement means something.

    python drsn_twin.py parity DIR      compare with the Rust outputs stored in DIR's cases
                                        (eval-mode outputs; train-mode gradients and statistics)
    python drsn_twin.py bench ...       time forward passes on request (see `bench --help`)
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from torch import nn
except ImportError as err:
    sys.exit(
        f"drsn_twin: {err}. Run it with the Python that `scripts/libtorch.sh` sets up "
        "(exported as DRSN_PYTHON), which has torch and safetensors."
    )

# Keras' epsilon and PyTorch's momentum, as in src/nn/layers.rs.
BN_EPS = 1e-3
BN_MOMENTUM = 0.1


def batch_norm(spatial, channels):
    """Batch normalisation over axis 1 of `N x C`, `N x C x L` (1-D) or `N x C x H x W` (2-D)."""
    cls = nn.BatchNorm2d if spatial == 2 else nn.BatchNorm1d
    return cls(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv(spatial, c_in, c_out, kernel, stride):
    """A convolution with "same" padding (odd kernels)."""
    cls = nn.Conv2d if spatial == 2 else nn.Conv1d
    return cls(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


def spatial_axes(x):
    return tuple(range(2, x.dim()))


class Shrinkage(nn.Module):
    """The threshold branch and soft thresholding of a residual shrinkage building unit."""

    def __init__(self, channels, shared):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm1d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.fc2 = nn.Linear(channels, 1 if shared else channels)
        self.shared = shared

    def forward(self, x):
        mean_abs = x.abs().mean(dim=spatial_axes(x))
        scales = torch.sigmoid(self.fc2(F.relu(self.bn(self.fc1(mean_abs)))))
        # DRSN-CS scales the mean |x| of the whole feature map, DRSN-CW each channel's own.
        base = mean_abs.mean(dim=1, keepdim=True) if self.shared else mean_abs
        thresholds = scales * base
        tau = thresholds.reshape(*thresholds.shape, *([1] * (x.dim() - 2)))
        out = torch.sign(x) * F.relu(x.abs() - tau)
        zeroed_fraction = (out == 0).float().mean(dim=tuple(range(1, out.dim())))
        diagnostics = {
            "thresholds": thresholds,
            "scales": scales,
            "mean_abs": mean_abs,
            "zeroed_fraction": zeroed_fraction,
        }
        return out, diagnostics


class ResidualUnit(nn.Module):
    """Pre-activation unit: BN -> ReLU -> Conv(stride) -> BN -> ReLU -> Conv [-> shrink] + identity."""

    def __init__(self, arch, spatial, c_in, c_out, kernel, stride):
        super().__init__()
        self.bn1 = batch_norm(spatial, c_in)
        self.conv1 = conv(spatial, c_in, c_out, kernel, stride)
        self.bn2 = batch_norm(spatial, c_out)
        self.conv2 = conv(spatial, c_out, c_out, kernel, 1)
        self.shrink = None if arch == "resnet" else Shrinkage(c_out, shared=arch == "drsn-cs")
        self.stride = stride
        grow = c_out - c_in
        self.channel_pad = (grow // 2, grow - grow // 2)

    def forward(self, x):
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        diagnostics = None
        if self.shrink is not None:
            r, diagnostics = self.shrink(r)
        return r + self.identity(x), diagnostics

    def identity(self, x):
        """Every stride-th sample on each spatial axis, then zero channels on both sides."""
        spatial = x.dim() - 2
        x = x[(Ellipsis,) + (slice(None, None, self.stride),) * spatial]
        # F.pad lists (before, after) pairs from the last axis backwards.
        return F.pad(x, (0, 0) * spatial + self.channel_pad)


class Stem(nn.Module):
    def __init__(self, spatial, c_in, stem):
        super().__init__()
        self.conv = conv(spatial, c_in, stem["channels"], stem["kernel"], stem["stride"])

    def forward(self, x):
        return self.conv(x)


class Head(nn.Module):
    """BN -> ReLU -> global average pooling -> FC."""

    def __init__(self, spatial, channels, classes):
        super().__init__()
        self.bn = batch_norm(spatial, channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn(x)).mean(dim=spatial_axes(x)))


class Network(nn.Module):
    """Conv -> residual units -> BN -> ReLU -> GAP -> FC, from a Rust ModelSpec (a dict)."""

    def __init__(self, spec):
        super().__init__()
        spatial = {"1d": 1, "2d": 2}[spec["dim"]]
        kernel = spec.get("kernel", 3)
        self.stem = Stem(spatial, spec["in_channels"], spec["stem"])
        units = []
        width = spec["stem"]["channels"]
        for stage in spec["stages"]:
            for u in range(stage["units"]):
                stride = stage["stride"] if u == 0 else 1
                units.append(ResidualUnit(spec["arch"], spatial, width, stage["channels"], kernel, stride))
                width = stage["channels"]
        self.units = nn.ModuleList(units)
        self.head = Head(spatial, width, spec["classes"])

    def member_logits(self, x):
        """The logits (a list of one) and, per shrinkage unit (`units.{i}`), its diagnostics."""
        h = self.stem(x)
        blocks = {}
        for i, unit in enumerate(self.units):
            h, diagnostics = unit(h)
            if diagnostics is not None:
                blocks[f"units.{i}"] = diagnostics
        return [self.head(h)], blocks

    def forward(self, x):
        """Class probabilities (of the members' mean logits) and every unit's diagnostics."""
        logits, blocks = self.member_logits(x)
        return torch.softmax(torch.stack(logits).mean(dim=0), dim=-1), blocks


class Ensemble(Network):
    """`members` networks of one spec, under `members.{m}`, judging by their mean logits."""

    def __init__(self, spec):
        nn.Module.__init__(self)
        self.members = nn.ModuleList(Network(spec) for _ in range(spec["members"]))

    def member_logits(self, x):
        logits, blocks = [], {}
        for m, member in enumerate(self.members):
            (member_logits,), member_blocks = member.member_logits(x)
            logits.append(member_logits)
            blocks.update({f"members.{m}.{name}": d for name, d in member_blocks.items()})
        return logits, blocks


def build(spec):
    """The network a Rust ModelSpec describes: one, or an ensemble of `members`."""
    return Ensemble(spec) if spec.get("members", 1) > 1 else Network(spec)


def load_model(spec_path, weights_path):
    """The network of `spec_path` with the weights of `weights_path`, in eval mode.

    Strict but for `num_batches_tracked`, a PyTorch counter that Rust does not keep."""
    model = build(json.loads(Path(spec_path).read_text()))
    state = load_file(str(weights_path))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{weights_path}: weights do not fit {spec_path}: "
            f"missing {missing}, unexpected {result.unexpected_keys}"
        )
    return model.eval()


def named_outputs(model, x):
    """Every output under the names the Rust side stores: `probabilities`, `units.{i}.{what}`
    (`members.{m}.units.{i}.{what}` in an ensemble)."""
    with torch.inference_mode():
        probabilities, blocks = model(x)
    out = {"probabilities": probabilities}
    for name, diagnostics in blocks.items():
        for what, value in diagnostics.items():
            out[f"{name}.{what}"] = value
    return out


def train_step(model, x, labels):
    """One train-mode forward and backward (mean cross-entropy, summed over an ensemble's
    members): every parameter's gradient (`grad.{name}`) and every batch-norm running
    statistic afterwards (`running.{name}`)."""
    model.train()
    logits, _ = model.member_logits(x)
    sum(F.cross_entropy(member, labels) for member in logits).backward()
    out = {f"grad.{name}": p.grad for name, p in model.named_parameters()}
    for name, buffer in model.named_buffers():
        if not name.endswith("num_batches_tracked"):
            out[f"running.{name}"] = buffer
    return out


def max_abs_diffs(case, ours, stored):
    """The largest absolute difference per name; null where it is not a number."""
    if set(ours) != set(stored):
        raise ValueError(
            f"{case}: outputs differ in names: only Rust {sorted(set(stored) - set(ours))}, "
            f"only the twin {sorted(set(ours) - set(stored))}"
        )
    diffs = {}
    for name, value in ours.items():
        if value.shape != stored[name].shape:
            raise ValueError(
                f"{case}: {name} has shape {list(value.shape)} in the twin but {list(stored[name].shape)} in Rust"
            )
        diff = (value.double() - stored[name].double()).abs().max().item()
        # NaN is no JSON number: null, which the caller treats as a failure.
        diffs[name] = diff if math.isfinite(diff) else None
    return diffs


def parity(root):
    """For each case folder, the largest absolute difference of every output from what Rust
    stored there. A case folder holds spec.json, weights.safetensors, eval.safetensors
    (`input` and the eval-mode outputs) and train.safetensors (`input`, `labels`, and the
    gradients and running statistics after one train-mode step)."""
    report = {}
    for case in sorted(p for p in Path(root).iterdir() if (p / "spec.json").is_file()):
        model = load_model(case / "spec.json", case / "weights.safetensors")
        stored = load_file(str(case / "eval.safetensors"))
        diffs = max_abs_diffs(case.name, named_outputs(model, stored.pop("input")), stored)
        stored = load_file(str(case / "train.safetensors"))
        ours = train_step(model, stored.pop("input"), stored.pop("labels"))
        diffs.update(max_abs_diffs(case.name, ours, stored))
        report[case.name] = diffs
    if not report:
        raise ValueError(f"{root}: no case folders with a spec.json")
    json.dump(report, sys.stdout)
    print()


class Flat(nn.Module):
    """The network with its outputs as a flat tuple (probabilities, then every unit's
    diagnostics in order), which is what an ONNX export takes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        probabilities, blocks = self.model(x)
        return (probabilities, *[v for diagnostics in blocks.values() for v in diagnostics.values()])


def onnx_session(model, x, threads, path):
    """The twin exported with `torch.onnx.export` (opset 17, free batch axis) and opened in
    onnxruntime with `threads` intra-op threads, after checking that its outputs are the
    twin's within 5e-6."""
    import numpy as np
    import onnxruntime

    flat = Flat(model).eval()
    with torch.inference_mode():
        expected = flat(x)
    names = ["probabilities"] + [f"out{i}" for i in range(1, len(expected))]
    torch.onnx.export(
        flat, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"], output_names=names,
        dynamic_axes={name: {0: "batch"} for name in ["x", *names]},
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})
    worst = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    if worst > 5e-6:
        raise ValueError(f"the onnxruntime export differs from the twin by {worst}")
    return session, worst


def bench(args):
    """Serves timing requests on stdin, one `BATCH ITERATIONS SIDE` per line (SIDE: `torch`,
    the eager twin; `compiled`, the twin through `torch.compile`, with `--compile`; or
    `onnxruntime`, its ONNX export, on the CPU only), answering each with a JSON line
    holding the seconds that many forward passes took, so that a caller can interleave them
    with its own timings. On CUDA the inputs wait on the GPU and each timing ends with a
    synchronisation."""
    import tempfile

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model(args.spec, args.weights)
    inputs = load_file(str(args.inputs))
    session, worst = None, None
    if device.type == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            session, worst = onnx_session(model, next(iter(inputs.values())), args.threads, Path(tmp) / "twin.onnx")
    arrays = {name: x.numpy() for name, x in inputs.items()} if session is not None else {}
    model = model.to(device)
    on_device = {name: x.to(device) for name, x in inputs.items()}
    # One static graph per batch size, as a user serving fixed batches would compile.
    compiled = torch.compile(model, dynamic=False) if args.compile else None
    ready = {"ready": True, "threads": torch.get_num_threads(), "onnxruntime_max_diff": worst, "device": str(device)}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        batch, iterations, side = line.split()
        batch, iterations = int(batch), int(iterations)
        start = time.perf_counter()
        if side == "onnxruntime" and session is not None:
            feed = {"x": arrays[f"batch{batch}"]}
            for _ in range(iterations):
                session.run(None, feed)
        elif side == "torch" or (side == "compiled" and compiled is not None):
            run = compiled if side == "compiled" else model
            x = on_device[f"batch{batch}"]
            with torch.inference_mode():
                for _ in range(iterations):
                    run(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
        else:
            raise ValueError(f"side {side!r} is not prepared in this run")
        seconds = time.perf_counter() - start
        print(json.dumps({"batch": batch, "iterations": iterations, "seconds": seconds}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("parity", help="compare with the Rust outputs stored in DIR")
    p.add_argument("dir", type=Path)
    b = commands.add_parser("bench", help="time forward passes requested on stdin")
    b.add_argument("--spec", type=Path, required=True, help="ModelSpec JSON")
    b.add_argument("--weights", type=Path, required=True, help=".safetensors weights")
    b.add_argument("--inputs", type=Path, required=True, help=".safetensors with `batch{N}` inputs")
    b.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    b.add_argument("--device", default="cpu", help="cpu or cuda (onnxruntime on the CPU only)")
    b.add_argument("--compile", action="store_true", help="also prepare the `compiled` side (torch.compile)")
    args = parser.parse_args()
    try:
        if args.command == "parity":
            parity(args.dir)
        else:
            bench(args)
    except (OSError, ValueError, KeyError) as err:
        sys.exit(f"drsn_twin: {err}")


if __name__ == "__main__":
    main()

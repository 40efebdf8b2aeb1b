"""A stronger Python peer for the serving benchmark than one FastAPI worker: mosec (a Rust
HTTP front end with Python worker processes and dynamic batching) running the PyTorch twin
exported to ONNX by `torch.onnx.export` on onnxruntime, answering the same JSON
`POST /diagnose` as `drsn serve` for one model folder (card.json + weights.safetensors).

Decoding workers (two by default) check the JSON and normalise the window; inference workers
(one by default) take batches of up to 64 windows, waiting at most 2 ms for them (drsn's
defaults), run them through onnxruntime (one intra-op thread each) and encode the answers.

    $DRSN_PYTHON bench/mosec_server.py --model models/cwru-bearing --port 8090 \\
        [--decoders 2] [--inference-workers 1]

Readiness: `GET /` answers 200 once the workers are up.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from mosec import Server, Worker
from mosec.errors import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

MODEL_ENV = "DRSN_BENCH_MODEL"
ONNX_ENV = "DRSN_BENCH_ONNX"


def card():
    return json.loads((Path(os.environ[MODEL_ENV]) / "card.json").read_text())


class Decode(Worker):
    """JSON body -> one normalised float32 window."""

    def __init__(self):
        super().__init__()
        c = card()
        self.name = c["name"]
        self.length = c["spec"]["input_size"][0]
        self.zscore = c["normalization"] == "z-score"

    def forward(self, data):
        if data.get("model") != self.name:
            raise ValidationError(f"unknown model {data.get('model')}")
        x = np.asarray(data.get("signal", ()), dtype=np.float32)
        if x.shape != (self.length,):
            raise ValidationError(f"expected {self.length} samples")
        if self.zscore:
            x = (x - x.mean()) / max(float(x.std()), 1e-12)
        return x


class Infer(Worker):
    """A batch of windows -> onnxruntime -> one JSON answer each."""

    def __init__(self):
        super().__init__()
        import onnxruntime

        c = card()
        self.classes = c["classes"]
        self.model = {"name": c["name"], "version": c["version"]}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(os.environ[ONNX_ENV], options, providers=["CPUExecutionProvider"])

    def forward(self, data):
        x = np.stack(data)[:, None, :]
        (probabilities,) = self.session.run(["probabilities"], {"x": x})
        answers = []
        for p in probabilities.tolist():
            best = max(range(len(p)), key=p.__getitem__)
            window = {"index": 0, "label": self.classes[best], "probabilities": dict(zip(self.classes, p))}
            answers.append({"model": self.model, "windows": [window]})
        return answers


def export(model_dir, path):
    """The twin with the card's spec and weights, exported with its probabilities only (the
    benchmark asks for no diagnostics), checked against the twin within 5e-6."""
    import torch
    from drsn_twin import load_model

    c = json.loads((model_dir / "card.json").read_text())
    spec_path = path.parent / "spec.json"
    spec_path.write_text(json.dumps(c["spec"]))
    net = load_model(spec_path, model_dir / "weights.safetensors")

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)[0]

    x = torch.randn(4, c["spec"]["in_channels"], *c["spec"]["input_size"])
    torch.onnx.export(Probabilities().eval(), (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["probabilities"],
                      dynamic_axes={"x": {0: "batch"}, "probabilities": {0: "batch"}})
    import onnxruntime

    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        want = net(x)[0].numpy()
    if float(np.abs(got - want).max()) > 5e-6:
        raise SystemExit("the ONNX export differs from the twin")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--decoders", type=int, default=2)
    parser.add_argument("--inference-workers", type=int, default=1)
    # --port and mosec's own flags are read by mosec itself.
    args, _ = parser.parse_known_args()
    tmp = tempfile.mkdtemp(prefix="drsn-mosec-")
    onnx_path = Path(tmp) / "twin.onnx"
    export(args.model.resolve(), onnx_path)
    os.environ[MODEL_ENV] = str(args.model.resolve())
    os.environ[ONNX_ENV] = str(onnx_path)
    server = Server()
    server.append_worker(Decode, num=args.decoders, route="/diagnose")
    server.append_worker(Infer, num=args.inference_workers, max_batch_size=64, max_wait_time=2, route="/diagnose")
    server.run()


if __name__ == "__main__":
    main()

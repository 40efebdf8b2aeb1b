"""The usual alternative to `drsn serve`, for the serving benchmark: a small FastAPI + PyTorch
server answering the same JSON `POST /diagnose` for one model folder (card.json +
weights.safetensors), with the network built by the PyTorch twin (`python/drsn_twin.py`) from
the card's spec and the same weights.

Written the way such servers usually are: a plain (sync) endpoint that FastAPI runs in its
thread pool, one forward pass per request, uvicorn with one worker process.

    $DRSN_PYTHON bench/fastapi_server.py --model models/cwru-bearing --port 8090
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from drsn_twin import load_model  # noqa: E402


class DiagnoseRequest(BaseModel):
    model: str
    signal: List[float]
    diagnostics: Optional[str] = None


def build_app(model_dir: Path) -> FastAPI:
    card = json.loads((model_dir / "card.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(card["spec"]))
        net = load_model(spec_path, model_dir / "weights.safetensors")
    length = card["spec"]["input_size"][0]
    classes = card["classes"]
    zscore = card["normalization"] == "z-score"
    app = FastAPI()

    @app.post("/diagnose")
    def diagnose(request: DiagnoseRequest):
        if request.model != card["name"]:
            raise HTTPException(status_code=404, detail=f"unknown model {request.model}")
        if len(request.signal) != length:
            raise HTTPException(status_code=422, detail=f"expected {length} samples")
        x = torch.tensor(request.signal, dtype=torch.float32)
        if zscore:
            x = (x - x.mean()) / x.std(unbiased=False).clamp_min(1e-12)
        with torch.inference_mode():
            probabilities, _ = net(x.view(1, 1, length))
        p = probabilities[0].tolist()
        best = max(range(len(p)), key=p.__getitem__)
        return {
            "model": {"name": card["name"], "version": card["version"]},
            "windows": [{"index": 0, "label": classes[best], "probabilities": dict(zip(classes, p))}],
        }

    @app.get("/health/ready")
    def ready():
        return {"status": "ready"}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model folder (card.json, weights.safetensors)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(build_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

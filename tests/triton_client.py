"""Drives the service's Open Inference Protocol endpoints with the unmodified Triton
HTTP client (`tritonclient[http]` from PyPI) and writes what it saw as JSON; `tests/v2.rs`
starts the server, prepares the real windows and digits, and checks the findings.

usage: triton_client.py URL CASES.json FINDINGS.json

CASES.json: {"<model>": {"inputs": [N x ...] nested lists of f32, "shapes": [[...], ...]}}
Each model is sent once per shape (the client reshapes the same values), in JSON mode
and in binary mode.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def error_of(call):
    """The client's exception for a call that must fail, as JSON."""
    try:
        call()
    except InferenceServerException as e:
        return {"raised": type(e).__name__, "status": e.status(), "message": e.message()}
    return {"raised": None}


def infer(client, model, values, shape, binary, outputs=None, version=""):
    data = np.asarray(values, dtype=np.float32).reshape(shape)
    tensor = httpclient.InferInput("input", list(shape), "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    requested = None
    if outputs is not None:
        requested = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    result = client.infer(model, [tensor], model_version=version, outputs=requested)
    response = result.get_response()
    found = {}
    for output in response["outputs"]:
        array = result.as_numpy(output["name"])
        if array.dtype == np.object_:
            found[output["name"]] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
        else:
            found[output["name"]] = {"shape": list(array.shape), "values": array.astype(np.float64).tolist()}
    return {
        "model_name": response["model_name"],
        "model_version": response.get("model_version"),
        "binary_outputs": [o["name"] for o in response["outputs"] if "binary_data_size" in o.get("parameters", {})],
        "outputs": found,
    }


def main():
    url, cases_path, findings_path = sys.argv[1:4]
    cases = json.load(open(cases_path))
    client = httpclient.InferenceServerClient(url=url)
    findings = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "models": {},
    }
    for model, case in cases.items():
        metadata = client.get_model_metadata(model)
        values = case["inputs"]
        every = [o["name"] for o in metadata["outputs"]]
        runs = {}
        for shape in case["shapes"]:
            for binary in (False, True):
                key = f"{'binary' if binary else 'json'} {shape}"
                runs[key] = infer(client, model, values, shape, binary, outputs=every)
        subset = [metadata["outputs"][0]["name"], metadata["outputs"][-1]["name"]]
        first = case["shapes"][0]
        findings["models"][model] = {
            "ready": client.is_model_ready(model),
            "version_ready": client.is_model_ready(model, model_version=metadata["versions"][-1]),
            "metadata": metadata,
            "version_metadata": client.get_model_metadata(model, model_version=metadata["versions"][-1]),
            "runs": runs,
            # No outputs named: the client asks for all of them, in binary form.
            "unnamed": infer(client, model, values, case["shapes"][0], False),
            "subset_asked": subset,
            "subset": infer(client, model, values, first, True, outputs=subset, version=metadata["versions"][-1]),
            "wrong_shape": error_of(lambda: infer(client, model, np.zeros(3 * 1000), [3, 1000], False)),
            "unknown_version": error_of(lambda: client.get_model_metadata(model, model_version="999")),
        }
    findings["unknown_model"] = {
        "ready": client.is_model_ready("no-such-model"),
        "metadata": error_of(lambda: client.get_model_metadata("no-such-model")),
        "infer": error_of(lambda: infer(client, "no-such-model", np.zeros(2048), [1, 2048], True)),
    }
    json.dump(findings, open(findings_path, "w"))


if __name__ == "__main__":
    main()

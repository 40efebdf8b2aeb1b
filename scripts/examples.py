"""Cuts the example recordings in examples/ from the CWRU data: for each fault family and
normal, the test stretch the shipped cwru-bearing model held out of its training (read from
its card), written as 32-bit float WAV at the recording's own rate.

    python scripts/examples.py [DATA_DIR]   # needs numpy and scipy
"""
import json
import pathlib
import sys

import numpy as np
from scipy.io import loadmat, wavfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
EXAMPLES = {
    "normal.wav": "normal_0_97.mat",
    "ball-B021.wav": "12k_Drive_End_B021_0_222.mat",
    "inner-race-IR007.wav": "12k_Drive_End_IR007_0_105.mat",
    "outer-race-OR007.wav": "12k_Drive_End_OR007@6_0_130.mat",
}

card = json.loads((ROOT / "models" / "cwru-bearing" / "card.json").read_text())
files = {pathlib.Path(f["file"]).name: f for f in card["data"]["description"]["files"]}
for out, name in EXAMPLES.items():
    entry = files[name]
    rate = entry["resampled_from"] or entry["sample_rate"]
    scale = rate / entry["sample_rate"]
    start, end = (round(x * scale) for x in entry["stretches"]["test"])
    signal = loadmat(DATA / "cwru" / name)[entry["variable"]].ravel()[start:end].astype(np.float32)
    wavfile.write(ROOT / "examples" / out, rate, signal)
    print(f"{out}: {name} samples {start}..{end} at {rate} Hz ({(end - start) / rate:.2f} s)")

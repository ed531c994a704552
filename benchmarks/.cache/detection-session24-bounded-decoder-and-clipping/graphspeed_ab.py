"""mnist graph speed: the plain decoder against the bounded one, side by side (short-trained bundles)."""

import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, "/work/main/benchmarks")
sys.path.insert(0, "/work/main")
import detection as bench
from graph_speed import rows_per_second

from service.features import encode_frame
from training.pipeline import train_bundle

ds = bench.load_dataset(Path("/work/shared/datasets"), "mnist")
train, test = bench.split_indices(ds.y, 0)
bench.torch_setup(0)
x = None
for name in ("mlp", "bounded"):
    out = Path(f"/tmp/lw/gs-{name}")
    if not (out / "model.onnx").exists():
        r = train_bundle(
            ds.frame.iloc[train].reset_index(drop=True),
            out,
            seed=0,
            overrides={"decoder": name, "max_steps": 600, "report": False},
            quiet=True,
        )
pids = [
    int(p)
    for p in subprocess.run(["pgrep", "-f", "benchmarks/detection.py"], capture_output=True, text=True).stdout.split()
]
pids += [
    int(c)
    for p in list(pids)
    for c in subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
]
print("pausing", pids)
import json  # noqa: E402

m = json.loads((Path("/tmp/lw/gs-mlp") / "manifest.json").read_text())
from service.bundle import load_bundle  # noqa: E402

feats = load_bundle(Path("/tmp/lw/gs-mlp")).manifest.features
x = encode_frame(ds.frame.iloc[test], feats).x
for p in pids:
    os.kill(p, signal.SIGSTOP)
try:
    res = {"mlp": [], "bounded": []}
    for _ in range(3):
        for name in res:
            res[name] += rows_per_second(Path(f"/tmp/lw/gs-{name}/model.onnx"), x, repeats=5)
finally:
    for p in pids:
        os.kill(p, signal.SIGCONT)
for name, v in res.items():
    print(name, round(statistics.median(v)), [round(s) for s in v])
print("ratio bounded/mlp", round(statistics.median(res["bounded"]) / statistics.median(res["mlp"]), 3))

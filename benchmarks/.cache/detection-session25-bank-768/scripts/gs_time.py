"""rows/s of one or more bundles' model.onnx on mnist's seed-0 test rows, interleaved rounds."""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, "/work/next/benchmarks")
sys.path.insert(0, "/work/next")
import detection as bench
from graph_speed import rows_per_second

from service.bundle import load_bundle
from service.features import encode_frame

ds = bench.load_dataset(Path("/work/shared/datasets"), "mnist")
_, test = bench.split_indices(ds.y, 0)
paths = [Path(p) for p in sys.argv[1:]]
x = encode_frame(
    ds.frame.iloc[test], load_bundle(paths[0].parent if paths[0].suffix == ".onnx" else paths[0]).manifest.features
).x
res = {p: [] for p in paths}
for _ in range(3):
    for p in paths:
        res[p] += rows_per_second(p if p.suffix == ".onnx" else p / "model.onnx", x, repeats=5)
for p, v in res.items():
    print(p, round(statistics.median(v)), [round(s) for s in v])

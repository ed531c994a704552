import collections
import json
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

sys.path.insert(0, "/work/next/benchmarks")
sys.path.insert(0, "/work/next")
import detection as bench

from service.bundle import load_bundle
from service.features import encode_frame

bundle = Path(sys.argv[1])
kinds = sys.argv[2].split(",")
ds = bench.load_dataset(Path("/work/shared/datasets"), "mnist")
_, test = bench.split_indices(ds.y, 0)
x = encode_frame(ds.frame.iloc[test], load_bundle(bundle).manifest.features).x[:1024]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.enable_profiling = True
so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "p")
s = ort.InferenceSession(str(bundle / "model.onnx"), so, providers=["CPUExecutionProvider"])
for _ in range(20):
    s.run(None, {s.get_inputs()[0].name: x})
ev = json.loads(Path(s.end_profiling()).read_text())
dur = collections.Counter()
shape = {}
total = 0
for e in ev:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        total += e["dur"]
        if e["args"]["op_name"] in kinds:
            n = e["name"][:-12]
            dur[n] += e["dur"]
            shape[n] = (e["args"]["op_name"], e["args"].get("input_type_shape"))
for n, d in dur.most_common(30):
    print(f"{100 * d / total:5.2f}% {n[:60]:60s} {shape[n]}")

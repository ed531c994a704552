"""Per-op-type share of the graph's time (onnxruntime profiling), 2 threads, 1024-row batches."""

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
ds = bench.load_dataset(Path("/work/shared/datasets"), "mnist")
_, test = bench.split_indices(ds.y, 0)
x = encode_frame(ds.frame.iloc[test], load_bundle(bundle).manifest.features).x[:1024]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
so.enable_profiling = True
so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "p")
s = ort.InferenceSession(str(bundle / "model.onnx"), so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
for _ in range(30):
    s.run(None, {name: x})
prof = s.end_profiling()
ev = json.loads(Path(prof).read_text())
by_type = collections.Counter()
by_node = collections.Counter()
for e in ev:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        by_type[e["args"]["op_name"]] += e["dur"]
        by_node[e["name"][:-12]] += e["dur"]
total = sum(by_type.values())
for k, v in by_type.most_common(15):
    print(f"{k:24s} {100 * v / total:5.1f}%")
print("--- top nodes")
for k, v in by_node.most_common(25):
    print(f"{k[:90]:90s} {100 * v / total:5.1f}%")

"""Train the graph-speed bundle (mnist, seed 0, the default) as measure_graph_speed does, and keep it."""

import sys
from pathlib import Path

sys.path.insert(0, "/work/next/benchmarks")
sys.path.insert(0, "/work/next")
import detection as bench

from training.pipeline import train_bundle

out = Path(sys.argv[1])
import training.pipeline as tp  # noqa: E402

tp.PRIOR_BANK_ROWS = int(sys.argv[2])
ds = bench.load_dataset(Path("/work/shared/datasets"), "mnist")
train, test = bench.split_indices(ds.y, 0)
bench.torch_setup(0)
train_bundle(ds.frame.iloc[train].reset_index(drop=True), out, seed=0, quiet=True)

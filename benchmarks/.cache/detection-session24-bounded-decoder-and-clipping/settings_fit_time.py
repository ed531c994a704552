"""Fit seconds of the default against the session-24 candidates, side by side, one process.

For each table (the detection protocol's seed-0 split), trains the default, then
``bounded-decoder-clip``, then ``bounded-decoder-clip-long-patience``, one after the other,
so that all three see the same machine. Run from the repository root on a quiet machine:
``python benchmarks/.cache/detection-session24-bounded-decoder-and-clipping/settings_fit_time.py``.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "benchmarks")
sys.path.insert(0, ".")
import detection as bench

from training.pipeline import train_bundle

VARIANTS = ("lw-vae", "lw-vae~bounded-decoder-clip", "lw-vae~bounded-decoder-clip-long-patience")
root = bench.default_data_root()
for name in sys.argv[1:] or ["glass", "Cardiotocography", "Wilt", "mnist"]:
    ds = bench.load_dataset(root, name)
    train, _ = bench.split_indices(ds.y, 0)
    seconds = []
    for detector in VARIANTS:
        bench.torch_setup(0)
        overrides = bench.lw_overrides(detector, int(train.size)) or {}
        with tempfile.TemporaryDirectory() as tmp:
            result = train_bundle(
                ds.frame.iloc[train].reset_index(drop=True), Path(tmp) / "b", seed=0, overrides=overrides, quiet=True
            )
        seconds.append(result.seconds)
    ratios = " ".join(f"{s / seconds[0]:.2f}x" for s in seconds[1:])
    print(f"{name}: " + " ".join(f"{s:.1f}s" for s in seconds) + f"  ({ratios})", flush=True)

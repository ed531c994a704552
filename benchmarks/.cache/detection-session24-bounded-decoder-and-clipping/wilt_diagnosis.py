"""Wilt seed 0: the default against the bounded decoder; where the score's separation comes from."""

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "benchmarks")
sys.path.insert(0, ".")
import detection as bench
from sklearn.metrics import roc_auc_score

from training.pipeline import train_bundle

ds = bench.load_dataset(Path("/work/shared/datasets"), sys.argv[1] if len(sys.argv) > 1 else "Wilt")
seed = 0
bench.torch_setup(seed)
train, test = bench.split_indices(ds.y, seed)
y = ds.y[test]
for name, over in ([] if os.environ.get("ONLY") else [("mlp", {}), ("bounded", {"decoder": "bounded"})]) + [
    (a, {"decoder": "bounded", **json.loads(a)}) for a in sys.argv[2:]
]:
    bench.torch_setup(seed)
    res = train_bundle(
        ds.frame.iloc[train].reset_index(drop=True),
        Path(f"/tmp/lw/diag/{ds.name}-{abs(hash(name))}"),
        seed=seed,
        overrides=over,
        quiet=True,
    )
    scores, _ = bench.lw_scores(Path(res.bundle_dir), ds.frame.iloc[test])
    fs = np.asarray(scores.feature_scores)
    kl = np.asarray(scores.kl)
    print(
        name,
        "auc",
        round(roc_auc_score(y, scores.neg_elbo), 4),
        "recon",
        round(roc_auc_score(y, fs.sum(1)), 4),
        "kl",
        round(roc_auc_score(y, kl), 4),
        "per-feature",
        [round(roc_auc_score(y, fs[:, j]), 3) for j in range(fs.shape[1])],
        "normal kl",
        round(float(kl[y == 0].mean()), 2),
        "anom kl",
        round(float(kl[y == 1].mean()), 2),
        "val",
        [round(float(v), 3) for v in getattr(res, "validation_losses", [])]
        if hasattr(res, "validation_losses")
        else "",
        flush=True,
    )
    m = json.loads((Path(res.bundle_dir) / "manifest.json").read_text())
    print(
        "  members:",
        [(x["steps"], x["best_step"], round(x["best_validation_loss"], 3)) for x in m["training"]["members"]],
        flush=True,
    )

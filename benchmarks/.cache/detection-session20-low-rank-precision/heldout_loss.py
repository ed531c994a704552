"""Session 20 scratch: the default's held-out validation loss and seed-0 ROC-AUC on one table.

Run from a checkout with ``low-rank-precision.patch`` applied, once with LW_PREC_RANK=0 and once
with LW_PREC_RANK=-1: ``python heldout_loss.py REPO Wilt``. Prints one JSON line: the mean of
the members' best validation losses (nats per row, on each member's own held-out fold) and
the test ROC-AUC, as in ``heldout-loss-joint.jsonl``.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

repo, name = Path(sys.argv[1]).resolve(), sys.argv[2]
sys.path[:0] = [str(repo), str(repo / "benchmarks")]
import detection as det  # noqa: E402

from training.pipeline import train_bundle  # noqa: E402

ds = det.load_dataset(det.default_data_root(), name)
det.torch_setup(0)
train, test = det.split_indices(ds.y, 0)
with tempfile.TemporaryDirectory() as tmp:
    res = train_bundle(ds.frame.iloc[train].reset_index(drop=True), Path(tmp) / "b", model="vae", seed=0, quiet=True)
    members = res.manifest.training["members"]
    scores, primary = det.lw_scores(Path(res.bundle_dir), ds.frame.iloc[test])
record = det.lw_record(ds.y[test], scores, primary)
loss = sum(m["best_validation_loss"] for m in members) / len(members)
print(json.dumps({"dataset": name, "rank": os.environ.get("LW_PREC_RANK", "0"), "val": loss, "roc": record["roc_auc"]}))

"""Reproduce the parity failure: mammography seed 0, bounded decoder + clip + long patience."""

import pickle
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
sys.path.insert(0, ".")
import detection as bench
import numpy as np

import training.pipeline as pipeline
from training.export import parity_error, torch_outputs

original = pipeline._check_parity


def checked(graph, session, x, features):
    ort_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    expected = torch_outputs(graph, x)
    total = np.abs(expected["neg_elbo"].astype(np.float64))
    for name in expected:
        units = {"feature_scores": total[:, None], "kl": total}
        e = parity_error({name: expected[name]}, {name: ort_out[name]}, {k: v for k, v in units.items() if k == name})
        a, b = expected[name].astype(np.float64), ort_out[name].astype(np.float64)
        i = np.unravel_index(np.argmax(np.abs(a - b)), a.shape)
        print(f"{name:16s} err {e:.2e} at {i} torch {a[i]:.6g} ort {b[i]:.6g}", flush=True)
    with Path("/tmp/lw/parity_case.pkl").open("wb") as f:
        pickle.dump({"x": x, "torch": expected, "ort": ort_out}, f)
    import torch

    torch.save(graph, "/tmp/lw/parity_graph.pt")
    return original(graph, session, x, features)


pipeline._check_parity = checked

ds = bench.load_dataset(Path("/work/shared/datasets"), sys.argv[1] if len(sys.argv) > 1 else "mammography")
seed = 0
bench.torch_setup(seed)
train, test = bench.split_indices(ds.y, seed)
overrides = bench.lw_overrides("lw-vae~bounded-decoder-clip-long-patience", int(train.size))
print(overrides)
try:
    pipeline.train_bundle(
        ds.frame.iloc[train].reset_index(drop=True),
        Path("/tmp/lw/parity-bundle"),
        seed=seed,
        overrides=overrides,
        quiet=True,
    )
    print("passed")
except RuntimeError as err:
    print("FAILED", err)

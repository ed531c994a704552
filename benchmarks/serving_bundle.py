"""The serving benchmark's bundle: the default VAE on synthetic rows, served as model ``vae``.

The rows are 32 correlated numeric features, 4 latent factors mixed linearly plus noise (as in
``batch.py``); the same generator gives the requests' rows. Importing this module puts the
repository on ``sys.path``, so that ``training`` and ``service`` import when the benchmark is run
as ``python benchmarks/serving.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

N_FEATURES = 32
N_FACTORS = 4
TRAIN_ROWS = 20_000
MODEL = "vae"
OUTPUTS = ("recon_error", "neg_elbo", "kl")


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(N_FEATURES)]


def synthetic_rows(n_rows: int, seed: int) -> np.ndarray:
    """``(n_rows, 32)`` float64: 4 latent factors mixed linearly, plus noise (as batch.py)."""
    mixing = np.random.default_rng(42).standard_normal((N_FACTORS, N_FEATURES))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_rows, N_FACTORS)) @ mixing + 0.3 * rng.standard_normal((n_rows, N_FEATURES))


def train_default_bundle(out: Path) -> float:
    """The project's default bundle (no overrides) on the synthetic rows; returns seconds."""
    from training.pipeline import train_bundle

    frame = pd.DataFrame(synthetic_rows(TRAIN_ROWS, 0), columns=feature_names())
    started = time.perf_counter()
    train_bundle(frame, out, quiet=True)
    return time.perf_counter() - started


def describe_bundle(bundle: Path) -> str:
    from service.bundle import load_bundle

    manifest = load_bundle(bundle).manifest
    resolved = manifest.training.get("resolved", {})
    steps = manifest.training.get("steps", "?")
    return (
        f"{manifest.model_type}, {manifest.n_features} numeric features, hidden {resolved.get('hidden', '?')}, "
        f"latent {manifest.latent_dim}, default settings ({steps} steps), trained on {TRAIN_ROWS:,} synthetic rows; "
        "graph outputs: recon_error, neg_elbo, kl, feature_scores, expected, latent"
    )

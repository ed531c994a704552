"""The latentwatch detectors (``lw-MODEL``, ``lw-vae~VARIANT``) run as a user would run them.

A bundle is trained by ``training.pipeline.train_bundle`` on the raw training columns and the
test rows are scored from it through onnxruntime. Besides the primary score, each record holds
the metrics of ``neg_elbo`` and ``recon_error`` alone and the false-positive rate of
``p_value < alpha`` on the test normals. ``measure_graph_speed`` is issue 6's cost bar: the
rows per second of the default's exported graph on mnist.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from detection_data import Dataset, detection_metrics, ensure_repo_importable, load_dataset, split_indices, torch_setup
from detection_records import CACHE_VERSION, Record, graph_speed_path, write_json
from detection_variants import lw_overrides
from graph_speed import BATCH_ROWS, THREADS, rows_per_second, summary

LW_DETECTORS = ("lw-vae", "lw-aae", "lw-ae", "lw-vaegan", "lw-hvae")
LW_SCORES = ("neg_elbo", "recon_error")  # reported beside the bundle's primary score
ALPHAS = (0.01, 0.05)


def latentwatch_available() -> bool:
    """Whether the trainer (``training.pipeline``) and the scorer import."""
    ensure_repo_importable()
    try:
        for module in ("training.pipeline", "service.scorer", "service.features"):
            importlib.import_module(module)
    except ImportError as err:
        print(f"latentwatch not importable: {err}", file=sys.stderr)
        return False
    return True


def lw_scores(bundle_dir: Path, test: pd.DataFrame, device: str = "cpu") -> tuple[Any, str]:
    """Score ``test`` with the bundle through onnxruntime (on ``device``, one thread)."""
    from service.features import encode_frame
    from service.scorer import Scorer as BundleScorer

    scorer = BundleScorer.open(bundle_dir, device=device, intra_op_threads=1)
    try:
        scores = scorer.score(encode_frame(test, scorer.manifest.features).x)
        return scores, scorer.manifest.primary_score
    finally:
        close = getattr(scorer, "close", None)
        if callable(close):
            close()


def lw_record(y: np.ndarray, scores: Any, primary: str) -> Record:
    """Metrics of the primary score, of each score alone, and FPR of ``p_value < alpha``."""
    record = detection_metrics(y, scores.primary)
    record["primary_score"] = primary
    record["scores"] = {name: detection_metrics(y, getattr(scores, name)) for name in LW_SCORES}
    p_normal = np.asarray(scores.p_value, dtype=np.float64)[y == 0]
    record["fpr"] = {str(a): float(np.mean(p_normal < a)) for a in ALPHAS}
    return record


def is_latentwatch(detector: str) -> bool:
    return detector.startswith("lw-")


def run_latentwatch(detector: str, ds: Dataset, seed: int) -> Record:
    """Train a bundle with the model's defaults on the raw train columns; score the test rows."""
    ensure_repo_importable()
    from training.pipeline import train_bundle

    torch_setup(seed)
    train, test = split_indices(ds.y, seed)
    model = detector.removeprefix("lw-").partition("~")[0]
    overrides = lw_overrides(detector, int(train.size)) or {}
    model_seed = seed + overrides.pop("seed_offset", 0)
    with tempfile.TemporaryDirectory(prefix="lw-bench-") as tmp:
        start = time.perf_counter()
        # One core per fit: the run's --jobs share out the cores.
        result = train_bundle(
            ds.frame.iloc[train].reset_index(drop=True), Path(tmp) / "bundle",
            model=model, seed=model_seed, overrides=overrides | {"threads": 1}, quiet=True,
        )  # fmt: skip
        trained = time.perf_counter()
        scores, primary = lw_scores(Path(result.bundle_dir), ds.frame.iloc[test])
        done = time.perf_counter()
    record = lw_record(ds.y[test], scores, primary)
    record |= {
        "overrides": overrides | {"seed": model_seed},
        "fit_seconds": float(result.seconds),
        "train_wall_seconds": trained - start,
        "score_seconds": done - trained,
    }
    return record


def measure_graph_speed(root: Path, cache: Path, refresh: bool, dataset: str = "mnist", seed: int = 0) -> Record:
    """Issue 6's cost bar: rows/s of the default's exported graph (``graph_speed.py``), cached.

    Run in the main process after the pool's tasks, so that both cores are free.
    """
    path = graph_speed_path(cache, dataset, seed)
    if not refresh and path.exists():
        record = json.loads(path.read_text())
        if record.get("cache_version") == CACHE_VERSION:
            return record
    ensure_repo_importable()
    from service.bundle import ONNX_FILE
    from service.features import encode_frame
    from training.pipeline import train_bundle

    ds = load_dataset(root, dataset)
    train, test = split_indices(ds.y, seed)
    torch_setup(seed)
    with tempfile.TemporaryDirectory(prefix="lw-speed-") as tmp:
        result = train_bundle(ds.frame.iloc[train].reset_index(drop=True), Path(tmp) / "bundle", seed=seed)
        manifest = result.manifest
        x = encode_frame(ds.frame.iloc[test], manifest.features).x
        speeds = rows_per_second(Path(tmp) / "bundle" / ONNX_FILE, x)
    resolved = manifest.training["resolved"]
    record = summary(
        speeds, detector="lw-vae", dataset=dataset, seed=seed, features=manifest.n_features, rows=len(x),
        hidden=resolved["hidden"], latent_dim=resolved["latent_dim"], draws=manifest.training["settings"]["draws"],
        members=len(manifest.training["members"]), threads=THREADS, batch_rows=BATCH_ROWS,
        cache_version=CACHE_VERSION,
    )  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return record

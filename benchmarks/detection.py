"""Detection benchmark: latentwatch's detectors beside classical and PyOD baselines.

Follows the novelty protocol of ``benchmarks/README.md`` exactly: for each dataset and seed,
``rng = default_rng(seed)`` permutes the normal then the anomalous row indices; the first 60%
of the normal rows (at most 20,000) train, the rest of them (at most 20,000) plus
at most 5,000 anomalous rows test. Every detector uses its default settings and gives a score
per test row, higher = more anomalous; ROC-AUC and average precision are averaged over seeds.

Baselines see the features one-hot encoded (non-numeric columns only, fitted on the train
rows, unseen categories ignored) and standardized with the train rows' mean and std. The
latentwatch detectors (``lw-vae``, ``lw-aae``, ``lw-ae``, ``lw-vaegan``, ``lw-hvae``) get the
raw feature columns, train a bundle through ``training.pipeline.train_bundle`` and are scored
through onnxruntime, as a user would run them.

Each (detector, dataset, seed) result is cached as JSON under ``--cache`` (git-ignored), so an
interrupted run resumes::

    python benchmarks/detection.py --detectors baselines --jobs 2
    python benchmarks/detection.py --datasets glass,Wilt --seeds 0 --detectors lw-vae,knn

The report (markdown) is printed and written between ``<!-- detection:start -->`` and
``<!-- detection:end -->`` in ``--results``; the rest of that file is left alone. The run's
records (a first line describing the run, then one record per line) are written with it to
``--records`` (``benchmarks/records/detection.jsonl``, committed): ``--render`` renders the
section again from that file alone, and a run takes the records it holds as already done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from adoption import compare, halves
from graph_speed import BATCH_ROWS, THREADS, report_line, rows_per_second, summary
from results_file import machine, publish, versions

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "benchmarks" / "records" / "detection.jsonl"
CACHE_VERSION = 1

ADBENCH = (
    "1_ALOI", "2_annthyroid", "4_breastw", "5_campaign", "6_cardio", "7_Cardiotocography", "11_donors",
    "14_glass", "15_Hepatitis", "16_http", "18_Ionosphere", "19_landsat", "20_letter", "21_Lymphography",
    "22_magic.gamma", "23_mammography", "24_mnist", "25_musk", "26_optdigits", "27_PageBlocks",
    "28_pendigits", "29_Pima", "31_satimage-2", "32_shuttle", "34_smtp", "37_Stamps", "38_thyroid",
    "39_vertebral", "42_WBC", "43_WDBC", "44_Wilt", "45_wine",
)  # fmt: skip
MIXED = ("bank", "solar-flare", "cmc")
LABEL_COLUMN = "label"

SKLEARN_DETECTORS = ("iforest", "ocsvm", "lof", "knn", "pca")
PYOD_DETECTORS = ("pyod-vae", "pyod-ae")
LW_DETECTORS = ("lw-vae", "lw-aae", "lw-ae", "lw-vaegan", "lw-hvae")
BASELINES = SKLEARN_DETECTORS + PYOD_DETECTORS
ALL_DETECTORS = BASELINES + LW_DETECTORS
LW_SCORES = ("neg_elbo", "recon_error")  # reported beside the bundle's primary score


def _default_sizes(n_train: int) -> Any:
    """The trainer's derived sizes (``training.config.Resolved``) for ``n_train`` protocol rows.

    The trainer sizes every member by the first one's fit rows; epochs are counted over those rows.
    """
    ensure_repo_importable()
    from training.config import make_settings, resolve

    return resolve(make_settings(), n_train=_fit_rows(n_train), n_features=1, n_inputs=1)


def _fit_rows(n_train: int) -> int:
    """The rows each of the default's members trains on, of ``n_train`` protocol rows."""
    ensure_repo_importable()
    from training.calibrate import fit_splits
    from training.config import make_settings

    return int(fit_splits(n_train, make_settings())[0][0].size)


def _epoch_schedule(n_train: int) -> dict[str, int]:
    """The reference VAE's schedule in epochs (warm-up 20, patience 15, at most 200)."""
    per_epoch = _default_sizes(n_train).steps_per_epoch
    return {"warmup_steps": 20 * per_epoch, "patience_steps": 15 * per_epoch, "max_steps": 200 * per_epoch}


def _old_step_cap(n_train: int) -> dict[str, int]:
    """The first trainer's step cap: warm-up + max(5,000 steps, 100 epochs) (see docs/decisions.md)."""
    sizes = _default_sizes(n_train)
    return {"max_steps": sizes.warmup_steps + max(5000, 100 * sizes.steps_per_epoch)}


def _short_patience(n_train: int) -> dict[str, int] | None:
    """Patience of max(300 steps, 15 epochs), the default's before its 1,000-step floor (docs/decisions.md);
    None where 15 epochs are at least that floor (the two patiences are the same there)."""
    sizes = _default_sizes(n_train)
    short = max(300, 15 * sizes.steps_per_epoch)
    return None if short == sizes.patience_steps else {"patience_steps": short}


def _long_warmup(n_train: int) -> dict[str, int]:
    """KL warm-up of max(2,000 steps, 20 epochs) instead of max(500 steps, 20 epochs)."""
    return {"warmup_steps": max(2000, _default_sizes(n_train).warmup_steps)}


def _batch_rule(floor: int, cap: int, divisor: int) -> Callable[[int], dict[str, int]]:
    """Batches of min(cap, max(floor, fit rows // divisor)); the default is (32, 256, 20)."""

    def overrides(n_train: int) -> dict[str, int]:
        return {"batch_size": min(cap, max(floor, _fit_rows(n_train) // divisor))}

    return overrides


def _small_table_folds(count: int) -> Callable[[int], dict[str, int] | None]:
    """``count`` folds below ``SMALL_TABLE_ROWS`` (the default has 5 there); None (the default's own run) elsewhere."""

    def overrides(n_train: int) -> dict[str, int] | None:
        ensure_repo_importable()
        from training.config import SMALL_TABLE_ROWS

        return {"folds": count} if n_train < SMALL_TABLE_ROWS else None

    return overrides


# Variants of the default (``lw-vae~NAME``), one choice changed each; shown, never ranked.
# Each maps to (what changes, trainer overrides or a function of the training row count).
# ``seed_offset`` is added to the model's seed only (the protocol's train/test split stays):
# that variant measures how much the means move with the seed alone. A function that returns
# None says the variant trains exactly as the default on that table: its record is then a
# copy of the default's (``reuse_default``), not a second identical training.
Overrides = dict[str, Any] | Callable[[int], dict[str, Any] | None]
ABLATIONS: dict[str, tuple[str, Overrides]] = {
    "one-draw": ("1 fixed draw of z in the graph instead of 8", {"draws": 1}),
    "four-draws": ("4 fixed draws of z in the graph instead of 8", {"draws": 4}),
    "sixteen-draws": ("16 fixed draws of z in the graph instead of 8", {"draws": 16}),
    "epoch-schedule": (
        "warm-up, patience and cap in epochs (20, 15, 200) instead of the step floors (500, 1,000, 20,000)",
        _epoch_schedule,
    ),
    "step-cap": ("step cap warm-up + max(5,000 steps, 100 epochs) instead of max(20,000 steps, 100 epochs)",
                 _old_step_cap),
    "no-warmup": ("KL weight 1 from the first step instead of rising over max(500 steps, 20 epochs)",
                  {"warmup_steps": 0}),
    "no-weight-decay": ("AdamW weight decay 0 instead of 1e-4", {"weight_decay": 0.0}),
    "no-variance-floor": ("decoder std floor 1e-4 instead of 0.01 (standardized units)", {"min_scale": 1e-4}),
    "no-ema": ("the raw weights of the best step instead of their moving average (decay 0.995)",
               {"ema_decay": 0.0}),
    "three-restarts": ("3 initializations, the best validation loss kept, instead of 1", {"restarts": 3}),
    "free-bits": ("free bits: 0.5 nats of KL per latent dimension left free in training, instead of none",
                  {"free_bits": 0.5}),
    "standard-prior": ("the scores' KL to N(0, I) instead of the defensive prior "
                       "(½ N(0, I) + ½ the posteriors of up to 512 fit rows)", {"prior": "standard"}),
    "other-seed": ("model seed + 100: folds, initialization, batches and draws change; nothing else (the noise floor)",
                   {"seed_offset": 100}),
    "third-seed": ("model seed + 200: a third draw of the default, beside other-seed", {"seed_offset": 200}),
    "one-model": ("one model trained on 80% of the rows, early-stopped and calibrated on the other 20%, "
                  "instead of 3 cross-fitted members (5 below 500 rows)", {"folds": 1}),
    "half-learning-rate": ("AdamW learning rate 5e-4 instead of 1e-3", {"learning_rate": 5e-4}),
    "double-learning-rate": ("AdamW learning rate 2e-3 instead of 1e-3", {"learning_rate": 2e-3}),
    "two-repeats": ("cross-fitting repeated over 2 partitions of the rows: 6 members (10 below 500 rows), "
                    "each row calibrated by the 2 that never saw it, instead of 3 (5)", {"repeats": 2}),
    "short-patience": ("early-stopping patience max(300 steps, 15 epochs) instead of max(1,000 steps, 15 epochs)",
                       _short_patience),
    "plain-decoder": ("a plain MLP decoder (decoder = \"mlp\") instead of LayerNorm in its hidden layers "
                      "and a linear path from the code to its outputs", {"decoder": "mlp"}),
    "no-clip": ("no gradient clipping (grad_clip = 0) instead of each step's norm clipped at 3x its moving average",
                {"grad_clip": 0.0}),
    "long-warmup": ("KL warm-up over max(2,000 steps, 20 epochs) instead of max(500 steps, 20 epochs)",
                    _long_warmup),
    "short-ema": ("weight average of decay 0.99 instead of 0.995", {"ema_decay": 0.99}),
    "large-batch": ("batches of min(512, max(64, fit rows // 10)) instead of min(256, max(32, fit rows // 20))",
                    _batch_rule(64, 512, 10)),
    "small-batch": ("batches of min(128, max(16, fit rows // 40)) instead of min(256, max(32, fit rows // 20))",
                    _batch_rule(16, 128, 40)),
    "two-members": ("2 members on one 80/20 split (seeds s and s + 104,729) instead of 3 cross-fitted members",
                    {"members": 2, "folds": 1}),
    "three-folds": ("3 cross-fitted members below 500 normal rows too, instead of 5 there", _small_table_folds(3)),
    "ten-folds": ("10 cross-fitted members below 500 normal rows, each on 90% of them, instead of 5 on 80%",
                  _small_table_folds(10)),
}  # fmt: skip
ABLATED = tuple(f"lw-vae~{name}" for name in ABLATIONS)
# Each of these undoes one default of today's trainer (the others try a change that was not adopted),
# and ``other-seed`` changes nothing but the model's seed: the noise floor the others are read against.
# ``--detectors all,undone`` is the ablation table that RESULTS.md shows.
UNDONE = tuple(
    f"lw-vae~{name}"
    for name in ("other-seed", "one-model", "three-folds", "standard-prior", "four-draws", "no-ema", "no-warmup",
                 "epoch-schedule", "step-cap", "plain-decoder", "no-clip", "short-patience")
)  # fmt: skip
KNOWN_DETECTORS = ALL_DETECTORS + ABLATED
ALPHAS = (0.01, 0.05)

TRAIN_SHARE = 0.6
MAX_TRAIN = 20_000
MAX_TEST_NORMAL = 20_000
MAX_TEST_ANOMALOUS = 5_000
OCSVM_MAX_ROWS = 5_000

MARK_START = "<!-- detection:start -->"
MARK_END = "<!-- detection:end -->"

Scorer = Callable[[np.ndarray], np.ndarray]
Record = dict[str, Any]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """Feature columns (label dropped) and labels (1 = anomaly) of one benchmark table."""

    name: str
    kind: str  # "adbench" or "mixed"
    frame: pd.DataFrame
    y: np.ndarray


def short_name(stem: str) -> str:
    """``14_glass`` -> ``glass``; mixed names are kept."""
    head, _, tail = stem.partition("_")
    return tail if head.isdigit() and tail else stem


def default_data_root() -> Path:
    """``$LATENTWATCH_DATASETS`` or ``../shared/datasets`` beside the repository."""
    env = os.environ.get("LATENTWATCH_DATASETS")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


def dataset_path(root: Path, name: str) -> Path:
    """File of dataset ``name`` (a short name such as ``glass`` or ``bank``)."""
    if name in MIXED:
        return root / "mixed" / f"{name}.csv"
    stems = {short_name(s): s for s in ADBENCH}
    return root / "adbench" / f"{stems[name]}.npz"


@functools.lru_cache(maxsize=4)
def load_dataset(root: Path, name: str) -> Dataset:
    """Load ``name``: ADBench columns as float ``f0..f{d-1}``; mixed columns as they are."""
    path = dataset_path(root, name)
    if name in MIXED:
        table = pd.read_csv(path)
        y = table.pop(LABEL_COLUMN).to_numpy(dtype=np.int64)
        return Dataset(name, "mixed", table, y)
    with np.load(path) as arrays:
        x = np.asarray(arrays["X"], dtype=np.float64)
        y = np.asarray(arrays["y"], dtype=np.int64)
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])])
    return Dataset(name, "adbench", frame, y)


def split_indices(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices under the shared protocol (train rows are all normal)."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    anomalous = rng.permutation(np.flatnonzero(y == 1))
    n_train = int(TRAIN_SHARE * len(normal))
    train = normal[:n_train][:MAX_TRAIN]
    test = np.concatenate([normal[n_train:][:MAX_TEST_NORMAL], anomalous[:MAX_TEST_ANOMALOUS]])
    return train, test


def baseline_matrices(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One-hot the non-numeric columns (fit on train), then standardize with train mean/std."""
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c for c in train.columns if pd.api.types.is_numeric_dtype(train[c])]
    other = [c for c in train.columns if c not in numeric]
    x_train = [train[numeric].to_numpy(dtype=np.float64)]
    x_test = [test[numeric].to_numpy(dtype=np.float64)]
    if other:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        x_train.append(encoder.fit_transform(train[other].astype(str)))
        x_test.append(encoder.transform(test[other].astype(str)))
    a, b = np.hstack(x_train), np.hstack(x_test)
    mean, std = a.mean(axis=0), a.std(axis=0)
    std[std == 0] = 1.0
    return (a - mean) / std, (b - mean) / std


# ---------------------------------------------------------------------- baselines


def fit_iforest(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(random_state=seed).fit(x)
    return lambda t: -model.score_samples(t)


def fit_ocsvm(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.svm import OneClassSVM

    model = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(x[:OCSVM_MAX_ROWS])
    return lambda t: -model.score_samples(t)


def fit_lof(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.neighbors import LocalOutlierFactor

    model = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(x)
    return lambda t: -model.score_samples(t)


def fit_knn(x: np.ndarray, seed: int) -> Scorer:
    """Mean distance to the 5 nearest training rows."""
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=5).fit(x)
    return lambda t: model.kneighbors(t)[0].mean(axis=1)


def fit_pca(x: np.ndarray, seed: int) -> Scorer:
    """Squared reconstruction error from the components keeping 95% of the variance."""
    from sklearn.decomposition import PCA

    model = PCA(n_components=0.95, svd_solver="full").fit(x)
    return lambda t: np.square(t - model.inverse_transform(model.transform(t))).sum(axis=1)


def torch_setup(seed: int) -> None:
    """One torch thread per process, and a seeded global generator."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)


def fit_pyod(name: str, x: np.ndarray, seed: int) -> Scorer:
    """PyOD's ``VAE`` or ``AutoEncoder`` with its defaults (verbose off, seeded)."""
    torch_setup(seed)
    if name == "pyod-vae":
        from pyod.models.vae import VAE as Model
    else:
        from pyod.models.auto_encoder import AutoEncoder as Model
    model = Model(random_state=seed, verbose=0).fit(x.astype(np.float32))
    return lambda t: model.decision_function(t.astype(np.float32))


BASELINE_FITS: dict[str, Callable[[np.ndarray, int], Scorer]] = {
    "iforest": fit_iforest,
    "ocsvm": fit_ocsvm,
    "lof": fit_lof,
    "knn": fit_knn,
    "pca": fit_pca,
    "pyod-vae": functools.partial(fit_pyod, "pyod-vae"),
    "pyod-ae": functools.partial(fit_pyod, "pyod-ae"),
}


# ------------------------------------------------------------------------ metrics


def detection_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """ROC-AUC and average precision of ``scores`` (higher = more anomalous)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        msg = f"{int((~np.isfinite(scores)).sum())} of {scores.size} scores are not finite"
        raise ValueError(msg)
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "ap": float(average_precision_score(y, scores)),
    }


def run_baseline(detector: str, ds: Dataset, seed: int) -> Record:
    """Fit ``detector`` on the train rows of ``ds`` and score its test rows."""
    train, test = split_indices(ds.y, seed)
    x_train, x_test = baseline_matrices(ds.frame.iloc[train], ds.frame.iloc[test])
    start = time.perf_counter()
    scorer = BASELINE_FITS[detector](x_train, seed)
    fitted = time.perf_counter()
    scores = scorer(x_test)
    done = time.perf_counter()
    record = detection_metrics(ds.y[test], scores)
    record |= {"fit_seconds": fitted - start, "score_seconds": done - fitted}
    return record


# -------------------------------------------------------------------- latentwatch


def ensure_repo_importable() -> None:
    """Make ``training`` and ``service`` importable when run as ``python benchmarks/...``."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


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


def lw_overrides(detector: str, n_train: int) -> dict[str, Any] | None:
    """Trainer overrides of ``lw-MODEL~ABLATION`` ({} for a plain ``lw-MODEL``).

    None: the variant trains as the default does on a table of ``n_train`` rows.
    """
    _, _, ablation = detector.partition("~")
    if not ablation:
        return {}
    overrides = ABLATIONS[ablation][1]
    return overrides(n_train) if callable(overrides) else dict(overrides)


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


def graph_speed_path(cache: Path, dataset: str = "mnist", seed: int = 0) -> Path:
    """Where the graph-speed record is cached."""
    return cache / f"graph-speed__lw-vae__{dataset}__seed{seed}.json"


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


# -------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """One (detector, dataset, seed) measurement."""

    detector: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.detector}__{self.dataset}__seed{self.seed}"


def run_task(task: Task, root: Path) -> Record:
    """Run ``task``; a failure comes back as a record with ``error`` (never cached)."""
    base = {"detector": task.detector, "dataset": task.dataset, "seed": task.seed}
    try:
        ds = load_dataset(root, task.dataset)
        run = run_latentwatch if is_latentwatch(task.detector) else run_baseline
        record = run(task.detector, ds, task.seed)
    except Exception:
        return base | {"error": traceback.format_exc()}
    train, test = split_indices(ds.y, task.seed)
    return (
        base
        | record
        | {
            "kind": ds.kind,
            "n_train": int(train.size),
            "n_test": int(test.size),
            "n_test_anomalous": int(ds.y[test].sum()),
            "cache_version": CACHE_VERSION,
            "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
    )


def limit_threads() -> None:
    """One BLAS/OpenMP thread (and one torch thread) in this process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


def read_cached(cache: Path, task: Task) -> Record | None:
    """The cached record of ``task``, or None if absent, unreadable or from an older format."""
    path = cache / f"{task.key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("cache_version") == CACHE_VERSION else None


def write_json(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` atomically: an interrupted run never leaves half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(path)


def write_cached(cache: Path, record: Record) -> None:
    """Write ``record`` atomically to the local cache (``--records`` keeps the run's records)."""
    cache.mkdir(parents=True, exist_ok=True)
    task = Task(record["detector"], record["dataset"], record["seed"])
    write_json(cache / f"{task.key}.json", record)


def run_tasks(meta: dict[str, Any]) -> list[Task]:
    """The tasks of a run, in the order its report reads them (detectors, then datasets, then seeds)."""
    seeds = [int(s) for s in str(meta["seeds"]).split(",")]
    return [Task(d, ds, s) for d in meta["detectors"] for ds in meta["datasets"] for s in seeds]


def read_records(path: Path) -> tuple[dict[str, Any], dict[str, Record]]:
    """The run described on the first line of ``path`` and its records by task key ({} and {} if absent)."""
    if not path.exists():
        return {}, {}
    meta: dict[str, Any] = {}
    records: dict[str, Record] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if "run" in item:
            meta = item["run"]
        else:
            records[Task(item["detector"], item["dataset"], item["seed"]).key] = item
    return meta, records


def write_records(path: Path, meta: dict[str, Any], records: Sequence[Record]) -> None:
    """Write the run (``meta``, first line) and its ``records`` (one per line), atomically."""
    lines = [json.dumps({"run": meta}, sort_keys=True)]
    lines += [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def seed_cache(path: Path, cache: Path) -> None:
    """Put the committed records of ``path`` into the local cache where it has none of its own."""
    meta, records = read_records(path)
    for key, record in records.items():
        if record.get("cache_version") == CACHE_VERSION and not (cache / f"{key}.json").exists():
            write_cached(cache, record)
    speed = meta.get("graph_speed")
    if speed and not graph_speed_path(cache, speed["dataset"], speed["seed"]).exists():
        cache.mkdir(parents=True, exist_ok=True)
        write_json(graph_speed_path(cache, speed["dataset"], speed["seed"]), speed)


def task_cost(task: Task, root: Path) -> float:
    """Rough relative cost, to start the slow tasks first."""
    ds = load_dataset(root, task.dataset)
    weight = 20.0 if is_latentwatch(task.detector) or task.detector in PYOD_DETECTORS else 1.0
    return weight * len(ds.y) * (ds.frame.shape[1] + 10)


def progress(items: Iterable[Any], total: int) -> Iterable[Any]:
    """tqdm if installed, else a plain counter on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(items, total)
    return tqdm(items, total=total, desc="detection", unit="task")


def _plain_progress(items: Iterable[Any], total: int) -> Iterable[Any]:
    for i, item in enumerate(items, 1):
        print(f"[{i}/{total}]", file=sys.stderr, flush=True)
        yield item


def execute(tasks: Sequence[Task], root: Path, cache: Path, jobs: int) -> list[Record]:
    """Run ``tasks`` (in ``jobs`` processes when > 1), caching each success as it lands."""
    tasks = sorted(tasks, key=lambda t: -task_cost(t, root))
    failures: list[Record] = []
    if jobs <= 1:
        limit_threads()
        done: Iterable[Record] = (run_task(t, root) for t in tasks)
        return _collect(progress(done, len(tasks)), cache, failures)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # read by the spawned workers when numpy loads
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=limit_threads) as pool:
        futures = [pool.submit(run_task, t, root) for t in tasks]
        done = (f.result() for f in as_completed(futures))
        return _collect(progress(done, len(tasks)), cache, failures)


def _collect(records: Iterable[Record], cache: Path, failures: list[Record]) -> list[Record]:
    for record in records:
        if "error" in record:
            failures.append(record)
            name = f"{record['detector']} on {record['dataset']} seed {record['seed']}"
            print(f"\nFAILED {name}:\n{record['error']}", file=sys.stderr, flush=True)
        else:
            write_cached(cache, record)
    return failures


# ------------------------------------------------------------------------- report


def result_rows(records: Iterable[Record]) -> pd.DataFrame:
    """One row per (detector or detector[score], dataset, seed) with its metrics."""
    rows = []
    for r in records:
        base = {k: r[k] for k in ("dataset", "kind", "seed", "fit_seconds", "score_seconds")}
        fpr = {f"fpr_{a}": r.get("fpr", {}).get(str(a), np.nan) for a in ALPHAS}
        metrics = {"roc_auc": r["roc_auc"], "ap": r["ap"]}
        rows.append(base | fpr | metrics | {"detector": r["detector"]})
        if "~" in r["detector"]:
            continue  # an ablation: its primary score only
        for name, m in r.get("scores", {}).items():
            rows.append(base | {"detector": f"{r['detector']}[{name}]"} | m)
    return pd.DataFrame(rows)


def is_ranked(detector: str) -> bool:
    """Score variants (``lw-vae[recon_error]``) and ablations (``lw-vae~one-draw``) are shown, not ranked."""
    return "[" not in detector and "~" not in detector


def ordered_columns(detectors: Iterable[str], order: Sequence[str]) -> list[str]:
    """Requested detectors first, in order, each followed by its score variants."""
    present = set(detectors)
    out = []
    for d in order:
        out += [c for c in [d] + [f"{d}[{s}]" for s in LW_SCORES] if c in present]
    return out


def per_dataset(rows: pd.DataFrame, metric: str, order: Sequence[str]) -> pd.DataFrame:
    """Datasets x detectors table of ``metric``, mean over seeds."""
    table = rows.pivot_table(index="dataset", columns="detector", values=metric, aggfunc="mean")
    datasets = [d for d in dict.fromkeys(rows["dataset"]) if d in table.index]
    return table.loc[datasets, ordered_columns(table.columns, order)]


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    """Mean over datasets of each ranked detector's rank (1 = best, ties averaged)."""
    ranked = table[[c for c in table.columns if is_ranked(c)]]
    return ranked.rank(axis=1, ascending=False, method="average").mean(axis=0)


def fmt(value: float, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def metric_table(table: pd.DataFrame, with_summary: bool) -> list[str]:
    """Per-dataset table (best ranked detector in bold) plus mean and mean-rank rows."""
    ranked = [c for c in table.columns if is_ranked(c)]
    body = []
    for dataset, row in table.iterrows():
        best = row[ranked].max()
        cells = [f"**{fmt(v)}**" if c in ranked and v == best else fmt(v) for c, v in row.items()]
        body.append([str(dataset), *cells])
    if with_summary:
        ranks = mean_ranks(table)
        body.append(["**mean**", *(fmt(v) for v in table.mean(axis=0))])
        body.append(["**mean rank**", *(fmt(ranks.get(c, np.nan), 2) for c in table.columns)])
    return markdown_table(["dataset", *table.columns], body)


def summary_table(rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """Per detector: mean ROC-AUC, mean AP, mean rank, datasets covered, seconds."""
    roc = per_dataset(rows, "roc_auc", order)
    ap = per_dataset(rows, "ap", order)
    ranks = mean_ranks(roc)
    seconds = rows.groupby("detector")[["fit_seconds", "score_seconds"]].mean()
    body = []
    for d in sorted(roc.columns, key=lambda c: (not is_ranked(c), ranks.get(c, 0.0))):
        fit_s, score_s = seconds.loc[d] if is_ranked(d) else (np.nan, np.nan)
        body.append([
            d, fmt(roc[d].mean()), fmt(ap[d].mean()), fmt(ranks.get(d, np.nan), 2),
            str(int(roc[d].notna().sum())), fmt(fit_s, 2), fmt(score_s, 2),
        ])  # fmt: skip
    header = ["detector", "mean ROC-AUC", "mean AP", "mean rank", "datasets", "fit s", "score s"]
    return markdown_table(header, body)


def score_comparison(roc: pd.DataFrame, model: str) -> str:
    """Which of neg_elbo / recon_error ranks better for ``model``, and by how much."""
    a, b = (f"{model}[{s}]" for s in LW_SCORES)
    if a not in roc.columns or b not in roc.columns:
        return "–"
    diff = (roc[a] - roc[b]).dropna()
    if diff.empty:
        return "–"
    better, worse = LW_SCORES if diff.mean() >= 0 else LW_SCORES[::-1]
    wins = int((diff > 0).sum()) if better == LW_SCORES[0] else int((diff < 0).sum())
    return f"{better} by {abs(diff.mean()):.3f} (wins {wins}/{diff.size} datasets over {worse})"


def lw_table(rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """latentwatch detectors: seconds, FPR at each alpha, and the better of the two scores."""
    models = [d for d in LW_DETECTORS if d in set(rows["detector"])]
    if not models:
        return []
    roc = per_dataset(rows, "roc_auc", order)
    by_model = rows[rows["detector"].isin(models)]
    by_dataset = by_model.groupby(["detector", "dataset"]).mean(numeric_only=True)
    means = by_dataset.groupby("detector").mean()
    body = []
    for m in models:
        fpr = [fmt(means.loc[m, f"fpr_{a}"]) for a in ALPHAS]
        secs = [fmt(means.loc[m, "fit_seconds"], 1), fmt(means.loc[m, "score_seconds"], 2)]
        body.append([m, *secs, *fpr, score_comparison(roc, m)])
    header = ["detector", "mean fit s", "mean score s"]
    header += [f"FPR at alpha {a}" for a in ALPHAS] + ["better score (mean ROC-AUC difference)"]
    return markdown_table(header, body)


# The detection bars (docs/decisions.md), for the default against every other ranked detector in the run.
DEFAULT_DETECTOR = "lw-vae"
ROC_AUC_MARGIN = 0.01  # over k-NN's mean ROC-AUC on the ADBench tables, on all of them and on each half
FPR_SLACK = 1.5  # false-positive rate of p < alpha on test normals: at most 1.5 x alpha
FPR_TABLE_SHARE = 0.9  # ... on average, and on at least this share of the tables
# Mean fit seconds per dataset of the default, the model that ``latentwatch train`` fits with no options;
# the other model types are rivals in the ranking.
FIT_BAR_SECONDS = 30.0


def verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def table_halves() -> dict[str, str]:
    """ADBench short name -> "odd" or "even" by its file number (benchmarks/adoption.py)."""
    return halves({short_name(stem): stem for stem in ADBENCH})


def roc_margin_lines(roc_table: pd.DataFrame, default: str) -> list[str]:
    """The default's mean ROC-AUC against k-NN's + the margin, on all tables and on each half."""
    half_of = table_halves()
    lines = []
    for label, names in (("all", list(roc_table.index)), *(
        (half, [n for n in roc_table.index if half_of.get(n) == half]) for half in ("odd", "even")
    )):  # fmt: skip
        if not names:
            continue
        part = roc_table.loc[names]
        floor = part["knn"].mean() + ROC_AUC_MARGIN
        lines.append(
            f"- ROC-AUC (ADBench, {label}: {len(names)} tables): {default} {part[default].mean():.4f}; "
            f"knn + {ROC_AUC_MARGIN} = {floor:.4f}: {verdict(part[default].mean() >= floor)}"
        )
    versus = compare(roc_table[default], roc_table["knn"], half_of)
    if versus is not None:
        lines.append(f"- {default} minus knn, table by table: {versus.summary()}")
    return lines


def fpr_line(ranked: pd.DataFrame, default: str) -> str:
    """False-positive rate of p < alpha on test normals: on average and on the share of tables within the slack."""
    by_dataset = ranked[ranked["detector"] == default].groupby("dataset").mean(numeric_only=True)
    parts, met = [], True
    for alpha in ALPHAS:
        rates = by_dataset[f"fpr_{alpha}"].dropna()
        within = float((rates <= FPR_SLACK * alpha).mean()) if rates.size else 0.0
        met &= bool(rates.mean() <= FPR_SLACK * alpha and within >= FPR_TABLE_SHARE)
        parts.append(f"{rates.mean():.3f} at {alpha} (bar {FPR_SLACK * alpha:.3f}), within it on {within:.0%}")
    return (
        f"- false-positive rate of p < alpha on test normals ({default}, mean over {len(by_dataset)} datasets; "
        f"bar: on average and on {FPR_TABLE_SHARE:.0%} of them): " + "; ".join(parts) + f": {verdict(met)}"
    )


def bar_lines(rows: pd.DataFrame) -> list[str]:
    """The bars, each with its figures and whether this run meets it (empty without the default and k-NN)."""
    ranked = rows[rows["detector"].map(is_ranked)]
    adbench, mixed = (ranked[ranked["kind"] == kind] for kind in ("adbench", "mixed"))
    default = DEFAULT_DETECTOR
    if not {default, "knn"} <= set(adbench["detector"]):
        return []
    order = sorted(set(ranked["detector"]))
    roc_table = per_dataset(adbench, "roc_auc", order).dropna()  # the tables every ranked detector covers
    ap = per_dataset(adbench, "ap", order).loc[roc_table.index].mean()
    ranks = mean_ranks(roc_table)
    rival = {name: series.drop(default) for name, series in (("ap", ap), ("rank", ranks))}
    lines = [f"- ADBench tables that every ranked detector covers: {len(roc_table)}"]
    lines += roc_margin_lines(roc_table, default)
    lines += [
        f"- AP (ADBench): {default} {ap[default]:.3f}; best other {rival['ap'].idxmax()} {rival['ap'].max():.3f}: "
        f"{verdict(ap[default] > rival['ap'].max())}",
        f"- mean rank (ADBench): {default} {ranks[default]:.2f}; best other {rival['rank'].idxmin()} "
        f"{rival['rank'].min():.2f}: {verdict(ranks[default] < rival['rank'].min())}",
    ]
    if {default, "knn", "iforest"} <= set(mixed["detector"]):
        mixed_roc = per_dataset(mixed, "roc_auc", order).mean()
        beaten = mixed_roc[default] > max(mixed_roc["knn"], mixed_roc["iforest"])
        lines.append(
            f"- ROC-AUC (mixed tables): {default} {mixed_roc[default]:.4f}; knn {mixed_roc['knn']:.4f}, "
            f"iforest {mixed_roc['iforest']:.4f}: {verdict(beaten)}"
        )
    lines.append(fpr_line(ranked, default))
    fits = ranked[ranked["detector"].isin(LW_DETECTORS)].groupby(["detector", "dataset"])["fit_seconds"].mean()
    default_fit, every_lw_fit = fits[default].mean(), fits.groupby("detector").mean().mean()
    lines.append(
        f"- fit seconds per dataset ({default}, mean over {fits[default].size} datasets, bar {FIT_BAR_SECONDS:.0f}): "
        f"{default_fit:.1f}: {verdict(default_fit <= FIT_BAR_SECONDS)}. For information, not the bar: the "
        f"{fits.index.get_level_values('detector').nunique()} latentwatch detectors' fits average {every_lw_fit:.1f}"
    )
    return lines


def collection_section(title: str, rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """Summary, per-dataset ROC-AUC and AP, and the latentwatch table of one collection."""
    if rows.empty:
        return []
    out = [f"### {title}", "", *summary_table(rows, order), ""]
    for metric, label in (("roc_auc", "ROC-AUC"), ("ap", "Average precision")):
        out += [f"#### {label} per dataset (mean over seeds)", ""]
        out += [*metric_table(per_dataset(rows, metric, order), with_summary=True), ""]
    lw = lw_table(rows, order)
    if lw:
        out += ["#### latentwatch: fit time, false-positive rate of p < alpha on test normals "
                "(mean over datasets), and neg_elbo vs recon_error", "", *lw, ""]  # fmt: skip
    return out


def ablation_table(rows: pd.DataFrame, default: str = "lw-vae") -> list[str]:
    """Each variant of the default beside it, read by the adoption rule (benchmarks/adoption.py)."""
    roc = rows.pivot_table(index="dataset", columns="detector", values="roc_auc", aggfunc="mean")
    ap = rows.pivot_table(index="dataset", columns="detector", values="ap", aggfunc="mean")
    names = [d for d in ABLATED if d in roc.columns]
    if default not in roc.columns or not names:
        return []
    half_of = table_halves()
    body = [[f"{default} (the default)", "–", fmt(roc[default].mean()), fmt(ap[default].mean()), *["–"] * 6]]
    for d in names:
        versus = compare(roc[d], roc[default], half_of)
        cells = [fmt(roc[d].mean()), fmt(ap[d].mean())]
        if versus is None:
            cells += [f"{(roc[d] - roc[default]).mean():+.4f}", *["–"] * 5]
        else:
            cells += [
                f"{versus.mean:+.4f} ({versus.standard_error:.4f})",
                *(f"{versus.by_half.get(h, np.nan):+.4f}" for h in ("odd", "even")),
                f"{versus.better} / {versus.worse} of {versus.tables}",
                f"{versus.largest_mover} {versus.largest_move:+.3f}; {versus.without_largest:+.4f}",
                "yes" if versus.adopted else "no",
            ]
        body.append([d, ABLATIONS[d.partition("~")[2]][0], *cells])
    header = ["detector", "changed", "mean ROC-AUC", "mean AP", "minus the default (s.e.)", "odd half"]
    header += ["even half", "tables better / worse", "largest mover; the mean without it", "passes the rule"]
    return markdown_table(header, body)


PACKAGES = ("numpy", "scikit-learn", "pyod", "torch", "onnxruntime-gpu", "onnxruntime")


def render_report(records: Sequence[Record], meta: dict[str, Any]) -> str:
    """The markdown section for RESULTS.md (markers included) from the run's ``records`` and ``meta``."""
    rows = result_rows(records)
    out = [MARK_START, "## Detection (novelty protocol, benchmarks/README.md)", ""]
    out += [
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; machine: {meta['machine']}; jobs: {meta['jobs']}",
        f"- packages: {meta['packages']}",
        f"- seeds: {meta['seeds']}; one thread per task; ROC-AUC/AP averaged over seeds, "
        "then over datasets; mean rank over the ranked detectors per dataset (1 = best); "
        "`detector[score]` rows are the lw models' single scores, not ranked",
        "",
    ]
    if meta.get("graph_speed"):
        out += [report_line(meta["graph_speed"]), ""]
    bars = bar_lines(rows) if not rows.empty else []
    if bars:
        out += ["The bars for the default (docs/decisions.md), from this run:", "", *bars, ""]
    if meta.get("missing"):
        out += [f"- **incomplete**: {meta['missing']} task(s) missing or failed", ""]
    if not rows.empty:
        order = meta["detectors"]
        ablations = rows["detector"].str.contains("~", regex=False)
        for kind, title in (("adbench", "ADBench"), ("mixed", "Mixed-type tables")):
            part = rows[(rows["kind"] == kind) & ~ablations]
            title = f"{title} ({part['dataset'].nunique()} datasets)"
            out += collection_section(title, part, order)
            table = ablation_table(rows[rows["kind"] == kind])
            if table:
                out += [f"#### Variants of the default ({kind}): one choice changed at a time", "", *table, ""]
    return "\n".join([*out, MARK_END]) + "\n"


# --------------------------------------------------------------------------- main


def parse_list(value: str, known: Sequence[str], aliases: dict[str, Sequence[str]]) -> list[str]:
    """Comma list of names (case-insensitive) or aliases, checked against ``known``."""
    lookup = {k.lower(): k for k in known}
    out: list[str] = []
    for item in filter(None, (v.strip() for v in value.split(","))):
        key = item.lower()
        names = aliases.get(key) or [lookup.get(key) or lookup.get(short_name(key), "")]
        if not all(names):
            msg = f"unknown name {item!r}; choose from {', '.join(known)} or {', '.join(aliases)}"
            raise argparse.ArgumentTypeError(msg)
        out += [n for n in names if n not in out]
    return out


def dataset_list(value: str) -> list[str]:
    adbench = [short_name(s) for s in ADBENCH]
    aliases = {"all": adbench + list(MIXED), "adbench": adbench, "mixed": list(MIXED)}
    return parse_list(value, adbench + list(MIXED), aliases)


def detector_list(value: str) -> list[str]:
    aliases = {
        "all": ALL_DETECTORS, "baselines": BASELINES, "sklearn": SKLEARN_DETECTORS,
        "pyod": PYOD_DETECTORS, "lw": LW_DETECTORS,
    }  # fmt: skip
    aliases["ablations"] = ABLATED
    aliases["undone"] = UNDONE
    return parse_list(value, KNOWN_DETECTORS, aliases)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--datasets",
        type=dataset_list,
        default=dataset_list("all"),
        help="comma list of short names (glass, Wilt, bank), or all/adbench/mixed",
    )
    p.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0, 1, 2])
    p.add_argument(
        "--detectors",
        type=detector_list,
        default=list(ALL_DETECTORS),
        help=f"comma list of {', '.join(ALL_DETECTORS)}, lw-vae~ABLATION ({', '.join(ABLATIONS)}), "
        "or all/baselines/pyod/lw/ablations/undone (the variants that each undo one default, and another model seed)",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (1 thread each)")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding adbench/ and mixed/ (default $LATENTWATCH_DATASETS "
        "or ../shared/datasets beside the repository)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=REPO / "benchmarks" / ".cache" / "detection",
        help="local, git-ignored: one JSON per task, so that an interrupted run resumes",
    )
    p.add_argument(
        "--records",
        type=Path,
        default=RECORDS,
        help="the run's records, one per line, which the report is rendered from (committed)",
    )
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    p.add_argument("--refresh", action="store_true", help="recompute even cached tasks")
    p.add_argument(
        "--render",
        action="store_true",
        help="only render the report from --records (no training, no datasets; the other "
        "selection options are ignored)",
    )
    p.add_argument("--no-write", action="store_true", help="print the report only (--records is left alone too)")
    return p.parse_args(argv)  # fmt: skip


def reuse_default(task: Task, root: Path, cache: Path) -> bool:
    """Cache a copy of the default's record for a variant that trains as the default on its table.

    False when the variant changes this table's training, or the default's record is missing.
    """
    default, _, ablation = task.detector.partition("~")
    if not ablation:
        return False
    train, _ = split_indices(load_dataset(root, task.dataset).y, task.seed)
    source = read_cached(cache, Task(default, task.dataset, task.seed))
    if lw_overrides(task.detector, int(train.size)) is not None or source is None:
        return False
    write_cached(cache, source | {"detector": task.detector, "same_as": default})
    return True


def plan(args: argparse.Namespace, root: Path) -> tuple[list[Task], list[Task]]:
    """All requested tasks, and those to run (not cached; lw ones only if lw imports)."""
    detectors, datasets, seeds = args.detectors, args.datasets, args.seeds
    tasks = [Task(d, ds, s) for d in detectors for ds in datasets for s in seeds]
    pending = [t for t in tasks if args.refresh or read_cached(args.cache, t) is None]
    rerun_default = args.refresh and any("~" not in d for d in detectors)  # its cached records go stale
    pending = [t for t in pending if rerun_default or not reuse_default(t, root, args.cache)]
    if any(is_latentwatch(t.detector) for t in pending) and not latentwatch_available():
        print("skipping the lw detectors' uncached tasks", file=sys.stderr)
        pending = [t for t in pending if not is_latentwatch(t.detector)]
    return tasks, pending


def render_records(path: Path) -> str:
    """The report of the run stored in ``path``, rendered again without running anything."""
    meta, by_key = read_records(path)
    if not meta:
        msg = f"{path}: no run recorded"
        raise SystemExit(msg)
    tasks = run_tasks(meta)
    records = [by_key[t.key] for t in tasks if t.key in by_key]
    return render_report(records, meta | {"missing": len(tasks) - len(records)})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 if any task failed."""
    args = parse_args(argv)
    if args.render:
        publish(render_records(args.records), args.results, MARK_START, MARK_END, write=not args.no_write)
        return 0
    root = (args.data_root or default_data_root()).resolve()
    seed_cache(args.records, args.cache)
    tasks, pending = plan(args, root)
    print(
        f"{len(tasks)} tasks, {len(pending)} to run on {args.jobs} process(es); data {root}",
        file=sys.stderr,
    )
    failures = execute(pending, root, args.cache, args.jobs) if pending else []
    records = [r for t in tasks if (r := read_cached(args.cache, t)) is not None]
    speed = None
    if "lw-vae" in args.detectors and "mnist" in args.datasets and latentwatch_available():
        speed = measure_graph_speed(root, args.cache, args.refresh)
    meta = {
        "command": shlex.join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "packages": versions(PACKAGES),
        "jobs": args.jobs,
        "seeds": ",".join(map(str, args.seeds)),
        "detectors": list(args.detectors),
        "datasets": list(args.datasets),
        "graph_speed": speed,
    }
    section = render_report(records, meta | {"missing": len(tasks) - len(records)})
    publish(section, args.results, MARK_START, MARK_END, write=not args.no_write)
    if not args.no_write:
        write_records(args.records, meta, records)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

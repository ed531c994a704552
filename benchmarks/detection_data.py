"""The detection protocol's data (benchmarks/README.md): tables, the split, matrices, metrics.

A table is an ADBench ``.npz`` or a mixed-type ``.csv`` under the data root. For each seed,
``split_indices`` keeps the first 60% of the permuted normal rows (at most 20,000) to train
and tests on the other normal rows (at most 20,000) plus at most 5,000 anomalous ones. Every
detector is fitted in a process set up the same way: one thread (``limit_threads``) and a
seeded torch (``torch_setup``).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

ADBENCH = (
    "1_ALOI", "2_annthyroid", "4_breastw", "5_campaign", "6_cardio", "7_Cardiotocography", "11_donors",
    "14_glass", "15_Hepatitis", "16_http", "18_Ionosphere", "19_landsat", "20_letter", "21_Lymphography",
    "22_magic.gamma", "23_mammography", "24_mnist", "25_musk", "26_optdigits", "27_PageBlocks",
    "28_pendigits", "29_Pima", "31_satimage-2", "32_shuttle", "34_smtp", "37_Stamps", "38_thyroid",
    "39_vertebral", "42_WBC", "43_WDBC", "44_Wilt", "45_wine",
)  # fmt: skip
MIXED = ("bank", "solar-flare", "cmc")
LABEL_COLUMN = "label"

TRAIN_SHARE = 0.6
MAX_TRAIN = 20_000
MAX_TEST_NORMAL = 20_000
MAX_TEST_ANOMALOUS = 5_000


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


def ensure_repo_importable() -> None:
    """Make ``training`` and ``service`` importable when run as ``python benchmarks/...``."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def torch_setup(seed: int) -> None:
    """One torch thread per process, and a seeded global generator."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)


def limit_threads() -> None:
    """One BLAS/OpenMP thread (and one torch thread) in this process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


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
    """Dataset short names from a comma list, or the aliases all/adbench/mixed."""
    adbench = [short_name(s) for s in ADBENCH]
    aliases = {"all": adbench + list(MIXED), "adbench": adbench, "mixed": list(MIXED)}
    return parse_list(value, adbench + list(MIXED), aliases)

"""How close synthetic rows are to the training rows, column by column (numpy only).

Each numeric column gets the two-sample Kolmogorov-Smirnov distance (the largest gap between
the two empirical CDFs); each categorical column gets the total-variation distance between
the two category frequency tables (half the sum of absolute differences, the largest gap in
probability of any set of categories). Both lie in [0, 1]: 0 = the same distribution, 1 =
disjoint. Missing values (NaN, code -1) are left out of both sides. Frequency tables list the
``MAX_LISTED`` most frequent training categories and sum the rest under ``OTHER``, so a column
with thousands of categories keeps the manifest small (the distance uses every category).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.bundle import Feature

MAX_LISTED = 20  # categories listed by name in a frequency table
OTHER = "(other categories)"


@dataclass(frozen=True)
class ColumnFidelity:
    """One column's distance between training and synthetic rows.

    Attributes:
        name: the column.
        kind: ``numeric`` or ``categorical``.
        metric: ``ks`` (numeric) or ``total_variation`` (categorical).
        distance: in [0, 1], higher = the synthetic column is further from the training one.
        training: category label -> share of training rows (categorical only; see ``MAX_LISTED``).
        synthetic: category label -> share of synthetic rows (categorical only).
    """

    name: str
    kind: str
    metric: str
    distance: float
    training: dict[str, float] | None = None
    synthetic: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry for this column (``name`` is its key there)."""
        return {k: v for k, v in asdict(self).items() if v is not None and k != "name"}


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of the finite values of ``a`` and ``b`` (NaN if either is empty)."""
    a = np.sort(np.asarray(a, dtype=np.float64)[np.isfinite(a)])
    b = np.sort(np.asarray(b, dtype=np.float64)[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def frequencies(codes: np.ndarray, n_categories: int) -> np.ndarray:
    """Share of each code ``0..n_categories-1`` among the valid codes (zeros if none)."""
    codes = np.asarray(codes, dtype=np.float64)
    valid = codes[np.isfinite(codes) & (codes >= 0) & (codes < n_categories)].astype(np.int64)
    counts = np.bincount(valid, minlength=n_categories).astype(np.float64)
    return counts / counts.sum() if counts.sum() > 0 else counts


def compare_columns(
    features: Sequence[Feature], x_training: np.ndarray, x_synthetic: np.ndarray
) -> list[ColumnFidelity]:
    """One :class:`ColumnFidelity` per feature (manifest order).

    ``x_training`` and ``x_synthetic`` are bundle inputs ``(n_rows, n_features)``: raw numeric
    values and category codes (``service.features.encode_frame``).
    """
    out = []
    for j, feature in enumerate(features):
        if feature.is_categorical:
            size = len(feature.categories)
            p, q = frequencies(x_training[:, j], size), frequencies(x_synthetic[:, j], size)
            training, synthetic = _listed(feature.categories, p, q)
            out.append(
                ColumnFidelity(
                    name=feature.name,
                    kind="categorical",
                    metric="total_variation",
                    distance=float(0.5 * np.abs(p - q).sum()),
                    training=training,
                    synthetic=synthetic,
                )
            )
        else:
            distance = ks_distance(x_training[:, j], x_synthetic[:, j])
            out.append(ColumnFidelity(name=feature.name, kind="numeric", metric="ks", distance=distance))
    return out


def _listed(categories: Sequence[object], p: np.ndarray, q: np.ndarray) -> tuple[dict, dict]:
    """Frequency tables of the ``MAX_LISTED`` most frequent training categories, the rest as ``OTHER``."""
    order = np.argsort(-p, kind="stable")
    shown, rest = order[:MAX_LISTED], order[MAX_LISTED:]
    tables = []
    for freq in (p, q):
        table = {str(categories[k]): round(float(freq[k]), 6) for k in shown}
        if rest.size:
            table[OTHER] = round(float(freq[rest].sum()), 6)
        tables.append(table)
    return tables[0], tables[1]


def worst_first(columns: Sequence[ColumnFidelity]) -> list[ColumnFidelity]:
    """Columns by decreasing distance (NaN last)."""
    return sorted(columns, key=lambda c: -c.distance if np.isfinite(c.distance) else np.inf)


def summary(columns: Sequence[ColumnFidelity], n_synthetic: int, n_training: int, seed: int) -> dict[str, Any]:
    """The manifest's ``training["synthetic_vs_training"]`` entry."""
    finite = [c.distance for c in columns if np.isfinite(c.distance)]
    return {
        "synthetic_rows": n_synthetic,
        "training_rows": n_training,
        "seed": seed,
        "metrics": {"numeric": "ks (two-sample Kolmogorov-Smirnov)", "categorical": "total_variation"},
        "max_distance": max(finite) if finite else None,
        "mean_distance": float(np.mean(finite)) if finite else None,
        "columns": {c.name: c.to_dict() for c in columns},
    }

"""Small helpers shared by the report's figures and page: finite values, shares, history series."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def finite_values(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def worst_for_missing(scores: np.ndarray) -> np.ndarray:
    finite = scores[np.isfinite(scores)]
    worst = (finite.max() + 1.0) if finite.size else 0.0
    best = (finite.min() - 1.0) if finite.size else 0.0
    return np.nan_to_num(scores, nan=worst, posinf=worst, neginf=best)


def as_2d(latent: np.ndarray) -> np.ndarray:
    array = np.asarray(latent, dtype=np.float64)
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"latents must be (n_rows, latent_dim), got shape {array.shape}")
    return array


def share_above(scores: np.ndarray, threshold: float) -> str:
    if scores.size == 0:
        return "n/a"
    above = int(np.count_nonzero(scores > threshold))
    return f"{above} of {scores.size} ({100.0 * above / scores.size:.1f}%)"


def history_keys(history: Sequence[Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for entry in history:
        seen.update(dict.fromkeys(entry))
    return list(seen)


def history_series(history: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
    return np.array([float(h.get(key, math.nan)) for h in history], dtype=np.float64)

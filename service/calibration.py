"""Conformal p-values, thresholds and p-value drift (numpy only).

Raw scores are higher = more anomalous. A row's p-value is the share of held-out normal
rows (the calibration set, ``n`` scores) that score at least as high, counting the row
itself: ``(1 + #{calibration >= score}) / (n + 1)``. On rows that look like the
calibration data the p-values are (super-)uniform on ``(0, 1]``, so ``p < alpha`` flags
at most a share ``alpha`` of normal rows. A low p-value means an anomalous row.

:class:`PValueWindow` keeps the most recent p-values of live traffic; its :meth:`drift`
is their Kolmogorov-Smirnov distance to Uniform(0, 1), which stays small while traffic
looks like the calibration data.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence

import numpy as np

from service.errors import BundleError

logger = logging.getLogger(__name__)


def p_values(scores: np.ndarray, calibration_scores: np.ndarray) -> np.ndarray:
    """Conformal p-values of ``scores`` against sorted calibration scores.

    Args:
        scores: ``(n_rows,)`` raw scores, higher = more anomalous; NaN where unscored.
        calibration_scores: ``(n,)`` held-out normal rows' scores, sorted ascending.

    Returns:
        ``(n_rows,)`` float64 p-values in ``[1 / (n + 1), 1]``; NaN where the score is NaN.
        Lower = more anomalous.
    """
    scores = np.asarray(scores, dtype=np.float64)
    calibration = np.asarray(calibration_scores, dtype=np.float64)
    n = calibration.shape[0]
    # Calibration scores >= s: all of them minus those strictly below s.
    at_least = n - np.searchsorted(calibration, scores, side="left")
    p = (1.0 + at_least) / (n + 1.0)
    return np.where(np.isnan(scores), np.nan, p)


def is_anomaly(p: np.ndarray, alpha: float) -> np.ndarray:
    """``p < alpha`` as a bool array of ``p``'s shape; a NaN p-value is never an anomaly."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.less(p, alpha) & ~np.isnan(p)


def score_threshold(calibration_scores: np.ndarray, alpha: float) -> float:
    """The raw score above which a row's p-value falls below ``alpha``.

    ``is_anomaly(p_values(s, cal), alpha)`` equals ``s > score_threshold(cal, alpha)`` for
    every score ``s``. ``inf`` when the calibration set is too small for ``alpha`` (even the
    highest score gets ``p = 1 / (n + 1) >= alpha``); ``-inf`` when every row is flagged.

    Args:
        calibration_scores: ``(n,)`` held-out normal rows' scores, sorted ascending.
        alpha: target false-positive rate.
    """
    calibration = np.asarray(calibration_scores, dtype=np.float64)
    n = calibration.shape[0]
    # The most calibration scores at or above s that still give p < alpha (same arithmetic
    # as p_values, so float rounding agrees).
    counts = np.arange(n + 1, dtype=np.float64)
    most = int(np.count_nonzero((1.0 + counts) / (n + 1.0) < alpha)) - 1
    if most < 0:
        return float("inf")
    if most >= n:
        return float("-inf")
    return float(calibration[n - most - 1])


def ks_uniform_distance(p: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the sample ``p`` and Uniform(0, 1).

    ``sup_t |F_n(t) - t|`` over the finite values of ``p``; NaN for an empty sample.
    0 is a perfect fit, 1 the worst.
    """
    values = np.asarray(p, dtype=np.float64).ravel()
    values = np.sort(values[np.isfinite(values)])
    n = values.shape[0]
    if n == 0:
        return float("nan")
    values = np.clip(values, 0.0, 1.0)
    steps = np.arange(1, n + 1, dtype=np.float64) / n
    above = np.max(steps - values)
    below = np.max(values - (steps - 1.0 / n))
    return float(max(above, below))


class PValueWindow:
    """The last ``size`` finite p-values seen, safe to feed from many threads."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            msg = f"PValueWindow size must be at least 1, got {size}"
            raise ValueError(msg)
        self.size = size
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, p: np.ndarray) -> None:
        """Append the finite values of ``p`` (any shape), dropping the oldest beyond ``size``."""
        values = np.asarray(p, dtype=np.float64).ravel()
        values = values[np.isfinite(values)][-self.size :]
        with self._lock:
            self._values.extend(values.tolist())

    def drift(self) -> float:
        """KS distance of the window to Uniform(0, 1); NaN while the window is empty."""
        with self._lock:
            values = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        return ks_uniform_distance(values)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


def check_calibration(scores: Sequence[float], alpha: float, source: str) -> None:
    """Calibration scores: some, every one finite, in ascending order; enough for alpha, or a warning.

    Raises:
        BundleError: naming ``source`` and the first score at fault.
    """
    if not scores:
        msg = f"{source}: calibration.scores is empty; the calibration holds no scores"
        raise BundleError(msg)
    bad = next((i for i, score in enumerate(scores) if not math.isfinite(score)), None)
    if bad is not None:
        msg = f"{source}: calibration.scores[{bad}] is {scores[bad]}; every calibration score must be a finite number"
        raise BundleError(msg)
    step = next((i for i in range(1, len(scores)) if scores[i] < scores[i - 1]), None)
    if step is not None:
        msg = (
            f"{source}: calibration.scores are not in ascending order "
            f"(position {step - 1} holds {scores[step - 1]}, position {step} holds {scores[step]})"
        )
        raise BundleError(msg)
    n = len(scores)
    if 1.0 / (n + 1.0) >= alpha:
        need = math.floor(1.0 / alpha)
        need += 1.0 / (need + 1.0) >= alpha
        logger.warning(
            "%s: calibration.scores holds %d scores, too few for alpha %g: the smallest p-value is 1/(n + 1) = %.3g, "
            "so no row is flagged at that alpha (it takes at least %d scores; a request may still ask for a larger "
            "alpha)",
            source,
            n,
            alpha,
            1.0 / (n + 1.0),
            need,
        )

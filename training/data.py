"""Choosing features and splitting rows (tables are read by ``service.tables.read_table``).

``select_features`` decides which columns are features and of what kind:

- numeric: integer and float columns (unless declared categorical);
- categorical: strings, booleans, pandas categories, and columns declared with
  ``categorical``;
- constant: a numeric column that holds one value (a sensor that never moved, a flag that
  was never set) stays a feature: a row that holds another value leaves the normal rows'
  support, and its score says so (``training.preprocess``);
- left out, with a warning: categorical columns with one category, empty columns, columns
  that look like identifiers (a string column whose values are nearly all distinct), dates
  and times. Left-out columns are passed through by batch scoring.

Rows labelled anomalous (``label_column``) are kept apart for evaluation and the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from service.errors import DataError

log = logging.getLogger(__name__)

ANOMALOUS_LABELS = frozenset({"1", "true", "yes", "anomaly", "anomalous", "outlier", "abnormal"})
NORMAL_LABELS = frozenset({"0", "false", "no", "normal", "inlier"})


def parse_labels(frame: pd.DataFrame, label_column: str, source: str) -> np.ndarray:
    """``(n_rows,)`` bool, True for anomalous rows.

    Anomalous: 1, True, ``"1"``, ``"true"``, ``"anomaly"``, ``"outlier"``, ``"yes"``;
    normal: 0, False, ``"0"``, ``"false"``, ``"normal"``, ``"no"``, ``"inlier"``
    (words compared case-insensitively).

    Raises:
        DataError: the column is missing, or a value (or a missing value) is neither.
    """
    if label_column not in frame.columns:
        msg = f"{source}: no label column {label_column!r}; the columns are {[str(c) for c in frame.columns]}"
        raise DataError(msg)
    codes, uniques = pd.factorize(frame[label_column], use_na_sentinel=True)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        msg = f"{source}: row {row}, label column {label_column!r}: the label is missing"
        raise DataError(msg)
    verdicts = np.empty(len(uniques), dtype=bool)
    for i, value in enumerate(uniques):
        key = _label_key(value)
        if key not in ANOMALOUS_LABELS and key not in NORMAL_LABELS:
            row = int(np.flatnonzero(codes == i)[0])
            msg = (
                f"{source}: row {row}, label column {label_column!r}: {value!r} is neither "
                f"anomalous ({sorted(ANOMALOUS_LABELS)}) nor normal ({sorted(NORMAL_LABELS)})"
            )
            raise DataError(msg)
        verdicts[i] = key in ANOMALOUS_LABELS
    return verdicts[codes]


def _label_key(value: object) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if np.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str):
        return value.strip().lower()
    return None


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns are features (and their kinds) and which are left out, and why."""

    numeric: list[str]
    categorical: list[str]
    dropped: list[dict[str, str]] = field(default_factory=list)
    label_column: str | None = None

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def _missing_columns(frame: pd.DataFrame, names: Sequence[str], what: str, source: str) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        msg = f"{source}: {what} column(s) {missing} not found; the columns are {list(frame.columns)}"
        raise DataError(msg)


def _reason_to_drop(series: pd.Series, categorical: bool) -> str | None:
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        return "date or time column"
    distinct = series.nunique(dropna=True)
    if distinct == 0:
        return "no values"
    if distinct == 1 and categorical:
        return "constant column"
    if categorical and not pd.api.types.is_bool_dtype(series):
        if distinct > max(50, 0.5 * series.notna().sum()):
            return f"looks like an identifier ({distinct} distinct values)"
    return None


def plan_columns(
    frame: pd.DataFrame,
    *,
    source: str,
    label_column: str | None = None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
) -> ColumnPlan:
    """Choose the feature columns and their kinds.

    Raises:
        DataError: a named column is missing, a feature holds infinities, or no feature is left.
    """
    for names, what in ((exclude, "excluded"), (categorical, "categorical")):
        _missing_columns(frame, names, what, source)
    if label_column is not None:
        _missing_columns(frame, [label_column], "label", source)
    if features:
        _missing_columns(frame, features, "feature", source)
    candidates = list(features) if features else list(frame.columns)
    candidates = [c for c in candidates if c != label_column and c not in set(exclude)]
    numeric, cats, dropped = [], [], []
    for name in candidates:
        series = frame[name]
        is_cat = name in set(categorical) or not pd.api.types.is_numeric_dtype(series)
        is_cat = is_cat or pd.api.types.is_bool_dtype(series)
        reason = _reason_to_drop(series, is_cat)
        if reason is not None:
            log.warning("%s: column %r left out: %s", source, name, reason)
            dropped.append({"column": name, "reason": reason})
            continue
        if not is_cat:
            _check_finite(series, name, source)
        (cats if is_cat else numeric).append(name)
    if not numeric and not cats:
        msg = f"{source}: no usable feature column (left out: {dropped or 'none'})"
        raise DataError(msg)
    if not cats and all(frame[name].nunique(dropna=True) == 1 for name in numeric):
        msg = f"{source}: no usable feature column: each of {numeric} holds one value (left out: {dropped or 'none'})"
        raise DataError(msg)
    return ColumnPlan(numeric=numeric, categorical=cats, dropped=dropped, label_column=label_column)


def _check_finite(series: pd.Series, name: str, source: str) -> None:
    values = series.to_numpy(dtype=float, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        msg = (
            f"{source}: column {name!r}, row {row}: infinite value {values[row]} "
            f"({int(infinite.sum())} such rows); replace infinities by a number or leave them empty"
        )
        raise DataError(msg)


def split_rows(n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle row indices and hold out ``fraction`` of them (at least one row each side)."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_hold = round(fraction * n_rows)
    n_hold = min(max(n_hold, 1), n_rows - 1)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def fold_rows(n_rows: int, folds: int, seed: int) -> list[np.ndarray]:
    """Shuffle row indices into ``folds`` parts of near-equal size, each sorted."""
    if n_rows < 2 * folds:
        msg = f"{n_rows} normal rows cannot make {folds} folds of at least 2 rows each; use fewer folds"
        raise DataError(msg)
    order = np.random.default_rng(seed).permutation(n_rows)
    return [np.sort(part) for part in np.array_split(order, folds)]

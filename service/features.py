"""Raw columns to the bundle's input ``x``.

``encode_frame`` turns a pandas DataFrame with the manifest's feature columns into float32
``x`` of shape ``(n_rows, n_features)``: a numeric feature as its value (NaN where missing),
a categorical feature as the index of its label in ``Feature.categories``, -1 where missing,
``Feature.unseen_code`` where the label was never seen in training. The training side encodes
its own rows with the same function, so a row means the same thing everywhere.

Category labels are compared as canonical strings (:func:`canonical_labels`): ``3``, ``3.0``
and ``"3"`` are the same category; ``True`` and ``"True"`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from service import unseen as unseen_mod
from service.bundle import Feature
from service.errors import InvalidInput, quote

MISSING_CODE = -1.0


@dataclass(frozen=True)
class Encoded:
    """``x`` plus, per row, the reason it cannot be scored (``None`` for a good row).

    ``unseen`` counts, per categorical feature, the good rows' present values and those never
    seen in training.
    """

    x: np.ndarray
    errors: list[str | None]
    unseen: tuple[unseen_mod.UnseenCount, ...] = ()

    @property
    def bad_rows(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is not None]


def canonical_labels(series: pd.Series) -> pd.Series:
    """Category labels as strings (object dtype, NaN where missing)."""
    if pd.api.types.is_bool_dtype(series):
        return (
            series.astype(object).where(series.notna()).map(lambda v: v if v is np.nan or v is None else str(bool(v)))
        )
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=float)
        whole = np.isfinite(values) & (np.floor(values) == values)
        out = pd.Series(np.full(len(series), np.nan, dtype=object), index=series.index)
        out[whole] = values[whole].astype(np.int64).astype(str)
        other = np.isfinite(values) & ~whole
        out[other] = values[other].astype(str)
        return out
    if pd.api.types.is_integer_dtype(series):
        return series.astype("Int64").astype(str).where(series.notna())
    return series.map(_canonical_scalar, na_action="ignore").astype(object)


def _canonical_scalar(value: object) -> object:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return np.nan
        return str(int(value)) if float(value).is_integer() else str(float(value))
    return str(value)


def check_columns(columns: Sequence[str], features: Sequence[Feature], source: str) -> None:
    """Fail at once, listing every feature column that ``columns`` lacks."""
    present = set(columns)
    missing = [f.name for f in features if f.name not in present]
    if missing:
        msg = f"{source}: missing feature column(s) {missing}; the model expects {[f.name for f in features]}"
        raise InvalidInput(msg)


def encode_numeric(series: pd.Series, feature: Feature) -> tuple[np.ndarray, list[str | None]]:
    """Raw values as float (NaN where missing) and a reason per row that is not a number."""
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        unparseable = np.zeros(len(values), dtype=bool)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        unparseable = np.isnan(values) & series.notna().to_numpy()
    errors: list[str | None] = [None] * len(values)
    for row in np.flatnonzero(unparseable):
        errors[row] = f"column {feature.name!r}: {quote(series.iloc[row])} is not a number"
    for row in np.flatnonzero(np.isinf(values)):
        errors[row] = f"column {feature.name!r}: infinite value {values[row]}"
    return values, errors


def encode_categorical(series: pd.Series, feature: Feature) -> np.ndarray:
    """Codes as float: the label's index in ``feature.categories``, -1 if missing,
    ``feature.unseen_code`` if never seen in training."""
    return _categorical_codes(canonical_labels(series), feature)[0]


def _categorical_codes(labels: pd.Series, feature: Feature) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(n_rows,)`` float32 of canonical ``labels``, and the mask of the unseen ones."""
    codes = pd.Index(list(feature.categories)).get_indexer(labels)
    unseen = (codes < 0) & labels.notna().to_numpy()
    codes[unseen] = feature.unseen_code
    return codes.astype(np.float32), unseen


def encode_frame(
    frame: pd.DataFrame,
    features: Sequence[Feature],
    *,
    source: str = "input",
    strict: bool = True,
    row_offset: int = 0,
) -> Encoded:
    """Encode ``frame`` into ``x`` (float32, ``(n_rows, n_features)``, manifest order).

    With ``strict`` the first bad value raises :class:`InvalidInput` naming its column and
    row (counted from ``row_offset``); otherwise each bad row gets its reason in
    ``Encoded.errors`` and its values are left NaN.
    """
    check_columns(frame.columns, features, source)
    x = np.empty((len(frame), len(features)), dtype=np.float32)
    errors: list[str | None] = [None] * len(frame)
    categorical = []
    for j, feature in enumerate(features):
        column = frame[feature.name]
        if feature.is_categorical:
            labels = canonical_labels(column)
            x[:, j], unseen = _categorical_codes(labels, feature)
            categorical.append((feature, labels, unseen))
            continue
        values, column_errors = encode_numeric(column, feature)
        x[:, j] = values
        for row, reason in enumerate(column_errors):
            if reason is None or errors[row] is not None:
                continue
            if strict:
                msg = f"{source}: row {row + row_offset}, {reason}"
                raise InvalidInput(msg)
            errors[row] = reason
            x[row, j] = np.nan
    good = np.fromiter((e is None for e in errors), dtype=bool, count=len(errors))
    counts = tuple(unseen_mod.count_labels(f, labels[good], unseen[good]) for f, labels, unseen in categorical)
    return Encoded(x=x, errors=errors, unseen=counts)


def decode_codes(codes: np.ndarray, feature: Feature) -> np.ndarray:
    """Category codes (floats) back to labels (object array, None where -1)."""
    labels = np.asarray(feature.categories, dtype=object)
    index = np.rint(np.asarray(codes, dtype=float)).astype(np.int64)
    valid = (index >= 0) & (index < len(labels))
    out = np.full(index.shape, None, dtype=object)
    out[valid] = labels[index[valid]]
    return out

"""Raw columns to the bundle's input ``x``.

``encode_frame`` turns a pandas DataFrame with the manifest's feature columns into float32
``x`` of shape ``(n_rows, n_features)``: a numeric feature as its value (NaN where missing),
a categorical feature as the index of its label in ``Feature.categories``, -1 where missing,
``Feature.unseen_code`` where the label was never seen in training. The training side encodes
its own rows with the same function, so a row means the same thing everywhere.

Category labels are compared as canonical strings (:func:`canonical_labels`): ``3``, ``3.0``
and ``"3"`` are the same category; ``True`` and ``"True"`` too; and for a feature that
training saw as booleans, ``1`` and ``0`` are ``True`` and ``False``.

A number must fit float32, the graph's input type (:func:`beyond_float32`): an infinity, or
a finite number beyond about ±3.4e38 (which float32 would make infinite), cannot be scored.
The rule holds wherever rows come from (files, gRPC columns or tensors).

Where a column's type is known before its rows are read (a Parquet file's schema),
:func:`check_column_kinds` refuses one that cannot hold the values training saw: a date or
time is no feature (training leaves such columns out, and the unit is unknown), and a
categorical column of numbers cannot hold text labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from service import unseen as unseen_mod
from service.bundle import Feature
from service.errors import InvalidInput, did_you_mean, quote, quote_list

MISSING_CODE = -1.0
FLOAT32_MAX = float(np.finfo(np.float32).max)
# What a column's values are, whatever stores them (numpy, pandas, Arrow): see check_column_kinds.
KINDS = ("null", "bool", "int", "float", "string", "temporal", "other")


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
    """Fail at once, listing every feature column that ``columns`` lacks.

    The other columns are fine (they are passed through), but one whose name is close to a
    missing feature's is named with a suggestion: a renamed column.
    """
    present = set(columns)
    names = [f.name for f in features]
    missing = [n for n in names if n not in present]
    if not missing:
        return
    known = set(names)
    renamed = []
    for column in columns:
        hint = did_you_mean(column, missing) if column not in known else ""
        if hint:
            renamed.append(f"input column {quote(column)}{hint}")
    msg = f"{source}: missing feature column(s) {missing}; " + "".join(f"{r}; " for r in renamed[:8])
    msg += f"the model expects {names}"
    raise InvalidInput(msg)


def beyond_float32(values: np.ndarray) -> np.ndarray:
    """Which ``values`` cannot be scored as numbers: those infinite in float32.

    That is an infinity, or a finite number whose magnitude float32 cannot hold (beyond
    about ±3.4e38): the graph takes float32, so such a number would reach it as an infinity.
    NaN (missing) is not one of them. Returns a bool array of ``values``' shape.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isinf(np.asarray(values).astype(np.float32, copy=False))


def float32_reason(value: float) -> str:
    """Why ``value`` (one that :func:`beyond_float32` marks) cannot be scored."""
    if np.isinf(value):
        return f"infinite value {value}"
    return f"{value:g} is beyond float32's range (±{FLOAT32_MAX:.4g})"


def _number_label(label: str, *, whole: bool) -> bool:
    """Whether a column of numbers (whole numbers with ``whole``) can hold ``label``: it is a
    number's canonical label (see :func:`canonical_labels`)."""
    try:
        value = float(label)
    except ValueError:
        return False
    if not math.isfinite(value) or (whole and not value.is_integer()):
        return False
    return _canonical_scalar(value) == label


def kind_problem(feature: Feature, kind: str) -> str | None:
    """Why a column whose values are of ``kind`` (one of :data:`KINDS`) cannot feed ``feature``.

    None when it can: a numeric feature takes numbers, booleans or text (parsed row by row);
    a categorical feature takes text, or numbers and booleans where a training label is one
    (or, for a feature trained on booleans, 0 and 1).
    """
    if kind in ("null", "string"):
        return None
    if kind == "temporal":
        return (
            f"dates and times are not features (their unit is unknown); the model's "
            f"{feature.kind} feature {feature.name!r} was trained on {feature.dtype} values: store them as such"
        )
    if kind == "other":
        return f"the model's {feature.kind} feature {feature.name!r} takes numbers or text"
    if not feature.is_categorical:
        return None
    labels = feature.categories
    if kind == "bool" and any(label in ("True", "False") for label in labels):
        return None
    if kind in ("int", "float") and feature.dtype == "bool":
        return None
    if kind in ("int", "float") and any(_number_label(str(label), whole=kind == "int") for label in labels):
        return None
    return (
        f"the model's categorical feature {feature.name!r} was trained on {feature.dtype} labels "
        f"{quote_list(labels)}, none of which such a column can hold; store the labels as training saw them"
    )


def check_column_kinds(kinds: Mapping[str, tuple[str, str]], features: Sequence[Feature], source: str) -> None:
    """Refuse feature columns whose type cannot hold what training saw (see :func:`kind_problem`).

    Args:
        kinds: column name -> (its kind, one of :data:`KINDS`; its type's name, for messages).
        features: the model's features; those absent from ``kinds`` are not checked.
        source: the input's name, for messages.

    Raises:
        InvalidInput: naming every such column, its type and what the model expects.
    """
    problems = []
    for feature in features:
        if feature.name not in kinds:
            continue
        kind, type_name = kinds[feature.name]
        problem = kind_problem(feature, kind)
        if problem is not None:
            problems.append(f"column {feature.name!r} holds {type_name} values, but {problem}")
    if problems:
        msg = f"{source}: " + "; ".join(problems)
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
    for row in np.flatnonzero(beyond_float32(values)):
        errors[row] = f"column {feature.name!r}: {float32_reason(values[row])}"
    return values, errors


def encode_categorical(series: pd.Series, feature: Feature) -> np.ndarray:
    """Codes as float: the label's index in ``feature.categories``, -1 if missing,
    ``feature.unseen_code`` if never seen in training."""
    return _categorical_codes(categorical_labels(series, feature), feature)[0]


def categorical_labels(series: pd.Series, feature: Feature) -> pd.Series:
    """The canonical labels of ``series`` as training saw them: 0/1 read as booleans for a boolean feature."""
    if feature.dtype == "bool" and pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        series = series.map({1: True, 0: False})  # any other number is unseen
    return canonical_labels(series)


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
            labels = categorical_labels(column, feature)
            x[:, j], unseen = _categorical_codes(labels, feature)
            categorical.append((feature, labels, unseen))
            continue
        values, column_errors = encode_numeric(column, feature)
        with np.errstate(over="ignore"):  # a number beyond float32 becomes inf here; its row is bad
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

"""The score columns of a scored table: their names, their order and their values.

Every table of scores (``Scorer.score_frame``, batch jobs' Parquet/CSV, the gRPC client's
DataFrame) holds these columns, in this order:

- ``recon_error``, ``neg_elbo``, ``kl`` (higher = more anomalous), ``p_value`` (lower = more
  anomalous), ``is_anomaly``;
- with ``explain``: ``feature_score_<name>`` (nats) per feature, then ``expected_<name>`` per
  feature (raw units; a categorical feature's label, decoded from the graph's code, None
  where the code names no category);
- with ``latent``: ``latent_<i>`` per latent dimension.

A feature here is anything with ``name``, ``kind`` (``numeric`` or ``categorical``) and
``categories``: a manifest's :class:`~service.bundle.Feature` or the gRPC API's
``FeatureDescription``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from service.bundle import ROW_SCORES

ROW_COLUMNS = (*ROW_SCORES, "p_value", "is_anomaly")


class ColumnFeature(Protocol):
    """What the score columns need of a feature."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def categories(self) -> Sequence[Any]: ...


def feature_score_column(feature: str) -> str:
    """The column of a feature's share of the negative log-likelihood."""
    return f"feature_score_{feature}"


def expected_column(feature: str) -> str:
    """The column of the decoder's most likely value of a feature."""
    return f"expected_{feature}"


def latent_column(i: int) -> str:
    """The column of the ``i``-th coordinate of the posterior mean of z."""
    return f"latent_{i}"


def is_categorical(feature: ColumnFeature) -> bool:
    return feature.kind == "categorical"


def score_column_names(features: Sequence[ColumnFeature], latent_dim: int, *, explain: bool, latent: bool) -> list[str]:
    """Every score column's name, in table order (see the module docstring)."""
    names = list(ROW_COLUMNS)
    if explain:
        names += [feature_score_column(f.name) for f in features]
        names += [expected_column(f.name) for f in features]
    if latent:
        names += [latent_column(i) for i in range(latent_dim)]
    return names


def decode_codes(codes: np.ndarray, categories: Sequence[Any]) -> np.ndarray:
    """Category codes (floats, rounded to the nearest whole) to labels: an object array,
    None where a code names no category (-1 for missing, the unseen code, or beyond)."""
    labels = np.asarray(list(categories), dtype=object)
    index = np.rint(np.asarray(codes, dtype=float)).astype(np.int64)
    valid = (index >= 0) & (index < len(labels))
    out = np.full(index.shape, None, dtype=object)
    out[valid] = labels[index[valid]]
    return out


def score_columns(
    scores: Mapping[str, np.ndarray], features: Sequence[ColumnFeature], *, explain: bool, latent: bool
) -> dict[str, np.ndarray]:
    """Score column name -> ``(n_rows,)`` values, in table order.

    Args:
        scores: the row scores and ``p_value``, ``is_anomaly`` (each ``(n_rows,)``), and
            ``feature_scores``, ``expected`` (``(n_rows, n_features)``, codes for categoricals)
            when ``explain``, ``latent`` (``(n_rows, latent_dim)``) when ``latent``.
        features: the model's features, in ``x`` order.
        explain: add the per-feature columns.
        latent: add the latent columns.
    """
    columns = {name: scores[name] for name in ROW_COLUMNS}
    if explain:
        feature_scores, expected = scores["feature_scores"], scores["expected"]
        for j, feature in enumerate(features):
            columns[feature_score_column(feature.name)] = feature_scores[:, j]
        for j, feature in enumerate(features):
            values = expected[:, j]
            if is_categorical(feature):
                values = decode_codes(values, feature.categories)
            columns[expected_column(feature.name)] = values
    if latent:
        z = scores["latent"]
        for i in range(z.shape[1]):
            columns[latent_column(i)] = z[:, i]
    return columns

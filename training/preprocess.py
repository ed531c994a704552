"""Feature statistics and the in-graph preprocessing module.

Missing values and unseen categories (the documented policy):

- numeric: a missing value is imputed with the training median for the encoder, and an
  indicator input (1 = missing) is added for every feature that had missing values in
  training. The missing value adds nothing to the likelihood: scores are those of the
  observed part of the row.
- categorical: a missing value has code -1 and a category never seen in training code K
  (the number of categories); the encoder sees an all-zero one-hot group for both. A missing
  value adds nothing to the likelihood; an unseen one costs the row ``unseen_nats``
  (log(n + K + 1), see ``service.bundle.Feature``), charged by :meth:`Preprocessor.unseen`.
- constant (a numeric column that held one value in every training row): the networks never
  see it; any other value costs the row ``off_value_nats`` (see ``service.bundle.Feature``), a
  missing one nothing.

The features, and so ``x``'s columns, keep the training table's order. Inside the graph the
networks take the varying numeric features, then the categorical ones, and the constant ones
are scored beside them: :meth:`Preprocessor.manifest_ordered` puts per-feature outputs back in
the table's order.

Everything here runs inside the exported ONNX graph, so every consumer gets it for free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from service.bundle import Feature
from service.features import canonical_labels
from training import likelihood

CLIP = 1e4  # standardized values are clipped to +-CLIP so that squares stay finite in float32


def _dtype_name(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        values = series.dropna().to_numpy()
        return "int" if len(values) and np.all(np.floor(values) == values) else "float"
    return "string"


def fit_numeric(series: pd.Series, name: str) -> Feature:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    observed = values[~np.isnan(values)]
    constant = len(observed) > 0 and observed.min() == observed.max()
    scale = float(observed.std()) if len(observed) > 1 else 1.0
    return Feature(
        name=name,
        kind="numeric",
        dtype=_dtype_name(series),
        fill=float(np.median(observed)),
        center=float(observed[0]) if constant else float(observed.mean()),
        scale=scale if scale > 1e-12 else 1.0,
        missing_in_training=float(np.isnan(values).mean()),
        off_value_nats=math.log(len(observed) + 2) if constant else None,
    )


def fit_categorical(series: pd.Series, name: str) -> Feature:
    """Categories ordered by frequency (most frequent first), then by label."""
    labels = canonical_labels(series)
    counts = labels.value_counts(dropna=True)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Feature(
        name=name,
        kind="categorical",
        dtype=_dtype_name(series),
        categories=tuple(label for label, _ in ordered),
        missing_in_training=float(labels.isna().mean()),
        unseen_nats=math.log(int(counts.sum()) + len(ordered) + 1),
    )


def fit_features(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> tuple[Feature, ...]:
    """Fit every feature's statistics on the training rows, in ``frame``'s column order.

    That order is the bundle's, and so ``x``'s: a client that packs ``x`` in its table's column
    order gets the right scores. The graph reorders for the networks inside (:class:`Preprocessor`).
    """
    kinds = dict.fromkeys(numeric, False) | dict.fromkeys(categorical, True)
    return tuple(
        fit_categorical(frame[c], c) if kinds[c] else fit_numeric(frame[c], c) for c in frame.columns if c in kinds
    )


class Preprocessor(nn.Module):
    """Raw ``x`` ``(N, F)`` (manifest order) to the encoder's input and the decoder's targets.

    ``forward`` returns:
        enc_in: ``(N, D_in)`` standardized numerics, missing indicators, one-hot groups.
        num: ``(N, Fn)`` standardized numerics, imputed where missing.
        num_observed: ``(N, Fn)`` 1.0 where the numeric value was present.
        cat_codes: ``(N, Fc)`` long category codes, -1 where missing, K where unseen.

    The networks' order is the varying numeric features, then the categorical ones, each in
    manifest order. Constant features are not among them: :meth:`off_value` scores them, and
    :meth:`unseen` the categories never seen in training, outside the networks.
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        super().__init__()
        numeric = [i for i, f in enumerate(features) if not f.is_categorical and not f.is_constant]
        categorical = [i for i, f in enumerate(features) if f.is_categorical]
        constant = [i for i, f in enumerate(features) if f.is_constant]
        self.network_features = len(numeric) + len(categorical)
        self.group_sizes = [len(features[i].categories) for i in categorical]
        inner = numeric + categorical + constant  # the graph's order: each position's manifest column
        self.in_manifest_order = inner == sorted(inner)
        self.register_buffer("to_manifest_order", torch.tensor(np.argsort(inner).tolist(), dtype=torch.long))
        numbers = numeric + constant  # decoder.onnx lists the numeric features in manifest order
        self.numbers_in_manifest_order = numbers == sorted(numbers)
        self.register_buffer("numeric_to_manifest_order", torch.tensor(np.argsort(numbers).tolist(), dtype=torch.long))
        with_missing = [k for k, i in enumerate(numeric) if features[i].missing_in_training > 0]
        self.register_buffer("num_idx", torch.tensor(numeric, dtype=torch.long))
        self.register_buffer("cat_idx", torch.tensor(categorical, dtype=torch.long))
        self.register_buffer("indicator_idx", torch.tensor(with_missing, dtype=torch.long))
        self.register_buffer("fill", self._stat(features, numeric, "fill"))
        self.register_buffer("center", self._stat(features, numeric, "center"))
        self.register_buffer("scale", self._stat(features, numeric, "scale"))
        self.register_buffer("category_range", torch.arange(max(self.group_sizes, default=1)).float())
        self.register_buffer("const_idx", torch.tensor(constant, dtype=torch.long))
        self.register_buffer("const_value", self._stat(features, constant, "center"))
        self.register_buffer("const_nats", self._stat(features, constant, "off_value_nats"))
        # A bundle's features without unseen_nats (written before) charge nothing for an unseen value.
        unseen_nats = [float(features[i].unseen_nats or 0.0) for i in categorical]
        self.register_buffer("unseen_nats", torch.tensor(unseen_nats, dtype=torch.float32))
        self.register_buffer("group_size", torch.tensor(self.group_sizes, dtype=torch.long))

    @staticmethod
    def _stat(features: Sequence[Feature], index: list[int], key: str) -> torch.Tensor:
        return torch.tensor([float(getattr(features[i], key)) for i in index], dtype=torch.float32)

    @property
    def n_numeric(self) -> int:
        return len(self.num_idx)

    @property
    def n_constant(self) -> int:
        return len(self.const_idx)

    @property
    def n_inputs(self) -> int:
        return self.n_numeric + len(self.indicator_idx) + sum(self.group_sizes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        num, observed, indicators = self._numeric(x)
        codes = self._codes(x)
        parts = [num, indicators]
        for j, size in enumerate(self.group_sizes):
            parts.append(likelihood.one_hot(codes[:, j], self.category_range[:size]))
        return torch.cat(parts, dim=1), num, observed, codes.long()

    def manifest_ordered(self, inner: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` per-feature values in the graph's order (networks', then constants) to manifest order."""
        return inner if self.in_manifest_order else inner.index_select(-1, self.to_manifest_order)

    def numeric_manifest_ordered(self, inner: torch.Tensor) -> torch.Tensor:
        """``(..., Fn + Fk)`` numeric values (varying, then constant) to the numeric features' manifest order."""
        return inner if self.numbers_in_manifest_order else inner.index_select(-1, self.numeric_to_manifest_order)

    def unseen(self, codes: torch.Tensor) -> torch.Tensor:
        """``(N, Fc)`` nats of each categorical feature: ``unseen_nats`` where the code is K or more.

        ``codes`` are ``forward``'s ``(N, Fc)`` codes; a missing value (-1) costs nothing.
        """
        return (codes >= self.group_size).float() * self.unseen_nats

    def off_value(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, Fk)`` nats of each constant feature: ``off_value_nats`` where the value differs.

        "Differs" allows a relative 1e-6, below float32's resolution of the value; a missing
        value (NaN) does not differ.
        """
        raw = x.index_select(1, self.const_idx)
        tolerance = 1e-6 * self.const_value.abs().clamp(min=1.0)
        differs = (raw - self.const_value).abs() > tolerance
        return differs.float() * self.const_nats

    def _numeric(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardized values, the observed mask and the missing indicators (empty when no numeric)."""
        if self.n_numeric == 0:
            empty = x[:, :0]
            return empty, empty, empty
        raw = x.index_select(1, self.num_idx)
        missing = torch.isnan(raw)
        num = (torch.where(missing, self.fill.expand_as(raw), raw) - self.center) / self.scale
        indicators = missing.float().index_select(1, self.indicator_idx) if len(self.indicator_idx) else x[:, :0]
        return num.clamp(-CLIP, CLIP), (~missing).float(), indicators

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """Category codes as floats, -1 where missing, K where unseen (empty when no categorical feature)."""
        if not self.group_sizes:
            return x[:, :0]
        codes = x.index_select(1, self.cat_idx)
        return torch.where(torch.isnan(codes), torch.full_like(codes, -1.0), codes)

"""The transport-free core of the service: liveness, readiness, metadata and inference.

Both gRPC servicers (``service.grpc.scoring`` and ``service.grpc.oip``) convert their
messages to numpy and call :class:`DataPlane`; tests call it directly. ``infer`` checks the
rows against the model (shape, categorical codes, finiteness, size), sends them through the
model's micro-batcher (which runs :func:`scoring_function`: the graph plus the conformal
``p_value``), applies the request's alpha for ``is_anomaly``, and counts rows and anomalies.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from service import unseen
from service.bundle import Manifest
from service.errors import QUOTE_ITEMS, InvalidInput, ModelNotFound, did_you_mean, quote, quote_list
from service.features import beyond_float32, encode_frame, float32_reason
from service.metrics import Metrics
from service.registry import LoadedModel, ModelRegistry
from service.scorer import Scorer, Scores, resolve_alpha, threshold

logger = logging.getLogger(__name__)

SERVER_NAME = "latentwatch"
# Decoding a request of more elements than this runs in a worker thread, off the event loop
# (below it, the thread hand-off costs more than the work).
OFF_LOOP_ELEMENTS = 4096

T = TypeVar("T")


async def off_loop(fn: Callable[..., T], /, *args: Any, elements: int) -> T:
    """``fn(*args)``: in a worker thread when ``elements`` (the work's size) is large, so that
    decoding one big request never holds the event loop, and every other call, waiting."""
    if elements <= OFF_LOOP_ELEMENTS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def server_version() -> str:
    """The installed latentwatch version (``0+unknown`` when run from a bare checkout)."""
    try:
        return importlib.metadata.version("latentwatch")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class InferResult:
    """Scores of one request and the model version that produced them."""

    model: LoadedModel
    scores: Scores


@dataclass(frozen=True)
class _Layout:
    """Where a model's categorical columns are in ``x`` and how many codes each has."""

    categorical: np.ndarray  # (n_categorical,) column indices
    n_categories: np.ndarray  # (n_categorical,) category counts
    highest_code: np.ndarray  # (n_categorical,) the unseen code, or the last category's in an older bundle


class DataPlane:
    """Inference and metadata over a :class:`ModelRegistry`.

    Args:
        registry: the models being served.
        metrics: where per-row metrics go (None: not recorded).
        max_request_rows: most rows one request may carry.
    """

    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None, *, max_request_rows: int) -> None:
        self.registry = registry
        self.metrics = metrics
        self.max_request_rows = max_request_rows
        # Set when shutdown begins: readiness turns false, calls in flight still finish.
        self.shutting_down = False
        self._layouts: weakref.WeakKeyDictionary[LoadedModel, _Layout] = weakref.WeakKeyDictionary()
        self._warned_unseen: set[tuple[str, str, str]] = set()  # (model, version, column) warned of once

    # -- health and metadata --------------------------------------------------------------

    def live(self) -> bool:
        """The process is up and answering."""
        return True

    def ready(self) -> bool:
        """At least one model is loaded and the server is not shutting down."""
        return self.registry.ready and not self.shutting_down

    def model_ready(self, name: str, version: str = "") -> bool:
        """The model (version) is loaded and warmed up; False for unknown ones."""
        if self.shutting_down:
            return False
        try:
            self.registry.get(name, version)
        except ModelNotFound:
            return False
        return True

    def model(self, name: str, version: str = "") -> LoadedModel:
        """The loaded model version (the newest when ``version`` is empty).

        Raises:
            ModelNotFound: unknown model or version.
        """
        return self.registry.get(name, version)

    # -- inference ------------------------------------------------------------------------

    async def infer(self, model: LoadedModel, x: np.ndarray, alpha: float | None = None) -> InferResult:
        """Score ``x`` with ``model`` (from :meth:`model`) through its micro-batcher.

        Args:
            model: the model version to use.
            x: float32 ``(n_rows, n_features)`` in the bundle's layout (see
                :meth:`check_x`, which this calls).
            alpha: target false-positive rate in (0, 1); the bundle's alpha when None.

        Returns:
            Raw scores (higher = more anomalous), ``p_value`` (lower = more anomalous) and
            ``is_anomaly``, one per row of ``x``.

        Raises:
            InvalidInput: bad rows or alpha. ResourceExhausted: the model's queue is full.
        """
        alpha = resolve_alpha(alpha, model.manifest)
        x = self.check_x(model, x)
        self._count_unseen(model, x)
        outputs = await model.batcher.submit(x)
        scores = threshold(outputs, alpha, model.manifest.primary_score)
        if self.metrics is not None:
            anomalies = int(np.count_nonzero(scores.is_anomaly))
            self.metrics.observe_rows(model.name, model.version, x.shape[0], anomalies)
        return InferResult(model, scores)

    def check_x(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """Check rows in the bundle's ``x`` layout; return them float32 and C-contiguous.

        A numeric feature may be NaN (missing) but not infinite, nor beyond float32's range
        (the rule of :func:`service.features.beyond_float32`); a categorical feature must
        hold a whole code from -1 (missing) to its number of categories (never seen in
        training; in a bundle without ``unseen_nats``, up to that number - 1, -1 for unseen).

        Raises:
            InvalidInput: naming the model, and the row and column of the first bad value.
        """
        name = model.name
        manifest = model.manifest
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != manifest.n_features:
            msg = (
                f"model {name!r}: rows must have shape (n_rows, {manifest.n_features}), one "
                f"column per feature {manifest.feature_names}; got shape {x.shape}"
            )
            raise InvalidInput(msg)
        self.check_row_count(name, x.shape[0])
        unscorable = beyond_float32(x)  # before the cast to float32, which would make them all inf
        if unscorable.any():
            row, col = np.argwhere(unscorable)[0]
            msg = (
                f"model {name!r}: row {row}, column {manifest.feature_names[col]!r}: "
                f"{float32_reason(float(x[row, col]))} (use NaN for a missing value)"
            )
            raise InvalidInput(msg)
        x = np.ascontiguousarray(x, dtype=np.float32)
        layout = self._layout(model)
        if layout.categorical.size:
            codes = x[:, layout.categorical]
            with np.errstate(invalid="ignore"):
                good = (np.rint(codes) == codes) & (codes >= -1) & (codes <= layout.highest_code)
            if not good.all():
                row, j = np.argwhere(~good)[0]
                col = int(layout.categorical[j])
                feature = manifest.features[col]
                top = len(feature.categories)
                codes_are = f"-1 (missing) to {top} (unseen)" if feature.unseen_code == top else f"-1 to {top - 1}"
                msg = (
                    f"model {name!r}: row {row}, column {feature.name!r} is categorical: "
                    f"{x[row, col]} is not a code from {codes_are}; send labels as a named column instead"
                )
                raise InvalidInput(msg)
        return x

    def check_row_count(self, name: str, rows: int) -> None:
        """Refuse an empty request or one above ``max_request_rows``."""
        if rows == 0:
            msg = f"model {name!r}: the request holds no rows"
            raise InvalidInput(msg)
        if rows > self.max_request_rows:
            msg = (
                f"model {name!r}: the request holds {rows} rows, more than the limit of "
                f"{self.max_request_rows}; split it (or use the streaming call)"
            )
            raise InvalidInput(msg)

    def encode_columns(self, model: LoadedModel, columns: Mapping[str, Sequence | np.ndarray]) -> np.ndarray:
        """Named raw columns -> ``x`` float32 ``(n_rows, n_features)``.

        Every feature must be present, no other column may be; all columns have the same
        length. Numeric columns take numbers (or numeric text; NaN/None = missing);
        categorical columns take labels, and a label never seen in training gets the
        feature's ``unseen_code``, as the bundle contract says.

        Raises:
            InvalidInput: a missing, unknown or misspelled column (with a suggestion), unequal
                lengths, or a value that is not a number, naming column and row.
        """
        manifest = model.manifest
        check_column_names(model.name, list(columns), manifest)
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            msg = f"model {model.name!r}: columns have different lengths {lengths}"
            raise InvalidInput(msg)
        self.check_row_count(model.name, next(iter(lengths.values())))
        frame = pd.DataFrame({f.name: columns[f.name] for f in manifest.features})
        encoded = encode_frame(frame, manifest.features, source=f"model {model.name!r}")
        return encoded.x

    def _layout(self, model: LoadedModel) -> _Layout:
        layout = self._layouts.get(model)
        if layout is None:
            features = model.manifest.features
            cat = [j for j, f in enumerate(features) if f.is_categorical]
            layout = _Layout(
                categorical=np.asarray(cat, dtype=np.intp),
                n_categories=np.asarray([len(features[j].categories) for j in cat], dtype=np.float32),
                highest_code=np.asarray(
                    [max(features[j].unseen_code, len(features[j].categories) - 1) for j in cat], dtype=np.float32
                ),
            )
            self._layouts[model] = layout
        return layout

    def _count_unseen(self, model: LoadedModel, x: np.ndarray) -> None:
        """Count the request's unseen categories; warn once per column that a request sends mostly unseen."""
        if self._layout(model).categorical.size == 0:
            return
        counts = unseen.count_codes(x, model.manifest.features)
        if self.metrics is not None:
            self.metrics.observe_unseen(model.name, {c.column: c.unseen for c in counts if c.unseen})
        for count in counts:
            key = (model.name, model.version, count.column)
            if count.mostly_unseen and key not in self._warned_unseen:
                self._warned_unseen.add(key)
                for message in unseen.warnings([count], model.manifest.features):
                    logger.warning("model %r version %r: %s (said once per column)", model.name, model.version, message)


def scoring_function(
    name: str, scorer: Scorer, metrics: Metrics | None = None
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """What a model's micro-batcher runs per batch: every graph output plus ``p_value``.

    The conformal p-values (``(n_rows,)``, lower = more anomalous) do not depend on alpha,
    so they are computed once per batch, where the batch runs, and fed to the p-value
    histogram and drift window there; each request then only applies its own alpha.
    """

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        outputs = scorer.run_p_values(x)
        if metrics is not None:
            metrics.observe_p_values(name, outputs["p_value"])
        return outputs

    return run


def max_columns(n_features: int) -> int:
    """Most inputs or columns one request may carry: every feature, plus room for a few
    mistaken names that the error then lists; more is refused from the count alone."""
    return 2 * n_features + 16


def check_column_names(model: str, names: Sequence[str], manifest: Manifest) -> None:
    """Refuse duplicate, unknown or missing columns, suggesting close feature names.

    Raises:
        InvalidInput: listing every problem at once (the first few names of each kind).
    """
    expected = manifest.feature_names
    known = set(expected)
    counts = collections.Counter(names)
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    unknown = [n for n in counts if n not in known]
    missing = [n for n in expected if n not in counts]
    if not (duplicates or unknown or missing):
        return
    problems = []
    if duplicates:
        problems.append(f"duplicate column(s) {quote_list(duplicates)}")
    if missing:
        problems.append(f"missing feature column(s) {quote_list(missing)}")
    for name in unknown[:QUOTE_ITEMS]:
        problems.append(f"unknown column {quote(name)}{did_you_mean(name, missing or expected)}")
    if len(unknown) > QUOTE_ITEMS:
        problems.append(f"{len(unknown) - QUOTE_ITEMS} more unknown columns")
    msg = f"model {quote(model)}: " + "; ".join(problems) + f"; the model's features are {expected}"
    raise InvalidInput(msg)

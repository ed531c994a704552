"""Scoring pandas frames anywhere, as ``latentwatch score`` scores a file: Spark's ``mapInPandas``.

:func:`score_pandas` takes a frame and a bundle (best as a :class:`BundlePayload`, whose bytes
travel with the function to the executors) and returns the scored frame, row for row as the
local engine writes it. It imports neither dask nor ``distributed``: it works on a Spark
executor where they are not installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from service.batch.payload import BundlePayload, cached_scorer
from service.batch.rows import ScoreOptions, make_plan, score_rows
from service.bundle import Bundle


def score_pandas(
    frame: pd.DataFrame,
    bundle: BundlePayload | Bundle | str | os.PathLike[str],
    *,
    explain: bool = False,
    latent: bool = False,
    keep_columns: Sequence[str] | None = None,
    alpha: float | None = None,
    strict: bool = False,
    device: str = "auto",
    source: str = "frame",
) -> pd.DataFrame:
    """Score a pandas DataFrame as ``latentwatch score`` scores a file; for Spark's ``mapInPandas``.

    The result has ``frame``'s index and, in order, the passed-through columns (every
    non-feature column, or ``keep_columns``), ``recon_error``, ``neg_elbo``, ``kl``
    (float32, higher = more anomalous), ``p_value`` (float64, lower = more anomalous),
    ``is_anomaly``, the ``explain`` and ``latent`` columns when asked for, and ``error``
    (None, or why the row could not be scored; its scores are then NaN/None). The values
    equal those the local engine writes for the same rows.

    The scorer is opened once per process and bundle and reused, so calling this on each
    frame of an iterator costs one onnxruntime session per executor process. In Spark,
    build the payload on the driver so the bundle travels with the function::

        from service.batch.spark import BundlePayload, score_pandas

        payload = BundlePayload.from_bundle("bundles/payments")

        def score(frames):
            for frame in frames:
                yield score_pandas(frame, payload, keep_columns=["id"])

        scored = events.mapInPandas(
            score,
            "id long, recon_error float, neg_elbo float, kl float, p_value double, "
            "is_anomaly boolean, error string",
        )

    Args:
        frame: rows with the bundle's feature columns (others are passed through or ignored).
        bundle: a :class:`BundlePayload` (best where the bundle folder does not exist), a
            loaded :class:`Bundle`, or a bundle folder.
        explain: add ``feature_score_<name>`` and ``expected_<name>`` per feature.
        latent: add ``latent_<i>`` per latent dimension.
        keep_columns: columns to pass through; None = every non-feature column.
        alpha: target false-positive rate for ``is_anomaly``; None = the bundle's.
        strict: raise on the first row that cannot be scored instead of marking it.
        device: onnxruntime device: ``auto``, ``cpu`` or ``cuda``.
        source: the name used for ``frame`` in error messages.

    Raises:
        InvalidInput: a missing feature or kept column, or (with ``strict``) a bad row.
    """
    payload = bundle if isinstance(bundle, BundlePayload) else BundlePayload.from_bundle(bundle)
    scorer = cached_scorer(payload, device=device)
    options = ScoreOptions(
        keep_columns=tuple(keep_columns) if keep_columns is not None else None,
        explain=explain,
        latent=latent,
        strict=strict,
        alpha=alpha,
        device=device,
    )
    options.validate()
    names = [str(c) for c in frame.columns]
    manifest = scorer.manifest
    plan = make_plan(
        manifest.features, manifest.latent_dim, pa.schema([pa.field(n, pa.null()) for n in names]), options, source
    )
    features = frame.loc[:, [f.name for f in plan.features]]
    arrays = score_rows(features, scorer, plan, source=source, row_offset=0)
    scores = pa.Table.from_arrays(arrays, names=plan.schema.names[len(plan.passthrough) :]).to_pandas()
    scores.index = frame.index
    return pd.concat([frame.loc[:, list(plan.passthrough)], scores], axis=1)

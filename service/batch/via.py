"""Scoring through a running ``latentwatch serve`` (``latentwatch score --via HOST:PORT``).

The job reads, checks and writes files here exactly as the local engine does (same batches,
same bad-row handling, same output layout); only the rows that encode cleanly travel, over
the ``StreamScore`` RPC of :class:`service.client.Client`, in chunks, to the service, which
scores them with the same bundle. The output equals the local engine's when the service
runs the same bundle version on the same kind of device.

``--model`` names what to score: a bundle folder (its name and version are asked for, and
the served graph's sha256 must equal the folder's), or a served model as ``NAME`` (its
newest version, pinned for the whole job) or ``NAME:VERSION``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from service.batch.rows import OutputPlan, RowScorer
from service.bundle import Bundle, Feature, load_bundle
from service.client import Client
from service.errors import BundleError, ModelNotReady

CHUNK_ROWS = 8192  # rows per StreamScore message: ~2 MiB each way for 32 features with --explain
TIMEOUT_SECONDS = 600.0  # deadline of one batch's stream


@dataclass(frozen=True)
class ServedModel:
    """The model version a job scores with, as the service describes it."""

    name: str
    version: str
    features: tuple[Feature, ...]
    latent_dim: int


@contextlib.contextmanager
def connect(target: str) -> Iterator[Client]:
    """A :class:`Client` to ``target`` (``HOST:PORT``), closed afterwards."""
    with Client(target, timeout_s=TIMEOUT_SECONDS) as client:
        yield client


def _unavailable(target: str, err: grpc.RpcError) -> ModelNotReady:
    details = err.details() if hasattr(err, "details") else str(err)
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    return ModelNotReady(f"--via {target}: the service did not answer ({code}): {details}")


def resolve_model(client: Client, model: str | os.PathLike[str] | Bundle, target: str) -> ServedModel:
    """The served version that ``model`` names (see the module docstring).

    Raises:
        ModelNotFound: the service has no such model or version.
        ModelNotReady: the service cannot be reached.
        BundleError: a bundle folder's graph differs from the one served under its version.
    """
    bundle: Bundle | None = None
    if isinstance(model, Bundle) or Path(model).is_dir():
        bundle = model if isinstance(model, Bundle) else load_bundle(model)
        name, version = bundle.manifest.name, bundle.manifest.version
    else:
        name, _, version = str(model).partition(":")
    try:
        description = client.describe(name, version)
    except grpc.RpcError as err:
        raise _unavailable(target, err) from None
    if bundle is not None and description.onnx_sha256 != bundle.manifest.onnx_sha256:
        msg = (
            f"--via {target}: model {name!r} version {version!r} is served with graph sha256 "
            f"{description.onnx_sha256[:12]}..., but {bundle.path} holds {bundle.manifest.onnx_sha256[:12]}..."
        )
        raise BundleError(msg)
    features = tuple(
        Feature(name=f.name, kind=f.kind, dtype=f.dtype or "float", categories=tuple(f.categories))
        for f in description.features
    )
    return ServedModel(description.name, description.version, features, int(description.latent_dim))


def remote_scorer(client: Client, model: ServedModel, plan: OutputPlan, target: str = "") -> RowScorer:
    """A :data:`~service.batch.rows.RowScorer` that sends the good rows to the service.

    Numeric features travel as the values the local encoder read (so text numbers in a CSV
    mean the same there); categorical features as their labels.
    """
    numeric = [(j, f.name) for j, f in enumerate(plan.features) if not f.is_categorical]

    def score(frame: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        rows = frame.copy()
        for j, name in numeric:
            rows[name] = x[:, j].astype(np.float64)
        try:
            return client.score(
                rows.reset_index(drop=True),
                model.name,
                version=model.version,
                alpha=plan.alpha,
                explain=plan.explain,
                latent=plan.latent,
                batch_rows=CHUNK_ROWS,
            )
        except grpc.RpcError as err:
            raise _unavailable(target or client.target, err) from None

    return score

"""The bundle's generative side at training time: ``decoder.onnx``, its parity, and synthetic-row fidelity.

:func:`add_decoder` runs after ``model.onnx`` is exported and before the manifest is written:
it exports ``decoder.onnx`` (``training.decoder_export``), checks onnxruntime against torch on
prior draws, wide draws and the latent means of held-out rows, then samples synthetic rows
*from the exported bundle* (``service.generate``, as ``latentwatch sample`` would) and compares
them with the training rows column by column (``training.fidelity``). The manifest gets the
decoder's digest and, in its training summary, ``decoder_parity_max_relative_error`` and
``synthetic_vs_training`` (per-column distances). :func:`write_fidelity_report` adds the plot
of the worst columns to ``report/``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle import DECODER_FILE, Manifest, file_sha256
from service.features import encode_frame
from service.generate import Generator, open_decoder
from training import fidelity
from training.decoder_export import DecoderGraph, check_decoder_parity, export_decoder
from training.models import Autoencoder
from training.preprocess import Preprocessor

log = logging.getLogger(__name__)

MIN_SYNTHETIC_ROWS = 1000
MAX_SYNTHETIC_ROWS = 10_000


@dataclass(frozen=True)
class SyntheticCheck:
    """Synthetic rows beside training rows, both as bundle inputs ``(n_rows, n_features)``."""

    columns: list[fidelity.ColumnFidelity]
    x_training: np.ndarray
    x_synthetic: np.ndarray


def add_decoder(
    staging: Path,
    preprocessor: Preprocessor,
    model: Autoencoder,
    manifest: Manifest,
    holdout_latent: np.ndarray,
    x_training: np.ndarray,
    seed: int,
) -> tuple[Manifest, SyntheticCheck]:
    """Export and check ``decoder.onnx`` into ``staging``; return the completed manifest.

    ``holdout_latent`` ``(n, L)`` are held-out rows' ``latent`` outputs (parity inputs);
    ``x_training`` ``(n, F)`` the training rows as bundle inputs.

    Raises:
        RuntimeError: onnxruntime and torch disagree on the decoder.
    """
    path = staging / DECODER_FILE
    graph = DecoderGraph(preprocessor, model.cpu().eval()).eval()
    export_decoder(graph, manifest.features, manifest.latent_dim, path)
    rng = np.random.default_rng(seed + 2)
    z = np.concatenate(
        [
            rng.standard_normal((256, manifest.latent_dim)),
            3.0 * rng.standard_normal((64, manifest.latent_dim)),
            np.asarray(holdout_latent, dtype=np.float64)[:512],
        ]
    )
    parity = check_decoder_parity(graph, path, z)
    manifest = dataclasses.replace(manifest, decoder_sha256=file_sha256(path))

    n_synthetic = int(np.clip(len(x_training), MIN_SYNTHETIC_ROWS, MAX_SYNTHETIC_ROWS))
    rows = Generator(manifest, open_decoder(path, manifest)).sample(n_synthetic, seed=seed)
    x_synthetic = encode_frame(rows, manifest.features, source="synthetic rows", strict=False).x
    columns = fidelity.compare_columns(manifest.features, x_training, x_synthetic)
    training: dict[str, Any] = {
        **manifest.training,
        "decoder_parity_max_relative_error": parity,
        "synthetic_vs_training": fidelity.summary(columns, n_synthetic, len(x_training), seed),
    }
    return dataclasses.replace(manifest, training=training), SyntheticCheck(columns, x_training, x_synthetic)


def write_fidelity_report(report_dir: Path, check: SyntheticCheck, features: Any) -> None:
    """Add the synthetic-vs-training figure and table to ``report/``; never fails the run."""
    try:
        from training.report import write_synthetic_comparison

        real = {f.name: check.x_training[:, j] for j, f in enumerate(features) if not f.is_categorical}
        fake = {f.name: check.x_synthetic[:, j] for j, f in enumerate(features) if not f.is_categorical}
        write_synthetic_comparison(report_dir, check.columns, real, fake)
    except Exception as err:  # a plotting failure must not lose a trained model
        log.warning("synthetic-row report not written: %s", err)

"""One onnxruntime session for one bundle: ``x`` in, the score contract out.

:class:`Scorer` opens a verified :class:`~service.bundle.Bundle` on CUDA (when asked for
and able) or CPU, checks the graph against the manifest, warms it up, then scores
float32 ``x`` of shape ``(n_rows, n_features)`` in bounded chunks. Raw scores
(``recon_error``, ``neg_elbo``, ``kl``) are higher = more anomalous and never depend on
alpha; :meth:`Scorer.score` adds the conformal ``p_value`` and ``is_anomaly`` on top.
Every method is safe to call from many threads at once (onnxruntime sessions are).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from service import calibration
from service.bundle import (
    ARRAY_OUTPUTS,
    INPUT_NAME,
    OUTPUT_NAMES,
    ROW_SCORES,
    Bundle,
    Manifest,
    check_graph_signature,
    load_bundle,
)
from service.columns import ROW_COLUMNS, score_columns
from service.errors import BundleError, ConfigError, InvalidInput, ModelNotReady
from service.features import encode_frame
from service.validation import alpha_problem, check, device_problem, onnx_threads_problem

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Why CUDA could not start, once learnt: later sessions skip the attempt and its log noise.
_cuda_failure: str | None = None
NO_GPU = "no NVIDIA GPU on this machine"


@dataclass(frozen=True)
class Scores:
    """Scores of ``n_rows`` rows; raw scores are higher = more anomalous.

    Attributes:
        recon_error: ``(n_rows,)`` mean squared error of the standardized reconstruction.
        neg_elbo: ``(n_rows,)`` negative ELBO in nats per row.
        kl: ``(n_rows,)`` the KL term in nats.
        p_value: ``(n_rows,)`` conformal p-value of the primary score (lower = more
            anomalous); NaN where the score is NaN.
        is_anomaly: ``(n_rows,)`` bool, ``p_value < alpha``.
        feature_scores: ``(n_rows, n_features)`` per-feature negative log-likelihood, nats.
        expected: ``(n_rows, n_features)`` the decoder's most likely value per feature
            (raw units; a category's code).
        latent: ``(n_rows, latent_dim)`` posterior mean of z.
        primary_score: name of the score behind ``p_value`` (one of ``ROW_SCORES``).
        alpha: the threshold applied to ``p_value``.
    """

    recon_error: np.ndarray
    neg_elbo: np.ndarray
    kl: np.ndarray
    p_value: np.ndarray
    is_anomaly: np.ndarray
    feature_scores: np.ndarray
    expected: np.ndarray
    latent: np.ndarray
    primary_score: str = "neg_elbo"
    alpha: float = 0.01

    @property
    def primary(self) -> np.ndarray:
        """``(n_rows,)`` the primary raw score (higher = more anomalous)."""
        return getattr(self, self.primary_score)

    def __len__(self) -> int:
        return int(self.recon_error.shape[0])

    def rows(self, start: int, stop: int) -> Scores:
        """The scores of rows ``start:stop`` (views, no copy); for splitting a batch."""
        arrays = {name: values[start:stop] for name, values in self.arrays().items()}
        return dataclasses.replace(self, **arrays)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-row array by name: the row scores, ``p_value``, ``is_anomaly``, then
        ``feature_scores``, ``expected`` and ``latent``."""
        return {name: getattr(self, name) for name in _ARRAY_FIELDS}


_ARRAY_FIELDS = (*ROW_COLUMNS, *ARRAY_OUTPUTS)


def threshold(outputs: Mapping[str, np.ndarray], alpha: float, primary_score: str) -> Scores:
    """:class:`Scores` from the graph's outputs and ``p_value`` (:meth:`Scorer.run_p_values`):
    ``is_anomaly`` is ``p_value < alpha``, the one place alpha meets the scores."""
    p = outputs["p_value"]
    return Scores(
        **{name: outputs[name] for name in OUTPUT_NAMES},
        p_value=p,
        is_anomaly=calibration.is_anomaly(p, alpha),
        primary_score=primary_score,
        alpha=alpha,
    )


class Scorer:
    """Scores rows with one bundle's ONNX graph; build it with :meth:`Scorer.open`."""

    def __init__(self, bundle: Bundle, session: ort.InferenceSession, max_chunk_rows: int) -> None:
        self._bundle = bundle
        self._session = session
        self._max_chunk_rows = max_chunk_rows
        self._output_names = [o.name for o in session.get_outputs()]
        self._calibration = np.sort(np.asarray(bundle.manifest.calibration.scores, dtype=float))
        self._templates: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    @classmethod
    def open(
        cls,
        bundle: Bundle | str | os.PathLike[str],
        *,
        device: str = "auto",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        max_chunk_rows: int = 65536,
    ) -> Scorer:
        """Load (if given a path), verify and warm up a bundle.

        Args:
            bundle: a loaded :class:`Bundle` or its directory.
            device: ``auto`` (CUDA when onnxruntime can run it, else CPU with a warning),
                ``cuda`` (fail unless CUDA runs) or ``cpu``.
            intra_op_threads: onnxruntime threads within an operator (None = its default).
            inter_op_threads: onnxruntime threads across operators (None = its default).
            max_chunk_rows: most rows per onnxruntime call, bounding memory.

        Raises:
            ConfigError: a bad ``device``, thread count or chunk size.
            ModelNotReady: ``device="cuda"`` where CUDA cannot run.
            BundleError: the bundle, its digest or its graph disagree with the manifest.
        """
        _check_settings(device, intra_op_threads, inter_op_threads, max_chunk_rows)
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(Path(bundle))
        options = _session_options(intra_op_threads, inter_op_threads)
        session = _create_session(bundle, options, device)
        source = str(bundle.onnx_path)
        check_graph_signature(bundle.manifest, session.get_inputs(), session.get_outputs(), source)
        scorer = cls(bundle, session, max_chunk_rows)
        scorer._warm_up()
        logger.info(
            "opened model %s version %s on %s",
            bundle.manifest.name,
            bundle.manifest.version,
            scorer.provider,
        )
        return scorer

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def manifest(self) -> Manifest:
        return self._bundle.manifest

    @property
    def provider(self) -> str:
        """The execution provider in use, e.g. ``CUDAExecutionProvider``."""
        return self._session.get_providers()[0]

    @property
    def max_chunk_rows(self) -> int:
        return self._max_chunk_rows

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every graph output for ``x`` (``(n_rows, n_features)``, codes for categoricals).

        Returns:
            output name -> array with ``n_rows`` rows: ``(n_rows,)`` for the row scores
            (higher = more anomalous), ``(n_rows, n_features)`` for ``feature_scores`` and
            ``expected``, ``(n_rows, latent_dim)`` for ``latent``.

        Raises:
            InvalidInput: ``x`` is not numeric, not 2-D, or has the wrong number of columns.
        """
        x = self._validate(x)
        if x.shape[0] == 0:
            return {name: np.empty((0, *shape), dtype) for name, (shape, dtype) in self._templates.items()}
        step = self._max_chunk_rows
        chunks = [self._run_chunk(x[start : start + step]) for start in range(0, x.shape[0], step)]
        if len(chunks) == 1:
            return chunks[0]
        return {name: np.concatenate([c[name] for c in chunks]) for name in self._output_names}

    def score(self, x: np.ndarray, alpha: float | None = None) -> Scores:
        """Score ``x`` (``(n_rows, n_features)``) and threshold the primary score's p-value.

        Args:
            x: float32-castable rows in manifest feature order.
            alpha: target false-positive rate in (0, 1); the bundle's alpha when None.

        Raises:
            InvalidInput: bad ``x`` or ``alpha``.
        """
        alpha = resolve_alpha(alpha, self.manifest)
        return threshold(self.run_p_values(x), alpha, self.manifest.primary_score)

    def run_p_values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`run`'s outputs plus ``p_value`` (``(n_rows,)``, lower = more anomalous) of the
        primary score; alpha plays no part (:func:`threshold` applies it)."""
        outputs = self.run(x)
        outputs["p_value"] = self.p_values(outputs[self.manifest.primary_score])
        return outputs

    def p_values(self, primary_scores: np.ndarray) -> np.ndarray:
        """Conformal p-values ``(n_rows,)`` of primary scores against the bundle's calibration.

        Lower = more anomalous; they do not depend on alpha.
        """
        return calibration.p_values(primary_scores, self._calibration)

    def score_frame(
        self,
        frame: pd.DataFrame,
        alpha: float | None = None,
        *,
        explain: bool = False,
        latent: bool = False,
        source: str = "input",
    ) -> pd.DataFrame:
        """Score a DataFrame holding the manifest's feature columns (others are ignored).

        Returns:
            A frame with ``frame``'s index and columns ``recon_error``, ``neg_elbo``, ``kl``
            (higher = more anomalous), ``p_value``, ``is_anomaly``; with ``explain`` also
            ``feature_score_<name>`` (nats) and ``expected_<name>`` (raw units, labels for
            categoricals) per feature; with ``latent`` also ``latent_<i>``.

        Raises:
            InvalidInput: a missing column or a bad value, naming ``source``, column and row.
        """
        encoded = encode_frame(frame, self.manifest.features, source=source, strict=True)
        scores = self.score(encoded.x, alpha)
        columns = score_columns(scores.arrays(), self.manifest.features, explain=explain, latent=latent)
        return pd.DataFrame(columns, index=frame.index)

    def _validate(self, x: np.ndarray) -> np.ndarray:
        name = self.manifest.name
        try:
            x = np.ascontiguousarray(x, dtype=np.float32)
        except (TypeError, ValueError) as err:
            msg = f"model {name!r}: input rows cannot be read as float32 numbers: {err}"
            raise InvalidInput(msg) from None
        if x.ndim != 2:
            msg = f"model {name!r}: input must be 2-D (n_rows, n_features), got shape {x.shape}"
            raise InvalidInput(msg)
        if x.shape[1] != self.manifest.n_features:
            msg = (
                f"model {name!r}: input has {x.shape[1]} columns, but the model expects "
                f"{self.manifest.n_features} features {self.manifest.feature_names}"
            )
            raise InvalidInput(msg)
        return x

    def _run_chunk(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, {INPUT_NAME: x})
        return dict(zip(self._output_names, values, strict=True))

    def _warm_up(self) -> None:
        """Run one all-zero row; check the outputs' shapes and keep them for empty input."""
        source = str(self._bundle.onnx_path)
        try:
            outputs = self._run_chunk(np.zeros((1, self.manifest.n_features), dtype=np.float32))
        except Exception as err:
            msg = f"{source}: the graph fails on a one-row warm-up: {err}"
            raise BundleError(msg) from None
        expected = {name: () for name in ROW_SCORES}
        expected.update(
            feature_scores=(self.manifest.n_features,),
            expected=(self.manifest.n_features,),
            latent=(self.manifest.latent_dim,),
        )
        for name, tail in expected.items():
            if outputs[name].shape != (1, *tail):
                msg = f"{source}: output {name!r} has shape {outputs[name].shape} for one row, expected {(1, *tail)}"
                raise BundleError(msg)
        self._templates = {name: (v.shape[1:], v.dtype) for name, v in outputs.items()}


def _check_settings(
    device: str, intra_op_threads: int | None, inter_op_threads: int | None, max_chunk_rows: int
) -> None:
    check("device", device, device_problem(device))
    check("intra_op_threads", intra_op_threads, onnx_threads_problem(intra_op_threads))
    check("inter_op_threads", inter_op_threads, onnx_threads_problem(inter_op_threads))
    if not isinstance(max_chunk_rows, int) or max_chunk_rows < 1:
        msg = f"max_chunk_rows must be a positive integer, got {max_chunk_rows!r}"
        raise ConfigError(msg)


def _session_options(intra_op_threads: int | None, inter_op_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    return options


def _new_session(bundle: Bundle, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(bundle.onnx_path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime's own exception types do not share a base
        msg = f"{bundle.onnx_path}: onnxruntime cannot load the graph: {err}"
        raise BundleError(msg) from None


def _create_session(bundle: Bundle, options: ort.SessionOptions, device: str) -> ort.InferenceSession:
    """A session on the provider ``device`` asks for; see :meth:`Scorer.open`."""
    if device == "cpu":
        return _new_session(bundle, options, [CPU])
    session, reason = _try_cuda_session(bundle, options)
    if session is not None and session.get_providers()[0] == CUDA:
        return session
    if session is None:
        # A graph that fails on CPU too is the bundle's fault: BundleError from here.
        session = _new_session(bundle, options, [CPU])
    if device == "cuda":
        msg = f"model {bundle.manifest.name!r}: device 'cuda' was asked for, but {reason}"
        raise ModelNotReady(msg)
    level = logging.INFO if reason == NO_GPU else logging.WARNING
    logger.log(level, "model %r: scoring on CPU: %s", bundle.manifest.name, reason)
    return session


def _nvidia_device_present() -> bool:
    """Whether the NVIDIA driver exposes a device here (skips onnxruntime's noisy failed attempt)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists() or sys.platform != "linux"


def _try_cuda_session(bundle: Bundle, options: ort.SessionOptions) -> tuple[ort.InferenceSession | None, str]:
    """A session asking for CUDA (None if it failed) and why CUDA may be missing."""
    global _cuda_failure
    available = ort.get_available_providers()
    if CUDA not in available:
        return None, f"this onnxruntime offers only {available} (install onnxruntime-gpu)"
    if _cuda_failure is not None:
        return None, _cuda_failure
    if not _nvidia_device_present():
        return None, NO_GPU
    try:
        session = _new_session(bundle, options, [CUDA, CPU])
    except BundleError as err:
        return None, f"onnxruntime failed to create a CUDA session: {err.message}"
    # onnxruntime falls back to CPU silently when CUDA cannot start: check what we got.
    if session.get_providers()[0] != CUDA:
        _cuda_failure = (
            "onnxruntime lists CUDAExecutionProvider but could not start it (no GPU, or the "
            "CUDA/cuDNN libraries are missing; onnxruntime's log says which)"
        )
    return session, _cuda_failure or ""


def resolve_alpha(alpha: float | None, manifest: Manifest) -> float:
    """The request's alpha if set, else the bundle's; must lie in (0, 1).

    Raises:
        InvalidInput: an alpha outside (0, 1) or not a number.
    """
    if alpha is None:
        return manifest.calibration.alpha
    check("alpha", alpha, alpha_problem(alpha), InvalidInput)
    return float(alpha)

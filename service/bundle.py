"""The scoring bundle: ``model.onnx`` + ``manifest.json`` (+ ``report/``).

This module owns the manifest schema (a contract, see docs/architecture.md). ``training`` writes
bundles through :func:`write_manifest`; the service and batch jobs read them through
:func:`load_bundle`, which refuses a bundle whose manifest, digest or graph disagree.

The ONNX graph takes one input ``x``: float32 ``(n_rows, n_features)``, one column per
feature in manifest order, which is the training table's column order. A numeric feature is
its raw value (NaN where missing); a categorical feature is its code, the index of the value in
``Feature.categories``, -1 where missing, and ``len(categories)`` where the value was never
seen in training (:attr:`Feature.unseen_code`; -1 too in bundles written before unseen values
were scored, whose features have no ``unseen_nats``). Scaling, imputation and one-hot
encoding happen inside the graph.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import integrity
from service.calibration import check_calibration
from service.errors import BundleError
from service.integrity import INTEGRITY_KEY, file_sha256

__all__ = ["file_sha256"]  # re-exported: training hashes its graphs with it

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INPUT_NAME = "x"

# The generative graph ``decoder.onnx`` (optional; see ``service.generate``): input ``z``
# float32 ``(n_rows, latent_dim)``, a point of the latent space (``latent`` coordinates: draw
# it from N(0, I) to sample the prior). Outputs, all in raw units:
#   numeric_mean  (n_rows, n_numeric): each numeric feature's decoded mean, numeric features
#                 in manifest order (present only when the bundle has numeric features);
#   numeric_std   (n_rows, n_numeric): each numeric feature's decoded standard deviation;
#   category_probs_<j>  (n_rows, len(features[j].categories)): for the categorical feature at
#                 manifest position j, the probability of each category (in the order of
#                 ``Feature.categories``; rows sum to 1).
DECODER_FILE = "decoder.onnx"
DECODER_INPUT = "z"
NUMERIC_MEAN = "numeric_mean"
NUMERIC_STD = "numeric_std"

# Row scores (shape (n_rows,)) and per-row arrays, in the order of the graph's outputs.
ROW_SCORES = ("recon_error", "neg_elbo", "kl")
ARRAY_OUTPUTS = ("feature_scores", "expected", "latent")
OUTPUT_NAMES = ROW_SCORES + ARRAY_OUTPUTS

SCORE_DESCRIPTIONS = {
    "recon_error": "mean squared error between the standardized input and the reconstruction "
    "of the posterior mean (higher = more anomalous)",
    "neg_elbo": "negative evidence lower bound in nats per row: expected negative "
    "log-likelihood under the decoder plus KL(q(z|x) || p(z)), with fixed Monte-Carlo draws "
    "(higher = more anomalous)",
    "kl": "the KL(q(z|x) || p(z)) term alone, in nats; p(z) is the manifest's "
    "training.resolved.prior (standard: N(0, I), closed form; defensive: half N(0, I), half the "
    "fit rows' posteriors, estimated with the fixed draws, so a row's value can be slightly negative)",
    "p_value": "share of held-out normal rows scoring at least as high: (1 + count) / (n + 1)",
    "is_anomaly": "p_value below alpha (the target false-positive rate)",
    "feature_scores": "(n_rows, n_features): each feature's negative log-likelihood in nats; "
    "they sum to the reconstruction part of neg_elbo",
    "expected": "(n_rows, n_features): the decoder's most likely value of each feature, in raw "
    "units (a category's code)",
    "latent": "(n_rows, latent_dim): the posterior mean of z",
}


@dataclass(frozen=True)
class Feature:
    """One input column of ``x``.

    ``kind`` is ``numeric`` or ``categorical``. ``dtype`` is the training column's type
    (``float``, ``int``, ``bool`` or ``string``), used to turn generated rows back into
    the original types. For a numeric feature ``fill`` is the value imputed for a missing
    one and ``center``/``scale`` the standardization; for a categorical feature
    ``categories`` lists the labels whose index is the code.

    A numeric feature that held one value in every training row is *constant*: ``center`` is
    that value, and ``off_value_nats`` what a row pays in its ``neg_elbo`` for any other
    value, log(n + 2) for the n training rows that held it (Laplace's rule of succession:
    the chance that the next row breaks a run of n is 1 / (n + 2)). The model's networks never
    see a constant feature; the scoring graph adds that penalty to the row's score and to
    the feature's ``feature_scores`` column. A missing value pays nothing, as elsewhere.

    A categorical feature's ``unseen_nats`` is what a row pays for a value never seen in
    training (code ``len(categories)``): log(n + K + 1) for the n training rows holding one of
    its K categories (the rule of succession over K + 1 outcomes, "a new value" the last: each
    count plus one, so a new value's chance is 1 / (n + K + 1); a constant column is the case
    K = 1). ``None`` in bundles written before unseen values were scored: their graphs score
    an unseen value as missing, and it is encoded -1.
    """

    name: str
    kind: str
    dtype: str = "float"
    categories: tuple[Any, ...] = ()
    fill: float | None = None
    center: float | None = None
    scale: float | None = None
    missing_in_training: float = 0.0
    off_value_nats: float | None = None
    unseen_nats: float | None = None

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    @property
    def unseen_code(self) -> int:
        """The code of a category never seen in training: ``len(categories)`` where the graph
        charges it ``unseen_nats``, -1 (missing) in a bundle written before it did."""
        return len(self.categories) if self.unseen_nats is not None else -1

    @property
    def is_constant(self) -> bool:
        return self.off_value_nats is not None


@dataclass(frozen=True)
class Calibration:
    """Sorted scores of held-out normal rows, for conformal p-values of ``score``."""

    score: str
    alpha: float
    scores: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Manifest:
    """Everything a consumer needs to score with ``model.onnx`` and explain the result."""

    name: str
    version: str
    model_type: str
    features: tuple[Feature, ...]
    latent_dim: int
    calibration: Calibration
    onnx_sha256: str
    format_version: int = FORMAT_VERSION
    dropped_columns: tuple[dict[str, str], ...] = ()
    passthrough_columns: tuple[str, ...] = ()
    label_column: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, str] = field(default_factory=lambda: dict(SCORE_DESCRIPTIONS))
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    latentwatch_version: str = ""
    decoder_sha256: str | None = None  # digest of decoder.onnx; None: the bundle has no decoder
    # Digests of every other file and of each field (see service.integrity); write_manifest
    # fills it in, None until then (and in manifests written before it existed).
    integrity: dict[str, Any] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def primary_score(self) -> str:
        return self.calibration.score

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=_json_default)


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle directory."""

    path: Path
    manifest: Manifest

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def decoder_path(self) -> Path | None:
        """``decoder.onnx`` when the manifest records one (verified by :func:`load_bundle`)."""
        return self.path / DECODER_FILE if self.manifest.decoder_sha256 is not None else None


def category_probs_name(position: int) -> str:
    """``decoder.onnx``'s output name for the categorical feature at manifest ``position``."""
    return f"category_probs_{position}"


def decoder_output_names(features: tuple[Feature, ...] | list[Feature]) -> list[str]:
    """``decoder.onnx``'s output names for a manifest's ``features``, in graph order."""
    names = [NUMERIC_MEAN, NUMERIC_STD] if any(not f.is_categorical for f in features) else []
    return names + [category_probs_name(j) for j, f in enumerate(features) if f.is_categorical]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    msg = f"cannot write {type(value).__name__} to the manifest"
    raise TypeError(msg)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temporary file, then rename), with its integrity
    record: the digests of every file already in ``directory`` and of each manifest field.

    Write the bundle's other files first; files written after it (``report/``) are not covered.

    Raises:
        BundleError: the manifest would not load (say, a calibration with NaN or out of order).
    """
    directory.mkdir(parents=True, exist_ok=True)
    _check_manifest(manifest, str(directory / MANIFEST_FILE))
    data = json.loads(manifest.to_json())
    data.pop(INTEGRITY_KEY, None)
    data[INTEGRITY_KEY] = integrity.record(directory, data, MANIFEST_FILE)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w") as stream:
        stream.write(json.dumps(data, indent=2))
    Path(tmp).replace(directory / MANIFEST_FILE)


def manifest_from_dict(data: dict[str, Any], source: str = "manifest.json") -> Manifest:
    """Build a :class:`Manifest` from parsed JSON; a bad field raises :class:`BundleError`."""
    try:
        version = data["format_version"]
        if version != FORMAT_VERSION:
            msg = f"{source}: format_version {version} is not supported (this latentwatch reads {FORMAT_VERSION})"
            raise BundleError(msg)
        features = tuple(Feature(**{**f, "categories": tuple(f.get("categories", ()))}) for f in data["features"])
        calibration = Calibration(
            score=data["calibration"]["score"],
            alpha=float(data["calibration"]["alpha"]),
            scores=tuple(float(s) for s in data["calibration"]["scores"]),
        )
        # Fields a newer latentwatch added within the same format version are ignored.
        known = {f.name for f in dataclasses.fields(Manifest)} - {"features", "calibration"}
        fields = {k: v for k, v in data.items() if k in known}
        fields["dropped_columns"] = tuple(fields.get("dropped_columns", ()))
        fields["passthrough_columns"] = tuple(fields.get("passthrough_columns", ()))
        return Manifest(features=features, calibration=calibration, **fields)
    except (KeyError, TypeError, ValueError) as err:
        msg = f"{source} is not a valid latentwatch manifest: {err!s}"
        raise BundleError(msg) from None


def _check_manifest(manifest: Manifest, source: str) -> None:
    if not manifest.features:
        msg = f"{source}: the manifest lists no features"
        raise BundleError(msg)
    if manifest.calibration.score not in ROW_SCORES:
        msg = f"{source}: calibration score {manifest.calibration.score!r} is not one of {ROW_SCORES}"
        raise BundleError(msg)
    if not 0.0 < manifest.calibration.alpha < 1.0:
        msg = f"{source}: alpha {manifest.calibration.alpha} is not between 0 and 1"
        raise BundleError(msg)
    check_calibration(manifest.calibration.scores, manifest.calibration.alpha, source)
    for feature in manifest.features:
        if feature.kind not in ("numeric", "categorical"):
            msg = f"{source}: feature {feature.name!r} has unknown kind {feature.kind!r}"
            raise BundleError(msg)
        if feature.is_categorical and not feature.categories:
            msg = f"{source}: categorical feature {feature.name!r} lists no categories"
            raise BundleError(msg)
        if feature.is_constant and (feature.is_categorical or feature.center is None):
            msg = f"{source}: constant feature {feature.name!r} must be numeric with its value as center"
            raise BundleError(msg)
        if feature.unseen_nats is not None and not (feature.is_categorical and feature.unseen_nats > 0):
            msg = (
                f"{source}: feature {feature.name!r} has unseen_nats {feature.unseen_nats}; only a categorical "
                "feature has them, and they are positive"
            )
            raise BundleError(msg)


def load_bundle(directory: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle directory: the manifest's schema and calibration, the graphs'
    digests, and the integrity record over every file and field (:mod:`service.integrity`).

    A manifest without an integrity record (written before records existed) loads with a
    warning: its graphs' digests are checked, its fields cannot be.

    Raises:
        BundleError: naming the file and what disagrees.
    """
    path = Path(directory)
    manifest_path = path / MANIFEST_FILE
    onnx_path = path / ONNX_FILE
    if not path.is_dir():
        msg = f"{path}: no such bundle directory"
        raise BundleError(msg)
    for required in (manifest_path, onnx_path):
        if not required.is_file():
            msg = f"{path}: {required.name} is missing; is this a latentwatch bundle?"
            raise BundleError(msg)
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"{manifest_path}: cannot read the manifest: {err}"
        raise BundleError(msg) from None
    if not isinstance(data, dict):
        msg = f"{manifest_path}: the manifest is not a JSON object"
        raise BundleError(msg)
    manifest = manifest_from_dict(data, str(manifest_path))
    _check_manifest(manifest, str(manifest_path))
    digests: dict[Path, str] = {}

    def digest_of(file: Path) -> str:
        if file not in digests:
            digests[file] = file_sha256(file)
        return digests[file]

    digest = digest_of(onnx_path)
    if digest != manifest.onnx_sha256:
        msg = (
            f"{onnx_path}: sha256 {digest[:12]}... does not match the manifest's "
            f"{manifest.onnx_sha256[:12]}...; the graph was changed or replaced"
        )
        raise BundleError(msg)
    _check_decoder_digest(path, manifest, digest_of)
    if not integrity.check(path, data, str(manifest_path), digest_of):
        logger.warning(
            "%s has no integrity record (written before latentwatch recorded one): its graphs' digests were checked, "
            "its fields were not; retrain the bundle, or run `latentwatch sign %s` to record them as they are",
            manifest_path,
            path,
        )
    _warn_unseen_free(manifest, str(manifest_path))
    return Bundle(path=path, manifest=manifest)


def _warn_unseen_free(manifest: Manifest, source: str) -> None:
    """A bundle written before unseen categories were scored loads, and says what it cannot do."""
    free = [f.name for f in manifest.features if f.is_categorical and f.unseen_nats is None]
    if free:
        logger.warning(
            "%s predates the scoring of unseen categories: a value of %s never seen in training scores as "
            "missing (0 nats); retrain the bundle to make it count",
            source,
            free,
        )


def _check_decoder_digest(path: Path, manifest: Manifest, digest_of: Callable[[Path], str]) -> None:
    """A manifest that records ``decoder.onnx`` needs the file, with that digest."""
    if manifest.decoder_sha256 is None:
        return
    decoder_path = path / DECODER_FILE
    if not decoder_path.is_file():
        msg = f"{path}: the manifest records {DECODER_FILE}, but the file is missing"
        raise BundleError(msg)
    digest = digest_of(decoder_path)
    if digest != manifest.decoder_sha256:
        msg = (
            f"{decoder_path}: sha256 {digest[:12]}... does not match the manifest's "
            f"{manifest.decoder_sha256[:12]}...; the graph was changed or replaced"
        )
        raise BundleError(msg)


def check_graph_signature(manifest: Manifest, inputs: list[Any], outputs: list[Any], source: str) -> None:
    """Check an onnxruntime session's inputs/outputs against the manifest.

    ``inputs``/``outputs`` are ``session.get_inputs()`` / ``get_outputs()`` (objects with
    ``name`` and ``shape``).
    """
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        names = [i.name for i in inputs]
        msg = f"{source}: the graph's inputs are {names}, expected one input named 'x'"
        raise BundleError(msg)
    width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
    if width != manifest.n_features:
        msg = f"{source}: input 'x' has shape {inputs[0].shape}, but the manifest lists {manifest.n_features} features"
        raise BundleError(msg)
    missing = [name for name in OUTPUT_NAMES if name not in {o.name for o in outputs}]
    if missing:
        msg = f"{source}: the graph lacks the outputs {missing}"
        raise BundleError(msg)

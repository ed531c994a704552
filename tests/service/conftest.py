"""A small, real bundle: a hand-built ONNX graph plus a manifest written by service.bundle.

The graph has the contract's signature and simple deterministic scores, so tests can
check every number against numpy:

- ``x0 = x`` with NaN replaced by 0;
- ``feature_scores = x0 ** 2`` ``(N, F)``, ``neg_elbo = sum(x0 ** 2)``, ``recon_error =
  mean(x0 ** 2)``, ``kl = sum(|x0|)`` ``(N,)``;
- ``expected = x0`` ``(N, F)`` (so a categorical's expected code is its own code);
- ``latent = x0 @ LATENT_WEIGHTS`` ``(N, L)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.bundle import (
    ONNX_FILE,
    Calibration,
    Feature,
    Manifest,
    file_sha256,
    write_manifest,
)

FEATURES = (
    Feature(name="temperature", kind="numeric", fill=0.0, center=0.0, scale=1.0),
    Feature(name="load", kind="numeric", fill=0.0, center=0.0, scale=1.0),
    Feature(name="site", kind="categorical", dtype="string", categories=("north", "south", "east")),
)
LATENT_DIM = 2
ALPHA = 0.05
N_CALIBRATION = 2000


def latent_weights(n_features: int, latent_dim: int) -> np.ndarray:
    """``(n_features, latent_dim)`` fixed weights of the fixture's latent output."""
    return np.arange(n_features * latent_dim, dtype=np.float32).reshape(n_features, latent_dim)


def reference_outputs(x: np.ndarray, latent_dim: int = LATENT_DIM) -> dict[str, np.ndarray]:
    """What the fixture graph computes, in numpy."""
    x0 = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)
    squares = x0 * x0
    return {
        "recon_error": squares.mean(axis=1),
        "neg_elbo": squares.sum(axis=1),
        "kl": np.abs(x0).sum(axis=1),
        "feature_scores": squares,
        "expected": x0,
        "latent": x0 @ latent_weights(x0.shape[1], latent_dim),
    }


def normal_rows(n_rows: int, seed: int) -> np.ndarray:
    """``(n_rows, 3)`` rows like the fixture's calibration data: N(0, 1), N(0, 1), a code."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 3)).astype(np.float32)
    x[:, 2] = rng.integers(0, 3, size=n_rows)
    return x


def make_graph_bytes(
    n_features: int = 3,
    latent_dim: int = LATENT_DIM,
    *,
    input_name: str = "x",
    outputs: Sequence[str] = (
        "recon_error",
        "neg_elbo",
        "kl",
        "feature_scores",
        "expected",
        "latent",
    ),
) -> bytes:
    """Serialized ONNX model with the fixture's graph (a subset of outputs if asked)."""
    weights = numpy_helper.from_array(latent_weights(n_features, latent_dim), "w")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [
        helper.make_node("IsNaN", [input_name], ["nan_mask"]),
        helper.make_node("Where", ["nan_mask", "zero", input_name], ["x0"]),
        helper.make_node("Mul", ["x0", "x0"], ["feature_scores"]),
        helper.make_node("ReduceSum", ["feature_scores", "axes"], ["neg_elbo"], keepdims=0),
        helper.make_node("ReduceMean", ["feature_scores"], ["recon_error"], axes=[1], keepdims=0),
        helper.make_node("Abs", ["x0"], ["abs_x0"]),
        helper.make_node("ReduceSum", ["abs_x0", "axes"], ["kl"], keepdims=0),
        helper.make_node("Identity", ["x0"], ["expected"]),
        helper.make_node("MatMul", ["x0", "w"], ["latent"]),
    ]
    shapes = {
        "recon_error": ["N"],
        "neg_elbo": ["N"],
        "kl": ["N"],
        "feature_scores": ["N", n_features],
        "expected": ["N", n_features],
        "latent": ["N", latent_dim],
    }
    graph = helper.make_graph(
        nodes,
        "latentwatch_fixture",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in outputs],
        initializer=[weights, axes, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def calibration_scores(n_rows: int = N_CALIBRATION, seed: int = 0) -> tuple[float, ...]:
    """Sorted neg_elbo of fresh normal rows: the fixture bundle's calibration."""
    return tuple(np.sort(reference_outputs(normal_rows(n_rows, seed))["neg_elbo"]).tolist())


def write_bundle(
    directory: Path,
    graph: bytes | None = None,
    *,
    features: Sequence[Feature] = FEATURES,
    latent_dim: int = LATENT_DIM,
    alpha: float = ALPHA,
    scores: Sequence[float] | None = None,
    training: dict | None = None,
) -> Path:
    """Write ``model.onnx`` and a manifest holding its digest into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / ONNX_FILE
    onnx_path.write_bytes(graph if graph is not None else make_graph_bytes(len(features)))
    manifest = Manifest(
        name="fixture",
        version="7",
        model_type="vae",
        features=tuple(features),
        latent_dim=latent_dim,
        calibration=Calibration(
            score="neg_elbo",
            alpha=alpha,
            scores=tuple(scores) if scores is not None else calibration_scores(),
        ),
        onnx_sha256=file_sha256(onnx_path),
        dropped_columns=({"name": "serial", "reason": "unique per row"},),
        training=training
        if training is not None
        else {
            "epochs": 12,
            "steps": 480,
            "best_val_loss": 3.25,
            "seconds": 8.5,
            "settings": {"batch_size": 256, "learning_rate": 0.001},
        },
        created_at="2026-01-02T03:04:05Z",
        latentwatch_version="0.1.0",
    )
    write_manifest(directory, manifest)
    return directory


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_bundle(name, graph=None, **manifest_overrides) -> bundle dir``."""

    def make(name: str = "bundle", graph: bytes | None = None, **kwargs: object) -> Path:
        return write_bundle(tmp_path / name, graph, **kwargs)

    return make


@pytest.fixture
def bundle_dir(make_bundle: Callable[..., Path]) -> Path:
    """The default fixture bundle."""
    return make_bundle()


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAE bundle trained on :func:`mixed_table` by the project's trainer: numeric, integer,
    string and boolean features; ``manifest.json``, ``model.onnx`` and ``decoder.onnx``."""
    from tests.training.tables import QUICK, mixed_table
    from training.pipeline import train_bundle

    out = tmp_path_factory.mktemp("trained-bundle") / "bundle"
    train_bundle(mixed_table(600, seed=0), out, overrides=dict(QUICK))
    return out

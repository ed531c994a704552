"""The decoder shared by every model type: a plain MLP, or a bounded one with a linear path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from service.bundle import OUTPUT_NAMES
from service.features import encode_frame
from tests.training.tables import mixed_table
from training.export import parity_error, torch_outputs
from training.models import Architecture, Autoencoder
from training.pipeline import train_bundle


def _autoencoder(bounded: bool) -> Autoencoder:
    torch.manual_seed(0)
    arch = Architecture(
        n_inputs=4, n_numeric=4, group_sizes=(), feature_order=(0, 1, 2, 3), hidden=16, depth=2, latent_dim=2,
        min_scale=0.01, bounded_decoder=bounded,
    )  # fmt: skip
    return Autoencoder(arch)


def _mlp_part(model: Autoencoder, z: torch.Tensor) -> torch.Tensor:
    """The decoder's means less its linear path: what the hidden layers contribute."""
    mean, _ = model.decode(z)
    return mean if model.linear_path is None else mean - model.linear_path(z)


def test_a_bounded_decoder_cannot_extrapolate_a_far_code() -> None:
    model = _autoencoder(bounded=True).double()
    direction = torch.tensor([[0.6, -0.8]], dtype=torch.float64)
    with torch.no_grad():
        near, far = _mlp_part(model, 1e4 * direction), _mlp_part(model, 1e6 * direction)
        # LayerNorm forgets the scale of its input, so the hidden layers give the same row however far out.
        torch.testing.assert_close(near, far, rtol=0, atol=1e-3)
        # What grows with the code is the linear path alone, in proportion to it.
        path = model.linear_path
        torch.testing.assert_close(path(1e6 * direction), 100 * path(1e4 * direction))


def test_the_plain_decoder_has_no_norm_and_no_linear_path_and_grows_with_the_code() -> None:
    model = _autoencoder(bounded=False)
    assert model.linear_path is None
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    direction = torch.tensor([[0.6, -0.8]])
    with torch.no_grad():
        near, far = _mlp_part(model, 1e3 * direction), _mlp_part(model, 1e5 * direction)
    assert far.abs().max() > 10 * near.abs().max()


def test_only_the_decoder_is_normalized() -> None:
    model = _autoencoder(bounded=True)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.encoder.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in model.decoder.modules()) == 2  # one per hidden layer


@pytest.mark.parametrize("model", ["vae", "hvae"])
@pytest.mark.slow
def test_a_bounded_decoder_exports_and_scores_as_torch_does(tmp_path: Path, quick: dict, model: str) -> None:
    result = train_bundle(mixed_table(300), tmp_path / "b", model=model, overrides={**quick, "decoder": "bounded"})
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["settings"]["decoder"] == "bounded"
    x = encode_frame(mixed_table(100, seed=4), result.manifest.features).x
    x[:50, :3] *= 100.0  # rows far outside the training range, whose codes lie far out
    session = ort.InferenceSession(str(result.bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    ort_out = dict(zip(OUTPUT_NAMES, session.run(None, {"x": x}), strict=True))
    assert parity_error(torch_outputs(result.graph, x), ort_out) <= 1e-4
    assert np.isfinite(ort_out["neg_elbo"]).all()

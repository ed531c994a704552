"""The generative graph ``decoder.onnx``: a latent point to each feature's distribution, in raw units.

``DecoderGraph.forward(z)`` takes ``z`` ``(N, L)`` (the coordinates of the bundle's ``latent``
output; N(0, I) draws sample the prior) and returns, in the order of
``service.bundle.decoder_output_names``:

- ``numeric_mean`` ``(N, Fn)``: the decoder's mean of each numeric feature, un-standardized
  (``mean * scale + center``), numeric features in manifest order;
- ``numeric_std`` ``(N, Fn)``: the decoder's learned standard deviation of each numeric
  feature times the feature's scale (the same for every row: the variance is per feature);
  a constant feature has its value as mean and 0 as std;
- ``category_probs_<j>`` ``(N, K_j)``: softmax of the decoder's logits for the categorical
  feature at manifest position ``j``, over its categories in manifest order.

The serving side (``service.generate``) samples and interpolates with it through onnxruntime,
without torch. The export checks onnxruntime against torch like ``model.onnx``'s export does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.bundle import DECODER_INPUT, Feature, decoder_output_names
from training.export import OPSET, PARITY_RTOL, parity_error
from training.models import Autoencoder
from training.preprocess import Preprocessor


class DecoderGraph(nn.Module):
    """``z`` ``(N, L)`` -> numeric means and stds ``(N, Fn)`` (raw units), category probabilities."""

    def __init__(self, preprocessor: Preprocessor, model: Autoencoder) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pre = self.preprocessor
        mean, logits = self.model.decode(z)
        means: list[torch.Tensor] = []
        stds: list[torch.Tensor] = []
        if pre.n_numeric:
            std = torch.exp(0.5 * self.model.decoder_log_var()) * pre.scale  # (Fn,), raw units
            means.append(mean * pre.scale + pre.center)
            stds.append(std.expand_as(mean))
        if pre.n_constant:
            value = z[:, :1] * 0.0 + pre.const_value
            means.append(value)
            stds.append(value * 0.0)
        outputs = [pre.numeric_manifest_ordered(torch.cat(part, dim=-1)) for part in (means, stds) if part]
        outputs += [torch.softmax(group, dim=-1) for group in logits]
        return tuple(outputs)


def export_decoder(graph: DecoderGraph, features: Sequence[Feature], latent_dim: int, path: Path) -> list[str]:
    """Write ``graph`` as ONNX (dynamic row axis), check it with ``onnx.checker``; return output names."""
    import onnx

    graph = graph.cpu().eval()
    names = decoder_output_names(tuple(features))
    dynamic = {DECODER_INPUT: {0: "rows"}, **{name: {0: "rows"} for name in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (torch.zeros(2, latent_dim),),
            str(path),
            input_names=[DECODER_INPUT],
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return names


@torch.no_grad()
def decoder_torch_outputs(graph: DecoderGraph, z: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The torch graph's outputs for ``z`` ``(N, L)``, by output name."""
    outputs = graph.cpu().eval()(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)))
    return {name: value.numpy() for name, value in zip(names, outputs, strict=True)}


def check_decoder_parity(graph: DecoderGraph, path: Path, z: np.ndarray) -> float:
    """Largest relative difference between onnxruntime and torch on ``z`` (``training.export.parity_error``).

    Raises:
        RuntimeError: the difference exceeds ``PARITY_RTOL``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    z = np.ascontiguousarray(z, dtype=np.float32)
    ort_out = dict(zip(names, session.run(None, {DECODER_INPUT: z}), strict=True))
    pre = graph.preprocessor
    scale = pre.numeric_manifest_ordered(torch.cat([pre.scale, torch.ones(pre.n_constant)]).detach().cpu())
    scale = scale.numpy().astype(np.float64)
    units = {"numeric_mean": scale, "numeric_std": scale}  # raw units: compare in standard deviations
    worst = parity_error(decoder_torch_outputs(graph, z, names), ort_out, units)
    if not worst <= PARITY_RTOL:
        msg = f"onnxruntime and torch disagree on the exported decoder (relative error {worst:.2e})"
        raise RuntimeError(msg)
    return worst

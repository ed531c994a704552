"""The exported scoring graph: preprocessing + model + fixed draws, with the contract's outputs.

``ScoringGraph.forward(x)`` takes the bundle's raw ``x`` ``(N, F)`` and returns, in the order
of ``service.bundle.OUTPUT_NAMES``: ``recon_error`` ``(N,)``, ``neg_elbo`` ``(N,)``, ``kl``
``(N,)``, ``feature_scores`` ``(N, F)``, ``expected`` ``(N, F)``, ``latent`` ``(N, L)``, the
per-feature outputs in manifest order (the training table's). Constant features are scored
here, outside the model: their ``off_value_nats`` join ``neg_elbo`` and ``feature_scores``, and
their ``expected`` is their value. So is a category never seen in training: its feature's
``unseen_nats`` join them too (the model's likelihood skips it, as a missing value).
The Monte-Carlo draws are a buffer fixed by the seed, applied to every row the same way,
so a row's scores never depend on the other rows of its batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.bundle import INPUT_NAME, OUTPUT_NAMES
from training import likelihood
from training.models import Autoencoder, Batch
from training.preprocess import Preprocessor

OPSET = 17
# A broken export (a wrong op, lost draws) is off by O(0.1) or more. float32 rounding is
# far smaller, but rows 10 standard deviations out make residuals a small difference of large
# terms: a correct AE export on optdigits measured 1.5e-4, so the bar sits at 1e-3.
PARITY_RTOL = 1e-3
# How far two runtimes' float32 rounding may move a member's total (neg_elbo), relative to
# the largest member total of the row: about 16 float32 ulps.
MEMBER_TOTAL_ROUNDING = 1e-6


class ScoringGraph(nn.Module):
    def __init__(self, preprocessor: Preprocessor, model: Autoencoder, eps: torch.Tensor) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.model = model
        self.register_buffer("eps", eps)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The contract's outputs, in order."""
        return OUTPUT_NAMES

    def preprocess(self, x: torch.Tensor) -> Batch:
        return Batch(*self.preprocessor(x))

    def reconstruction(self, batch: Batch, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``recon_error`` ``(N,)`` and ``expected`` ``(N, F)`` from decoding the posterior mean."""
        mean, logits = self.model.decode(mu)
        squared, counted, expected = [], mu[:, 0] * 0.0, []
        if self.preprocessor.n_numeric:
            squared.append((batch.num - mean).pow(2) * batch.observed)
            counted = counted + batch.observed.sum(-1)
            expected.append(mean * self.preprocessor.scale + self.preprocessor.center)
        for j, group in enumerate(logits):
            size = group.shape[-1]
            code = batch.codes[:, j]
            # An unseen category is a one-hot "other" entry the decoder gives no probability: it adds 1.
            present, unseen = (code >= 0).float(), (code >= size).float()
            one_hot = likelihood.one_hot(code, self.preprocessor.category_range[:size])
            error = ((one_hot - torch.softmax(group, dim=-1)).pow(2).sum(-1) + unseen) * present
            squared.append(error.unsqueeze(-1))
            counted = counted + present
            expected.append(group.argmax(-1, keepdim=True).float())
        recon_error = torch.cat(squared, dim=-1).sum(-1) / counted.clamp(min=1.0)
        expected_all = self.model.manifest_ordered(expected)
        return recon_error, expected_all

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pre = self.preprocessor
        batch = self.preprocess(x)
        scores = self.model.score(batch, self.eps)
        recon_error, expected = self.reconstruction(batch, scores["latent"])
        neg_elbo, feature_scores = scores["neg_elbo"], scores["feature_scores"]
        if pre.group_sizes:
            unseen = pre.unseen(batch.codes)  # (N, Fc), the networks' last columns
            neg_elbo = neg_elbo + unseen.sum(-1)
            numeric, categorical = feature_scores[:, : pre.n_numeric], feature_scores[:, pre.n_numeric :]
            feature_scores = torch.cat([numeric, categorical + unseen], dim=-1)
        if pre.n_constant:
            off_value = pre.off_value(x)
            neg_elbo = neg_elbo + off_value.sum(-1)
            feature_scores = torch.cat([feature_scores, off_value], dim=-1)
            expected = torch.cat([expected, pre.const_value.expand_as(off_value)], dim=-1)
        return (
            recon_error,
            neg_elbo,
            scores["kl"],
            pre.manifest_ordered(feature_scores),
            pre.manifest_ordered(expected),
            scores["latent"],
        )


def export_onnx(graph: ScoringGraph, n_features: int, path: Path) -> None:
    """Write ``graph`` as ONNX with a dynamic batch axis and check it with ``onnx.checker``."""
    import onnx

    graph = graph.cpu().eval()
    example = torch.zeros(2, n_features)
    dynamic = {INPUT_NAME: {0: "rows"}, **{name: {0: "rows"} for name in graph.output_names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(graph.output_names),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@torch.no_grad()
def mixture_split_allowance(graph: ScoringGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per row, how far rounding can move the outputs a mixture splits by its members' weights.

    A mixture (``Ensemble``) weights its members' ``feature_scores``, ``kl`` and extra scores by
    the responsibilities r, a softmax of the members' totals. Where members nearly tie on a row
    tens of thousands of nats out, two runtimes that round those totals differently by d nats
    move the weights by about d, and a weighted output by up to 2 d sum_m r_m |v_m - sum_k r_k v_k|,
    which grows with the row's total when the members disagree on where its nats lie. Returns
    that bound per output, ``(N, F)`` or ``(N,)``, with d = ``MEMBER_TOTAL_ROUNDING`` times the
    row's largest member total; empty for a single model, whose outputs no weights split.
    """
    from training.models.ensemble import Ensemble

    if not isinstance(graph.model, Ensemble):
        return {}
    batch = graph.preprocess(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    each = [member.score(batch, graph.eps) for member in graph.model.members]
    totals = torch.stack([scores["neg_elbo"] for scores in each]).double()  # (members, N)
    log_r = torch.log_softmax(-totals, dim=0)
    r = log_r.exp()
    shift = 2 * MEMBER_TOTAL_ROUNDING * totals.abs().amax(0)  # (N,)

    def allowance(values: torch.Tensor) -> np.ndarray:
        weights = r.reshape(*r.shape, *[1] * (values.dim() - 2))
        spread = (weights * (values - (weights * values).sum(0)).abs()).sum(0)
        return (shift.reshape(-1, *[1] * (spread.dim() - 1)) * spread).numpy()

    # kl also holds KL(r || uniform) = sum_m r_m log r_m + log M, which moves with r as log r_m does.
    out = {"kl": allowance(torch.stack([scores["kl"] for scores in each]).double() + log_r)}
    out["feature_scores"] = allowance(torch.stack([scores["feature_scores"] for scores in each]).double())
    if graph.preprocessor.n_constant:  # constant columns are scored outside the mixture: no split
        pad = np.zeros((len(x), graph.preprocessor.n_constant))
        out["feature_scores"] = np.concatenate([out["feature_scores"], pad], axis=1)
    order = graph.preprocessor.to_manifest_order.numpy()
    out["feature_scores"] = out["feature_scores"][:, order]
    return out


@torch.no_grad()
def torch_outputs(graph: ScoringGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    outputs = graph.cpu().eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return {name: value.numpy() for name, value in zip(graph.output_names, outputs, strict=True)}


@torch.no_grad()
def category_probabilities(graph: ScoringGraph, x: np.ndarray) -> dict[int, np.ndarray]:
    """Each categorical column's decoded probabilities at the posterior mean, ``{column: (N, size)}``.

    ``column`` is the column's index in manifest order; these are the probabilities whose argmax
    is that column of ``expected``.
    """
    graph = graph.cpu().eval()
    batch = graph.preprocess(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    _, logits = graph.model.decode(graph.model.score(batch, graph.eps)["latent"])
    columns = graph.preprocessor.cat_idx.tolist()
    return {columns[j]: torch.softmax(group, -1).numpy() for j, group in enumerate(logits)}


def forgive_category_ties(
    expected: np.ndarray, actual: np.ndarray, probabilities: dict[int, np.ndarray], tolerance: float
) -> np.ndarray:
    """onnxruntime's ``expected`` ``(N, F)``, each category it names only by a tie replaced by torch's.

    A categorical column of ``expected`` is the most probable category's code, so a float32
    rounding of two nearly tied probabilities can make onnxruntime name the other one: a
    difference of a whole code for no difference in the model. A cell is forgiven when torch's
    probability of onnxruntime's category is within ``tolerance`` of its own choice's.
    """
    actual = actual.copy()
    for column, probs in probabilities.items():
        ours, theirs = expected[:, column].astype(np.int64), actual[:, column].astype(np.int64)
        rows = np.flatnonzero((ours != theirs) & (theirs >= 0) & (theirs < probs.shape[1]))
        gap = probs[rows, ours[rows]] - probs[rows, theirs[rows]]
        tied = rows[gap <= tolerance]
        actual[tied, column] = expected[tied, column]
    return actual


def parity_error(
    expected: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    units: dict[str, np.ndarray] | None = None,
) -> float:
    """Largest relative difference between two sets of outputs.

    Each value is compared relative to the larger of itself, 1, its column's median
    magnitude and the output's unit in ``units``: per column ``(F,)`` (a feature's standard
    deviation, for ``expected = mean * scale + center``, a small difference of large terms whose
    float32 rounding is relative to those terms) or per row, ``(N,)`` or ``(N, 1)``. Every output named in
    ``expected`` is compared.
    """
    units = units or {}
    worst = 0.0
    for name in expected:
        a, b = expected[name].astype(np.float64), actual[name].astype(np.float64)
        if a.size == 0:
            continue
        typical = np.median(np.abs(a), axis=0) if a.ndim == 2 else 1.0
        scale = np.maximum(np.maximum(np.abs(a), 1.0), typical)
        if name in units:
            scale = np.maximum(scale, units[name])
        relative = np.abs(a - b) / scale
        relative[np.isnan(relative)] = np.inf  # a NaN on either side is a broken graph, never a match
        worst = max(worst, float(np.max(relative)))
    return worst

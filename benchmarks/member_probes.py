"""Probes of the cross-fitted default's members: other ways to combine and scale the same models.

For each dataset and seed of the detection protocol (``detection.py``), train the default as
``latentwatch train`` does (3 cross-fitted members, 5 below 500 normal rows, the defensive
prior), then score the test rows in torch several ways without retraining, and report each way's
mean ROC-AUC and average precision minus the exported score's, paired on the same pairs:

- ``mixture``: the exported ``neg_elbo``, the members' equal-weight mixture,
  ``-log (1/K) sum_k exp(ELBO_k)`` (its records equal the benchmark's ``lw-vae`` records).
- ``mean_of_members``: the mean of the members' negative ELBOs, the mixture's ELBO with a
  uniform q(k|x) instead of the responsibilities; looser, and no member can excuse a row alone.
- ``one_member``: each member alone, its ROC-AUC and AP averaged over the members.
- ``reconstruction`` / ``latent_term``: the two terms of ``mean_of_members`` apart (the
  reconstruction negative log-likelihood, and the KL term under the defensive prior).
- ``heldout_variances``: each member's decoder variances refit, per numeric feature, as the
  mean squared residual of the fold it never saw (under the graph's fixed draws): the maximum-
  likelihood noise of new rows, where the trained variances are the training rows'.
- ``heldout_scale``: one factor per member for all its variances, fit the same way.
- ``heldout_variances_up``: per feature, the larger of the trained and the refit variance.

    python benchmarks/member_probes.py --datasets glass,cardio --seeds 0
    python benchmarks/member_probes.py --jobs 2          # all 20 ADBench sets, seeds 0-2

Prints a markdown table; one JSON per (dataset, seed) is cached under ``--cache``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import detection as bench
import numpy as np
import score_probes

PROBES = (
    "mixture",
    "mean_of_members",
    "one_member",
    "reconstruction",
    "latent_term",
    "heldout_variances",
    "heldout_scale",
    "heldout_variances_up",
)
REFITS = ("heldout_variances", "heldout_scale", "heldout_variances_up")


def heldout_squared_residuals(graph: Any, member: Any, x_held: np.ndarray) -> Any:
    """Mean squared residual of each numeric feature on ``x_held``, over rows and the fixed draws."""
    import torch

    batch = graph.preprocess(torch.from_numpy(x_held))
    mu, log_var = member.encode(batch.enc_in)
    z = member.reparameterize(mu.unsqueeze(0), log_var.unsqueeze(0), graph.eps.unsqueeze(1))  # (K, N, L)
    mean, _ = member.decode(z)
    squared = ((batch.num - mean).pow(2) * batch.observed).sum((0, 1))
    return squared / (batch.observed.sum(0) * len(graph.eps)).clamp(min=1)


def set_variances(member: Any, variances: Any) -> None:
    """Make ``member.decoder_log_var()`` return ``log(variances)`` (held at the model's floor)."""
    import torch

    floor = member.arch.min_scale**2
    above_floor = (variances - floor).clamp(min=1e-12)
    member.raw_log_var.copy_(torch.log(torch.expm1(above_floor)))


def refit_variances(graph: Any, x_normal: np.ndarray, splits: list[Any], how: str) -> None:
    """Refit every member's decoder variances on its own held-out rows (``how``: one of ``REFITS``)."""
    import torch

    for member, (_, held) in zip(graph.model.members, splits, strict=True):
        trained = torch.exp(member.decoder_log_var())
        squared = heldout_squared_residuals(graph, member, x_normal[held])
        if how == "heldout_variances":
            variances = squared
        elif how == "heldout_scale":
            variances = trained * (squared / trained).mean()
        else:
            variances = torch.maximum(trained, squared)
        set_variances(member, variances)


def probe_scores(graph: Any, x_normal: np.ndarray, splits: list[Any], x_test: np.ndarray) -> dict[str, Any]:
    """Every probe's scores of ``x_test`` (higher = more anomalous); ``one_member`` is a list."""
    import torch

    with torch.no_grad():
        batch = graph.preprocess(torch.from_numpy(x_test))
        each = [member.score(batch, graph.eps) for member in graph.model.members]
        neg_elbo = torch.stack([s["neg_elbo"] for s in each]).double()  # (members, N)
        kl = torch.stack([s["kl"] for s in each]).double()
        scores: dict[str, Any] = {
            "mixture": graph.model.score(batch, graph.eps)["neg_elbo"].double(),
            "mean_of_members": neg_elbo.mean(0),
            "one_member": list(neg_elbo),
            "reconstruction": (neg_elbo - kl).mean(0),
            "latent_term": kl.mean(0),
        }
        trained = [member.raw_log_var.detach().clone() for member in graph.model.members]
        for how in REFITS:
            refit_variances(graph, x_normal, splits, how)
            scores[how] = graph.model.score(batch, graph.eps)["neg_elbo"].double()
            for member, raw in zip(graph.model.members, trained, strict=True):
                member.raw_log_var.copy_(raw)
    return scores


def metrics_of(y: np.ndarray, score: Any) -> dict[str, float]:
    """``detection_metrics`` of one score, or their mean over a list of scores (``one_member``)."""
    if isinstance(score, list):
        each = [bench.detection_metrics(y, s.numpy()) for s in score]
        return {name: float(np.mean([m[name] for m in each])) for name in ("roc_auc", "ap")}
    return bench.detection_metrics(y, score.numpy())


def run_one(dataset: str, seed: int, root: Path) -> dict[str, Any]:
    """Train the default on the protocol's split of ``dataset`` and measure every probe."""
    ds, frame, test, result = score_probes.train_on_split(dataset, seed, root, overrides={})
    from service.features import encode_frame
    from training.config import make_settings
    from training.pipeline import fit_splits

    features = result.manifest.features
    splits = fit_splits(len(frame), make_settings(result.manifest.training["settings"]))
    if len(splits) < 2:
        msg = f"{dataset}: the default trained one model; these probes need cross-fitted members"
        raise ValueError(msg)
    x_normal = encode_frame(frame, features).x
    x_test = encode_frame(ds.frame.iloc[test], features, strict=False).x
    scores = probe_scores(result.graph.eval(), x_normal, splits, x_test)
    metrics = {name: metrics_of(ds.y[test], score) for name, score in scores.items()}
    return {"dataset": dataset, "seed": seed, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    args = score_probes.pair_arguments(__doc__.split("\n\n")[0], "member_probes").parse_args(argv)
    print(score_probes.report(score_probes.run_pairs(run_one, args, "member_probes"), PROBES, baseline="mixture"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

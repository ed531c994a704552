"""Probes of the default VAE's score: other estimators and priors on the same trained model.

For each dataset and seed of the detection protocol (``detection.py``), train one model (the
default's settings with ``folds = 1``), then score the test rows in torch several ways without
retraining, and report each way's mean ROC-AUC and average precision minus the default's, paired on the same
(dataset, seed) pairs. Every probe is still a bound on the row's log-likelihood (or, for
``iwae64``, a tighter one):

- ``default``: the exported ``neg_elbo`` of ``--prior standard`` (8 fixed draws of z,
  closed-form KL to N(0, I)); the trainer's default is now ``defensive_prior`` below.
- ``draws64``: the reconstruction term averaged over 64 fresh draws instead of 8.
- ``iwae64``: the importance-weighted bound with 64 draws (Burda et al., 2016).
- ``antithetic8``: 4 draws and their negatives (a variance-reduced 8-draw estimate).
- ``gauss_prior``: KL to the full-covariance Gaussian moment-matched to the fit rows'
  aggregate posterior (the best Gaussian prior for the trained encoder) instead of N(0, I).
- ``aggregate_prior``: KL (by the 8 draws) to the aggregate posterior itself, the mixture of
  the fit rows' q(z|x): the prior that maximizes their ELBO (Hoffman and Johnson, 2016).
- ``defensive_prior``: KL to the half-and-half mixture of N(0, I) and that aggregate
  posterior, so that a code far from every fit row falls back on the standard prior.

    python benchmarks/score_probes.py --datasets glass,Wilt --seeds 0
    python benchmarks/score_probes.py --jobs 2          # all 20 ADBench sets, seeds 0-2
    python benchmarks/score_probes.py --jobs 2 --bank-rows 1024   # the priors from 1,024 fit rows at most

Prints a markdown table; one JSON per (dataset, seed) is cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import detection as bench
import numpy as np

PROBES = ("default", "draws64", "iwae64", "antithetic8", "gauss_prior", "aggregate_prior", "defensive_prior")
CHUNK = 512  # test rows per step of the mixture prior (rows x draws x fit rows floats)


def _mixture_log_density(z: Any, means: Any, log_vars: Any) -> Any:
    """``training.likelihood.mixture_log_density`` of ``z`` ``(R, L)`` in chunks of rows (memory)."""
    import torch

    from training import likelihood

    return torch.cat(
        [likelihood.mixture_log_density(z[i : i + CHUNK], means, log_vars) for i in range(0, len(z), CHUNK)]
    )


def probe_scores(graph: Any, x_fit: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every probe's score of ``x_test`` (higher = more anomalous) from one trained graph."""
    import torch

    from training import likelihood

    net, eps = graph.model, graph.eps
    latent = eps.shape[1]
    with torch.no_grad():
        batch = graph.preprocess(torch.from_numpy(x_test))
        mu, log_var = net.encode(batch.enc_in)
        base = net.score(batch, eps)
        recon8 = base["neg_elbo"] - base["kl"]

        def draws(e: Any) -> tuple[Any, Any]:
            z = mu + (0.5 * log_var).exp() * e.unsqueeze(1)  # (K, N, L)
            return z, net.feature_nll(z, batch).sum(-1)

        fresh = torch.randn(64, latent, generator=torch.Generator().manual_seed(seed + 12_345))
        z64, recon64 = draws(fresh)
        log_q = likelihood.gaussian_log_density(z64, mu, log_var)
        log_prior = -likelihood.prior_nll(z64)
        half = torch.randn(4, latent, generator=torch.Generator().manual_seed(seed))
        _, recon_anti = draws(torch.cat([half, -half]))

        fit_mu, fit_log_var = net.encode(graph.preprocess(torch.from_numpy(x_fit)).enc_in)
        center = fit_mu.mean(0)
        cov = torch.cov(fit_mu.T) + torch.diag(fit_log_var.exp().mean(0)) + 1e-6 * torch.eye(latent)
        inverse = torch.linalg.inv(cov)
        gap = mu - center
        kl_gauss = 0.5 * (
            log_var.exp() @ torch.diagonal(inverse)
            + (gap @ inverse * gap).sum(-1)
            - latent
            + torch.logdet(cov)
            - log_var.sum(-1)
        )
        z8 = mu + (0.5 * log_var).exp() * eps.unsqueeze(1)
        log_q8 = likelihood.gaussian_log_density(z8, mu, log_var)
        log_mix = _mixture_log_density(z8.reshape(-1, latent), fit_mu, fit_log_var).reshape(len(eps), -1)
        log_defensive = likelihood.stable_logsumexp(torch.stack([-likelihood.prior_nll(z8), log_mix]), 0) - math.log(2)
        scores = {
            "default": base["neg_elbo"],
            "draws64": recon64.mean(0) + base["kl"],
            "iwae64": math.log(len(fresh)) - torch.logsumexp(-(recon64 + log_q - log_prior), dim=0),
            "antithetic8": recon_anti.mean(0) + base["kl"],
            "gauss_prior": recon8 + kl_gauss,
            "aggregate_prior": recon8 + (log_q8 - log_mix).mean(0),
            "defensive_prior": recon8 + (log_q8 - log_defensive).mean(0),
        }
    return {name: value.double().numpy() for name, value in scores.items()}


def train_on_split(dataset: str, seed: int, root: Path, overrides: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """Train a bundle on the protocol's normal training rows of ``dataset`` (one thread, seeded).

    Returns:
        The dataset, its training frame, the test rows' indices and ``train_bundle``'s result.
    """
    bench.limit_threads()
    bench.ensure_repo_importable()
    from training.pipeline import train_bundle

    ds = bench.load_dataset(root, dataset)
    train, test = bench.split_indices(ds.y, seed)
    frame = ds.frame.iloc[train].reset_index(drop=True)
    bench.torch_setup(seed)
    with tempfile.TemporaryDirectory(prefix="lw-probe-") as tmp:
        result = train_bundle(frame, Path(tmp) / "bundle", seed=seed, overrides=overrides, quiet=True)
    return ds, frame, test, result


def run_one(dataset: str, seed: int, root: Path, bank_rows: int | None = None) -> dict[str, Any]:
    """Train the default on the protocol's split of ``dataset`` and measure every probe.

    ``bank_rows`` caps the fit rows whose posteriors make the aggregate prior (a seeded sample).
    """
    overrides = {"report": False, "prior": "standard", "folds": 1}
    ds, frame, test, result = train_on_split(dataset, seed, root, overrides)
    from service.features import encode_frame
    from training.data import split_rows

    features = result.manifest.features
    fit_rows, _ = split_rows(len(frame), result.manifest.training["settings"]["validation_fraction"], seed)
    if bank_rows is not None and len(fit_rows) > bank_rows:
        fit_rows = np.sort(np.random.default_rng(seed).choice(fit_rows, bank_rows, replace=False))
    x_fit = encode_frame(frame, features).x[fit_rows]
    x_test = encode_frame(ds.frame.iloc[test], features, strict=False).x
    scores = probe_scores(result.graph.eval(), x_fit, x_test, seed)
    metrics = {name: bench.detection_metrics(ds.y[test], s) for name, s in scores.items()}
    return {"dataset": dataset, "seed": seed, "metrics": metrics}


def report(records: list[dict[str, Any]], probes: Sequence[str] = PROBES, baseline: str = "default") -> str:
    """Markdown: each probe's mean ROC-AUC and AP, the paired difference, pairs better/worse."""
    lines = [
        f"{len(records)} (dataset, seed) pairs",
        "",
        f"| probe | mean ROC-AUC | mean AP | ROC-AUC minus {baseline} | AP minus {baseline} | pairs better / worse |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    roc0 = np.array([r["metrics"][baseline]["roc_auc"] for r in records])
    ap0 = np.array([r["metrics"][baseline]["ap"] for r in records])
    for name in probes:
        roc = np.array([r["metrics"][name]["roc_auc"] for r in records])
        ap = np.array([r["metrics"][name]["ap"] for r in records])
        diff = roc - roc0
        lines.append(
            f"| {name} | {roc.mean():.4f} | {ap.mean():.4f} | {diff.mean():+.4f} | {(ap - ap0).mean():+.4f} "
            f"| {int((diff > 5e-4).sum())} / {int((diff < -5e-4).sum())} |"
        )
    return "\n".join(lines)


def pair_arguments(description: str, cache_name: str) -> argparse.ArgumentParser:
    """The options every probe script shares: datasets, seeds, jobs, data root and cache."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--datasets", type=bench.dataset_list, default=bench.dataset_list("adbench"))
    p.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=None, help=f"default benchmarks/.cache/{cache_name}")
    return p


def run_pairs(
    run_one: Callable[..., dict[str, Any]], args: argparse.Namespace, cache_name: str, *extra: Any
) -> list[dict[str, Any]]:
    """``run_one(dataset, seed, root, *extra)`` on every pair not cached yet; every pair's record."""
    cache = args.cache or bench.REPO / "benchmarks" / ".cache" / cache_name
    root = (args.data_root or bench.default_data_root()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    todo = [(d, s) for s in args.seeds for d in args.datasets if not (cache / f"{d}__seed{s}.json").exists()]
    with ProcessPoolExecutor(args.jobs) as pool:
        columns = [[value] * len(todo) for value in (root, *extra)]
        for record in pool.map(run_one, *zip(*todo, strict=True), *columns):
            bench.write_json(cache / f"{record['dataset']}__seed{record['seed']}.json", record)
            print(f"{record['dataset']} seed {record['seed']} done", file=sys.stderr, flush=True)
    return [json.loads((cache / f"{d}__seed{s}.json").read_text()) for s in args.seeds for d in args.datasets]


def main(argv: list[str] | None = None) -> int:
    p = pair_arguments(__doc__.split("\n\n")[0], "score_probes[-bankN]")
    p.add_argument("--bank-rows", type=int, default=None, help="fit rows that make the aggregate prior (default all)")
    args = p.parse_args(argv)
    suffix = f"-bank{args.bank_rows}" if args.bank_rows else ""
    print(report(run_pairs(run_one, args, f"score_probes{suffix}", args.bank_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

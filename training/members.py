"""Fitting a run's members: each the best of its restarts, with the defensive prior set after.

A run fits one member per cross-fitting fold (or ``members`` members on one split), each the
best of ``restarts`` initializations by its validation loss. Members share the graph's fixed
draws and sizes (``FitJob``) and differ in their rows and seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.config import PRIOR_BANK_ROWS, Resolved, TrainSettings, cpu_plan
from training.distributed import Group
from training.loop import FitResult, fit
from training.models import Architecture, Autoencoder, Batch, Ensemble, build_model
from training.parallel import run_in_processes
from training.progress import FitProgress

# Restart k of a run seeded s uses seed s + k * RESTART_SEED_STRIDE (a prime: far from s + 1, s + 2...),
# member m seed s + m * MEMBER_SEED_STRIDE (another prime, so that no member repeats a restart).
RESTART_SEED_STRIDE = 7919
MEMBER_SEED_STRIDE = 104_729


@dataclass(frozen=True)
class FitJob:
    """What every member and restart of one run is fitted with: the same rows, draws and sizes."""

    arch: Architecture
    resolved: Resolved
    train: Batch
    holdout: Batch
    eps: torch.Tensor
    device: torch.device
    group: Group | None = None  # the processes of a multi-process fit (training.distributed)


def fit_members(
    settings: TrainSettings, jobs: list[FitJob], progress: FitProgress
) -> tuple[Autoencoder | Ensemble, FitResult, list[dict[str, Any]]]:
    """Fit the run's members with the same draws, each the best of its restarts.

    With one job, ``settings.members`` members share its rows; with one job per fold, each fold
    has one member. Member 0 is the run's own seed, so a one-member run is the single model it
    always was. The defensive prior's bank of ``PRIOR_BANK_ROWS`` fit rows is shared out among
    the members, so that the graph's mixture costs the same whatever their number. Up to
    ``threads`` members are fitted at once, in processes of their own (``training.parallel``).

    Returns:
        The model (one member, or their ``Ensemble``), member 0's fit with every member's
        seconds added, and for the manifest each member's seed, best validation loss and steps.
    """
    count = len(jobs) if len(jobs) > 1 else settings.members
    progress.plan(sum(jobs[m % len(jobs)].resolved.max_steps for m in range(count)) * settings.restarts)
    plans = []
    for m in range(count):
        member_settings = dataclasses.replace(settings, seed=settings.seed + m * MEMBER_SEED_STRIDE)
        label = f"member {m + 1} of {count}" if count > 1 else ""
        plans.append((member_settings, jobs[m % len(jobs)], label))
    tasks = [functools.partial(_fit_member, *plan) for plan in plans]
    processes, torch_threads = cpu_plan(settings, count)
    if processes > 1 and jobs[0].group is None:
        fitted = run_in_processes(tasks, processes, torch_threads, progress)
    else:
        fitted = [task(progress) for task in tasks]
    nets, fits, summaries = [], [], []
    for (member_settings, job, _), (state, result, restarts) in zip(plans, fitted, strict=True):
        net = build_model(settings.model, job.arch, denoise=settings.denoise, free_bits=settings.free_bits)
        net.load_state_dict(state)
        net = net.to(job.device).eval()
        if job.resolved.prior == "defensive":
            _set_defensive_prior(net, job.train, member_settings.seed, PRIOR_BANK_ROWS // count)
        nets.append(net)
        fits.append(result)
        summaries.append(
            {
                "seed": member_settings.seed,
                "best_validation_loss": result.best_val,
                "steps": result.steps,
                "best_step": result.best_step,
                "clipped_steps": result.clipped_steps,
                "restarts": restarts,
            }
        )
    combined = dataclasses.replace(fits[0], seconds=sum(f.seconds for f in fits))
    return (nets[0] if len(nets) == 1 else Ensemble(nets)), combined, summaries


def _fit_member(
    settings: TrainSettings, job: FitJob, label: str, progress: FitProgress
) -> tuple[dict[str, torch.Tensor], FitResult, dict[str, Any]]:
    """One member, in this process or another: its weights (a state dict), fit and restarts."""
    torch.manual_seed(settings.seed)
    net, result, restarts = _fit_best_of_restarts(settings, job, progress, label)
    return {k: v.cpu() for k, v in net.state_dict().items()}, result, restarts


def _fit_best_of_restarts(
    settings: TrainSettings, job: FitJob, progress: FitProgress, member: str
) -> tuple[Autoencoder, FitResult, dict[str, Any]]:
    """Fit ``settings.restarts`` models on the same rows and draws; keep the best validation loss.

    Restart 0 is the plain run. Restart ``k`` changes only the weights' initialization and the
    batch order (seed ``seed + k * RESTART_SEED_STRIDE``): on small or oddly shaped tables one
    initialization can land in a much worse optimum than another, and the validation loss of
    the held-out normal rows tells them apart without labels.

    Returns:
        The kept model (in eval mode), its fit, and for the manifest every restart's best
        validation loss and the index of the kept one.
    """
    best: tuple[Autoencoder, FitResult, int] | None = None
    losses: list[float] = []
    for k in range(settings.restarts):
        run_settings = settings
        if k:
            run_settings = dataclasses.replace(settings, seed=settings.seed + k * RESTART_SEED_STRIDE)
            torch.manual_seed(run_settings.seed)
        net = build_model(settings.model, job.arch, denoise=settings.denoise, free_bits=settings.free_bits)
        net = net.to(job.device)
        progress.start_fit(_fit_label(member, settings.restarts, k))
        result = fit(
            net,
            job.train,
            job.holdout,
            job.eps.to(job.device),
            run_settings,
            job.resolved,
            progress=progress,
            group=job.group,
        )
        progress.end_fit(result.steps, job.resolved.max_steps)
        losses.append(result.best_val)
        if best is None or result.best_val < best[1].best_val:
            best = (net, result, k)
    assert best is not None  # restarts >= 1
    net, result, kept = best
    return net, result, {"validation_losses": losses, "kept": kept}


@torch.no_grad()
def _set_defensive_prior(net: Autoencoder, train: Batch, seed: int, bank_rows: int) -> None:
    """Give the trained VAE its scoring prior from a seeded sample of ``bank_rows`` fit rows' posteriors.

    Only fit rows enter the bank: the held-out rows that calibrate the p-values must be scored
    like any new row, not against a prior that holds their own posteriors.
    """
    rows = np.arange(len(train))
    if len(rows) > bank_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, bank_rows, replace=False))
    net.eval()
    mu, log_var = net.encode(train.enc_in[torch.from_numpy(rows).to(train.enc_in.device)])
    net.use_defensive_prior(mu, log_var)


def _fit_label(member: str, restarts: int, k: int) -> str:
    """What the progress display says of a fit: ``member 2 of 3``, ``restart 1 of 3``, or both."""
    parts = [member] if member else []
    if restarts > 1:
        parts.append(f"restart {k + 1} of {restarts}")
    return ", ".join(parts) or "the model"

"""The training loop: gradient steps, KL warm-up, early stopping on the validation score.

Warm-up, patience and the step cap are counted in gradient steps, and early stopping only
starts once warm-up has ended: while beta still grows the validation ELBO rises, and a
patience counted from the start would stop before the objective is the ELBO (measured in
the ``epoch-schedule`` variant, docs/decisions.md: small tables stopped after ~60 steps, nearly untrained).

Validation, early stopping and export use an exponential moving average of the weights
(``ema_decay``, a horizon of about ``1 / (1 - ema_decay)`` steps), not the last step's
weights: at a constant learning rate the raw weights jitter around the optimum, and their
average is the better density model (``benchmarks/RESULTS.md``, variant ``no-ema``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from training.config import Resolved, TrainSettings
from training.distributed import Group
from training.models import Autoencoder, Batch
from training.progress import FitProgress

EVAL_CHUNK = 4096


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_val: float = float("inf")
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    clipped_steps: int = 0  # optimizer steps whose gradient ``GradientClipper`` clipped


def take(batch: Batch, index: torch.Tensor) -> Batch:
    return Batch(batch.enc_in[index], batch.num[index], batch.observed[index], batch.codes[index])


@torch.no_grad()
def mean_score(model: Autoencoder, batch: Batch, eps: torch.Tensor, group: Group | None = None) -> float:
    """Mean ``neg_elbo`` of ``batch`` with the fixed draws ``eps`` (the validation loss).

    With a process ``group``, the mean over every process's rows, the same on each.
    """
    model.eval()
    total = 0.0
    for start in range(0, len(batch), EVAL_CHUNK):
        part = take(
            batch,
            torch.arange(start, min(start + EVAL_CHUNK, len(batch)), device=batch.enc_in.device),
        )
        total += float(model.score(part, eps)["neg_elbo"].sum())
    model.train()
    return group.mean(total, len(batch)) if group is not None else total / max(1, len(batch))


def beta_at(step: int, settings: TrainSettings, resolved: Resolved) -> float:
    if resolved.warmup_steps == 0:
        return settings.beta
    return settings.beta * min(1.0, step / resolved.warmup_steps)


class MovingAverage:
    """An exponential moving average of a model's parameters, kept in ``module``, a copy of it.

    The first update copies the weights; each later one moves the average ``1 - decay`` of the
    way towards them with one foreach ``lerp`` over all parameters, the arithmetic of
    ``torch.optim.swa_utils.AveragedModel`` with its EMA function, bit for bit, without its
    per-step bookkeeping (two thirds of the optimizer's own time on these small models).
    Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay = decay
        self._averaged = [p.detach() for p in self.module.parameters()]
        self._current = [p.detach() for p in model.parameters()]
        self._averaged_buffers = list(self.module.buffers())
        self._current_buffers = list(model.buffers())
        self._updates = 0

    @torch.no_grad()
    def update(self) -> None:
        if self._updates == 0:
            for averaged, current in zip(self._averaged, self._current, strict=True):
                averaged.copy_(current)
        else:
            torch._foreach_lerp_(self._averaged, self._current, 1 - self.decay)
        for averaged, current in zip(self._averaged_buffers, self._current_buffers, strict=True):
            averaged.copy_(current)
        self._updates += 1


class GradientClipper:
    """Clips an optimizer's gradient norm, before each of its steps, at ``factor`` times its typical size.

    The typical size is a moving average (decay 0.99, about 100 steps) of the norms after
    clipping, started at the first step's norm, so the limit follows the gradients as training
    shrinks them and needs no scale of its own. Why: a batch with a few rows that the decoder's
    small learned variances find very unlikely can give a gradient hundreds of times the usual
    size; the step it takes throws the weights, the validation loss jumps, and early stopping
    then ends a member that was still improving (``benchmarks/RESULTS.md``, variant ``no-clip``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float) -> None:
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.factor = factor
        self.typical: float | None = None
        self.clipped = 0
        optimizer.register_step_pre_hook(self._before_step)

    @torch.no_grad()
    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        limit = math.inf if self.typical is None else self.factor * self.typical
        norm = float(nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], limit))
        self.clipped += norm > limit
        kept = min(norm, limit)
        self.typical = kept if self.typical is None else 0.99 * self.typical + 0.01 * kept


def moving_average(model: nn.Module, decay: float) -> MovingAverage | None:
    """An exponential moving average of ``model``'s parameters, or None when ``decay`` is 0."""
    if decay == 0:
        return None
    return MovingAverage(model, decay)


def fit(
    model: Autoencoder,
    train: Batch,
    validation: Batch,
    eps: torch.Tensor,
    settings: TrainSettings,
    resolved: Resolved,
    *,
    progress: FitProgress | None = None,
    group: Group | None = None,
) -> FitResult:
    """Train ``model`` in place and load the (averaged) weights of the best validation step.

    With a process ``group`` the gradients are averaged over its processes
    (``DistributedDataParallel``) and so is the validation loss: every process takes the same
    steps, keeps the same weights and stops at the same step.
    """
    started = time.perf_counter()
    step_options = {"module": group.wrap(model)} if group is not None else {}
    generator = torch.Generator().manual_seed(settings.seed)
    optimizers = model.configure_optimizers(settings.learning_rate, settings.weight_decay)
    clippers = [GradientClipper(o, settings.grad_clip) for o in optimizers] if settings.grad_clip else []
    result, best_state, since_best = FitResult(), None, 0
    average = moving_average(model, settings.ema_decay)
    validated = average.module if average is not None else model
    eval_every = max(resolved.steps_per_epoch, 25)
    model.train()
    step, epoch = 0, 0
    while step < resolved.max_steps and not result.stopped_early:
        epoch += 1
        order = torch.randperm(len(train), generator=generator).to(train.enc_in.device)
        for start in range(0, len(train), resolved.batch_size):
            beta = beta_at(step, settings, resolved)
            batch = take(train, order[start : start + resolved.batch_size])
            losses = model.train_step(batch, optimizers, beta, **step_options)
            step += 1
            if average is not None:
                average.update()
            if step % eval_every == 0 or step >= resolved.max_steps:
                val = mean_score(validated, validation, eps, group)
                result.history.append(
                    {
                        "epoch": epoch,
                        "step": step,
                        "beta": beta,
                        "train_loss": losses["loss"],
                        "val_loss": val,
                    }
                )
                if step >= resolved.warmup_steps and val < result.best_val:
                    result.best_val, result.best_step, since_best = val, step, 0
                    best_state = copy.deepcopy(validated.state_dict())
                elif step >= resolved.warmup_steps:
                    since_best += eval_every
                    result.stopped_early = since_best >= resolved.patience_steps
                if progress is not None:
                    progress.step(eval_every if step % eval_every == 0 else step % eval_every, val=val, beta=beta)
            if step >= resolved.max_steps or result.stopped_early:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.steps, result.seconds = step, time.perf_counter() - started
    result.clipped_steps = sum(c.clipped for c in clippers)
    return result

"""The training loop: what it validates is what it exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tests.training.tables import mixed_table
from training.loop import GradientClipper, moving_average
from training.pipeline import train_bundle


def test_moving_average_moves_by_one_minus_the_decay_per_step() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    average = moving_average(model, 0.9)
    average.update()  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(12.0)
    average.update()
    assert average.module.weight.detach().item() == pytest.approx(2.0 + 0.1 * (12.0 - 2.0))
    assert moving_average(model, 0.0) is None


def test_the_moving_average_is_torchs_ema_bit_for_bit() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=True)
    ours = moving_average(model, 0.995)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.995))
    for _ in range(50):
        optimizer.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        optimizer.step()
        ours.update()
        reference.update_parameters(model)
    for mine, theirs in zip(ours.module.parameters(), reference.module.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert not torch.equal(ours.module[0].weight, model[0].weight)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
@pytest.mark.slow
def test_the_exported_model_is_the_validated_one(tmp_path: Path, quick: dict, ema_decay: float) -> None:
    # Validation scores the ELBO under the training prior N(0, I); the defensive scoring prior
    # is set after training, so the comparison holds with the standard one.
    overrides = {**quick, "ema_decay": ema_decay, "prior": "standard"}
    result = train_bundle(mixed_table(200), tmp_path / "b", seed=3, overrides=overrides)
    holdout_scores = result.manifest.calibration.scores  # the exported graph's scores of the validation rows
    assert np.mean(holdout_scores) == pytest.approx(result.fit.best_val, rel=1e-4)


@pytest.mark.slow
def test_averaging_changes_the_model(tmp_path: Path, quick: dict) -> None:
    raw = train_bundle(mixed_table(200), tmp_path / "raw", seed=3, overrides={**quick, "ema_decay": 0.0})
    averaged = train_bundle(mixed_table(200), tmp_path / "ema", seed=3, overrides={**quick, "ema_decay": 0.9})
    assert raw.fit.best_val != pytest.approx(averaged.fit.best_val, rel=1e-3)


def _step_with_gradient(optimizer: torch.optim.Optimizer, weight: nn.Parameter, size: float) -> float:
    """One step with a gradient of norm ``size``; the norm the optimizer stepped with."""
    weight.grad = torch.full_like(weight, size / weight.numel() ** 0.5)
    optimizer.step()
    return weight.grad.norm().item()


def test_the_clipper_cuts_a_spike_to_a_multiple_of_the_typical_gradient() -> None:
    model = nn.Linear(4, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    clipper = GradientClipper(optimizer, factor=3.0)
    for _ in range(5):
        assert _step_with_gradient(optimizer, model.weight, 2.0) == pytest.approx(2.0)  # typical: never cut
    assert clipper.typical == pytest.approx(2.0)
    assert _step_with_gradient(optimizer, model.weight, 500.0) == pytest.approx(6.0)
    assert clipper.clipped == 1
    # The spike moves the typical size only by what was kept of it.
    assert clipper.typical == pytest.approx(0.99 * 2.0 + 0.01 * 6.0)
    assert _step_with_gradient(optimizer, model.weight, 5.0) == pytest.approx(5.0)  # within 3x: kept


@pytest.mark.slow
def test_training_counts_the_steps_it_clipped(tmp_path: Path, quick: dict) -> None:
    def clipped(grad_clip: float) -> list[int]:
        result = train_bundle(mixed_table(200), tmp_path / str(grad_clip), overrides={**quick, "grad_clip": grad_clip})
        manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
        return [member["clipped_steps"] for member in manifest["training"]["members"]]

    # At 1x the typical norm every step whose gradient grows past the running average is cut
    # (22 of 300 here with the bounded decoder, 239 with a plain one); with no clipping none is.
    assert clipped(1.0)[0] > 0
    assert clipped(0.0) == [0]

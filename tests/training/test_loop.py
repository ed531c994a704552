"""The training loop: what it validates is what it exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tests.training.tables import mixed_table
from training.loop import moving_average
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
def test_the_exported_model_is_the_validated_one(tmp_path: Path, quick: dict, ema_decay: float) -> None:
    # Validation scores the ELBO under the training prior N(0, I); the defensive scoring prior
    # is set after training, so the comparison holds with the standard one.
    overrides = {**quick, "ema_decay": ema_decay, "prior": "standard"}
    result = train_bundle(mixed_table(200), tmp_path / "b", seed=3, overrides=overrides)
    holdout_scores = result.manifest.calibration.scores  # the exported graph's scores of the validation rows
    assert np.mean(holdout_scores) == pytest.approx(result.fit.best_val, rel=1e-4)


def test_averaging_changes_the_model(tmp_path: Path, quick: dict) -> None:
    raw = train_bundle(mixed_table(200), tmp_path / "raw", seed=3, overrides={**quick, "ema_decay": 0.0})
    averaged = train_bundle(mixed_table(200), tmp_path / "ema", seed=3, overrides={**quick, "ema_decay": 0.9})
    assert raw.fit.best_val != pytest.approx(averaged.fit.best_val, rel=1e-3)

"""The training loop: what it validates is what it exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.training.tables import mixed_table
from training.loop import moving_average
from training.pipeline import train_bundle


def test_moving_average_moves_by_one_minus_the_decay_per_step() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    average = moving_average(model, 0.9)
    average.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(12.0)
    average.update_parameters(model)
    assert average.module.weight.detach().item() == pytest.approx(2.0 + 0.1 * (12.0 - 2.0))
    assert moving_average(model, 0.0) is None


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

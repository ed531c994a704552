"""The fit-speed benchmark's optimizer switch and table (no datasets needed)."""

from __future__ import annotations

import pytest
from torch import nn

from training.models import base


@pytest.fixture(scope="module")
def fit_speed(import_benchmark):
    return import_benchmark("fit_speed")


@pytest.mark.slow
def test_the_trainer_uses_the_fused_kernel_and_the_switch_restores_it(fit_speed) -> None:
    params = list(nn.Linear(3, 2).parameters())
    assert base.adamw(params, lr=1e-3).defaults["fused"] is True
    with fit_speed.adamw_kernel("foreach"):
        inside = base.adamw(params, lr=1e-3).defaults
        assert inside["foreach"] is True
        assert not inside["fused"]
    assert base.adamw(params, lr=1e-3).defaults["fused"] is True


def test_the_table_shows_each_kernels_median_and_their_ratio(fit_speed) -> None:
    def run(seconds: float, loss: float) -> dict:
        return {"seconds": seconds, "best_validation_losses": [loss], "steps": [100]}

    rows = [
        {
            "dataset": "glass",
            "runs": {"foreach": [run(12.0, 3.25)], "fused": [run(10.0, 3.5)]},
            "medians": {"foreach": 12.0, "fused": 10.0},
        }
    ]
    text = fit_speed.table(rows, repeats=1)
    assert "| glass | 12.0 | 10.0 | 1.20x | 3.250 / 3.500 |" in text
    assert "Medians of 1 repeats" in text

"""Members fitted side by side in processes give the model one process gives, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.tables import mixed_table
from training.config import cpu_plan, make_settings
from training.pipeline import train_bundle


@pytest.mark.slow
def test_three_folds_on_two_processes_equal_three_folds_on_one(tmp_path: Path) -> None:
    frame = mixed_table(600, seed=5)
    quick = {"max_steps": 400, "warmup_steps": 100, "report": False}
    alone = train_bundle(frame, tmp_path / "one", overrides=quick | {"threads": 1})
    side_by_side = train_bundle(frame, tmp_path / "two", overrides=quick | {"threads": 2})
    assert len(alone.manifest.training["members"]) == 3
    for a, b in zip(alone.graph.state_dict().values(), side_by_side.graph.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert alone.manifest.calibration.scores == side_by_side.manifest.calibration.scores


def test_members_share_the_cores_as_processes_of_one_torch_thread() -> None:
    assert cpu_plan(make_settings({"threads": 4}), 3) == (3, 1)
    assert cpu_plan(make_settings({"threads": 4}), 1) == (1, 4)  # asked for: one fit's torch threads
    assert cpu_plan(make_settings({"threads": 1}), 5) == (1, 1)
    processes, torch_threads = cpu_plan(make_settings({}), 1)
    assert (processes, torch_threads) == (1, 1)  # the default never runs a second torch thread

"""A numeric column that never moved in training: another value is scored, named and never learned.

The table is ``mixed_table`` plus ``firmware``, 3.0 in every training row (a sensor that never
moved, a version that never changed). Such a column used to be left out; a row that breaks a run
of n equal values is news (Laplace's rule of succession: chance 1 / (n + 2)), so the bundle keeps
it as a *constant* feature that the networks never see.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from service.errors import DataError
from service.generate import Generator
from service.scorer import Scorer
from tests.training.tables import QUICK, mixed_table
from training.pipeline import TrainResult, train_bundle
from training.preprocess import Preprocessor, fit_features

FIRMWARE = 3.0


def with_firmware(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(firmware=FIRMWARE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_bundle(with_firmware(mixed_table(400)), tmp_path_factory.mktemp("const") / "b", overrides=QUICK)


@pytest.fixture(scope="module")
def scorer(trained: TrainResult) -> Scorer:
    return Scorer.open(trained.bundle_dir, device="cpu")


def test_the_constant_column_is_a_feature_that_remembers_its_value(trained: TrainResult) -> None:
    manifest = trained.manifest
    firmware = manifest.features[-1]  # constant features come last
    assert firmware.name == "firmware"
    assert firmware.is_constant
    assert firmware.kind == "numeric"
    assert firmware.center == FIRMWARE
    assert firmware.off_value_nats == pytest.approx(math.log(manifest.training["rows"]["train"] + 2))
    assert "firmware" not in [d["column"] for d in manifest.dropped_columns]


def test_another_value_costs_exactly_its_nats_and_is_named(trained: TrainResult, scorer: Scorer) -> None:
    rows = with_firmware(mixed_table(30, seed=5))
    nats = trained.manifest.features[-1].off_value_nats
    before = scorer.score_frame(rows, explain=True)
    moved = scorer.score_frame(rows.assign(firmware=4.0), explain=True)

    np.testing.assert_allclose(moved["neg_elbo"] - before["neg_elbo"], nats, rtol=1e-5)
    np.testing.assert_allclose(moved["kl"], before["kl"], rtol=1e-6)  # the networks saw nothing new
    assert (before["feature_score_firmware"] == 0).all()
    np.testing.assert_allclose(moved["feature_score_firmware"], nats, rtol=1e-6)
    assert (moved["expected_firmware"] == FIRMWARE).all()
    assert (moved["p_value"] <= before["p_value"]).all()


def test_a_missing_value_costs_nothing(scorer: Scorer) -> None:
    rows = with_firmware(mixed_table(30, seed=5))
    before = scorer.score_frame(rows, explain=True)
    missing = scorer.score_frame(rows.assign(firmware=np.nan), explain=True)
    np.testing.assert_allclose(missing["neg_elbo"], before["neg_elbo"], rtol=1e-6)
    assert (missing["feature_score_firmware"] == 0).all()


def test_the_networks_train_as_if_the_column_were_absent(trained: TrainResult, tmp_path: Path) -> None:
    without = train_bundle(mixed_table(400), tmp_path / "without", overrides=QUICK)
    rows = mixed_table(50, seed=7)
    plain = Scorer.open(without.bundle_dir, device="cpu").score_frame(rows)
    kept = Scorer.open(trained.bundle_dir, device="cpu").score_frame(with_firmware(rows))
    np.testing.assert_allclose(kept["neg_elbo"], plain["neg_elbo"], rtol=1e-5, atol=1e-4)
    assert trained.manifest.latent_dim == without.manifest.latent_dim


def test_generated_rows_hold_the_value(trained: TrainResult) -> None:
    rows = Generator.open(trained.bundle_dir).sample(40, seed=1)
    assert (rows["firmware"] == FIRMWARE).all()
    assert rows["load"].std() > 0


def test_only_constant_columns_is_a_clear_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0] * 40, "b": [2] * 40})
    with pytest.raises(DataError, match=r"each of \['a', 'b'\] holds one value"):
        train_bundle(frame, tmp_path / "b", overrides=QUICK)


def test_off_value_allows_float32_rounding_only() -> None:
    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "big": 1e6, "small": 0.1})
    pre = Preprocessor(fit_features(frame, ["x", "big", "small"], []))
    assert pre.n_constant == 2
    assert pre.network_features == 1
    rows = torch.tensor(
        [[0.5, 1e6, 0.1], [0.5, 1e6 + 0.5, 0.1], [0.5, 1e6 + 2.0, 0.1 + 1e-4], [0.5, np.nan, np.nan]],
        dtype=torch.float32,
    )
    nats = math.log(20 + 2)
    expected = [[0.0, 0.0], [0.0, 0.0], [nats, nats], [0.0, 0.0]]
    np.testing.assert_allclose(pre.off_value(rows).numpy(), expected, rtol=1e-6)

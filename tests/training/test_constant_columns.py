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
import onnxruntime as ort
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


@pytest.mark.slow
def test_the_constant_column_is_a_feature_that_remembers_its_value(trained: TrainResult) -> None:
    manifest = trained.manifest
    firmware = manifest.features[manifest.feature_names.index("firmware")]
    assert firmware.name == "firmware"
    assert firmware.is_constant
    assert firmware.kind == "numeric"
    assert firmware.center == FIRMWARE
    assert firmware.off_value_nats == pytest.approx(math.log(manifest.training["rows"]["train"] + 2))
    assert "firmware" not in [d["column"] for d in manifest.dropped_columns]


@pytest.mark.slow
def test_another_value_costs_exactly_its_nats_and_is_named(trained: TrainResult, scorer: Scorer) -> None:
    rows = with_firmware(mixed_table(30, seed=5))
    nats = trained.manifest.features[trained.manifest.feature_names.index("firmware")].off_value_nats
    before = scorer.score_frame(rows, explain=True)
    moved = scorer.score_frame(rows.assign(firmware=4.0), explain=True)

    np.testing.assert_allclose(moved["neg_elbo"] - before["neg_elbo"], nats, rtol=1e-5)
    np.testing.assert_allclose(moved["kl"], before["kl"], rtol=1e-6)  # the networks saw nothing new
    assert (before["feature_score_firmware"] == 0).all()
    np.testing.assert_allclose(moved["feature_score_firmware"], nats, rtol=1e-6)
    assert (moved["expected_firmware"] == FIRMWARE).all()
    assert (moved["p_value"] <= before["p_value"]).all()


@pytest.mark.slow
def test_a_missing_value_costs_nothing(scorer: Scorer) -> None:
    rows = with_firmware(mixed_table(30, seed=5))
    before = scorer.score_frame(rows, explain=True)
    missing = scorer.score_frame(rows.assign(firmware=np.nan), explain=True)
    np.testing.assert_allclose(missing["neg_elbo"], before["neg_elbo"], rtol=1e-6)
    assert (missing["feature_score_firmware"] == 0).all()


@pytest.mark.slow
def test_the_networks_train_as_if_the_column_were_absent(trained: TrainResult, tmp_path: Path) -> None:
    without = train_bundle(mixed_table(400), tmp_path / "without", overrides=QUICK)
    rows = mixed_table(50, seed=7)
    plain = Scorer.open(without.bundle_dir, device="cpu").score_frame(rows)
    kept = Scorer.open(trained.bundle_dir, device="cpu").score_frame(with_firmware(rows))
    np.testing.assert_allclose(kept["neg_elbo"], plain["neg_elbo"], rtol=1e-5, atol=1e-4)
    assert trained.manifest.latent_dim == without.manifest.latent_dim


@pytest.mark.slow
def test_x_in_the_tables_column_order_gets_the_tables_scores(tmp_path: Path) -> None:
    """A client that packs ``x`` in its table's column order, as an ONNX or Triton user does, gets
    the scores of its rows: constant columns first and in the middle, a category among numbers."""
    table = mixed_table(400).drop(columns="flag")[["site", "load", "power", "count"]]
    table.insert(0, "firmware", FIRMWARE)
    table.insert(3, "rack", 7)
    result = train_bundle(table, tmp_path / "b", overrides=QUICK)
    manifest = result.manifest
    assert manifest.feature_names == list(table.columns)
    assert [f.name for f in manifest.features if f.is_constant] == ["firmware", "rack"]

    rows = mixed_table(40, seed=11).drop(columns="flag")[["site", "load", "power", "count"]]
    rows.insert(0, "firmware", FIRMWARE)
    rows.insert(3, "rack", 7)
    rows.loc[rows.index[::5], "firmware"] = 4.0  # off-value rows
    # The client's own packing: each column in its table's place, a label as its index in the manifest's list.
    site = manifest.features[1]
    x = rows.assign(site=[site.categories.index(v) if v in site.categories else -1 for v in rows["site"]])
    session = ort.InferenceSession(str(result.bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"x": x.to_numpy(dtype=np.float32)}), strict=True))

    by_name = Scorer.open(result.bundle_dir, device="cpu").score_frame(rows, explain=True)
    np.testing.assert_allclose(out["neg_elbo"], by_name["neg_elbo"], rtol=1e-5)
    for j, column in enumerate(rows.columns):
        explained = by_name[f"feature_score_{column}"]
        np.testing.assert_allclose(out["feature_scores"][:, j], explained, rtol=1e-5, atol=1e-6)
    off = rows["firmware"].to_numpy() != FIRMWARE
    np.testing.assert_allclose(out["feature_scores"][off, 0], manifest.features[0].off_value_nats, rtol=1e-6)
    assert (out["feature_scores"][~off, 0] == 0).all()
    assert (out["expected"][:, 0] == FIRMWARE).all()
    assert (out["expected"][:, 3] == 7).all()
    generated = Generator.open(result.bundle_dir).sample(20, seed=2)
    assert list(generated.columns) == list(table.columns)
    assert (generated["firmware"] == FIRMWARE).all()
    assert (generated["rack"] == 7).all()


@pytest.mark.slow
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

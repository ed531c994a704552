"""The embedded demo dataset: deterministic, realistic, with findable anomalies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.errors import InvalidInput
from service.sample_data import (
    ANOMALY_KINDS,
    NUMERIC_COLUMNS,
    SITES,
    make_sample,
    write_sample,
)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return make_sample(include_kind=True)


def _auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """Mann-Whitney AUC: chance that an anomaly outscores a normal row (ties count half)."""
    greater = (anomalous[:, None] > normal[None, :]).mean()
    ties = (anomalous[:, None] == normal[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_same_seed_same_frame_and_other_seed_differs() -> None:
    pd.testing.assert_frame_equal(make_sample(500, seed=3), make_sample(500, seed=3))
    assert not make_sample(500, seed=3).equals(make_sample(500, seed=4))


def test_include_kind_changes_no_other_value(sample: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(sample.drop(columns="anomaly_kind"), make_sample())


def test_shape_and_columns(sample: pd.DataFrame) -> None:
    assert sample.shape == (3000, 12)
    assert list(sample.columns[:3]) == ["machine_id", "site", "shift"]
    assert set(NUMERIC_COLUMNS) <= set(sample.columns)
    for column in NUMERIC_COLUMNS:
        assert pd.api.types.is_float_dtype(sample[column]), column
    assert pd.api.types.is_integer_dtype(sample["label"])
    assert sample["machine_id"].str.fullmatch(r"m-\d{5}").all()
    assert set(sample["site"].dropna()) == set(SITES)
    assert sample["shift"].nunique() == 3
    # Different scales: the numeric columns' typical values span orders of magnitude.
    medians = sample[list(NUMERIC_COLUMNS)].median()
    assert medians.max() / medians.min() > 100


def test_label_share_and_kinds(sample: pd.DataFrame) -> None:
    assert sample["label"].isin([0, 1]).all()
    assert sample["label"].mean() == pytest.approx(0.03, abs=0.002)
    assert make_sample(1000, anomaly_share=0.1)["label"].mean() == pytest.approx(0.1, abs=0.002)
    assert make_sample(200, anomaly_share=0.0)["label"].sum() == 0
    kinds = sample.loc[sample["label"] == 1, "anomaly_kind"]
    assert set(kinds) == set(ANOMALY_KINDS)
    assert (sample.loc[sample["label"] == 0, "anomaly_kind"] == "").all()
    # Spread through the table, not bunched at one end.
    positions = np.flatnonzero(sample["label"].to_numpy())
    assert positions.min() < 500
    assert positions.max() > 2500


def test_missing_values(sample: pd.DataFrame) -> None:
    missing = sample.isna().mean()
    assert 0.02 < missing["humidity_pct"] < 0.07
    assert 0.005 < missing["flow_l_min"] < 0.05
    assert 0.0 < missing["site"] < 0.03
    others = [c for c in NUMERIC_COLUMNS if c not in ("humidity_pct", "flow_l_min")]
    assert missing[others].sum() == 0
    assert missing[["machine_id", "shift", "label"]].sum() == 0


def test_columns_are_correlated_with_site_offsets(sample: pd.DataFrame) -> None:
    normal = sample[sample["label"] == 0]
    corr = normal[list(NUMERIC_COLUMNS)].corr()
    assert corr.loc["rpm", "power_kw"] > 0.7
    assert corr.loc["flow_l_min", "pressure_kpa"] > 0.7
    by_site = normal.groupby("site")["temperature_c"].mean()
    assert by_site["south"] - by_site["west"] > 10


def test_anomalies_need_a_multivariate_model(sample: pd.DataFrame) -> None:
    """A Gaussian model of all columns finds every kind; a per-column z-score misses some."""
    numeric = sample[list(NUMERIC_COLUMNS)].to_numpy()
    numeric = np.where(np.isnan(numeric), np.nanmedian(numeric, axis=0), numeric)
    one_hot = [(sample["site"] == s).to_numpy(float) for s in SITES]
    one_hot += [(sample["shift"] == s).to_numpy(float) for s in ("day", "evening", "night")]
    x = np.column_stack([numeric, *one_hot])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    normal_rows = sample["label"].to_numpy() == 0
    centered = x - x[normal_rows].mean(axis=0)
    precision = np.linalg.inv(np.cov(x[normal_rows].T) + 1e-3 * np.eye(x.shape[1]))
    mahalanobis = np.einsum("ij,jk,ik->i", centered, precision, centered)
    univariate = np.abs(x[:, : len(NUMERIC_COLUMNS)]).max(axis=1)

    kinds = sample["anomaly_kind"].to_numpy()
    for kind in ANOMALY_KINDS:
        rows = kinds == kind
        assert _auc(mahalanobis[normal_rows], mahalanobis[rows]) > 0.95, kind
    assert _auc(univariate[normal_rows], univariate[kinds == "vibration_spike"]) > 0.95
    assert _auc(univariate[normal_rows], univariate[kinds == "wrong_site"]) < 0.7


@pytest.mark.parametrize("name", ["telemetry.csv", "telemetry.parquet"])
def test_write_sample_round_trips(tmp_path, name: str) -> None:
    path = write_sample(tmp_path / "sub" / name, n_rows=300, seed=11)
    assert path.exists()
    read = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    expected = make_sample(300, seed=11)
    assert list(read.columns) == list(expected.columns)
    np.testing.assert_allclose(read[list(NUMERIC_COLUMNS)].to_numpy(), expected[list(NUMERIC_COLUMNS)].to_numpy())
    assert read["site"].isna().sum() == expected["site"].isna().sum()


def test_write_sample_rejects_unknown_suffix(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="csv"):
        write_sample(tmp_path / "telemetry.xlsx")

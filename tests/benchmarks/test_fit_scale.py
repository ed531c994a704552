"""The scale benchmark's tables and report (no fit: those run in the benchmark itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def fit_scale(import_benchmark):
    return import_benchmark("fit_scale")


@pytest.fixture(scope="module")
def payments(import_benchmark):
    return import_benchmark("payments")


def test_normal_payments_hold_only_possible_values(payments) -> None:
    rows = payments.normal_rows(5_000, np.random.default_rng(0))
    assert (rows["amount"] > 0).all()
    assert rows["hour"].between(0, 23).all()
    assert (rows["account_days"].dropna() >= 1).all()
    assert rows["tx_24h"].ge(0).all()
    pairs = set(zip(rows["country"], rows["currency"], strict=True))
    assert pairs <= set(payments.CURRENCY_OF.items())
    assert 0 < rows["distance_km"].isna().mean() < 0.05


def test_each_planted_kind_changes_the_columns_it_names(payments) -> None:
    rng = np.random.default_rng(1)
    normal = payments.normal_rows(500, rng)
    planted = payments.plant_anomalies(normal, rng)
    kinds = planted["kind"].to_numpy()
    assert (planted.loc[kinds == "burst", "tx_24h"] >= 15).all()
    wrong = planted[kinds == "wrong_currency"]
    assert all(payments.CURRENCY_OF[c] != k for c, k in zip(wrong["country"], wrong["currency"], strict=True))
    assert (planted.loc[kinds == "present_far_away", "distance_km"] >= 3_000).all()
    assert set(kinds) == set(payments.ANOMALY_KINDS)


def test_a_large_table_is_written_in_chunks_to_a_folder(payments, tmp_path: Path) -> None:
    folder = payments.write_parquet(tmp_path / "t", 2_500, seed=3, files=3, chunk=400)
    parts = sorted(folder.glob("*.parquet"))
    assert len(parts) == 3
    assert sum(len(pd.read_parquet(p)) for p in parts) == 2_500


def test_the_table_reports_every_measured_figure(fit_scale) -> None:
    record = {
        "rows": 30_000, "options": "none", "repeats": 3, "seconds": 61.2, "peak_mib": 1_024.4, "fit_rows": 24_000,
        "steps": [5_320], "batch": 1_024, "roc_auc": 0.97, "ap": 0.8, "rows_per_s": 40_000.0, "single_row_ms": 0.2,
    }  # fmt: skip
    line = fit_scale.table([record]).splitlines()[-1]
    assert line == (
        "| 30,000 | none | 61.2 (median of 3) | 1,024 | 24,000 | 5,320 | 1,024 | 0.9700 | 0.8000 | 40,000 | 0.200 |"
    )

"""Synthetic rows from a known distribution: distances to it are small, and types round-trip.

The table: ``x ~ N(5, 2)``, ``y ~ N(-3, 0.5)``, ``kind`` in a/b/c with shares 0.6/0.3/0.1,
``count`` = a rounded N(50, 10) (integers), ``ok`` True with probability 0.3 (booleans).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.generate import sample_rows
from training.fidelity import ColumnFidelity, compare_columns, frequencies, ks_distance
from training.pipeline import TrainResult, train_bundle
from training.report import INDEX_FILE, SYNTHETIC_FILE, write_synthetic_comparison

SHARES = {"a": 0.6, "b": 0.3, "c": 0.1}


def known_table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(5.0, 2.0, n_rows),
            "y": rng.normal(-3.0, 0.5, n_rows),
            "kind": rng.choice(list(SHARES), n_rows, p=list(SHARES.values())),
            "count": np.rint(rng.normal(50.0, 10.0, n_rows)).astype(np.int64),
            "ok": rng.random(n_rows) < 0.3,
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    settings = {"max_steps": 2000, "warmup_steps": 600, "folds": 1, "report": True}
    return train_bundle(known_table(1000, seed=0), tmp_path_factory.mktemp("samp") / "b", overrides=settings)


@pytest.mark.slow
def test_samples_follow_the_known_distribution(trained: TrainResult) -> None:
    rows = sample_rows(trained.bundle_dir, 3000, seed=1)
    truth = known_table(3000, seed=99)  # fresh draws of the true distribution
    for column in ("x", "y", "count"):
        distance = ks_distance(rows[column].to_numpy(float), truth[column].to_numpy(float))
        assert distance < 0.1, (column, distance)
    assert abs(rows["x"].mean() - 5.0) < 0.3
    assert abs(rows["x"].std() - 2.0) < 0.3
    assert abs(rows["y"].mean() + 3.0) < 0.1
    assert abs(rows["y"].std() - 0.5) < 0.1
    shares = rows["kind"].value_counts(normalize=True)
    for label, share in SHARES.items():
        assert abs(shares[label] - share) < 0.04, (label, shares[label])
    assert abs(rows["ok"].mean() - 0.3) < 0.04


@pytest.mark.slow
def test_integers_and_booleans_round_trip(trained: TrainResult) -> None:
    rows = sample_rows(trained.bundle_dir, 500, seed=2)
    assert rows["count"].dtype == np.int64
    assert rows["ok"].dtype == bool
    assert rows["x"].dtype == np.float64
    assert set(rows["kind"]) == set(SHARES)
    assert all(isinstance(v, str) for v in rows["kind"])
    assert {f.name: f.dtype for f in trained.manifest.features} == {
        "x": "float",
        "y": "float",
        "count": "int",
        "kind": "string",
        "ok": "bool",
    }


@pytest.mark.slow
def test_the_training_summary_and_report_compare_synthetic_rows(trained: TrainResult) -> None:
    summary = trained.manifest.training["synthetic_vs_training"]
    assert summary["synthetic_rows"] == 1000
    assert summary["training_rows"] == 800
    assert summary["max_distance"] < 0.1
    assert set(summary["columns"]) == {"x", "y", "kind", "count", "ok"}
    kind = summary["columns"]["kind"]
    assert abs(kind["training"]["a"] - 0.6) < 0.05
    assert abs(kind["synthetic"]["a"] - kind["training"]["a"]) < 0.05
    report = trained.bundle_dir / "report"
    page = (report / INDEX_FILE).read_text(encoding="utf-8")
    assert f'<img src="{SYNTHETIC_FILE}"' in page
    assert page.count("Synthetic rows vs training rows") == 1
    assert (report / SYNTHETIC_FILE).read_bytes()[:4] == b"\x89PNG"


def test_ks_and_frequencies_on_known_cases() -> None:
    assert ks_distance(np.arange(10.0), np.arange(10.0)) == 0.0
    assert ks_distance(np.arange(10.0), np.arange(10.0) + 100) == 1.0
    assert ks_distance(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, np.nan])) == 0.5
    assert np.isnan(ks_distance(np.array([np.nan]), np.arange(3.0)))
    np.testing.assert_allclose(frequencies(np.array([0, 0, 1, -1, np.nan, 2]), 3), [0.5, 0.25, 0.25])


def test_compare_columns_uses_ks_and_total_variation() -> None:
    from service.bundle import Feature

    features = (
        Feature("v", "numeric", scale=1.0, center=0.0, fill=0.0),
        Feature("k", "categorical", "string", ("p", "q")),
    )
    real = np.array([[0.0, 0], [1.0, 0], [2.0, 1], [3.0, 1]], dtype=np.float32)
    fake = np.array([[10.0, 0], [11.0, 0], [12.0, 0], [13.0, 1]], dtype=np.float32)
    v, k = compare_columns(features, real, fake)
    assert (v.metric, v.distance) == ("ks", 1.0)
    assert k.metric == "total_variation"
    assert k.distance == pytest.approx(0.25)
    assert k.training == {"p": 0.5, "q": 0.5}
    assert k.synthetic == {"p": 0.75, "q": 0.25}


@pytest.mark.slow
def test_the_report_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    columns = [
        ColumnFidelity("x", "numeric", "ks", 0.2),
        ColumnFidelity("k", "categorical", "total_variation", 0.05, {"a": 0.5, "b": 0.5}, {"a": 0.55, "b": 0.45}),
        ColumnFidelity("z", "numeric", "ks", float("nan")),
    ]
    rng = np.random.default_rng(0)
    real = {"x": rng.normal(size=200), "z": np.full(5, np.nan)}
    fake = {"x": rng.normal(0.5, 1.0, size=300), "z": np.full(5, np.nan)}
    (tmp_path / INDEX_FILE).write_text("<html><body><h1>r</h1>\n</body></html>\n", encoding="utf-8")
    write_synthetic_comparison(tmp_path, columns, real, fake)
    page = write_synthetic_comparison(tmp_path, columns, real, fake).read_text(encoding="utf-8")
    assert page.count("Synthetic rows vs training rows") == 1
    assert page.index("<h1>r</h1>") < page.index("Synthetic rows") < page.index("</body>")
    assert re.findall(r"<tr><td>(\w+)</td>", page) == ["x", "k", "z"]  # worst first, NaN last
    assert (tmp_path / SYNTHETIC_FILE).stat().st_size > 2000


def test_many_categories_are_listed_up_to_a_limit() -> None:
    from service.bundle import Feature
    from training.fidelity import MAX_LISTED, OTHER

    labels = tuple(f"c{i}" for i in range(60))
    feature = Feature("k", "categorical", "string", labels)
    real = (np.arange(600) % 60).astype(np.float32).reshape(-1, 1)
    (column,) = compare_columns((feature,), real, np.zeros((100, 1), dtype=np.float32))
    assert len(column.training) == MAX_LISTED + 1
    assert column.training[OTHER] == pytest.approx(40 / 60, abs=1e-6)
    assert column.synthetic["c0"] == 1.0
    assert column.synthetic[OTHER] == 0.0
    assert column.distance == pytest.approx(1 - 1 / 60)

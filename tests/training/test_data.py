"""Reading tables and planning columns: kinds, dropped columns, and errors that name the culprit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.errors import DataError
from tests.training.tables import mixed_table
from training.data import fold_rows, parse_labels, plan_columns, read_table, sample_frame, sample_positions, split_rows


def test_reads_csv_parquet_and_a_folder_of_parquet(tmp_path: Path) -> None:
    frame = mixed_table(50)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "parts").mkdir()
    frame.iloc[:20].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[20:].to_parquet(tmp_path / "parts" / "b.parquet")
    assert len(read_table(tmp_path / "t.csv")) == 50
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), frame)
    assert len(read_table(tmp_path / "parts")) == 50


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.json", "{}", "not a CSV or Parquet file"),
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "a,b\n", "no rows"),
        ("bad.parquet", "not parquet", "cannot read it as Parquet"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        read_table(path)
    assert str(path) in err.value.message


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no Parquet files"):
        read_table(tmp_path)


def test_kinds_constant_and_identifier_columns() -> None:
    frame = mixed_table(300)
    frame["constant"] = 7.0
    frame["one_site"] = "north"
    frame["row_id"] = [f"r{i}" for i in range(300)]
    frame["when"] = pd.date_range("2026-01-01", periods=300, freq="h")
    plan = plan_columns(frame, source="t.csv", categorical=["count"])
    assert plan.numeric == ["load", "power", "constant"]  # a constant number stays: another value is news
    assert plan.categorical == ["count", "site", "flag"]
    reasons = {d["column"]: d["reason"] for d in plan.dropped}
    assert reasons["one_site"] == "constant column"
    assert reasons["row_id"].startswith("looks like an identifier")
    assert reasons["when"] == "date or time column"


def test_infinity_names_column_and_row() -> None:
    frame = mixed_table(30)
    frame.loc[17, "load"] = np.inf
    with pytest.raises(DataError, match=r"t.csv: column 'load', row 17: infinite value"):
        plan_columns(frame, source="t.csv")


def test_missing_label_and_feature_columns_list_the_columns() -> None:
    frame = mixed_table(30)
    with pytest.raises(DataError, match=r"label column\(s\) \['target'\] not found; the columns are"):
        plan_columns(frame, source="t.csv", label_column="target")
    with pytest.raises(DataError, match=r"excluded column\(s\) \['nope'\]"):
        plan_columns(frame, source="t.csv", exclude=["nope"])


def test_no_usable_feature() -> None:
    frame = pd.DataFrame({"a": [1.0] * 20, "b": ["x"] * 20})
    with pytest.raises(DataError, match=r"no usable feature column: each of \['a'\] holds one value"):
        plan_columns(frame, source="t.csv")
    with pytest.raises(DataError, match=r"no usable feature column \(left out"):
        plan_columns(frame[["b"]], source="t.csv")


def test_labels_accept_numbers_booleans_and_words() -> None:
    labels = pd.DataFrame({"y": [1, 0, "anomaly", "normal", True, "FALSE", 1.0]})
    assert parse_labels(labels, "y", "t.csv").tolist() == [True, False, True, False, True, False, True]
    with pytest.raises(DataError, match=r"row 1, label column 'y': 'maybe' is neither"):
        parse_labels(pd.DataFrame({"y": [0, "maybe"]}), "y", "t.csv")


def test_folds_share_out_every_row_once() -> None:
    folds = fold_rows(11, 3, seed=0)
    assert [len(f) for f in folds] == [4, 4, 3]
    assert sorted(np.concatenate(folds).tolist()) == list(range(11))
    assert [f.tolist() for f in fold_rows(11, 3, seed=0)] == [f.tolist() for f in folds]
    with pytest.raises(DataError, match="5 normal rows cannot make 3 folds"):
        fold_rows(5, 3, seed=0)


def test_split_keeps_a_row_on_each_side() -> None:
    train, holdout = split_rows(10, 0.2, seed=0)
    assert len(train) == 8
    assert len(holdout) == 2
    assert set(train) | set(holdout) == set(range(10))
    assert split_rows(2, 0.01, seed=0)[1].size == 1


def test_a_table_over_max_rows_is_a_uniform_sample_the_same_from_parquet_and_from_memory(tmp_path: Path) -> None:
    frame = mixed_table(1_000).assign(position=np.arange(1_000))
    (tmp_path / "parts").mkdir()
    for k in range(4):
        frame.iloc[k * 250 : (k + 1) * 250].to_parquet(tmp_path / "parts" / f"{k}.parquet")
    streamed = read_table(tmp_path / "parts", max_rows=300, seed=7)
    assert len(streamed) == 300
    assert streamed["position"].is_monotonic_increasing  # the table's order is kept
    pd.testing.assert_frame_equal(streamed, sample_frame(frame, 300, 7))
    assert len(read_table(tmp_path / "parts", max_rows=5_000)) == 1_000


def test_shards_split_the_rows_between_processes(tmp_path: Path) -> None:
    frame = mixed_table(1_000).assign(position=np.arange(1_000))
    frame.to_parquet(tmp_path / "t.parquet")
    shards = [read_table(tmp_path / "t.parquet", max_rows=600, seed=1, shard=(k, 2)) for k in range(2)]
    assert [len(s) for s in shards] == [300, 300]
    both = set(shards[0]["position"]) | set(shards[1]["position"])
    assert both == set(read_table(tmp_path / "t.parquet", max_rows=600, seed=1)["position"])


def test_sample_positions_are_uniform_and_exact_in_size() -> None:
    counts = np.zeros(200_000)
    for seed in range(5):
        positions = sample_positions(200_000, 20_000, seed)
        assert len(np.unique(positions)) == 20_000
        counts[positions] += 1
    quarters = counts.reshape(4, -1).sum(axis=1)
    assert np.all(np.abs(quarters - 25_000) < 1_000)  # each quarter of the table gets its share

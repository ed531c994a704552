"""Table files (service/tables.py): formats by name, folders, reading, sampling, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.batch.io import resolve_inputs
from service.errors import DataError, InvalidInput
from service.tables import (
    csv_separator,
    parquet_files,
    read_table,
    sample_frame,
    sample_positions,
    table_format,
    write_table,
)


def _table(n_rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "load": rng.normal(size=n_rows),
            "site": rng.choice(["north", "south"], size=n_rows),
            "position": np.arange(n_rows),
        }
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "csv"),
        ("a.txt", "csv"),
        ("a.csv.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.PQ", "parquet"),
        ("a.parq", "parquet"),
    ],
)
def test_format_by_name(name: str, kind: str) -> None:
    assert table_format(name) == kind


def test_other_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"data.json: not a CSV or Parquet file .*\.csv\.gz.*\.parq"):
        table_format("data.json")


def test_tab_separated_only_for_tsv() -> None:
    assert csv_separator("a.tsv") == "\t"
    assert csv_separator("a.csv") == ","


def test_a_folder_is_its_parquet_files_without_hidden_ones(tmp_path: Path) -> None:
    """Spark's bookkeeping (``_SUCCESS``, ``_temporary/``) and dot files are not data."""
    frame = _table(10)
    (tmp_path / "b").mkdir()
    (tmp_path / "_temporary").mkdir()
    (tmp_path / "part.parquet").mkdir()  # a folder named like a file is not a file
    frame.to_parquet(tmp_path / "a.parquet")
    frame.to_parquet(tmp_path / "b" / "c.pq")
    frame.to_parquet(tmp_path / "_temporary" / "half.parquet")
    frame.to_parquet(tmp_path / ".d.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.csv").write_text("a\n1\n")
    expected = [tmp_path / "a.parquet", tmp_path / "b" / "c.pq"]
    assert parquet_files(tmp_path) == expected
    assert len(read_table(tmp_path)) == 20
    assert [f.path for f in resolve_inputs(tmp_path)] == expected  # batch jobs follow the same rule


def test_reads_csv_tsv_parquet_and_a_folder_of_parquet(tmp_path: Path) -> None:
    frame = _table(50)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "parts").mkdir()
    frame.iloc[:20].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[20:].to_parquet(tmp_path / "parts" / "b.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.tsv"), frame)
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


def test_a_table_over_max_rows_is_a_uniform_sample_the_same_from_parquet_and_from_memory(tmp_path: Path) -> None:
    frame = _table(1_000)
    (tmp_path / "parts").mkdir()
    for k in range(4):
        frame.iloc[k * 250 : (k + 1) * 250].to_parquet(tmp_path / "parts" / f"{k}.parquet")
    streamed = read_table(tmp_path / "parts", max_rows=300, seed=7)
    assert len(streamed) == 300
    assert streamed["position"].is_monotonic_increasing  # the table's order is kept
    pd.testing.assert_frame_equal(streamed, sample_frame(frame, 300, 7))
    assert len(read_table(tmp_path / "parts", max_rows=5_000)) == 1_000


def test_shards_split_the_rows_between_processes(tmp_path: Path) -> None:
    _table(1_000).to_parquet(tmp_path / "t.parquet")
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


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "sub/out.parquet"])
def test_write_then_read_round_trips(tmp_path: Path, name: str) -> None:
    frame = _table(20)
    path = write_table(frame, tmp_path / name)
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_write_refuses_a_name_without_a_format(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"out.xlsx: cannot tell the format"):
        write_table(_table(3), tmp_path / "out.xlsx")

"""CSV files read in record batches: every data row in order, malformed lines in their place."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from service.batch.csvfile import READ_ERROR_COLUMN, check_text, iter_csv_batches, separator_hint
from service.errors import DataError


def read_all(path: Path, *, block_bytes: int, batch_rows: int = 1000) -> tuple[list[str | None], list[str | None]]:
    """Column ``a`` and the read errors, row by row, over every batch."""
    values: list[str | None] = []
    errors: list[str | None] = []
    for batch in iter_csv_batches(
        path, ["a", "b"], batch_rows=batch_rows, text_columns=["a", "b"], block_bytes=block_bytes
    ):
        values += batch.column("a").to_pylist()
        if READ_ERROR_COLUMN in batch.schema.names:
            errors += batch.column(READ_ERROR_COLUMN).to_pylist()
        else:
            errors += [None] * batch.num_rows
    return values, errors


@pytest.mark.parametrize("block_bytes", [64, 1 << 20], ids=["many blocks", "one block"])
def test_malformed_lines_come_back_in_place_with_their_line(tmp_path: Path, block_bytes: int) -> None:
    lines = ["a,b"] + [f"r{i},{i}" for i in range(40)]
    lines[1 + 3] = "r3,3,extra"
    lines[1 + 10] = "r10"
    lines.insert(1 + 20, "")  # blank: not a row
    lines[1 + 30] = '"r29 spans\ntwo lines",29'  # a quoted line break: one row, two lines
    lines[-1] = "r39"  # the last line cut short
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines))

    values, errors = read_all(path, block_bytes=block_bytes, batch_rows=7)

    assert len(values) == 40
    assert [i for i, e in enumerate(errors) if e is not None] == [3, 10, 39]
    assert errors[3] == "line 5: 3 fields where the header has 2: 'r3,3,extra'"
    assert errors[10] == "line 12: 1 fields where the header has 2: 'r10'"
    assert errors[39] == "line 43: 1 fields where the header has 2: 'r39'"
    assert [values[i] for i in (3, 10, 39)] == [None, None, None]
    assert values[29] == "r29 spans\ntwo lines"
    good = [v for i, v in enumerate(values) if i not in (3, 10, 29, 39)]
    assert good == [f"r{i}" for i in range(40) if i not in (3, 10, 29, 39)]


def test_a_gzipped_file_with_only_malformed_rows_keeps_them_all(tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    with gzip.open(path, "wt") as stream:
        stream.write("a,b\n1\n2\n3,4,5\n")
    values, errors = read_all(path, block_bytes=1 << 20)
    assert values == [None, None, None]
    assert [e.split(":")[0] for e in errors if e is not None] == ["line 2", "line 3", "line 4"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"PAR1\x15\x04\x00\x00", "a NUL byte at offset 6); it looks like a Parquet file: name it .parquet"),
        (b"\x1f\x8b\x08\x00\x00", "it looks gzip-compressed: name it .csv.gz"),
        ("a,b\n1,2\n".encode("utf-16"), "it looks like UTF-16 text: save it as UTF-8"),
        ("a,b\ncaf\u00e9,1\n".encode("latin-1"), "byte 0xe9 at offset 7 is not UTF-8); save it as UTF-8 text"),
    ],
    ids=["parquet", "gzip", "utf-16", "latin-1"],
)
def test_a_file_that_is_not_text_is_named_for_what_it_is(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        check_text(path)
    assert caught.value.message.startswith(f"{path}: not a CSV text file (")
    assert says in caught.value.message


def test_utf8_text_passes_even_when_the_sample_ends_inside_a_character(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n" + "é,1\n" * 40_000, encoding="utf-8")  # 64 KiB falls inside an "é" somewhere
    check_text(path)


def test_the_separator_hint_names_the_one_the_header_holds(tmp_path: Path) -> None:
    assert "separated by ';'" in separator_hint(tmp_path / "x.csv", ["a;b;c"])
    assert "separated by tab" in separator_hint(tmp_path / "x.csv", ["a\tb"])
    assert "separated by ','" in separator_hint(tmp_path / "x.tsv", ["a,b"])
    assert separator_hint(tmp_path / "x.csv", ["a", "b"]) == ""
    assert separator_hint(tmp_path / "x.csv", ["ab"]) == ""

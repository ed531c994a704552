"""CSV input files: checked to be text, read in record batches, every line accounted for.

A file is first checked to be comma-separated (tab for ``.tsv``) UTF-8 text
(:func:`check_text`): a binary file given as CSV (a Parquet, gzip or ZIP file, UTF-16 text)
is refused by name, before its rows are read and without its bytes in the message.

pyarrow parses the rows (:func:`iter_csv_batches`). A line whose field count differs from
the header's (a stray separator, a missing field, a truncated last line) cannot be matched to
columns: pyarrow's parser hands it to :class:`_Malformed`, which puts it back in its place
as a row of nulls, with the reason in the column :data:`READ_ERROR_COLUMN`; the scoring
step turns that into the row's ``error``. So rows out = rows in, whatever the lines hold.
The reason names the line (counted from 1, the header included, as an editor shows it); the
line is found by reading the file again with the ``csv`` module, only when a line is bad.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from service.errors import DataError, quote

CSV_BLOCK_BYTES = 8 << 20  # bytes of CSV text parsed per block (a block is split into batches)
SNIFF_BYTES = 64 << 10  # bytes read from the start of a file to tell text from binary data
# The column a batch read from CSV carries when it holds malformed lines: the reason per row,
# null for a good row. A NUL cannot be in a header of a text file, so no input column has it.
READ_ERROR_COLUMN = "\0read_error"
# Separators other than the one latentwatch reads, named for the hint of separator_hint.
_OTHER_SEPARATORS = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
# File signatures: what a file that is not text is, and what to do with it.
_SIGNATURES = (
    (b"PAR1", "it looks like a Parquet file: name it .parquet"),
    (b"\x1f\x8b", "it looks gzip-compressed: name it .csv.gz"),
    (b"PK\x03\x04", "it looks like a ZIP archive: extract the CSV file first"),
    (b"\xff\xfe", "it looks like UTF-16 text: save it as UTF-8"),
    (b"\xfe\xff", "it looks like UTF-16 text: save it as UTF-8"),
)


def delimiter(path: Path) -> str:
    """The separator read in ``path``: tab for ``.tsv``, else comma."""
    return "\t" if path.name.lower().endswith(".tsv") else ","


def _gzipped(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def check_text(path: Path) -> None:
    """Refuse a file whose start is not UTF-8 text (a NUL byte, or bytes that are not UTF-8).

    Raises:
        DataError: naming the file, the first offending byte's offset and, where its
            signature tells, what the file is.
    """
    try:
        with gzip.open(path, "rb") if _gzipped(path) else path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except (OSError, EOFError) as err:
        msg = f"{path}: cannot read it as CSV: {err}"
        raise DataError(msg) from None
    nul = head.find(b"\0")
    if nul >= 0:
        problem = f"a NUL byte at offset {nul}"
    else:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < SNIFF_BYTES)
            return
        except UnicodeDecodeError as err:
            problem = f"byte 0x{head[err.start]:02x} at offset {err.start} is not UTF-8"
    hint = next((text for magic, text in _SIGNATURES if head.startswith(magic)), "save it as UTF-8 text")
    msg = f"{path}: not a CSV text file ({problem}); {hint}"
    raise DataError(msg)


def separator_hint(path: Path, names: Sequence[str]) -> str:
    """A hint for a header that reads as one column holding another separator, or ``""``."""
    if len(names) != 1:
        return ""
    header, used = names[0], delimiter(path)
    other = next((name for sep, name in _OTHER_SEPARATORS.items() if sep != used and sep in header), None)
    if other is None:
        return ""
    return (
        f" (the header reads as one column {quote(header)}: the file looks separated by {other}, but "
        f"latentwatch reads {_OTHER_SEPARATORS[used]} in a {'.tsv' if used == chr(9) else '.csv'} file; "
        f"write it with that separator)"
    )


def csv_options(
    path: Path,
    columns: Sequence[str] | None,
    text_columns: Sequence[str],
    *,
    block_bytes: int = CSV_BLOCK_BYTES,
    invalid_rows: _Malformed | None = None,
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    """pyarrow's options for ``path``: ``text_columns`` as strings, bad lines to ``invalid_rows``.

    One thread: pyarrow numbers a bad line only then (the scorer, not the parser, takes most of
    a job's time).
    """
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in text_columns},
        include_columns=list(columns) if columns is not None else None,
        strings_can_be_null=True,  # "", "NA", "NaN", "null", ... are missing, as pandas reads them
    )
    parse = pacsv.ParseOptions(
        delimiter=delimiter(path),
        newlines_in_values=True,  # a quoted line break may fall on a block's edge
        invalid_row_handler=invalid_rows if invalid_rows is not None else _skip,
    )
    return pacsv.ReadOptions(block_size=block_bytes, use_threads=False), parse, convert


def _skip(row: pacsv.InvalidRow) -> str:
    return "skip"


class CsvProgress:
    """Bytes of a CSV file consumed so far (compressed bytes for ``.gz``), for a progress estimate."""

    def __init__(self, stream: pa.NativeFile, total: int) -> None:
        self._stream = stream
        self.total_bytes = total

    @property
    def bytes_read(self) -> int:
        try:
            return min(self._stream.tell(), self.total_bytes)
        except (OSError, ValueError):  # closed
            return self.total_bytes


class _LineNumbers:
    """The line on which a row starts, read with the ``csv`` module (quoted line breaks, blank lines).

    Rows are numbered as pyarrow numbers them: 1 is the header, blank lines are not rows.
    Asked in increasing order, it reads the file once, as far as the last row asked for.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stream: IO[str] | None = None
        self._reader: Any = None  # a csv reader: rows, and line_num
        self._rows = 0
        self._start = 0
        self._failed = False

    def line_of(self, number: int) -> int | None:
        """Row ``number``'s first line, or None when the csv module cannot follow the file."""
        if self._failed:
            return None
        if self._reader is None:
            opener = gzip.open if _gzipped(self._path) else open
            self._stream = opener(self._path, "rt", encoding="utf-8", errors="replace", newline="")
            self._reader = csv.reader(self._stream, delimiter=delimiter(self._path))
        try:
            while self._rows < number:
                start = self._reader.line_num + 1
                if next(self._reader):  # a blank line reads as []
                    self._rows += 1
                    self._start = start
        except (csv.Error, StopIteration, OSError, EOFError):  # a field beyond csv's size limit, say
            self._failed = True
            return None
        return self._start

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class _Malformed:
    """pyarrow's ``invalid_row_handler``: keeps each line whose field count is not the header's
    (pyarrow skips it), and puts it back among the good rows as a row of nulls with a reason."""

    def __init__(self, path: Path) -> None:
        self._rows: deque[pacsv.InvalidRow] = deque()
        self._lines = _LineNumbers(path)

    def __call__(self, row: pacsv.InvalidRow) -> str:
        self._rows.append(row)
        return "skip"

    def _reason(self, row: pacsv.InvalidRow) -> str:
        line = self._lines.line_of(row.number)
        where = f"line {line}" if line is not None else f"row {row.number - 2}"
        return f"{where}: {row.actual_columns} fields where the header has {row.expected_columns}: {quote(row.text)}"

    def merge(self, batch: pa.RecordBatch, start: int) -> pa.RecordBatch:
        """``batch`` (good rows from data row ``start`` on) with the bad rows among them in place."""
        taken: list[pacsv.InvalidRow] = []
        while self._rows and self._rows[0].number - 2 < start + batch.num_rows + len(taken):
            taken.append(self._rows.popleft())
        return self._insert(batch, [(row.number - 2 - start, self._reason(row)) for row in taken])

    def rest(self, schema: pa.Schema) -> pa.RecordBatch:
        """The bad rows after the last good one (the file's end: a truncated last line)."""
        taken = list(self._rows)
        self._rows.clear()
        return self._insert(_empty(schema), [(i, self._reason(row)) for i, row in enumerate(taken)])

    @staticmethod
    def _insert(batch: pa.RecordBatch, bad: list[tuple[int, str]]) -> pa.RecordBatch:
        if not bad:
            return batch
        n = batch.num_rows + len(bad)
        positions = np.fromiter((p for p, _ in bad), dtype=np.int64, count=len(bad))
        order = np.empty(n, dtype=np.int64)
        is_bad = np.zeros(n, dtype=bool)
        is_bad[positions] = True
        order[~is_bad] = np.arange(batch.num_rows)
        order[positions] = batch.num_rows + np.arange(len(bad))
        nulls = pa.RecordBatch.from_arrays([pa.nulls(len(bad), f.type) for f in batch.schema], schema=batch.schema)
        table = pa.Table.from_batches([batch, nulls], schema=batch.schema).take(order)
        reasons = np.full(n, None, dtype=object)
        reasons[positions] = [reason for _, reason in bad]
        table = table.append_column(READ_ERROR_COLUMN, pa.array(reasons, type=pa.string()))
        return table.combine_chunks().to_batches()[0]

    def close(self) -> None:
        self._lines.close()


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def rechunk(batch: pa.RecordBatch, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``batch`` in slices of at most ``batch_rows`` rows (no copy)."""
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)


def iter_csv_batches(
    path: Path,
    columns: Sequence[str],
    *,
    batch_rows: int,
    text_columns: Sequence[str] = (),
    progress: list[CsvProgress] | None = None,
    block_bytes: int = CSV_BLOCK_BYTES,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (in that order, plus :data:`READ_ERROR_COLUMN` in a batch
    holding a malformed line), at most ``batch_rows`` rows each, every data row in file order.

    Raises:
        pa.ArrowInvalid, OSError: the file cannot be parsed (``service.batch.io`` names it).
    """
    malformed = _Malformed(path)
    read, parse, convert = csv_options(path, columns, text_columns, block_bytes=block_bytes, invalid_rows=malformed)
    with contextlib.closing(malformed), pa.OSFile(str(path), "rb") as raw:
        stream = pa.CompressedInputStream(raw, "gzip") if _gzipped(path) else raw
        if progress is not None:
            progress.append(CsvProgress(raw, path.stat().st_size))
        with pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert) as reader:
            schema = pa.schema([reader.schema.field(name) for name in columns])
            start = 0
            for batch in reader:
                batch = malformed.merge(batch.select(list(columns)), start)
                start += batch.num_rows
                yield from rechunk(batch, batch_rows)
        yield from rechunk(malformed.rest(schema), batch_rows)

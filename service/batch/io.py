"""Input files read in record batches; output files written whole or not at all.

Inputs (:func:`resolve_inputs`): a CSV or Parquet file, a folder of Parquet files (the
names and folder rules of :mod:`service.tables`), or a glob pattern (its matches in path
order). Rows are read in record batches of at
most ``batch_rows`` rows, so memory does not grow with the file: a Parquet file is read
one row group at a time (memory follows its largest row group; pyarrow writes groups of at
most 1Mi rows, Spark of 128 MiB), a CSV file one block of 8 MiB at a time.

CSV cells are text: the columns named in ``text_columns`` (the model's features) are read
as strings and typed later by the scorer, so one bad cell marks its row, not the whole
block. Other CSV columns take the types pyarrow infers from the file's first block. A CSV
file must be text, and a line with the wrong number of fields is kept as a row with its
reason (:mod:`service.batch.csvfile`).

The output is checked before any input is read (:func:`check_output`): its format, and that
it is not a folder and can be created where it is named.

Outputs (:class:`AtomicWriter`): Parquet or CSV by the name's extension, written to a hidden
temporary file beside the target and renamed over it when the job completes; a failed job
removes the temporary file, so a file at the target's name is always whole.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from service.batch.csvfile import CsvProgress, check_text, csv_options, iter_csv_batches, rechunk
from service.errors import ConfigError, DataError
from service.tables import is_parquet, parquet_files, table_format

PARQUET_BUFFER_BYTES = 4 << 20  # read buffer per column chunk: bounds memory for huge row groups
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class InputFile:
    """One input file and its format (``csv`` or ``parquet``)."""

    path: Path
    format: str

    @property
    def source(self) -> str:
        """The name used in messages."""
        return str(self.path)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def resolve_inputs(spec: str | os.PathLike[str]) -> list[InputFile]:
    """The files ``spec`` names, in the order their rows are read.

    Raises:
        DataError: nothing there, an empty folder or pattern, or a file of another format.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        paths = [path]
    elif path.is_dir():
        paths = parquet_files(path)
    elif any(c in text for c in _GLOB_CHARS):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())  # noqa: PTH207
        if not paths:
            msg = f"{text}: the pattern matches no file"
            raise DataError(msg)
    else:
        msg = f"{path}: no such file or folder"
        raise DataError(msg)
    return [InputFile(p, table_format(p)) for p in paths]


@contextlib.contextmanager
def _arrow_errors(file: InputFile) -> Iterator[None]:
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        kind = "CSV" if file.format == "csv" else "Parquet"
        msg = f"{file.source}: cannot read it as {kind}: {_printable(str(err))}"
        if file.format == "csv" and "conversion error" in str(err):
            msg += (
                " (a column that is not a feature took its type from the file's first rows; "
                "leave it out with --keep-columns)"
            )
        raise DataError(msg) from None


def _printable(text: str, limit: int = 300) -> str:
    """``text`` on one line, control characters escaped, cut to ``limit`` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


def read_schema(file: InputFile, text_columns: Sequence[str] = ()) -> pa.Schema:
    """The columns of ``file`` and their types, as :func:`iter_batches` will yield them.

    Raises:
        DataError: the file cannot be read, or (CSV) is not text.
    """
    if file.format == "csv":
        check_text(file.path)
    with _arrow_errors(file):
        if file.format == "parquet":
            return pq.read_schema(file.path)
        read, parse, convert = csv_options(file.path, None, text_columns)
        with pacsv.open_csv(file.path, read_options=read, parse_options=parse, convert_options=convert) as reader:
            return reader.schema


def column_kinds(schema: pa.Schema) -> dict[str, tuple[str, str]]:
    """Column name -> (kind, type name) for :func:`service.features.check_column_kinds`."""
    kinds = {}
    for field in schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        kinds[field.name] = (_kind(kind), str(field.type))
    return kinds


def _kind(kind: pa.DataType) -> str:
    checks = (
        ("null", pa.types.is_null),
        ("bool", pa.types.is_boolean),
        ("int", pa.types.is_integer),
        ("float", lambda t: pa.types.is_floating(t) or pa.types.is_decimal(t)),
        ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)),
        ("temporal", pa.types.is_temporal),
    )
    return next((name for name, check in checks if check(kind)), "other")


def count_rows(file: InputFile) -> int | None:
    """Rows in ``file`` from its metadata (Parquet), or None where only reading tells (CSV)."""
    if file.format != "parquet":
        return None
    with _arrow_errors(file):
        return pq.ParquetFile(file.path).metadata.num_rows


def row_group_sizes(file: InputFile) -> list[int]:
    """Rows per row group of a Parquet file."""
    with _arrow_errors(file):
        metadata = pq.ParquetFile(file.path).metadata
        return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def _row_group_batches(
    reader: pq.ParquetFile, group: int, columns: Sequence[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """One row group's batches. Reading row group by row group keeps memory bounded by the
    largest row group: one ``iter_batches`` over a whole file holds on to what it has read
    (pyarrow 26: ~0.7 GiB after 0.5 GiB of a file)."""
    for batch in reader.iter_batches(batch_size=batch_rows, columns=list(columns), row_groups=[group]):
        yield from rechunk(batch, batch_rows)


def iter_batches(
    file: InputFile,
    columns: Sequence[str],
    *,
    batch_rows: int,
    text_columns: Sequence[str] = (),
    progress: list[CsvProgress] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (in that order), at most ``batch_rows`` rows each, in file order.

    A CSV batch holding malformed lines also has the column
    :data:`~service.batch.csvfile.READ_ERROR_COLUMN` (see :mod:`service.batch.csvfile`).

    Args:
        file: the input file.
        columns: the columns to read; each must exist.
        batch_rows: the most rows per batch.
        text_columns: CSV only: columns read as strings (see the module docstring).
        progress: CSV only: a list that receives the file's :class:`CsvProgress`.

    Raises:
        DataError: the file cannot be read, naming it.
    """
    with _arrow_errors(file):
        if file.format == "parquet":
            reader = pq.ParquetFile(file.path, buffer_size=PARQUET_BUFFER_BYTES)
            for group in range(reader.num_row_groups):
                yield from _row_group_batches(reader, group, columns, batch_rows)
            return
        yield from iter_csv_batches(
            file.path, columns, batch_rows=batch_rows, text_columns=text_columns, progress=progress
        )


def iter_parquet_rows(
    file: InputFile, columns: Sequence[str], start: int, stop: int, *, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Record batches of rows ``start:stop`` (counted from the file's first row) of a Parquet file.

    Only the row groups that hold those rows are read.
    """
    with _arrow_errors(file):
        reader = pq.ParquetFile(file.path, buffer_size=PARQUET_BUFFER_BYTES)
        metadata = reader.metadata
        groups, first_row, group_start = [], None, 0
        for i in range(metadata.num_row_groups):
            group_stop = group_start + metadata.row_group(i).num_rows
            if group_start < stop and group_stop > start:
                groups.append(i)
                first_row = group_start if first_row is None else first_row
            group_start = group_stop
        position = first_row or 0
        for group in groups:
            for batch in _row_group_batches(reader, group, columns, batch_rows):
                lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
                position += batch.num_rows
                if hi > lo:
                    yield batch.slice(lo, hi - lo)
                if position >= stop:
                    return


def output_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the output name's extension."""
    if is_parquet(path):
        return "parquet"
    if path.name.lower().endswith(".csv"):
        return "csv"
    msg = f"--output {path}: name it .parquet (or .pq) for Parquet, or .csv for CSV"
    raise ConfigError(msg)


def check_output(path: Path) -> None:
    """Refuse an output that cannot be written, before any input is read.

    Its name must tell the format; it must not be a folder; the nearest folder above it that
    exists (the job creates the missing ones) must be a folder this process may write in.

    Raises:
        ConfigError: naming the output and what stands in the way.
    """
    output_format(path)
    if path.is_dir():
        msg = f"--output {path} is a folder; name a file in it, such as {path / 'scored.parquet'}"
        raise ConfigError(msg)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        msg = f"--output {path}: {folder} is a file, not a folder"
        raise ConfigError(msg)
    if not os.access(folder, os.W_OK | os.X_OK):
        msg = f"--output {path}: cannot write in {folder} (permission denied or a read-only file system)"
        raise ConfigError(msg)


class AtomicWriter:
    """Tables with one schema written to ``path`` through a temporary file.

    Use as a context manager and call :meth:`commit` when every table is written: the
    temporary file then replaces ``path``. Leaving the block without :meth:`commit` (an
    error, an interrupt) deletes the temporary file; ``path`` is never touched.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.Schema) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.schema = schema
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None

    def __enter__(self) -> AtomicWriter:
        tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.partial"
        with self._os_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies, as for any file
        self._tmp = tmp
        try:
            with self._os_errors():
                if self.format == "parquet":
                    self._writer = pq.ParquetWriter(str(self._tmp), self.schema)
                else:
                    self._writer = pacsv.CSVWriter(str(self._tmp), self.schema)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        return self

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        """An error of the file system (no space, no permission) as a :class:`DataError` naming the output."""
        try:
            yield
        except OSError as err:
            msg = f"--output {self.path}: cannot write it: {err}"
            raise DataError(msg) from None

    def write(self, table: pa.Table, source: str) -> None:
        """Append ``table`` (cast to the writer's schema; ``source`` names the input in errors)."""
        if self._writer is None:
            msg = "AtomicWriter.write outside its with block"
            raise RuntimeError(msg)
        if table.schema != self.schema:
            table = self._cast(table, source)
        with self._os_errors():
            self._writer.write_table(table)

    def _cast(self, table: pa.Table, source: str) -> pa.Table:
        columns = []
        for field in self.schema:
            column = table.column(field.name)
            try:
                columns.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                msg = (
                    f"{source}: column {field.name!r} holds {column.type} values, but earlier rows made it "
                    f"{field.type}: {err}"
                )
                raise DataError(msg) from None
        return pa.Table.from_arrays(columns, schema=self.schema)

    def commit(self) -> None:
        """Close the temporary file and rename it to ``path``."""
        if self._writer is None or self._tmp is None:
            msg = "AtomicWriter.commit outside its with block"
            raise RuntimeError(msg)
        with self._os_errors():
            self._writer.close()
            self._writer = None
            self._tmp.replace(self.path)
        self._tmp = None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

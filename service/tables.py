"""Table files: which names are CSV or Parquet, which files a folder holds, reading and writing.

The rules every command follows (``train``, ``evaluate``, ``score``, ``sample``,
``interpolate``):

- a name ending in ``.csv``, ``.tsv``, ``.txt`` or ``.csv.gz`` is CSV (tab-separated for
  ``.tsv``); one ending in ``.parquet``, ``.pq`` or ``.parq`` is Parquet (case ignored);
- a folder stands for every Parquet file under it, in path order; a path with a part that
  starts with ``.`` or ``_`` is skipped, as Spark and Hive write their bookkeeping and
  unfinished files so.

:func:`read_table` reads a whole table into pandas, or a seeded uniform sample of it
(:func:`sample_positions`), streaming Parquet so that memory holds only the sample.
Batch jobs read in record batches with the same rules (``service.batch.io``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from service.errors import DataError, InvalidInput

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
SAMPLE_CHUNK_ROWS = 65_536


def is_parquet(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(PARQUET_SUFFIXES)


def is_csv(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(CSV_SUFFIXES)


def table_format(path: str | Path) -> str:
    """``parquet`` or ``csv`` from a file's name.

    Raises:
        DataError: a name with neither kind of extension.
    """
    if is_parquet(path):
        return "parquet"
    if is_csv(path):
        return "csv"
    msg = f"{path}: not a CSV or Parquet file (expected a name ending in one of {CSV_SUFFIXES + PARQUET_SUFFIXES})"
    raise DataError(msg)


def csv_separator(path: str | Path) -> str:
    """The field separator of a CSV file: a tab for ``.tsv``, else a comma."""
    return "\t" if Path(path).name.lower().endswith(".tsv") else ","


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def parquet_files(folder: str | Path) -> list[Path]:
    """The Parquet files a folder stands for, in path order (see the module docstring).

    Raises:
        DataError: the folder holds none.
    """
    folder = Path(folder)
    found = (p for p in folder.rglob("*") if p.is_file() and is_parquet(p))
    files = sorted(p for p in found if not _hidden(p, folder))
    if not files:
        msg = f"{folder}: the folder holds no Parquet files ({', '.join(PARQUET_SUFFIXES)})"
        raise DataError(msg)
    return files


def read_table(
    path: str | Path, *, max_rows: int | None = None, seed: int = 0, shard: tuple[int, int] = (0, 1)
) -> pd.DataFrame:
    """Read a CSV file, a Parquet file or a folder of Parquet files into a DataFrame.

    With ``max_rows``, a table of more rows comes back as a seeded uniform sample of that many
    (:func:`sample_positions`), in the table's order. Parquet is streamed a record batch at a
    time, so memory holds the sample, never the whole table; a CSV file is read whole, then
    sampled. ``shard`` ``(k, n)`` keeps every n-th of those rows from the k-th: one process's
    share of a multi-process fit.

    Raises:
        DataError: naming the path when it is missing, of another format, unreadable, or holds
            no rows or no columns.
    """
    path = Path(path)
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise DataError(msg)
    kind = "parquet" if path.is_dir() else table_format(path)
    try:
        if kind == "parquet":
            frame = _read_parquet(parquet_files(path) if path.is_dir() else [path], max_rows, seed, shard)
        else:
            frame = pd.read_csv(path, sep=csv_separator(path))
            frame = sample_frame(frame, max_rows, seed).iloc[shard[0] :: shard[1]].reset_index(drop=True)
    except pd.errors.EmptyDataError:
        msg = f"{path}: the file is empty"
        raise DataError(msg) from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = f"{path}: cannot read it as {'CSV' if kind == 'csv' else 'Parquet'}: {err}"
        raise DataError(msg) from None
    if frame.empty or len(frame.columns) == 0:
        msg = f"{path}: the table has no rows" if len(frame.columns) else f"{path}: no columns"
        raise DataError(msg)
    return frame


def _read_parquet(files: list[Path], max_rows: int | None, seed: int, shard: tuple[int, int]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(f) for f in files], format="parquet")
    total = dataset.count_rows()  # from the files' footers; reads no rows
    if (max_rows is None or total <= max_rows) and shard[1] == 1:
        return dataset.to_table().to_pandas()
    keep = sample_positions(total, max_rows or total, seed)[shard[0] :: shard[1]]
    parts, start = [], 0
    for batch in dataset.to_batches(batch_size=65_536):
        lo, hi = np.searchsorted(keep, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(keep[lo:hi] - start)))
        start += batch.num_rows
    log.info("read %d of the table's %d rows (max_rows %s, shard %d of %d)", len(keep), total, max_rows, *shard)
    return pa.Table.from_batches(parts, schema=dataset.schema).to_pandas()


def sample_positions(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded uniform sample of ``max_rows`` of ``n_rows`` rows (all when fewer).

    Every subset of ``max_rows`` rows is equally likely. The rows are taken a chunk of
    ``SAMPLE_CHUNK_ROWS`` at a time: how many of the rows still wanted fall in the chunk is a
    hypergeometric draw, so memory grows with the sample, not with the table.
    """
    if n_rows <= max_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    parts, wanted = [], max_rows
    for start in range(0, n_rows, SAMPLE_CHUNK_ROWS):
        size = min(SAMPLE_CHUNK_ROWS, n_rows - start)
        rest = n_rows - start - size
        count = int(rng.hypergeometric(size, rest, wanted)) if rest else wanted
        parts.append(start + np.sort(rng.choice(size, count, replace=False)))
        wanted -= count
    return np.concatenate(parts)


def sample_frame(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """``frame``, or the rows of :func:`sample_positions` when it has more than ``max_rows``."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.iloc[sample_positions(len(frame), max_rows, seed)].reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) as CSV or Parquet by ``path``'s extension.

    Raises:
        InvalidInput: an extension that is neither, or a folder that cannot be written.
    """
    path = Path(path)
    if not (is_csv(path) or is_parquet(path)):
        msg = f"{path}: cannot tell the format; use a name ending in .csv or .parquet"
        raise InvalidInput(msg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_parquet(path):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep=csv_separator(path))
    except OSError as err:
        msg = f"{path}: cannot write the table: {err}"
        raise InvalidInput(msg) from None
    return path

"""Reading and writing tables on the serving side (pandas + pyarrow, no torch).

CSV (``.csv``, ``.tsv``, ``.txt``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``, ``.parq``),
chosen by the file name's extension; reading also takes a folder of Parquet files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from service.errors import InvalidInput

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, or a folder of Parquet files.

    Raises:
        InvalidInput: naming the path when it is missing, of another format or unreadable.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise InvalidInput(msg)
    try:
        if path.is_dir():
            import pyarrow.dataset as ds

            files = sorted(str(p) for p in path.rglob("*") if p.name.lower().endswith(PARQUET_SUFFIXES))
            if not files:
                msg = f"{path}: the folder holds no Parquet files"
                raise InvalidInput(msg)
            return ds.dataset(files, format="parquet").to_table().to_pandas()
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except InvalidInput:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as err:  # EmptyDataError is a ValueError
        msg = f"{path}: cannot read the table: {err}"
        raise InvalidInput(msg) from None
    msg = f"{path}: not a CSV or Parquet file (expected one of {CSV_SUFFIXES + PARQUET_SUFFIXES})"
    raise InvalidInput(msg)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) as CSV or Parquet by ``path``'s extension.

    Raises:
        InvalidInput: an extension that is neither, or a folder that cannot be written.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        msg = f"{path}: cannot tell the format; use a name ending in .csv or .parquet"
        raise InvalidInput(msg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(PARQUET_SUFFIXES):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    except OSError as err:
        msg = f"{path}: cannot write the table: {err}"
        raise InvalidInput(msg) from None
    return path

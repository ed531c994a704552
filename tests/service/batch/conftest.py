"""Fixtures of the batch-scoring tests: tables to score (the trained bundle is in ``tests/service/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.training.tables import mixed_table


def scoring_table(n_rows: int = 2500, seed: int = 1) -> pd.DataFrame:
    """Rows to score: :func:`mixed_table` plus an id (in shuffled order) and a timestamp to pass through."""
    frame = mixed_table(n_rows, seed=seed)
    rng = np.random.default_rng(seed)
    frame.insert(0, "event_id", rng.permutation(n_rows).astype(np.int64) + 1000)
    frame["seen_at"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(n_rows), unit="s")
    # Unusual rows, so that some are flagged.
    frame.loc[frame.index[::97], "power"] = 40.0
    return frame


def corrupt_csv(path: Path, bad: dict[int, tuple[str, str]]) -> None:
    """Overwrite cells of a CSV file: ``{row: (column, text)}``, rows counted from 0 after the header."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    for row, (column, text) in bad.items():
        cells = lines[row + 1].split(",")
        cells[header.index(column)] = text
        lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")

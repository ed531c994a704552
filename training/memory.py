"""Whether a fit fits in memory, said before training rather than found by the kernel's OOM killer.

A fit holds the encoded table (``float32``, one column per feature) and, for each member, its
fit and held-out rows preprocessed: the encoder's inputs (one-hot groups and missing-value
indicators included) and the likelihood's targets, about ``2 x inputs`` floats a row. The table
is sampled to ``max_rows`` rows before this is counted (``service.tables.read_table``).
"""

from __future__ import annotations

import os
from pathlib import Path

from service.errors import ConfigError

BYTES_PER_FLOAT = 4
# Everything else a run holds (torch, onnxruntime, the frame's strings), measured on the
# 30,000-row payments table of benchmarks/fit_scale.py: about 0.6 GiB beside the arrays.
BASELINE_BYTES = 600 * 2**20


def fit_bytes(n_rows: int, n_inputs: int, n_features: int, members: int) -> int:
    """Bytes a fit of ``n_rows`` rows needs, roughly: the arrays above plus ``BASELINE_BYTES``."""
    per_row = n_features + members * 2 * n_inputs  # encoded row + each member's preprocessed copy
    return BASELINE_BYTES + n_rows * per_row * BYTES_PER_FLOAT


def available_bytes() -> int | None:
    """Memory the machine can still give this process (``MemAvailable``), or None where unknown."""
    try:
        with Path("/proc/meminfo").open() as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_rows: int, n_inputs: int, n_features: int, members: int, available: int | None = None) -> None:
    """Refuse a fit that needs more memory than is available, naming the setting that lowers it.

    Raises:
        ConfigError: with the estimate, what is available and a ``max_rows`` that would fit.
    """
    available = available_bytes() if available is None else available
    need = fit_bytes(n_rows, n_inputs, n_features, members)
    if available is None or need <= available:
        return
    per_row = (need - BASELINE_BYTES) / max(1, n_rows)
    rows = max(10, int((available - BASELINE_BYTES) * 0.8 / per_row)) if available > BASELINE_BYTES else 10
    msg = (
        f"training on {n_rows:,} rows of {n_inputs} encoder inputs needs about {need / 2**30:.1f} GiB, and "
        f"{available / 2**30:.1f} GiB of memory is available; lower max_rows (--max-rows {rows:,} would fit) "
        "or free memory"
    )
    raise ConfigError(msg)

"""How fast the default's exported graph scores, in-process, on the widest benchmark table.

The cost bar (docs/decisions.md): the ONNX graph of ``latentwatch train`` with no options,
trained on mnist's protocol split (100 features), scores at least 50,000 rows per second in
one onnxruntime session on 2 CPU threads, fed 1024-row batches. The figure is the median over
repeated passes over the test rows, every output computed, so it is the limit a server or a
batch job can approach, not what either reaches.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

BAR_ROWS_PER_SECOND = 50_000
THREADS = 2
BATCH_ROWS = 1024


def rows_per_second(
    onnx_file: Path, x: np.ndarray, *, threads: int = THREADS, batch_rows: int = BATCH_ROWS, repeats: int = 7
) -> list[float]:
    """Rows per second of each of ``repeats`` passes over ``x`` (float32) in ``batch_rows`` batches.

    One untimed pass first warms the session's arenas and kernels.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    batches = [np.ascontiguousarray(x[i : i + batch_rows]) for i in range(0, len(x), batch_rows)]

    def one_pass() -> float:
        start = time.perf_counter()
        for part in batches:
            session.run(None, {"x": part})
        return len(x) / (time.perf_counter() - start)

    one_pass()
    return [one_pass() for _ in range(repeats)]


def summary(speeds: list[float], **facts: Any) -> dict[str, Any]:
    """The record cached and reported: the median, every pass, and how it was measured."""
    return {"rows_per_second": statistics.median(speeds), "passes": speeds, **facts}


def report_line(record: dict[str, Any]) -> str:
    """One markdown line: the median against the bar, and how it was measured."""
    median = record["rows_per_second"]
    verdict = "met" if median >= BAR_ROWS_PER_SECOND else "**NOT met**"
    return (
        f"- exported graph of `{record['detector']}` trained on {record['dataset']} (seed {record['seed']}, "
        f"{record['features']} features, hidden {record['hidden']}, latent {record['latent_dim']}, "
        f"{record.get('members', 1)} member(s), {record['draws']} draws): **{median:,.0f} rows/s**, "
        f"median of {len(record['passes'])} passes over {record['rows']:,} rows in one onnxruntime session, "
        f"{record['threads']} intra-op threads, {record['batch_rows']}-row batches, every output; "
        f"bar >= {BAR_ROWS_PER_SECOND:,}: {verdict}"
    )

"""The Dask engine: a batch job's pieces scored on a Dask cluster, the output the local engine's.

``latentwatch score --engine dask`` splits the input into pieces and scores each on a Dask
worker; the client writes the scored pieces in input order through the same writer as the
local engine, so the output equals the local engine's row for row:

- a Parquet file is cut at row-group boundaries into pieces of about :data:`PIECE_ROWS`
  rows (a larger row group is split); a worker reads its piece itself, so the input must be
  readable at the same path on the workers (a shared or object-store path, as for any Dask
  job);
- a CSV file cannot be cut without reading it: the client reads it in record batches and
  sends each batch to a worker.

The bundle travels as bytes (``model.onnx`` and ``manifest.json``,
:class:`~service.batch.payload.BundlePayload`), scattered once to every worker, never as a path
that may not exist there. Each worker process writes it to a local temporary folder, verifies
it and opens one :class:`~service.scorer.Scorer` (one onnxruntime thread per task; Dask's
threads give the parallelism), cached for the life of the process. At most two pieces per
worker thread are in flight, so the client's memory stays bounded too.

Without ``--scheduler`` a ``LocalCluster`` of worker processes (one thread each; one per
CPU unless ``--workers``) is started for the job and stopped after it.

This module imports ``distributed`` only inside the functions that need it. Scoring pandas
frames for Spark's ``mapInPandas`` is :mod:`service.batch.spark`; ``BundlePayload``,
``cached_scorer`` and ``score_pandas`` still import from here too.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from service.batch.io import CsvProgress, InputFile, iter_batches, iter_parquet_rows, row_group_sizes
from service.batch.payload import BundlePayload, cached_scorer
from service.batch.rows import OutputPlan, ScoreOptions, concat_scored, score_arrow
from service.batch.spark import score_pandas as score_pandas  # re-exported: its home before service.batch.spark
from service.bundle import Bundle
from service.errors import ConfigError, LatentwatchError, MissingExtra

logger = logging.getLogger(__name__)

PIECE_ROWS = 131_072  # target rows per Parquet piece (one task); small enough to balance a few workers
DASK_EXTRA_HINT = "install the dask extra: pip install 'latentwatch[dask]'"


class ClusterError(LatentwatchError):
    """The Dask cluster cannot be reached, or a worker failed for a reason of its own."""

    code = "UNAVAILABLE"


@dataclass(frozen=True)
class Piece:
    """Rows ``start:stop`` of a Parquet file (counted from its first row): one task."""

    file: InputFile
    start: int
    stop: int


def plan_pieces(file: InputFile, target_rows: int | None = None) -> list[Piece]:
    """Cut a Parquet file into pieces of about ``target_rows`` rows (default :data:`PIECE_ROWS`).

    Pieces end at row-group boundaries where the row groups are smaller than that; a larger
    row group is split evenly.
    """
    target_rows = target_rows or PIECE_ROWS
    pieces: list[Piece] = []
    start = position = 0
    for size in row_group_sizes(file):
        if position > start and position - start + size > target_rows:
            pieces.append(Piece(file, start, position))
            start = position
        if size > target_rows:  # split a large row group evenly
            parts = -(-size // target_rows)
            bounds = [position + size * k // parts for k in range(parts + 1)]
            pieces += [Piece(file, a, b) for a, b in itertools.pairwise(bounds)]
            start = position + size
        position += size
    if position > start:
        pieces.append(Piece(file, start, position))
    return pieces


def _score_piece(
    payload: BundlePayload, plan: OutputPlan, piece: Piece, batch_rows: int, device: str
) -> pa.Table | LatentwatchError:
    """A worker's task: read rows ``piece.start:piece.stop`` and score them.

    A user's error (a bad row under ``strict``, a bad bundle) comes back as the value, for
    the client to raise in input order, and without a worker's error log.
    """
    try:
        scorer = cached_scorer(payload, device=device, intra_op_threads=1)
        tables, offset = [], piece.start
        for batch in iter_parquet_rows(piece.file, plan.read_columns, piece.start, piece.stop, batch_rows=batch_rows):
            tables.append(score_arrow(batch, scorer, plan, source=piece.file.source, row_offset=offset))
            offset += batch.num_rows
    except LatentwatchError as err:
        return err
    return concat_scored(tables, plan)


def _score_table(
    payload: BundlePayload, plan: OutputPlan, table: pa.Table, source: str, row_offset: int, device: str
) -> pa.Table | LatentwatchError:
    """A worker's task: score a batch that the client read (CSV); errors as :func:`_score_piece`."""
    try:
        scorer = cached_scorer(payload, device=device, intra_op_threads=1)
        return score_arrow(table, scorer, plan, source=source, row_offset=row_offset, text_input=True)
    except LatentwatchError as err:
        return err


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int | None, client: Any = None) -> Iterator[Any]:
    """A ``distributed.Client``: ``client`` itself, one to ``scheduler``, or one to a new ``LocalCluster``.

    Raises:
        MissingExtra: dask.distributed is not installed.
        ClusterError: the scheduler cannot be reached.
        ConfigError: ``workers`` is given with a scheduler, or is not positive.
    """
    if client is not None:
        yield client
        return
    try:
        import distributed
    except ModuleNotFoundError as err:
        msg = f"--engine dask needs {err.name}, which is not installed; {DASK_EXTRA_HINT}"
        raise MissingExtra(msg) from None
    if scheduler is not None:
        if workers is not None:
            msg = "--workers sizes the local cluster; leave it out with --scheduler"
            raise ConfigError(msg)
        try:
            connected = distributed.Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as err:
            msg = f"--scheduler {scheduler}: cannot reach the Dask scheduler: {err}"
            raise ClusterError(msg) from None
        with connected:
            yield connected
        return
    if workers is not None and workers < 1:
        msg = f"--workers must be at least 1, got {workers}"
        raise ConfigError(msg)
    n_workers = workers or os.cpu_count() or 1
    with (
        _quiet_distributed(),
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # the scheduler serves HTTP anyway: on a free port
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as local_client,
    ):
        yield local_client


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Keep the local cluster's start-up and shutdown chatter (INFO) out of the job's output."""
    log = logging.getLogger("distributed")
    level = log.level
    if not logging.getLogger().isEnabledFor(logging.INFO):
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _submissions(
    client: Any,
    payload: Any,
    files: Sequence[InputFile],
    plan: OutputPlan,
    options: ScoreOptions,
    csv_progress: list[CsvProgress],
) -> Iterator[tuple[Any, InputFile, str]]:
    """Submit one task per piece, lazily, in input order: (future, file, what it scores)."""
    for file in files:
        if file.format == "parquet":
            for piece in plan_pieces(file):
                future = client.submit(
                    _score_piece, payload, plan, piece, options.batch_rows, options.device, pure=False
                )
                yield future, file, f"{file.source} rows {piece.start}:{piece.stop}"
            continue
        offset = 0
        batches = iter_batches(
            file,
            plan.read_columns,
            batch_rows=options.batch_rows,
            text_columns=plan.text_columns,
            progress=csv_progress,
        )
        for batch in batches:
            table = pa.Table.from_batches([batch])
            future = client.submit(_score_table, payload, plan, table, file.source, offset, options.device, pure=False)
            yield future, file, f"{file.source} rows {offset}:{offset + batch.num_rows}"
            offset += batch.num_rows


def _result(future: Any, what: str) -> pa.Table:
    try:
        result = future.result()
    except Exception as err:  # a worker's own failure (killed, out of memory): name the piece
        msg = f"scoring {what} failed on a Dask worker: {type(err).__name__}: {err}"
        raise ClusterError(msg) from err
    if isinstance(result, LatentwatchError):
        raise result
    return result


def scored_tables(
    client: Any,
    files: Sequence[InputFile],
    plan: OutputPlan,
    bundle: Bundle,
    options: ScoreOptions,
    csv_progress: list[CsvProgress],
) -> Iterator[tuple[pa.Table, InputFile]]:
    """Output tables in input order, each scored on a worker of ``client``'s cluster."""
    payload = client.scatter(BundlePayload.from_bundle(bundle), broadcast=True, hash=False)
    window = max(2, 2 * sum(client.nthreads().values()))
    pending: deque[tuple[Any, InputFile, str]] = deque()
    try:
        for submitted in _submissions(client, payload, files, plan, options, csv_progress):
            pending.append(submitted)
            if len(pending) >= window:
                future, file, what = pending.popleft()
                yield _result(future, what), file
        while pending:
            future, file, what = pending.popleft()
            yield _result(future, what), file
    finally:
        if pending:
            client.cancel([future for future, _, _ in pending])

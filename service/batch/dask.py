"""The Dask engine, and scoring pandas frames anywhere (Spark's ``mapInPandas``).

``latentwatch score --engine dask`` splits the input into pieces and scores each on a Dask
worker; the client writes the scored pieces in input order through the same writer as the
local engine, so the output equals the local engine's row for row:

- a Parquet file is cut at row-group boundaries into pieces of about :data:`PIECE_ROWS`
  rows (a larger row group is split); a worker reads its piece itself, so the input must be
  readable at the same path on the workers (a shared or object-store path, as for any Dask
  job);
- a CSV file cannot be cut without reading it: the client reads it in record batches and
  sends each batch to a worker.

The bundle travels as bytes (``model.onnx`` and ``manifest.json``, :class:`BundlePayload`),
scattered once to every worker, never as a path that may not exist there. Each worker
process writes it to a local temporary folder, verifies it and opens one
:class:`~service.scorer.Scorer` (one onnxruntime thread per task; Dask's threads give the
parallelism), cached for the life of the process. At most two pieces per worker thread are
in flight, so the client's memory stays bounded too.

Without ``--scheduler`` a ``LocalCluster`` of worker processes (one thread each; one per
CPU unless ``--workers``) is started for the job and stopped after it.

This module imports ``distributed`` only inside the functions that need it:
:func:`score_pandas` works where dask is not installed (a Spark executor).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from service.batch.io import CsvProgress, InputFile, iter_batches, iter_parquet_rows, row_group_sizes
from service.batch.rows import (
    SCORER_CHUNK_ROWS,
    OutputPlan,
    ScoreOptions,
    concat_scored,
    make_plan,
    score_arrow,
    score_rows,
)
from service.bundle import MANIFEST_FILE, Bundle, load_bundle
from service.errors import ConfigError, LatentwatchError, MissingExtra
from service.scorer import Scorer

logger = logging.getLogger(__name__)

PIECE_ROWS = 131_072  # target rows per Parquet piece (one task); small enough to balance a few workers
DASK_EXTRA_HINT = "install the dask extra: pip install 'latentwatch[dask]'"


class ClusterError(LatentwatchError):
    """The Dask cluster cannot be reached, or a worker failed for a reason of its own."""

    code = "UNAVAILABLE"


@dataclass(frozen=True)
class BundlePayload:
    """A bundle as bytes, to send where its folder does not exist (Dask workers, Spark executors).

    Build it with :meth:`from_bundle`: it holds every file at the top of the bundle folder
    (``model.onnx``, ``manifest.json``, and any other graph the manifest records; not
    ``report/``). :func:`cached_scorer` writes them out again and verifies them with
    :func:`~service.bundle.load_bundle` before scoring.

    Attributes:
        name: the model's name.
        version: the model's version.
        key: sha256 over the files' names and contents: equal keys, equal bundles.
        files: file name -> bytes.
    """

    name: str
    version: str
    key: str
    files: dict[str, bytes]

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | os.PathLike[str]) -> BundlePayload:
        """Read a bundle's files (verifying the bundle first).

        Raises:
            BundleError: the folder is not a valid bundle.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        paths = sorted(p for p in bundle.path.iterdir() if p.is_file() and not p.name.startswith("."))
        files = {p.name: p.read_bytes() for p in paths}
        digest = hashlib.sha256()
        for name, data in files.items():
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
        return cls(name=bundle.manifest.name, version=bundle.manifest.version, key=digest.hexdigest(), files=files)

    def materialize(self, root: Path) -> Path:
        """Write the bundle under ``root`` (once per key) and return its folder."""
        directory = root / self.key[:32]
        if not (directory / MANIFEST_FILE).is_file():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
            for name, data in self.files.items():
                (staging / name).write_bytes(data)
            try:
                staging.rename(directory)
            except OSError:  # another thread got there first
                shutil.rmtree(staging, ignore_errors=True)
        return directory

    def __repr__(self) -> str:  # keep the bytes out of logs and task reprs
        return f"BundlePayload({self.name!r}, version {self.version!r}, key {self.key[:12]}...)"


_scorers: dict[tuple[str, str, int | None], Scorer] = {}
_scorers_lock = threading.Lock()
_bundle_root: Path | None = None


def _root() -> Path:
    global _bundle_root
    if _bundle_root is None:
        _bundle_root = Path(tempfile.mkdtemp(prefix="latentwatch-bundles-"))
        atexit.register(shutil.rmtree, _bundle_root, ignore_errors=True)
    return _bundle_root


def cached_scorer(payload: BundlePayload, *, device: str = "auto", intra_op_threads: int | None = None) -> Scorer:
    """This process's :class:`Scorer` for ``payload`` (opened on first use, then reused).

    Safe to call from many threads; onnxruntime sessions score from many threads at once.
    """
    key = (payload.key, device, intra_op_threads)
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            directory = payload.materialize(_root())
            scorer = Scorer.open(
                directory, device=device, intra_op_threads=intra_op_threads, max_chunk_rows=SCORER_CHUNK_ROWS
            )
            _scorers[key] = scorer
    return scorer


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


def score_pandas(
    frame: pd.DataFrame,
    bundle: BundlePayload | Bundle | str | os.PathLike[str],
    *,
    explain: bool = False,
    latent: bool = False,
    keep_columns: Sequence[str] | None = None,
    alpha: float | None = None,
    strict: bool = False,
    device: str = "auto",
    source: str = "frame",
) -> pd.DataFrame:
    """Score a pandas DataFrame as ``latentwatch score`` scores a file; for Spark's ``mapInPandas``.

    The result has ``frame``'s index and, in order, the passed-through columns (every
    non-feature column, or ``keep_columns``), ``recon_error``, ``neg_elbo``, ``kl``
    (float32, higher = more anomalous), ``p_value`` (float64, lower = more anomalous),
    ``is_anomaly``, the ``explain`` and ``latent`` columns when asked for, and ``error``
    (None, or why the row could not be scored; its scores are then NaN/None). The values
    equal those the local engine writes for the same rows.

    The scorer is opened once per process and bundle and reused, so calling this on each
    frame of an iterator costs one onnxruntime session per executor process. In Spark,
    build the payload on the driver so the bundle travels with the function::

        from service.batch.dask import BundlePayload, score_pandas

        payload = BundlePayload.from_bundle("bundles/payments")

        def score(frames):
            for frame in frames:
                yield score_pandas(frame, payload, keep_columns=["id"])

        scored = events.mapInPandas(
            score,
            "id long, recon_error float, neg_elbo float, kl float, p_value double, "
            "is_anomaly boolean, error string",
        )

    Args:
        frame: rows with the bundle's feature columns (others are passed through or ignored).
        bundle: a :class:`BundlePayload` (best where the bundle folder does not exist), a
            loaded :class:`Bundle`, or a bundle folder.
        explain: add ``feature_score_<name>`` and ``expected_<name>`` per feature.
        latent: add ``latent_<i>`` per latent dimension.
        keep_columns: columns to pass through; None = every non-feature column.
        alpha: target false-positive rate for ``is_anomaly``; None = the bundle's.
        strict: raise on the first row that cannot be scored instead of marking it.
        device: onnxruntime device: ``auto``, ``cpu`` or ``cuda``.
        source: the name used for ``frame`` in error messages.

    Raises:
        InvalidInput: a missing feature or kept column, or (with ``strict``) a bad row.
    """
    payload = bundle if isinstance(bundle, BundlePayload) else BundlePayload.from_bundle(bundle)
    scorer = cached_scorer(payload, device=device)
    options = ScoreOptions(
        keep_columns=tuple(keep_columns) if keep_columns is not None else None,
        explain=explain,
        latent=latent,
        strict=strict,
        alpha=alpha,
        device=device,
    )
    options.validate()
    names = [str(c) for c in frame.columns]
    manifest = scorer.manifest
    plan = make_plan(
        manifest.features, manifest.latent_dim, pa.schema([pa.field(n, pa.null()) for n in names]), options, source
    )
    features = frame.loc[:, [f.name for f in plan.features]]
    arrays = score_rows(features, scorer, plan, source=source, row_offset=0)
    scores = pa.Table.from_arrays(arrays, names=plan.schema.names[len(plan.passthrough) :]).to_pandas()
    scores.index = frame.index
    return pd.concat([frame.loc[:, list(plan.passthrough)], scores], axis=1)

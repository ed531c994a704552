"""The batch scoring job: files in, one scored file out, every row accounted for.

:func:`run_job` checks every input file's columns before it reads a row (a missing feature
column fails at once, listing the columns), fixes the output's columns
(:func:`service.batch.rows.make_plan`, which documents them), then streams record batches
through :func:`~service.batch.rows.score_arrow` and an :class:`~service.batch.io.AtomicWriter`.
Memory is bounded by ``batch_rows``, whatever the input's size. Rows keep their order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from service import unseen as unseen_mod
from service.batch.csvfile import separator_hint
from service.batch.io import (
    AtomicWriter,
    CsvProgress,
    InputFile,
    check_output,
    column_kinds,
    count_rows,
    iter_batches,
    read_schema,
    resolve_inputs,
)
from service.batch.rows import (
    ERROR_COLUMN,
    SCORER_CHUNK_ROWS,
    OutputPlan,
    RowScorer,
    ScoreOptions,
    make_plan,
    score_arrow,
    scorer_values,
    unseen_counts,
)
from service.bundle import Bundle, Feature, load_bundle
from service.errors import ConfigError, DataError, InvalidInput
from service.features import check_column_kinds, check_columns
from service.scorer import Scorer

logger = logging.getLogger(__name__)

ENGINES = ("local", "dask")


@dataclass(frozen=True)
class Summary:
    """What a finished job did; ``seconds`` is its wall time (cluster start-up included)."""

    model: str
    version: str
    engine: str
    output: Path
    rows: int
    anomalies: int
    errors: int
    seconds: float
    unseen: tuple[unseen_mod.UnseenCount, ...] = ()  # per categorical column of the scored rows

    @property
    def scored(self) -> int:
        """Rows that got scores (``rows - errors``)."""
        return self.rows - self.errors

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def describe(self) -> str:
        """One line for people: rows, anomalies, rows with errors, seconds; a second one naming
        the columns that held values never seen in training, if any did."""
        line = (
            f"scored {self.rows:,} rows in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s, "
            f"engine {self.engine}): {self.anomalies:,} anomalies, {self.errors:,} rows with errors -> {self.output}"
        )
        unseen_line = unseen_mod.summary(self.unseen)
        return line if unseen_line is None else f"{line}\n{unseen_line}"


def scored_here(
    files: Sequence[InputFile],
    plan: OutputPlan,
    scorer: Scorer | RowScorer,
    options: ScoreOptions,
    csv_progress: list[CsvProgress],
) -> Iterator[tuple[pa.Table, InputFile]]:
    """Output tables in input order, each batch read here and scored by ``scorer``."""
    if isinstance(scorer, Scorer):
        scorer = scorer_values(scorer, plan)
    for file in files:
        text_input = file.format == "csv"
        offset = 0
        batches = iter_batches(
            file,
            plan.read_columns,
            batch_rows=options.batch_rows,
            text_columns=plan.text_columns if text_input else (),
            progress=csv_progress,
        )
        for batch in batches:
            yield score_arrow(batch, scorer, plan, source=file.source, row_offset=offset, text_input=text_input), file
            offset += batch.num_rows


def check_inputs(
    files: Sequence[InputFile], features: Sequence[Feature], latent_dim: int, options: ScoreOptions
) -> OutputPlan:
    """Check every file's columns before any row is read; the plan comes from the first file.

    Raises:
        InvalidInput: a file lacks a feature column or a passed-through column, naming both;
            or a feature column's type cannot hold what training saw
            (:func:`service.features.check_column_kinds`).
    """
    plan: OutputPlan | None = None
    for file in files:
        schema = read_schema(file, [f.name for f in features] if file.format == "csv" else ())
        try:
            if plan is None:
                plan = make_plan(features, latent_dim, schema, options, file.source)
            else:
                check_columns(schema.names, features, file.source)
        except InvalidInput as err:
            hint = separator_hint(file.path, schema.names) if file.format == "csv" else ""
            if not hint:
                raise
            raise InvalidInput(err.message + hint) from None
        check_column_kinds(column_kinds(schema), features, file.source)
        missing = [n for n in plan.passthrough if n not in set(schema.names)]
        if missing:
            msg = (
                f"{file.source}: lacks the column(s) {missing} that {files[0].source} has; choose the columns "
                f"to pass through with --keep-columns"
            )
            raise InvalidInput(msg)
    if plan is None:  # resolve_inputs never returns no file
        msg = "no input files"
        raise DataError(msg)
    return plan


class _Progress:
    """A tqdm bar over rows; its total is estimated from bytes while CSV files are read."""

    def __init__(self, files: Sequence[InputFile], enabled: bool) -> None:
        from tqdm import tqdm

        counts = [count_rows(f) for f in files]
        self._known = sum(c for c in counts if c is not None)
        self._csv_bytes = sum(f.size_bytes for f, c in zip(files, counts, strict=True) if c is None)
        self.csv_progress: list[CsvProgress] = []
        self._csv_rows = 0
        total = self._known if self._csv_bytes == 0 else None
        self._bar = tqdm(total=total, unit=" rows", unit_scale=True, disable=None if enabled else True, leave=False)

    def update(self, rows: int, file: InputFile) -> None:
        if file.format == "csv":
            self._csv_rows += rows
            done = sum(p.bytes_read for p in self.csv_progress)
            if done > 0:
                self._bar.total = self._known + round(self._csv_rows * self._csv_bytes / done)
        self._bar.update(rows)

    def close(self) -> None:
        if self._bar.total != self._bar.n:  # a CSV estimate: end on the true count
            self._bar.total = self._bar.n
            self._bar.refresh()
        self._bar.close()


def run_job(
    model: str | Path | Bundle,
    input_path: str | Path,
    output: str | Path,
    options: ScoreOptions | None = None,
    *,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    via: str | None = None,
    progress: bool = False,
) -> Summary:
    """Score every row of ``input_path`` with the bundle ``model`` into ``output``.

    Args:
        model: a bundle directory (or a loaded :class:`Bundle`); with ``via`` also a served
            model's ``NAME`` or ``NAME:VERSION``.
        input_path: a CSV or Parquet file, a folder of Parquet files, or a glob pattern.
        output: ``.parquet``/``.pq`` or ``.csv``; replaced only when the job succeeds.
        options: what to write; defaults to :class:`ScoreOptions`'s.
        engine: ``local`` (this process) or ``dask`` (see :mod:`service.batch.dask`).
        scheduler: dask only: the scheduler's address; None starts a local cluster.
        workers: dask only: worker processes of the local cluster (default: one per CPU).
        client: dask only: an open ``distributed.Client`` to use instead.
        via: ``HOST:PORT`` of a running ``latentwatch serve``: rows are read and checked
            here and scored there (see :mod:`service.batch.via`); local engine only.
        progress: show a progress bar on stderr (when it is a terminal).

    Raises:
        LatentwatchError: a subclass naming the file, column, row or line at fault; an
            output that cannot be written fails before any input is read.
    """
    started = time.perf_counter()
    options = options or ScoreOptions()
    options.validate()
    _check_engine(engine, scheduler, workers, via)
    output = Path(output)
    check_output(output)
    files = resolve_inputs(input_path)
    if any(f.path.resolve() == output.resolve() for f in files):
        msg = f"--output {output} is also an input file"
        raise ConfigError(msg)
    with contextlib.ExitStack() as stack:
        if via is not None:
            from service.batch import via as via_engine

            remote = stack.enter_context(via_engine.connect(via))
            served = via_engine.resolve_model(remote, model, via)
            name, version, features, latent_dim = served.name, served.version, served.features, served.latent_dim
        else:
            bundle = model if isinstance(model, Bundle) else load_bundle(model)
            manifest = bundle.manifest
            name, version, features, latent_dim = (
                manifest.name,
                manifest.version,
                manifest.features,
                manifest.latent_dim,
            )
        plan = check_inputs(files, features, latent_dim, options)
        bar = stack.enter_context(contextlib.closing(_Progress(files, progress)))
        writer = stack.enter_context(AtomicWriter(output, plan.schema))
        if via is not None:
            scorer: Scorer | RowScorer = via_engine.remote_scorer(remote, served, plan, via)
            tables = scored_here(files, plan, scorer, options, bar.csv_progress)
        elif engine == "local":
            scorer = Scorer.open(
                bundle, device=options.device, intra_op_threads=options.threads, max_chunk_rows=SCORER_CHUNK_ROWS
            )
            tables = scored_here(files, plan, scorer, options, bar.csv_progress)
        else:
            from service.batch import dask as dask_engine

            dask_client = stack.enter_context(dask_engine.connect(scheduler, workers, client))
            tables = dask_engine.scored_tables(dask_client, files, plan, bundle, options, bar.csv_progress)
        rows, anomalies, errors, counts = _write_all(tables, writer, bar)
        writer.commit()
    for message in unseen_mod.warnings(counts, features):
        logger.warning("%s", message)
    return Summary(
        model=name,
        version=version,
        engine=f"via {via}" if via is not None else engine,
        output=output,
        rows=rows,
        anomalies=anomalies,
        errors=errors,
        seconds=time.perf_counter() - started,
        unseen=counts,
    )


def _check_engine(engine: str, scheduler: str | None, workers: int | None, via: str | None) -> None:
    if engine not in ENGINES:
        msg = f"engine must be one of {list(ENGINES)}, got {engine!r}"
        raise ConfigError(msg)
    if engine == "local" and (scheduler is not None or workers is not None):
        msg = "--scheduler and --workers apply only to --engine dask"
        raise ConfigError(msg)
    if via is not None and engine != "local":
        msg = "--via scores through a running service; leave out --engine dask"
        raise ConfigError(msg)


def _write_all(
    tables: Iterator[tuple[pa.Table, InputFile]], writer: AtomicWriter, bar: _Progress
) -> tuple[int, int, int, tuple[unseen_mod.UnseenCount, ...]]:
    """Write every table in order; return (rows, anomalies, rows with errors, unseen categories)."""
    rows = anomalies = errors = 0
    counts: tuple[unseen_mod.UnseenCount, ...] = ()
    for table, file in tables:
        counts = unseen_mod.merge(counts, unseen_counts(table))
        writer.write(table.replace_schema_metadata(writer.schema.metadata), file.source)
        rows += table.num_rows
        anomalies += int(pc.sum(table.column("is_anomaly")).as_py() or 0)
        errors += table.num_rows - table.column(ERROR_COLUMN).null_count
        bar.update(table.num_rows, file)
    return rows, anomalies, errors, counts

"""The batch scoring job: files in, one scored file out, every row accounted for.

:func:`run_job` checks every input file's columns before it reads a row (a missing feature
column fails at once, listing the columns), fixes the output's columns, then streams record
batches through :func:`score_arrow` and an :class:`~service.batch.io.AtomicWriter`. Memory
is bounded by ``batch_rows``, whatever the input's size. Rows keep their order.

Output columns, in this order:

- the passed-through input columns (every non-feature column, or ``keep_columns``);
- ``recon_error``, ``neg_elbo``, ``kl`` (float32, higher = more anomalous), ``p_value``
  (float64, lower = more anomalous), ``is_anomaly`` (bool);
- with ``explain``: ``feature_score_<name>`` (float32, nats) per feature, then
  ``expected_<name>`` per feature (float32 raw units; a categorical's label);
- with ``latent``: ``latent_<i>`` (float32) per latent dimension;
- ``error``: null for a scored row; for a row that cannot be scored (an unparseable number,
  an infinite value), the reason, and every score column of the row is null.

With ``strict`` the first such row stops the job with an error naming the file and the row
(counted from 0 within its file, the header not counted), and nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from service.batch.io import AtomicWriter, CsvProgress, InputFile, count_rows, iter_batches, read_schema, resolve_inputs
from service.bundle import ROW_SCORES, Bundle, Feature, load_bundle
from service.errors import ConfigError, DataError, InvalidInput
from service.features import check_columns, decode_codes, encode_frame
from service.scorer import DEVICES, Scorer

logger = logging.getLogger(__name__)

ENGINES = ("local", "dask")
ERROR_COLUMN = "error"
DEFAULT_BATCH_ROWS = 65536
# Rows per onnxruntime call. The graph's intermediate tensors (hidden units x Monte-Carlo
# draws per row) take about 14 KiB per row for a 32-feature VAE: 65,536 rows would hold
# ~0.9 GiB in onnxruntime's arena; 8,192 rows hold ~120 MiB and run as fast.
SCORER_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class ScoreOptions:
    """What a job writes and how it runs.

    Attributes:
        keep_columns: input columns passed through to the output, in this order; None =
            every column that is not a feature, in input order.
        explain: add ``feature_score_<name>`` and ``expected_<name>`` per feature.
        latent: add ``latent_<i>`` per latent dimension.
        strict: stop at the first row that cannot be scored instead of keeping it with an
            ``error``.
        alpha: target false-positive rate for ``is_anomaly``; None = the bundle's.
        batch_rows: rows per record batch read, scored and written at a time (memory grows
            with it: about ``batch_rows`` x input row bytes x 3); onnxruntime runs them in
            chunks of :data:`SCORER_CHUNK_ROWS`.
        device: onnxruntime device, ``auto``, ``cpu`` or ``cuda``.
        threads: onnxruntime threads of the local engine (None = onnxruntime's default, one
            per physical core; set it to the CPUs a container may use). The Dask engine runs
            one thread per task.
    """

    keep_columns: tuple[str, ...] | None = None
    explain: bool = False
    latent: bool = False
    strict: bool = False
    alpha: float | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    device: str = "auto"
    threads: int | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming a bad option."""
        if not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            msg = f"batch_rows must be a positive integer, got {self.batch_rows!r}"
            raise ConfigError(msg)
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            msg = f"alpha must be between 0 and 1 (exclusive), got {self.alpha!r}"
            raise ConfigError(msg)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            msg = f"threads must be a positive integer, got {self.threads!r}"
            raise ConfigError(msg)
        if self.device not in DEVICES:
            msg = f"device must be one of {list(DEVICES)}, got {self.device!r}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class OutputPlan:
    """The output's columns, fixed before the first row is read (picklable: it travels to workers).

    Attributes:
        features: the bundle's features, in ``x`` order.
        passthrough: input columns copied to the output, first, in this order.
        read_columns: the input columns each batch must hold (passthrough, then the other features).
        text_columns: columns a CSV file yields as strings (the features; see ``service.batch.io``).
        schema: the whole output schema.
        latent_dim: columns of ``latent``.
        explain: whether the explanation columns are written.
        latent: whether the latent columns are written.
        strict: whether a bad row stops the job.
        alpha: the threshold passed to :meth:`Scorer.score` (None = the bundle's).
    """

    features: tuple[Feature, ...]
    passthrough: tuple[str, ...]
    read_columns: tuple[str, ...]
    text_columns: tuple[str, ...]
    schema: pa.Schema
    latent_dim: int
    explain: bool
    latent: bool
    strict: bool
    alpha: float | None


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

    @property
    def scored(self) -> int:
        """Rows that got scores (``rows - errors``)."""
        return self.rows - self.errors

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def describe(self) -> str:
        """One line for people: rows, anomalies, rows with errors, seconds."""
        return (
            f"scored {self.rows:,} rows in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s, "
            f"engine {self.engine}): {self.anomalies:,} anomalies, {self.errors:,} rows with errors -> {self.output}"
        )


def _label_type(feature: Feature) -> pa.DataType:
    try:
        kind = pa.array(list(feature.categories)).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()
    return pa.string() if pa.types.is_null(kind) else kind


def score_fields(features: Sequence[Feature], latent_dim: int, *, explain: bool, latent: bool) -> list[pa.Field]:
    """The output columns that scoring adds (everything but the passed-through ones)."""
    fields = [pa.field(name, pa.float32()) for name in ROW_SCORES]
    fields += [pa.field("p_value", pa.float64()), pa.field("is_anomaly", pa.bool_())]
    if explain:
        fields += [pa.field(f"feature_score_{f.name}", pa.float32()) for f in features]
        fields += [
            pa.field(f"expected_{f.name}", _label_type(f) if f.is_categorical else pa.float32()) for f in features
        ]
    if latent:
        fields += [pa.field(f"latent_{i}", pa.float32()) for i in range(latent_dim)]
    fields.append(pa.field(ERROR_COLUMN, pa.string()))
    return fields


def make_plan(
    features: Sequence[Feature], latent_dim: int, input_schema: pa.Schema, options: ScoreOptions, source: str
) -> OutputPlan:
    """The output layout for inputs shaped like ``input_schema`` (see the module docstring).

    Args:
        features: the model's features, in ``x`` order.
        latent_dim: the model's latent dimension.
        input_schema: the input's columns (types matter only for the passed-through ones).
        options: what to write.
        source: the input's name, for messages.

    Raises:
        InvalidInput: a feature column or a kept column is missing, or a passed-through
            column has the name of a score column; each names ``source`` and the columns.
    """
    features = tuple(features)
    names = list(input_schema.names)
    check_columns(names, features, source)
    feature_names = [f.name for f in features]
    if options.keep_columns is None:
        passthrough = tuple(n for n in names if n not in feature_names)
    else:
        missing = [n for n in options.keep_columns if n not in names]
        if missing:
            msg = f"{source}: --keep-columns names {missing}, which the input lacks; its columns are {names}"
            raise InvalidInput(msg)
        passthrough = tuple(dict.fromkeys(options.keep_columns))
    fields = score_fields(features, latent_dim, explain=options.explain, latent=options.latent)
    score_names = {f.name for f in fields}
    clash = [n for n in passthrough if n in score_names]
    if clash:
        msg = (
            f"{source}: input column(s) {clash} have the names of score columns; rename them, or choose "
            f"the columns to pass through with --keep-columns"
        )
        raise InvalidInput(msg)
    schema = pa.schema([input_schema.field(n) for n in passthrough] + fields)
    return OutputPlan(
        features=features,
        passthrough=passthrough,
        read_columns=passthrough + tuple(n for n in feature_names if n not in passthrough),
        text_columns=tuple(feature_names),
        schema=schema,
        latent_dim=latent_dim,
        explain=options.explain,
        latent=options.latent,
        strict=options.strict,
        alpha=options.alpha,
    )


def _typed_text(column: pa.ChunkedArray | pa.Array, feature: Feature) -> pa.ChunkedArray | pa.Array:
    """A CSV column read as text, typed as pandas would read it where every cell allows."""
    ladder = (pa.float64(),) if not feature.is_categorical else (pa.int64(), pa.float64(), pa.bool_())
    for kind in ladder:
        try:
            return column.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column  # some cell is not a number: encode_frame names the row


def feature_frame(batch: pa.RecordBatch | pa.Table, features: Sequence[Feature], *, text_input: bool) -> pd.DataFrame:
    """The feature columns of ``batch`` as pandas, for :func:`service.features.encode_frame`."""
    columns = {}
    for feature in features:
        column = batch.column(feature.name)
        if text_input and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = _typed_text(column, feature)
        columns[feature.name] = column
    return pa.table(columns).to_pandas(split_blocks=True)


def _column(values: np.ndarray, kind: pa.DataType, good: np.ndarray | None) -> pa.Array:
    """``values`` of the good rows as a full-length Arrow array, null where the row is bad."""
    if kind == pa.float32():
        values = np.asarray(values, dtype=np.float32)
    if good is None:
        return pa.array(values, type=kind)
    n = good.shape[0]
    full = np.full(n, None, dtype=object) if values.dtype == object else np.zeros(n, values.dtype)
    full[good] = values
    return pa.array(full, type=kind, mask=~good)


# Scores rows that encoded cleanly: (their feature columns, their x (n_good, n_features))
# -> score column name -> (n_good,) values, for every score field of the plan.
RowScorer = Callable[[pd.DataFrame, np.ndarray], Mapping[str, np.ndarray]]


def scorer_values(scorer: Scorer, plan: OutputPlan) -> RowScorer:
    """A :data:`RowScorer` running ``scorer`` (onnxruntime in this process) for ``plan``'s columns."""

    def score(frame: pd.DataFrame, x: np.ndarray) -> dict[str, np.ndarray]:
        scores = scorer.score(x, plan.alpha)
        values = {name: getattr(scores, name) for name in (*ROW_SCORES, "p_value", "is_anomaly")}
        if plan.explain:
            for j, feature in enumerate(plan.features):
                values[f"feature_score_{feature.name}"] = scores.feature_scores[:, j]
            for j, feature in enumerate(plan.features):
                expected = scores.expected[:, j]
                values[f"expected_{feature.name}"] = (
                    decode_codes(expected, feature) if feature.is_categorical else expected
                )
        if plan.latent:
            for i in range(plan.latent_dim):
                values[f"latent_{i}"] = scores.latent[:, i]
        return values

    return score


def score_rows(
    frame: pd.DataFrame, scorer: Scorer | RowScorer, plan: OutputPlan, *, source: str, row_offset: int
) -> list[pa.Array]:
    """Score the rows of ``frame`` (feature columns); one array per score field of ``plan.schema``.

    Rows that cannot be encoded get nulls and their reason in the ``error`` array (or, with
    ``plan.strict``, raise :class:`InvalidInput` naming ``source`` and the row, counted
    from ``row_offset``); the others go to ``scorer``.
    """
    score = scorer_values(scorer, plan) if isinstance(scorer, Scorer) else scorer
    n = len(frame)
    encoded = encode_frame(frame, plan.features, source=source, strict=plan.strict, row_offset=row_offset)
    bad = np.fromiter((e is not None for e in encoded.errors), dtype=bool, count=n)
    good = ~bad if bad.any() else None
    values = score(frame, encoded.x) if good is None else score(frame.loc[good], encoded.x[good])
    fields = list(plan.schema)[len(plan.passthrough) : -1]  # the score fields, without ``error``
    arrays = [_column(np.asarray(values[field.name]), field.type, good) for field in fields]
    arrays.append(pa.nulls(n, pa.string()) if good is None else pa.array(encoded.errors, type=pa.string()))
    return arrays


def score_arrow(
    batch: pa.RecordBatch | pa.Table,
    scorer: Scorer | RowScorer,
    plan: OutputPlan,
    *,
    source: str,
    row_offset: int,
    text_input: bool = False,
) -> pa.Table:
    """One input batch (``plan.read_columns``) to its output table (``plan.schema``), row for row."""
    frame = feature_frame(batch, plan.features, text_input=text_input)
    arrays = [batch.column(name) for name in plan.passthrough]
    arrays += score_rows(frame, scorer, plan, source=source, row_offset=row_offset)
    return pa.Table.from_arrays(arrays, names=plan.schema.names)


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
        InvalidInput: a file lacks a feature column or a passed-through column, naming both.
    """
    plan: OutputPlan | None = None
    for file in files:
        schema = read_schema(file, [f.name for f in features] if file.format == "csv" else ())
        if plan is None:
            plan = make_plan(features, latent_dim, schema, options, file.source)
            continue
        check_columns(schema.names, features, file.source)
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
        LatentwatchError: a subclass naming the file, column or row at fault.
    """
    started = time.perf_counter()
    options = options or ScoreOptions()
    options.validate()
    _check_engine(engine, scheduler, workers, via)
    output = Path(output)
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
        rows, anomalies, errors = _write_all(tables, writer, bar)
        writer.commit()
    return Summary(
        model=name,
        version=version,
        engine=f"via {via}" if via is not None else engine,
        output=output,
        rows=rows,
        anomalies=anomalies,
        errors=errors,
        seconds=time.perf_counter() - started,
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
) -> tuple[int, int, int]:
    """Write every table in order; return (rows, anomalies, rows with errors)."""
    rows = anomalies = errors = 0
    for table, file in tables:
        writer.write(table, file.source)
        rows += table.num_rows
        anomalies += int(pc.sum(table.column("is_anomaly")).as_py() or 0)
        errors += table.num_rows - table.column(ERROR_COLUMN).null_count
        bar.update(table.num_rows, file)
    return rows, anomalies, errors

"""What a batch job writes, and how one record batch is scored.

:func:`make_plan` fixes the output's columns from the model and the input's schema before a
row is read; :func:`score_arrow` turns one input record batch into its output table, row for
row. Both run wherever the rows are scored (this process, or a Dask worker).

Output columns, in this order:

- the passed-through input columns (every non-feature column, or ``keep_columns``);
- the score columns of :mod:`service.columns`: ``recon_error``, ``neg_elbo``, ``kl``
  (float32, higher = more anomalous), ``p_value`` (float64, lower = more anomalous),
  ``is_anomaly`` (bool); with ``explain`` ``feature_score_<name>`` (float32, nats) and
  ``expected_<name>`` (float32 raw units; a categorical's label) per feature; with ``latent``
  ``latent_<i>`` (float32) per latent dimension;
- ``error``: null for a scored row; for a row that cannot be scored (an unparseable number,
  an infinite one or one beyond float32's range, a CSV line with the wrong number of fields),
  the reason, and every score column of the row is null (for a malformed line, its
  passed-through columns too: its fields cannot be matched to columns).

With ``strict`` the first such row stops the job with an error naming the file and the row
(counted from 0 within its file, the header not counted) or the line, and nothing is written.

Each output table also carries, in its schema's metadata under :data:`UNSEEN_KEY`, its scored
rows' counts of categorical values never seen in training (:mod:`service.unseen`), for the
job's summary: read them with :func:`unseen_counts`, join tables with :func:`concat_scored`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from service import unseen
from service.batch.csvfile import READ_ERROR_COLUMN
from service.bundle import Feature
from service.columns import expected_column, score_column_names, score_columns
from service.errors import ConfigError, InvalidInput
from service.features import Encoded, check_columns, encode_frame
from service.scorer import Scorer
from service.validation import alpha_problem, check, device_problem, onnx_threads_problem

ERROR_COLUMN = "error"
UNSEEN_KEY = b"latentwatch.unseen"
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
        threads: onnxruntime threads of the local engine (None or 0 = onnxruntime's default,
            one per physical core; set it to the CPUs a container may use). The Dask engine runs
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
        if self.alpha is not None:
            check("alpha", self.alpha, alpha_problem(self.alpha))
        check("threads", self.threads, onnx_threads_problem(self.threads))
        check("device", self.device, device_problem(self.device))


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


def _label_type(feature: Feature) -> pa.DataType:
    try:
        kind = pa.array(list(feature.categories)).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()
    return pa.string() if pa.types.is_null(kind) else kind


def score_fields(features: Sequence[Feature], latent_dim: int, *, explain: bool, latent: bool) -> list[pa.Field]:
    """The output columns that scoring adds (everything but the passed-through ones), named and
    ordered by :func:`service.columns.score_column_names`."""
    types = {"p_value": pa.float64(), "is_anomaly": pa.bool_()}
    types.update({expected_column(f.name): _label_type(f) for f in features if f.is_categorical})
    names = score_column_names(features, latent_dim, explain=explain, latent=latent)
    fields = [pa.field(name, types.get(name, pa.float32())) for name in names]
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
        return score_columns(scores.arrays(), plan.features, explain=plan.explain, latent=plan.latent)

    return score


def score_rows(
    frame: pd.DataFrame,
    scorer: Scorer | RowScorer,
    plan: OutputPlan,
    *,
    source: str,
    row_offset: int,
    read_errors: Sequence[str | None] | None = None,
) -> list[pa.Array]:
    """Score the rows of ``frame`` (feature columns); one array per score field of ``plan.schema``.

    Rows that cannot be encoded, and those with a reason in ``read_errors`` (a malformed
    CSV line, its values all null), get nulls and their reason in the ``error`` array (or,
    with ``plan.strict``, raise :class:`InvalidInput` naming ``source`` and the row, counted
    from ``row_offset``, or the line); the others go to ``scorer``.
    """
    return _score_rows(frame, scorer, plan, source=source, row_offset=row_offset, read_errors=read_errors)[0]


def _score_rows(
    frame: pd.DataFrame,
    scorer: Scorer | RowScorer,
    plan: OutputPlan,
    *,
    source: str,
    row_offset: int,
    read_errors: Sequence[str | None] | None = None,
) -> tuple[list[pa.Array], Encoded]:
    score = scorer_values(scorer, plan) if isinstance(scorer, Scorer) else scorer
    n = len(frame)
    reasons = list(read_errors) if read_errors is not None else []
    unread = [i for i, e in enumerate(reasons) if e is not None]
    if unread and plan.strict:  # stop at the first bad row, whichever kind it is
        encode_frame(frame.iloc[: unread[0]], plan.features, source=source, strict=True, row_offset=row_offset)
        msg = f"{source}: {reasons[unread[0]]}"
        raise InvalidInput(msg)
    encoded = encode_frame(frame, plan.features, source=source, strict=plan.strict, row_offset=row_offset)
    errors = encoded.errors
    for i in unread:
        errors[i] = reasons[i]
    bad = np.fromiter((e is not None for e in errors), dtype=bool, count=n)
    good = ~bad if bad.any() else None
    values = score(frame, encoded.x) if good is None else score(frame.loc[good], encoded.x[good])
    fields = list(plan.schema)[len(plan.passthrough) : -1]  # the score fields, without ``error``
    arrays = [_column(np.asarray(values[field.name]), field.type, good) for field in fields]
    arrays.append(pa.nulls(n, pa.string()) if good is None else pa.array(errors, type=pa.string()))
    return arrays, encoded


def score_arrow(
    batch: pa.RecordBatch | pa.Table,
    scorer: Scorer | RowScorer,
    plan: OutputPlan,
    *,
    source: str,
    row_offset: int,
    text_input: bool = False,
) -> pa.Table:
    """One input batch (``plan.read_columns``, and :data:`READ_ERROR_COLUMN` where a CSV line
    was malformed) to its output table (``plan.schema``), row for row."""
    frame = feature_frame(batch, plan.features, text_input=text_input)
    arrays = [batch.column(name) for name in plan.passthrough]
    unread = batch.column(READ_ERROR_COLUMN).to_pylist() if READ_ERROR_COLUMN in batch.schema.names else None
    scored, encoded = _score_rows(frame, scorer, plan, source=source, row_offset=row_offset, read_errors=unread)
    table = pa.Table.from_arrays(arrays + scored, names=plan.schema.names)
    return table.replace_schema_metadata({UNSEEN_KEY: unseen.to_json(encoded.unseen)})


def unseen_counts(table: pa.Table) -> tuple[unseen.UnseenCount, ...]:
    """The counts of unseen categories an output table carries (none when it carries none)."""
    text = (table.schema.metadata or {}).get(UNSEEN_KEY)
    return unseen.from_json(text) if text else ()


def concat_scored(tables: Sequence[pa.Table], plan: OutputPlan) -> pa.Table:
    """Output tables joined in order, their counts of unseen categories added up."""
    if not tables:
        return plan.schema.empty_table()
    counts = unseen.merge(*(unseen_counts(t) for t in tables))
    return pa.concat_tables(tables).replace_schema_metadata({UNSEEN_KEY: unseen.to_json(counts)})

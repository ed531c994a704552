"""``latentwatch score``: arguments and handler (the work lives in :mod:`service.batch.local`).

This module imports only ``argparse`` and :mod:`service.validation` when loaded: ``service.cli`` builds the parser from
:func:`add_score_arguments` without loading pyarrow, onnxruntime or dask.
"""

from __future__ import annotations

import argparse
import sys

from service.validation import DEVICES


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``score`` command's options to ``parser``."""
    parser.add_argument("--model", required=True, help="bundle folder (with --via: or a served NAME[:VERSION])")
    parser.add_argument(
        "--input", required=True, help="CSV or Parquet file, a folder of Parquet files, or a glob (quote it)"
    )
    parser.add_argument("--output", required=True, help="file to write: .parquet (or .pq) or .csv; replaced when done")
    parser.add_argument("--engine", choices=["local", "dask"], default="local", help="where to score (default local)")
    parser.add_argument("--scheduler", help="dask: scheduler address (default: start a local cluster)")
    parser.add_argument("--workers", type=int, help="dask: worker processes of the local cluster (default: CPUs)")
    parser.add_argument("--via", metavar="HOST:PORT", help="score through a running `latentwatch serve`")
    parser.add_argument(
        "--keep-columns",
        action="append",
        help="input columns to copy to the output, comma-separated (default: every non-feature column; '' = none)",
    )
    parser.add_argument("--explain", action="store_true", help="add feature_score_<name> and expected_<name>")
    parser.add_argument("--latent", action="store_true", help="add latent_<i>, the rows' embedding")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first row that cannot be scored (default: keep it, with an error column)",
    )
    parser.add_argument("--alpha", type=float, help="target false-positive rate (default: the bundle's)")
    parser.add_argument("--batch-rows", type=int, default=65536, help="rows per record batch (default 65536)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="onnxruntime device")
    parser.add_argument("--threads", type=int, help="local engine: onnxruntime threads (default or 0: one per core)")
    parser.add_argument("--pushgateway", help="push the job's metrics to this Pushgateway (host:port or URL)")
    parser.add_argument("--job", default="latentwatch_score", help="Pushgateway job name (default latentwatch_score)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _keep_columns(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def score_command(args: argparse.Namespace) -> int:
    """Run the job; print the summary to stdout; push metrics when asked. Returns the exit status."""
    import time

    from service.batch import pushgateway
    from service.batch.local import run_job
    from service.batch.rows import ScoreOptions
    from service.errors import LatentwatchError

    options = ScoreOptions(
        keep_columns=_keep_columns(args.keep_columns),
        explain=args.explain,
        latent=args.latent,
        strict=args.strict,
        alpha=args.alpha,
        batch_rows=args.batch_rows,
        device=args.device,
        threads=args.threads,
    )
    started = time.time()
    try:
        summary = run_job(
            args.model,
            args.input,
            args.output,
            options,
            engine=args.engine,
            scheduler=args.scheduler,
            workers=args.workers,
            via=args.via,
            progress=not args.quiet,
        )
    except (LatentwatchError, KeyboardInterrupt):
        if args.pushgateway:
            pushgateway.push_failure(args.pushgateway, args.job, seconds=time.time() - started, quiet=True)
        raise
    print(summary.describe())
    if args.pushgateway:
        pushgateway.push_summary(args.pushgateway, args.job, summary)
        print(f"pushed the job's metrics to {args.pushgateway} (job {args.job!r})", file=sys.stderr)
    return 0

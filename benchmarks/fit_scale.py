"""How training cost grows with rows: fit time and peak memory from 10,000 to 20 million rows.

Each fit is ``latentwatch train --data TABLE --out BUNDLE --quiet`` with no other option, run
as its own process, so that its wall time and peak resident memory (``wait4``'s
``ru_maxrss``) are the command's as a user runs it. The tables are synthetic card payments
(``payments.py``: ten columns, numbers, strings and a boolean, missing values), written once
to Parquet under ``--work``:

- one file each of 10,000, 30,000, 100,000, 1,000,000 and 2,000,000 rows;
- a folder of 20 files of 1,000,000 rows each (20,000,000 rows), to show that memory stays
  flat in the table's size (``max_rows`` samples it while it streams);
- at 30,000 rows, fits with ``--threads 2`` beside the default's one torch thread, on the quiet
  machine and (``--busy``) beside a process that keeps one core busy, as other jobs do, for the
  ``threads`` default.

Every bundle is scored on the same labelled rows (fresh normal payments and 1,000 planted
anomalies of five kinds, ``payments.ANOMALY_KINDS``): ROC-AUC and average precision of
``neg_elbo``, and the scoring cost of the bundle's graph in one onnxruntime session on one
thread: rows per second at 1,024-row batches and milliseconds for one row (medians of 7 passes).

    python benchmarks/fit_scale.py                          # every size, 3 repeats up to 100,000 rows, 1 above
    python benchmarks/fit_scale.py --sizes 30000 --repeats 5

Prints a markdown table and writes it into ``RESULTS.md`` (section ``fit-scale``). Run it on a
quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import payments
from results_file import RESULTS, machine, publish, versions

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- fit-scale:start -->", "<!-- fit-scale:end -->"
SIZES = (10_000, 30_000, 100_000, 1_000_000, 2_000_000, 20_000_000)
FOLDER_FILES = 20  # the largest table is a folder of this many Parquet files
SMALL = 100_000  # up to this many rows, each fit is repeated ``--repeats`` times; above, once


def table_path(work: Path, rows: int) -> Path:
    """The Parquet table of ``rows`` normal payments under ``work``, written on first use."""
    folder = rows >= 10_000_000
    path = work / (f"payments-{rows}" if folder else f"payments-{rows}.parquet")
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.unlink(missing_ok=True)
        payments.write_parquet(partial, rows, seed=rows, files=FOLDER_FILES if folder else 1)
        partial.rename(path)
    return path


def timed_train(data: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run ``latentwatch train`` on ``data``; its wall seconds and peak RSS (MiB)."""
    command = [sys.executable, "-m", "service", "train", "--data", str(data), "--out", str(out), "--quiet", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        msg = f"{' '.join(command)} failed:\n{stdout}\n{stderr}"
        raise RuntimeError(msg)
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024}


def detection(bundle: Path, labelled: Any) -> dict[str, float]:
    """ROC-AUC and AP of the bundle's primary score on ``labelled`` (``label`` 1 = planted)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from service.scorer import Scorer

    scorer = Scorer.open(bundle, device="cpu", intra_op_threads=1)
    scored = scorer.score_frame(labelled.drop(columns=["label", "kind"]), source="labelled rows")
    score = scored[scorer.manifest.primary_score].to_numpy()
    return {"roc_auc": roc_auc_score(labelled["label"], score), "ap": average_precision_score(labelled["label"], score)}


def scoring_cost(bundle: Path, labelled: Any, passes: int = 7) -> dict[str, float]:
    """The graph's rows/s at 1,024-row batches and ms for one row, one onnxruntime thread (medians)."""
    from service.features import encode_frame
    from service.scorer import Scorer

    scorer = Scorer.open(bundle, device="cpu", intra_op_threads=1, inter_op_threads=1)
    x = encode_frame(labelled, scorer.manifest.features, strict=False).x[:1024]
    x = np.resize(x, (1024, x.shape[1])).astype(np.float32)
    batch, single = [], []
    for _ in range(passes):
        started = time.perf_counter()
        for _ in range(20):
            scorer.run(x)
        batch.append(20 * len(x) / (time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(200):
            scorer.run(x[i : i + 1])
        single.append((time.perf_counter() - started) / 200 * 1000)
    return {"rows_per_s": statistics.median(batch), "single_row_ms": statistics.median(single)}


@contextlib.contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """A process that keeps one core busy while the block runs (when ``busy``)."""
    if not busy:
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def measure(
    rows: int, work: Path, labelled: Any, repeats: int, extra: list[str], *, busy: bool = False
) -> dict[str, Any]:
    data = table_path(work, rows)
    with busy_core(busy):
        runs = [timed_train(data, work / "bundle", extra) for _ in range(repeats)]
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    training = manifest["training"]
    record = {
        "rows": rows,
        "options": (" ".join(extra) or "none") + (", one core busy" if busy else ""),
        "repeats": repeats,
        "seconds": statistics.median(r["seconds"] for r in runs),
        "seconds_all": [round(r["seconds"], 1) for r in runs],
        "peak_mib": statistics.median(r["peak_mib"] for r in runs),
        "fit_rows": training["rows"]["train"],
        "members": len(training["members"]),
        "steps": [m["steps"] for m in training["members"]],
        "batch": training["resolved"]["batch_size"],
        **detection(work / "bundle", labelled),
        **scoring_cost(work / "bundle", labelled),
    }
    print(json.dumps(record), file=sys.stderr, flush=True)
    return record


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | options | fit (s) | peak RSS (MiB) | rows fitted | members x steps | batch | ROC-AUC | AP "
        "| scoring rows/s (1,024-row batches) | one row (ms) |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        steps = " + ".join(f"{s:,}" for s in r["steps"])
        seconds = f"{r['seconds']:.1f}" + (f" (median of {r['repeats']})" if r["repeats"] > 1 else "")
        lines.append(
            f"| {r['rows']:,} | {r['options']} | {seconds} | {r['peak_mib']:,.0f} | {r['fit_rows']:,} | {steps} "
            f"| {r['batch']:,} | {r['roc_auc']:.4f} | {r['ap']:.4f} | {r['rows_per_s']:,.0f} "
            f"| {r['single_row_ms']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="row counts, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help=f"fits per size up to {SMALL:,} rows (above: 1)")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".cache" / "fit-scale", help="tables and bundles")
    p.add_argument("--busy", action="store_true", help="at 30,000 rows, also fit beside a busy core (1 repeat)")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    labelled = payments.labelled_rows(20_000, 1_000, seed=12345)
    records = []
    for rows in (int(s) for s in args.sizes.split(",")):
        repeats = args.repeats if rows <= SMALL else 1
        records.append(measure(rows, args.work, labelled, repeats, []))
        if rows == 30_000:
            records.append(measure(rows, args.work, labelled, repeats, ["--threads", "2"]))
            for threads in ("1", "2") if args.busy else ():
                records.append(measure(rows, args.work, labelled, 1, ["--threads", threads], busy=True))
    command = f"python benchmarks/fit_scale.py --sizes {args.sizes} --repeats {args.repeats}" + " --busy" * args.busy
    section = (
        f"{START}\n`{command}`; {machine()}; {versions(['torch', 'onnxruntime-gpu'])}.\n\n{table(records)}\n{END}\n"
    )
    publish(section, RESULTS, START, END, write=not args.no_write)


if __name__ == "__main__":
    main()

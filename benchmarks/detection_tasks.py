"""Running the detection tasks: one (detector, dataset, seed) each, in parallel, cached as they land.

Each task runs in a process with one thread (``--jobs`` processes share out the cores); the
slow ones (latentwatch, PyOD, large tables) start first. A success is cached at once, a
failure is printed with its traceback and never cached.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from detection_baselines import PYOD_DETECTORS, run_baseline
from detection_data import limit_threads, load_dataset, split_indices
from detection_lw import is_latentwatch, run_latentwatch
from detection_records import CACHE_VERSION, Record, Task, read_cached, write_cached
from detection_variants import lw_overrides


def run_task(task: Task, root: Path) -> Record:
    """Run ``task``; a failure comes back as a record with ``error`` (never cached)."""
    base = {"detector": task.detector, "dataset": task.dataset, "seed": task.seed}
    try:
        ds = load_dataset(root, task.dataset)
        run = run_latentwatch if is_latentwatch(task.detector) else run_baseline
        record = run(task.detector, ds, task.seed)
    except Exception:
        return base | {"error": traceback.format_exc()}
    train, test = split_indices(ds.y, task.seed)
    return (
        base
        | record
        | {
            "kind": ds.kind,
            "n_train": int(train.size),
            "n_test": int(test.size),
            "n_test_anomalous": int(ds.y[test].sum()),
            "cache_version": CACHE_VERSION,
            "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
    )


def task_cost(task: Task, root: Path) -> float:
    """Rough relative cost, to start the slow tasks first."""
    ds = load_dataset(root, task.dataset)
    weight = 20.0 if is_latentwatch(task.detector) or task.detector in PYOD_DETECTORS else 1.0
    return weight * len(ds.y) * (ds.frame.shape[1] + 10)


def progress(items: Iterable[Any], total: int) -> Iterable[Any]:
    """tqdm if installed, else a plain counter on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(items, total)
    return tqdm(items, total=total, desc="detection", unit="task")


def _plain_progress(items: Iterable[Any], total: int) -> Iterable[Any]:
    for i, item in enumerate(items, 1):
        print(f"[{i}/{total}]", file=sys.stderr, flush=True)
        yield item


def execute(tasks: Sequence[Task], root: Path, cache: Path, jobs: int) -> list[Record]:
    """Run ``tasks`` (in ``jobs`` processes when > 1), caching each success as it lands."""
    tasks = sorted(tasks, key=lambda t: -task_cost(t, root))
    failures: list[Record] = []
    if jobs <= 1:
        limit_threads()
        done: Iterable[Record] = (run_task(t, root) for t in tasks)
        return _collect(progress(done, len(tasks)), cache, failures)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # read by the spawned workers when numpy loads
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=limit_threads) as pool:
        futures = [pool.submit(run_task, t, root) for t in tasks]
        done = (f.result() for f in as_completed(futures))
        return _collect(progress(done, len(tasks)), cache, failures)


def _collect(records: Iterable[Record], cache: Path, failures: list[Record]) -> list[Record]:
    for record in records:
        if "error" in record:
            failures.append(record)
            name = f"{record['detector']} on {record['dataset']} seed {record['seed']}"
            print(f"\nFAILED {name}:\n{record['error']}", file=sys.stderr, flush=True)
        else:
            write_cached(cache, record)
    return failures


def reuse_default(task: Task, root: Path, cache: Path) -> bool:
    """Cache a copy of the default's record for a variant that trains as the default on its table.

    False when the variant changes this table's training, or the default's record is missing.
    """
    default, _, ablation = task.detector.partition("~")
    if not ablation:
        return False
    train, _ = split_indices(load_dataset(root, task.dataset).y, task.seed)
    source = read_cached(cache, Task(default, task.dataset, task.seed))
    if lw_overrides(task.detector, int(train.size)) is not None or source is None:
        return False
    write_cached(cache, source | {"detector": task.detector, "same_as": default})
    return True

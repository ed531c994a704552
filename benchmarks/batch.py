"""Batch scoring benchmark (issue 4): ``latentwatch score`` beside raw onnxruntime.

One run measures, on synthetic data with 32 numeric features (float64 Parquet, snappy, row
groups of 131,072 rows) and a VAE bundle trained by ``training.pipeline.train_bundle``:

- raw onnxruntime: the bundle's graph on the same 1M rows already in memory as float32
  ``x``, in chunks of 65,536 rows (the engine's batch), every output: the limit;
- the local engine, Parquet to Parquet, at 1M and 4M rows: each run is a fresh
  ``python -m service score`` process; rows/s from the job's own timer (bundle loading and
  session start included, interpreter start-up not), peak RSS of the process from
  ``/usr/bin/time`` (``ru_maxrss``);
- the Dask engine at 4M rows on a ``LocalCluster`` of 1 and of 2 worker processes (one
  thread each), started before the clock, every worker having imported the scoring code
  and opened its session, so rows/s measure scoring, not cluster start-up (reported apart).

Every measurement runs in a fresh process, one after the other.

Bars (issue 4): local rows/s >= 60% of raw onnxruntime's; peak RSS < 1 GiB at 1M and 4M
rows; Dask with 2 workers >= 1.6x one worker at 4M rows. The report is printed and written
between ``<!-- batch:start -->`` and ``<!-- batch:end -->`` in ``--results`` (the rest of the
file is left alone)::

    python benchmarks/batch.py
    python benchmarks/batch.py --rows 200000 --big-rows 400000 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from results_file import machine, publish, versions

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

N_FEATURES = 32
N_FACTORS = 4
TRAIN_ROWS = 20_000
TRAIN_OVERRIDES = {"max_steps": 300, "warmup_steps": 100, "report": False}
ROW_GROUP_ROWS = 131_072
RAW_CHUNKS = (8_192, 65_536)  # raw onnxruntime chunk sizes: the engine's onnxruntime chunk, its record batch
GENERATE_ROWS = 500_000  # rows generated and written at a time
MARK_START = "<!-- batch:start -->"
MARK_END = "<!-- batch:end -->"
GIB = 1 << 30


@dataclass(frozen=True)
class Run:
    """One measured configuration."""

    name: str
    rows: int
    seconds: float
    rss_bytes: int | None = None
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(N_FEATURES)]


def synthetic_rows(n_rows: int, rng: np.random.Generator, mixing: np.ndarray) -> np.ndarray:
    """``(n_rows, 32)`` float64: 4 latent factors mixed linearly, plus noise; a few rows off."""
    x = rng.standard_normal((n_rows, N_FACTORS)) @ mixing + 0.3 * rng.standard_normal((n_rows, N_FEATURES))
    x[rng.random(n_rows) < 0.01] += 4.0 * rng.standard_normal(N_FEATURES)
    return x


def write_parquet(path: Path, n_rows: int, seed: int, mixing: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in feature_names()])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_rows, GENERATE_ROWS):
            x = synthetic_rows(min(GENERATE_ROWS, n_rows - start), rng, mixing)
            table = pa.Table.from_arrays([pa.array(x[:, j]) for j in range(N_FEATURES)], schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)


def train(out: Path, mixing: np.ndarray) -> Path:
    from training.pipeline import train_bundle

    frame = pd.DataFrame(synthetic_rows(TRAIN_ROWS, np.random.default_rng(0), mixing), columns=feature_names())
    train_bundle(frame, out, overrides=dict(TRAIN_OVERRIDES))
    return out


def measure_raw(bundle: Path, data: Path, chunk_rows: int, threads: int | None = None) -> dict[str, float]:
    """(In a fresh process) the graph alone on the file's rows, decoded into float32 ``x`` before the clock."""
    import onnxruntime as ort

    x = np.ascontiguousarray(pq.read_table(data).to_pandas().to_numpy(dtype=np.float32))
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    session.run(names, {"x": x[:1]})
    started = time.perf_counter()
    for start in range(0, x.shape[0], chunk_rows):
        session.run(names, {"x": x[start : start + chunk_rows]})
    return {"rows": x.shape[0], "seconds": time.perf_counter() - started}


def _warm_worker(payload: object) -> bool:
    from service.batch.payload import cached_scorer

    cached_scorer(payload, device="cpu", intra_op_threads=1)  # type: ignore[arg-type]
    return True


def measure_dask(bundle: Path, data: Path, out: Path, workers: int) -> dict[str, float]:
    """(In a fresh process) the Dask engine on a LocalCluster started and warmed up before the clock."""
    from distributed import Client, LocalCluster

    from service.batch.local import run_job
    from service.batch.payload import BundlePayload
    from service.batch.rows import ScoreOptions

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_worker, BundlePayload.from_bundle(bundle))  # imports and the session, on every worker
        startup = time.perf_counter() - started
        summary = run_job(bundle, data, out, ScoreOptions(device="cpu"), engine="dask", client=client)
    return {"rows": summary.rows, "seconds": summary.seconds, "startup": startup}


def _fresh_process(arguments: list[str], workdir: Path) -> tuple[str, int]:
    """Run ``arguments`` under ``/usr/bin/time``: (its output, its peak RSS in bytes).

    ``/usr/bin/time`` is a small process, so the child's ``ru_maxrss`` is its own: a child
    forked straight from this (large) process would report at least this one's RSS.
    """
    rss_file = workdir / "rss.txt"
    command = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode != 0:
        msg = f"{shlex.join(arguments)} failed:\n{result.stdout}\n{result.stderr}"
        raise RuntimeError(msg)
    return result.stdout, int(rss_file.read_text().split()[-1]) * 1024  # %M is in KiB


def raw_onnxruntime(bundle: Path, data: Path, chunk_rows: int, workdir: Path) -> Run:
    command = [sys.executable, __file__, "--measure", f"raw{chunk_rows}", str(bundle), str(data)]
    output, rss = _fresh_process(command, workdir)
    measured = json.loads(output.strip().splitlines()[-1])
    name = f"raw onnxruntime, in memory, chunks of {chunk_rows:,} rows"
    return Run(name, int(measured["rows"]), measured["seconds"], rss, note="the data decoded before the clock")


def parallel_control(bundle: Path, data: Path) -> tuple[Run, Run]:
    """What this machine gives two processes: raw onnxruntime with one thread, alone, then twice at once.

    The Dask bar compares 2 single-thread workers with 1; on a shared machine the ratio of
    these two runs is the most any engine could reach at the time.
    """
    command = [sys.executable, __file__, "--measure", "raw8192t1", str(bundle), str(data)]

    def run_together(count: int) -> list[dict[str, float]]:
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(count)]
        outputs = [process.communicate()[0] for process in processes]
        if any(process.returncode for process in processes):
            msg = f"{shlex.join(command)} failed"
            raise RuntimeError(msg)
        return [json.loads(output.strip().splitlines()[-1]) for output in outputs]

    (alone,) = run_together(1)
    both = run_together(2)
    one = Run("raw onnxruntime, 1 thread, 1 process", int(alone["rows"]), alone["seconds"], note="control")
    rows = sum(int(m["rows"]) for m in both)
    two = Run("raw onnxruntime, 1 thread, 2 processes at once", rows, max(m["seconds"] for m in both))
    return one, dataclasses.replace(two, note=f"control: {two.rows_per_second / one.rows_per_second:.2f}x one process")


def local_engine(bundle: Path, data: Path, out: Path, rows: int, workdir: Path) -> Run:
    """``python -m service score`` in a fresh process: the job's seconds and the process's peak RSS."""
    command = [
        sys.executable, "-m", "service", "score", "--model", str(bundle),
        "--input", str(data), "--output", str(out), "--quiet", "--device", "cpu",
    ]  # fmt: skip
    output, rss = _fresh_process(command, workdir)
    found = re.search(r"scored ([\d,]+) rows in ([\d.]+) s", output)
    if not found or int(found.group(1).replace(",", "")) != rows:
        msg = f"unexpected summary from the score command:\n{output}"
        raise RuntimeError(msg)
    return Run("local engine, Parquet to Parquet", rows, float(found.group(2)), rss)


def dask_engine(bundle: Path, data: Path, out: Path, rows: int, workers: int, workdir: Path) -> Run:
    command = [sys.executable, __file__, "--measure", f"dask{workers}", str(bundle), str(data), str(out)]
    output, _ = _fresh_process(command, workdir)
    measured = json.loads(output.strip().splitlines()[-1])
    if measured["rows"] != rows:
        msg = f"the Dask engine wrote {measured['rows']} rows, expected {rows}"
        raise RuntimeError(msg)
    label = f"dask engine, {workers} worker{'s' if workers > 1 else ''} x 1 thread"
    note = f"cluster start and warm-up {measured['startup']:.1f} s, not counted"
    return Run(label, rows, measured["seconds"], note=note)


PACKAGES = ("numpy", "pandas", "pyarrow", "onnxruntime-gpu", "onnxruntime", "dask", "distributed", "torch")


def render(runs: dict[str, Run], command: str, bundle_info: str, load: float) -> str:
    raw = max((run for key, run in runs.items() if key.startswith("raw")), key=lambda run: run.rows_per_second)
    control = runs["control_2"].rows_per_second / runs["control_1"].rows_per_second
    lines = [
        MARK_START,
        "## Batch scoring (issue 4)",
        "",
        f"- command: `{command}`",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}; load average (1 min) at the start: {load:.2f}",
        f"- packages: {versions(PACKAGES)}",
        f"- data: {N_FEATURES} float64 features (4 latent factors + noise), Parquet (snappy, row groups of "
        f"{ROW_GROUP_ROWS:,} rows); output Parquet with the 5 score columns and `error`",
        f"- bundle: {bundle_info}",
        "- raw onnxruntime: the same graph on the first file's rows already decoded into float32 `x`, default "
        "threads, every output; the faster chunk size is the limit (100%); the engines' rows/s come from the "
        "job's own timer (bundle loading included); peak RSS is each process's `ru_maxrss` (`/usr/bin/time`); "
        "each measurement in a fresh process",
        "",
        "| run | rows | seconds | rows/s | of the limit | peak RSS | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs.values():
        rss = f"{run.rss_bytes / (1 << 20):,.0f} MiB" if run.rss_bytes else ""
        share = f"{run.rows_per_second / raw.rows_per_second:.0%}"
        lines.append(
            f"| {run.name} | {run.rows:,} | {run.seconds:.1f} | {run.rows_per_second:,.0f} | {share} | {rss} | "
            f"{run.note} |"
        )
    share = runs["local_1m"].rows_per_second / raw.rows_per_second
    rss = max(runs["local_1m"].rss_bytes or 0, runs["local_big"].rss_bytes or 0)
    speedup = runs["dask_2"].rows_per_second / runs["dask_1"].rows_per_second
    lines += [
        "",
        "Bars:",
        "",
        f"- local engine >= 60% of raw onnxruntime's rows/s ({runs['local_1m'].rows:,} rows): {share:.0%}, "
        f"{'met' if share >= 0.6 else 'NOT met'}",
        f"- peak RSS < 1 GiB at {runs['local_1m'].rows:,} and {runs['local_big'].rows:,} rows: {rss / GIB:.2f} GiB "
        "at most, "
        f"{'met' if rss < GIB else 'NOT met'} "
        f"({runs['local_1m'].rss_bytes / (1 << 20):,.0f} and {runs['local_big'].rss_bytes / (1 << 20):,.0f} MiB)",
        f"- Dask 2 workers >= 1.6x one worker ({runs['dask_2'].rows:,} rows): {speedup:.2f}x, "
        f"{'met' if speedup >= 1.6 else 'NOT met'}; measured right after them, two single-thread raw onnxruntime "
        f"processes at once gave {control:.2f}x one (the control rows)",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the first file (default 1M)")
    parser.add_argument("--big-rows", type=int, default=4_000_000, help="rows of the big file (default 4M)")
    parser.add_argument("--workdir", type=Path, help="where to put data and outputs (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)  # one measurement, in a fresh process
    args = parser.parse_args(argv)
    if args.measure:
        kind, *paths = args.measure
        if kind.startswith("raw"):
            chunk, _, threads = kind.removeprefix("raw").partition("t")
            measured = measure_raw(Path(paths[0]), Path(paths[1]), int(chunk), int(threads) if threads else None)
        else:
            measured = measure_dask(Path(paths[0]), Path(paths[1]), Path(paths[2]), int(kind.removeprefix("dask")))
        print(json.dumps(measured))
        return 0
    command = shlex.join(["python", "benchmarks/batch.py", *(argv if argv is not None else sys.argv[1:])])
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was

    with tempfile.TemporaryDirectory(prefix="lw-batch-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        mixing = np.random.default_rng(42).standard_normal((N_FACTORS, N_FEATURES))
        print("training the bundle ...", flush=True)
        bundle = train(workdir / "bundle", mixing)
        from service.bundle import load_bundle

        manifest = load_bundle(bundle).manifest
        resolved = manifest.training.get("resolved", {})
        bundle_info = (
            f"{manifest.model_type}, {manifest.n_features} features, hidden {resolved.get('hidden', '?')}, latent "
            f"{manifest.latent_dim}, trained on {TRAIN_ROWS:,} rows with max_steps={TRAIN_OVERRIDES['max_steps']} "
            "(training.pipeline.train_bundle)"
        )
        print("writing the data ...", flush=True)
        small, big = workdir / "rows-small.parquet", workdir / "rows-big.parquet"
        write_parquet(small, args.rows, 1, mixing)
        write_parquet(big, args.big_rows, 2, mixing)
        runs: dict[str, Run] = {}
        steps = {
            **{
                f"raw{chunk}": functools.partial(raw_onnxruntime, bundle, small, chunk, workdir) for chunk in RAW_CHUNKS
            },
            "local_1m": lambda: local_engine(bundle, small, workdir / "out-small.parquet", args.rows, workdir),
            "local_big": lambda: local_engine(bundle, big, workdir / "out-big.parquet", args.big_rows, workdir),
            "dask_1": lambda: dask_engine(bundle, big, workdir / "out-dask1.parquet", args.big_rows, 1, workdir),
            "dask_2": lambda: dask_engine(bundle, big, workdir / "out-dask2.parquet", args.big_rows, 2, workdir),
        }
        for key, step in steps.items():
            print(f"running {key} ...", flush=True)
            runs[key] = step()
            print(f"  {runs[key].rows_per_second:,.0f} rows/s", flush=True)
        print("running the two-process control ...", flush=True)
        runs["control_1"], runs["control_2"] = parallel_control(bundle, small)
        same = pq.read_table(workdir / "out-dask2.parquet").equals(pq.read_table(workdir / "out-big.parquet"))
        if not same:
            msg = "the Dask engine's output differs from the local engine's"
            raise RuntimeError(msg)

    section = render(runs, command, bundle_info, load)
    publish(section, args.results, MARK_START, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

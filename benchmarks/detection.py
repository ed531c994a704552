"""Detection benchmark: latentwatch's detectors beside classical and PyOD baselines.

Follows the novelty protocol of ``benchmarks/README.md`` exactly: for each dataset and seed,
``rng = default_rng(seed)`` permutes the normal then the anomalous row indices; the first 60%
of the normal rows (at most 20,000) train, the rest of them (at most 20,000) plus
at most 5,000 anomalous rows test. Every detector uses its default settings and gives a score
per test row, higher = more anomalous; ROC-AUC and average precision are averaged over seeds.

Baselines see the features one-hot encoded (non-numeric columns only, fitted on the train
rows, unseen categories ignored) and standardized with the train rows' mean and std. The
latentwatch detectors (``lw-vae``, ``lw-aae``, ``lw-ae``, ``lw-vaegan``, ``lw-hvae``) get the
raw feature columns, train a bundle through ``training.pipeline.train_bundle`` and are scored
through onnxruntime, as a user would run them.

Each (detector, dataset, seed) result is cached as JSON under ``--cache`` (git-ignored), so an
interrupted run resumes::

    python benchmarks/detection.py --detectors baselines --jobs 2
    python benchmarks/detection.py --datasets glass,Wilt --seeds 0 --detectors lw-vae,knn

The report (markdown) is printed and written between ``<!-- detection:start -->`` and
``<!-- detection:end -->`` in ``--results``; the rest of that file is left alone. The run's
records (a first line describing the run, then one record per line) are written with it to
``--records`` (``benchmarks/records/detection.jsonl``, committed): ``--render`` renders the
section again from that file alone, and a run takes the records it holds as already done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from detection_baselines import BASELINES, PYOD_DETECTORS, SKLEARN_DETECTORS
from detection_data import REPO, dataset_list, default_data_root, parse_list
from detection_lw import LW_DETECTORS, is_latentwatch, latentwatch_available, measure_graph_speed
from detection_records import Task, read_cached, seed_cache, write_records
from detection_report import MARK_END, MARK_START, render_records, render_report
from detection_tasks import execute, reuse_default
from detection_variants import ABLATED, ABLATIONS, UNDONE
from results_file import machine, publish, versions

RECORDS = REPO / "benchmarks" / "records" / "detection.jsonl"
ALL_DETECTORS = BASELINES + LW_DETECTORS
KNOWN_DETECTORS = ALL_DETECTORS + ABLATED
PACKAGES = ("numpy", "scikit-learn", "pyod", "torch", "onnxruntime-gpu", "onnxruntime")


def detector_list(value: str) -> list[str]:
    """Detector names from a comma list, or the aliases all/baselines/sklearn/pyod/lw/ablations/undone."""
    aliases = {
        "all": ALL_DETECTORS, "baselines": BASELINES, "sklearn": SKLEARN_DETECTORS,
        "pyod": PYOD_DETECTORS, "lw": LW_DETECTORS,
    }  # fmt: skip
    aliases["ablations"] = ABLATED
    aliases["undone"] = UNDONE
    return parse_list(value, KNOWN_DETECTORS, aliases)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--datasets",
        type=dataset_list,
        default=dataset_list("all"),
        help="comma list of short names (glass, Wilt, bank), or all/adbench/mixed",
    )
    p.add_argument("--seeds", type=lambda v: [int(s) for s in v.split(",")], default=[0, 1, 2])
    p.add_argument(
        "--detectors",
        type=detector_list,
        default=list(ALL_DETECTORS),
        help=f"comma list of {', '.join(ALL_DETECTORS)}, lw-vae~ABLATION ({', '.join(ABLATIONS)}), "
        "or all/baselines/pyod/lw/ablations/undone (the variants that each undo one default, and another model seed)",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (1 thread each)")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding adbench/ and mixed/ (default $LATENTWATCH_DATASETS "
        "or ../shared/datasets beside the repository)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=REPO / "benchmarks" / ".cache" / "detection",
        help="local, git-ignored: one JSON per task, so that an interrupted run resumes",
    )
    p.add_argument(
        "--records",
        type=Path,
        default=RECORDS,
        help="the run's records, one per line, which the report is rendered from (committed)",
    )
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    p.add_argument("--refresh", action="store_true", help="recompute even cached tasks")
    p.add_argument(
        "--render",
        action="store_true",
        help="only render the report from --records (no training, no datasets; the other "
        "selection options are ignored)",
    )
    p.add_argument("--no-write", action="store_true", help="print the report only (--records is left alone too)")
    return p.parse_args(argv)  # fmt: skip


def plan(args: argparse.Namespace, root: Path) -> tuple[list[Task], list[Task]]:
    """All requested tasks, and those to run (not cached; lw ones only if lw imports)."""
    detectors, datasets, seeds = args.detectors, args.datasets, args.seeds
    tasks = [Task(d, ds, s) for d in detectors for ds in datasets for s in seeds]
    pending = [t for t in tasks if args.refresh or read_cached(args.cache, t) is None]
    rerun_default = args.refresh and any("~" not in d for d in detectors)  # its cached records go stale
    pending = [t for t in pending if rerun_default or not reuse_default(t, root, args.cache)]
    if any(is_latentwatch(t.detector) for t in pending) and not latentwatch_available():
        print("skipping the lw detectors' uncached tasks", file=sys.stderr)
        pending = [t for t in pending if not is_latentwatch(t.detector)]
    return tasks, pending


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 if any task failed."""
    args = parse_args(argv)
    if args.render:
        publish(render_records(args.records), args.results, MARK_START, MARK_END, write=not args.no_write)
        return 0
    root = (args.data_root or default_data_root()).resolve()
    seed_cache(args.records, args.cache)
    tasks, pending = plan(args, root)
    print(
        f"{len(tasks)} tasks, {len(pending)} to run on {args.jobs} process(es); data {root}",
        file=sys.stderr,
    )
    failures = execute(pending, root, args.cache, args.jobs) if pending else []
    records = [r for t in tasks if (r := read_cached(args.cache, t)) is not None]
    speed = None
    if "lw-vae" in args.detectors and "mnist" in args.datasets and latentwatch_available():
        speed = measure_graph_speed(root, args.cache, args.refresh)
    meta = {
        "command": shlex.join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "packages": versions(PACKAGES),
        "jobs": args.jobs,
        "seeds": ",".join(map(str, args.seeds)),
        "detectors": list(args.detectors),
        "datasets": list(args.datasets),
        "graph_speed": speed,
    }
    section = render_report(records, meta | {"missing": len(tasks) - len(records)})
    publish(section, args.results, MARK_START, MARK_END, write=not args.no_write)
    if not args.no_write:
        write_records(args.records, meta, records)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

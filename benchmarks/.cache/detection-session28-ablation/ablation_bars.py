"""Issue 6's bars with each undone variant's records in the default's place (session 28).

Run from the repository root after the ablation is cached:
    .venv/bin/python benchmarks/.cache/detection-session28-ablation/ablation_bars.py
It reads the records in benchmarks/.cache/detection and trains nothing.
"""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BENCHMARKS))

import detection as bench  # noqa: E402

CACHE = BENCHMARKS / ".cache" / "detection"
SEEDS = (0, 1, 2)


def cached_records() -> list[dict]:
    detectors = list(bench.ALL_DETECTORS) + list(bench.UNDONE)
    tasks = [bench.Task(d, ds, s) for d in detectors for ds in bench.dataset_list("all") for s in SEEDS]
    return [r for t in tasks if (r := bench.read_cached(CACHE, t)) is not None]


def main() -> None:
    records = cached_records()
    others = [r for r in records if "~" not in r["detector"] and r["detector"] != bench.DEFAULT_DETECTOR]
    for variant in (bench.DEFAULT_DETECTOR, *bench.UNDONE):
        in_place = [r | {"detector": bench.DEFAULT_DETECTOR} for r in records if r["detector"] == variant]
        lines = bench.bar_lines(bench.result_rows(others + in_place))
        print(f"## {variant} in the default's place ({len(in_place)} records)")
        print("\n".join(lines[1:5]), end="\n\n")


if __name__ == "__main__":
    main()

"""What the detection benchmark keeps on disk: the cache and the records file.

- The cache (``--cache``, git-ignored): one JSON file per task, ``DETECTOR__DATASET__seedN.json``,
  written atomically as each task finishes, so that an interrupted run resumes. A record from
  another ``CACHE_VERSION`` counts as absent.
- The records file (``--records``, committed): a first line ``{"run": meta}`` describing the run,
  then one record per line. The report is rendered from it alone, and ``seed_cache`` copies its
  records into a fresh cache, so that a new checkout reruns nothing already measured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1

Record = dict[str, Any]  # one task's result: its JSON fields


@dataclass(frozen=True)
class Task:
    """One (detector, dataset, seed) measurement."""

    detector: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.detector}__{self.dataset}__seed{self.seed}"


def read_cached(cache: Path, task: Task) -> Record | None:
    """The cached record of ``task``, or None if absent, unreadable or from an older format."""
    path = cache / f"{task.key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("cache_version") == CACHE_VERSION else None


def write_json(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` atomically: an interrupted run never leaves half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(path)


def write_cached(cache: Path, record: Record) -> None:
    """Write ``record`` atomically to the local cache (``--records`` keeps the run's records)."""
    cache.mkdir(parents=True, exist_ok=True)
    task = Task(record["detector"], record["dataset"], record["seed"])
    write_json(cache / f"{task.key}.json", record)


def graph_speed_path(cache: Path, dataset: str = "mnist", seed: int = 0) -> Path:
    """Where the graph-speed record is cached."""
    return cache / f"graph-speed__lw-vae__{dataset}__seed{seed}.json"


def run_tasks(meta: dict[str, Any]) -> list[Task]:
    """The tasks of a run, in the order its report reads them (detectors, then datasets, then seeds)."""
    seeds = [int(s) for s in str(meta["seeds"]).split(",")]
    return [Task(d, ds, s) for d in meta["detectors"] for ds in meta["datasets"] for s in seeds]


def read_records(path: Path) -> tuple[dict[str, Any], dict[str, Record]]:
    """The run described on the first line of ``path`` and its records by task key ({} and {} if absent)."""
    if not path.exists():
        return {}, {}
    meta: dict[str, Any] = {}
    records: dict[str, Record] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if "run" in item:
            meta = item["run"]
        else:
            records[Task(item["detector"], item["dataset"], item["seed"]).key] = item
    return meta, records


def write_records(path: Path, meta: dict[str, Any], records: Sequence[Record]) -> None:
    """Write the run (``meta``, first line) and its ``records`` (one per line), atomically."""
    lines = [json.dumps({"run": meta}, sort_keys=True)]
    lines += [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def seed_cache(path: Path, cache: Path) -> None:
    """Put the committed records of ``path`` into the local cache where it has none of its own."""
    meta, records = read_records(path)
    for key, record in records.items():
        if record.get("cache_version") == CACHE_VERSION and not (cache / f"{key}.json").exists():
            write_cached(cache, record)
    speed = meta.get("graph_speed")
    if speed and not graph_speed_path(cache, speed["dataset"], speed["seed"]).exists():
        cache.mkdir(parents=True, exist_ok=True)
        write_json(graph_speed_path(cache, speed["dataset"], speed["seed"]), speed)

"""The serving benchmark's figures: the medians over repeats of each server's phases.

A run of ``load.py`` gives phases (``unary``, ``conc``, ``inproc``, ``check``), each with rows/s,
latency percentiles and the server's CPU; :class:`Figures` selects them per server and case
and reduces each case to a :class:`Cell` of medians.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from serving_servers import FLOOR, MLS_CORES


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Cell:
    rows_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_request: float | None = None
    cores_busy: float | None = None
    repeats: int = 0


def phase_cell(phases: list[dict[str, Any]]) -> Cell:
    def cpu(p: dict[str, Any]) -> float | None:
        if p.get("server_cpu_s") is None or not p.get("requests"):
            return None
        return 1e3 * p["server_cpu_s"] / p["requests"]

    return Cell(
        rows_per_s=median([p["rows_per_s"] for p in phases]),
        p50_ms=median([p.get("p50_ms") for p in phases]),
        p99_ms=median([p.get("p99_ms") for p in phases]),
        cpu_ms_per_request=median([cpu(p) for p in phases]),
        cores_busy=median([p.get("server_cores_busy") for p in phases]),
        repeats=len(phases),
    )


def select(runs: list[dict[str, Any]], phase: str, rows: int | None = None) -> list[dict[str, Any]]:
    return [
        p
        for run in runs
        for p in run["phases"]
        if p["phase"] == phase and (rows is None or p.get("rows_per_request") == rows)
    ]


@dataclass
class Figures:
    """Medians per server and case."""

    runs: dict[str, list[dict[str, Any]]]
    streams: list[dict[str, Any]]

    def unary(self, label: str, rows: int) -> Cell:
        return phase_cell(select(self.runs[label], "unary", rows))

    def conc(self, label: str) -> Cell:
        return phase_cell(select(self.runs[label], "conc"))

    def stream(self, rows: int) -> Cell:
        return phase_cell([s for s in self.streams if s["rows_per_request"] == rows])

    def concurrency(self) -> int:
        return next((p["concurrency"] for runs in self.runs.values() for p in select(runs, "conc")), 0)

    def inproc(self, rows: int) -> float | None:
        """In-process onnxruntime rows/s at ``rows`` rows per call and the servers' thread count."""
        runs = [r for label, rs in self.runs.items() if label != MLS_CORES for r in rs]
        return median([p["rows_per_s"] for p in select(runs, "inproc", rows)])

    def inproc_all_cores(self, rows: int) -> float | None:
        """The same with one intra-op thread per core (measured beside MLS_CORES)."""
        return median([p["rows_per_s"] for p in select(self.runs.get(MLS_CORES, []), "inproc", rows)])

    def checks(self) -> dict[str, str]:
        out = {}
        for label, runs in self.runs.items():
            if label in (FLOOR, MLS_CORES):
                continue
            found = select(runs, "check")
            diffs = [max(p["max_abs_diff"].values()) for p in found]
            ok = all(p["ok"] for p in found)
            out[label] = f"{'ok' if ok else 'MISMATCH'} (max abs diff {max(diffs):.1e})" if diffs else "-"
        return out

    def loads(self) -> list[float]:
        return [
            v
            for runs in self.runs.values()
            for run in runs
            for v in (run["meta"]["loadavg_start"][0], run["meta"].get("loadavg_end", [None])[0])
            if v is not None
        ]

    def other_cores(self) -> list[float]:
        return [
            p["other_cores_busy"]
            for runs in self.runs.values()
            for run in runs
            for p in run["phases"]
            if p["phase"] in ("unary", "conc") and "other_cores_busy" in p
        ]

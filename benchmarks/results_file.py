"""What every benchmark shares: the machine line, package versions, and its section of RESULTS.md.

Each benchmark owns one section of ``benchmarks/RESULTS.md`` between its own markers
(``<!-- NAME:start -->`` / ``<!-- NAME:end -->``) and replaces only that section.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """Cores, CPU model, OS and Python, e.g. ``2 cores (AMD EPYC), Linux, Python 3.11.7``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    return f"{cores} cores ({cpu}), {platform.system()}, Python {platform.python_version()}"


def versions(names: Iterable[str]) -> str:
    """``name version`` of each installed distribution in ``names``, comma-separated."""
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return ", ".join(found)


def write_section(path: Path, section: str, start_marker: str, end_marker: str) -> None:
    """Replace the marked section of ``path`` with ``section`` (markers included); append it if absent."""
    text = path.read_text() if path.exists() else "# latentwatch benchmark results\n"
    start, end = text.find(start_marker), text.find(end_marker)
    if start >= 0 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(section: str, path: Path, start_marker: str, end_marker: str, *, write: bool = True) -> None:
    """Print ``section`` and, when ``write``, put it in its marked place in ``path``."""
    print(section)
    if write:
        write_section(path, section, start_marker, end_marker)
        print(f"written to {path}")

"""One progress display for a whole training run.

A run fits its members one after another (``fitting member k of K``; each restart is a fit), then calibrates,
exports and writes the report. The display counts gradient steps over every member: its total
is the sum of the members' step caps, and when a member stops early its unused steps leave the
total, so the time left (from the steps per second so far) is an upper bound that tightens as
the run goes. On a terminal it is one tqdm bar; otherwise (a log file, a CI job) it prints a
plain line at each stage and every ``interval`` seconds; with ``quiet`` it prints nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm.auto import tqdm

PLAIN_INTERVAL_SECONDS = 10.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class FitProgress:
    """Stage, steps per second and time left of a training run's fits."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PLAIN_INTERVAL_SECONDS,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.clock = clock
        self.interval = interval
        self.plain = not quiet and not self.stream.isatty()
        self.total = 0
        self.done = 0
        self.stage_name = "preparing"
        self._started = clock()
        self._last_line = -float("inf")
        self._bar: tqdm | None = None
        if not quiet and not self.plain:
            self._bar = tqdm(total=0, file=self.stream, unit="step", desc=self.stage_name, leave=False)

    def plan(self, total_steps: int) -> None:
        """The run's fits take at most ``total_steps`` steps together (the sum of their caps)."""
        self.total = total_steps
        if self._bar is not None:
            self._bar.total = total_steps
            self._bar.refresh()

    def start_fit(self, label: str) -> None:
        """A fit begins; ``label`` says which member and restart."""
        self._set_stage(f"fitting {label}")

    def step(self, count: int = 1, **postfix: float) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            if postfix:
                self._bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)
        elif self.plain and self.clock() - self._last_line >= self.interval:
            self._line(postfix)

    def end_fit(self, steps: int, max_steps: int) -> None:
        """The fit took ``steps`` of its ``max_steps``: the rest leaves the total."""
        self.total -= max_steps - steps
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def stage(self, name: str) -> None:
        """A stage after the fits: ``calibrating``, ``exporting``, ``report``."""
        self._set_stage(name)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.plain:
            print(f"done in {_duration(self.clock() - self._started)}", file=self.stream, flush=True)

    def rate(self) -> float:
        """Steps per second since the run started (0 before the first step)."""
        elapsed = self.clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _set_stage(self, name: str) -> None:
        self.stage_name = name
        if self._bar is not None:
            self._bar.set_description(name, refresh=True)
        elif self.plain:
            self._line({})

    def _line(self, postfix: dict[str, float]) -> None:
        self._last_line = self.clock()
        parts = [f"{self.stage_name}:", f"{_duration(self._last_line - self._started)} so far"]
        if self.total and self.done < self.total:
            rate = self.rate()
            parts.append(f"step {self.done:,} of at most {self.total:,}")
            if rate > 0:
                left = (self.total - self.done) / rate
                parts.append(f"{rate:.0f} steps/s, fitting ends in at most {_duration(left)}")
        parts += [f"{k} {v:.3f}" for k, v in postfix.items()]
        print(" ".join(parts[:1]) + " " + ", ".join(parts[1:]), file=self.stream, flush=True)

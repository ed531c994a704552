"""The rule a change to the defaults must pass on the detection benchmark's tables.

A candidate is compared with a reference table by table (each table's ROC-AUC a mean over seeds).
It is adopted only if all of these hold (docs/decisions.md, "How a default is chosen"):

- it raises the mean on **both halves** of the tables, split by the parity of the number in their
  file name (``1_ALOI`` odd, ``2_annthyroid`` even), so that a gain is not one half's;
- it is better on more tables than it is worse on (a table counts when it moves by more than
  ``TIE``);
- it still gains without the table that moved most (not carried by one table);
- the mean gain exceeds the paired standard error over tables (inside the seed noise is no gain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TIE = 0.001  # a table whose ROC-AUC moves by no more than this is neither better nor worse


def table_number(stem: str) -> int | None:
    """``22_magic.gamma`` -> 22; None for a name without a leading number (the mixed tables)."""
    head, _, _ = stem.partition("_")
    return int(head) if head.isdigit() else None


def halves(stems: dict[str, str]) -> dict[str, str]:
    """Short name -> ``"odd"`` or ``"even"`` by its file number (names without one are left out)."""
    out = {}
    for name, stem in stems.items():
        number = table_number(stem)
        if number is not None:
            out[name] = "odd" if number % 2 else "even"
    return out


@dataclass(frozen=True)
class Comparison:
    """A candidate minus a reference over the tables both cover (ROC-AUC, means over seeds)."""

    tables: int
    mean: float
    standard_error: float
    by_half: dict[str, float]
    better: int
    worse: int
    largest_mover: str
    largest_move: float
    without_largest: float

    @property
    def adopted(self) -> bool:
        """Whether the candidate passes every part of the rule."""
        return (
            len(self.by_half) == 2
            and all(gain > 0 for gain in self.by_half.values())
            and self.better > self.worse
            and self.without_largest > 0
            and self.mean > self.standard_error
        )

    def summary(self) -> str:
        """One line: the mean and its error, each half, the count, the largest mover."""
        halves_text = ", ".join(f"{half} {gain:+.4f}" for half, gain in sorted(self.by_half.items()))
        return (
            f"{self.mean:+.4f} (s.e. {self.standard_error:.4f}; {halves_text}); better on {self.better}, "
            f"worse on {self.worse} of {self.tables}; without {self.largest_mover} ({self.largest_move:+.3f}) "
            f"{self.without_largest:+.4f}"
        )


def compare(candidate: pd.Series, reference: pd.Series, half_of: dict[str, str]) -> Comparison | None:
    """Compare two per-table series (index: short names); None when they share fewer than 2 tables."""
    diff = (candidate - reference).dropna()
    diff = diff[[name in half_of for name in diff.index]]
    if diff.size < 2:
        return None
    mover = str(diff.abs().idxmax())
    rest = diff.drop(mover)
    by_half = {
        half: float(diff[[half_of[n] == half for n in diff.index]].mean())
        for half in sorted({half_of[n] for n in diff.index})
    }
    return Comparison(
        tables=int(diff.size),
        mean=float(diff.mean()),
        standard_error=float(diff.std(ddof=1) / np.sqrt(diff.size)),
        by_half=by_half,
        better=int((diff > TIE).sum()),
        worse=int((diff < -TIE).sum()),
        largest_mover=mover,
        largest_move=float(diff[mover]),
        without_largest=float(rest.mean()),
    )

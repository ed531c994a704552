"""Categorical values never seen in training: counted per column, summarized, and flagged.

A value never seen in training is evidence, not absence: the graph charges it the feature's
``unseen_nats`` (see :class:`service.bundle.Feature`). The counts here feed the service's
``latentwatch_unseen_categories_total``, the batch job's summary and ``evaluate``'s notes.
A column whose values are mostly unseen was most likely renamed (another column now holds
its name) or recoded (``FR`` sent as ``fr``, ``True`` as ``yes``): :func:`warnings` says so,
with examples and the categories that training saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from service.bundle import Feature
from service.errors import quote, quote_list

MOSTLY_UNSEEN = 0.5  # a column is flagged when more than this share of its present values is unseen
MIN_PRESENT = 10  # ... and it held at least this many present values: one odd row is not a recoding
EXAMPLES = 3  # distinct unseen values kept per column, for messages


@dataclass(frozen=True)
class UnseenCount:
    """One categorical column's values: ``present`` (not missing), ``unseen`` of them never seen in training."""

    column: str
    present: int
    unseen: int
    examples: tuple[str, ...] = ()  # a few distinct unseen values, in the order met

    @property
    def share(self) -> float:
        """Unseen values as a share of the present ones (0 when none is present)."""
        return self.unseen / self.present if self.present else 0.0

    @property
    def mostly_unseen(self) -> bool:
        return self.present >= MIN_PRESENT and self.share > MOSTLY_UNSEEN


def count_labels(feature: Feature, labels: pd.Series, unseen: np.ndarray) -> UnseenCount:
    """The count of one column from its canonical labels and its ``(n_rows,)`` unseen mask."""
    examples = pd.unique(labels[unseen])[:EXAMPLES] if unseen.any() else ()
    return UnseenCount(feature.name, int(labels.notna().sum()), int(unseen.sum()), tuple(str(v) for v in examples))


def count_codes(x: np.ndarray, features: Sequence[Feature]) -> tuple[UnseenCount, ...]:
    """Counts from ``x`` ``(n_rows, n_features)`` itself: a code at or past ``len(categories)`` is unseen.

    Only features with ``unseen_nats`` are counted: older bundles encode an unseen value -1, as missing.
    """
    counts = []
    for j, feature in enumerate(features):
        if feature.is_categorical and feature.unseen_nats is not None:
            codes = x[:, j]
            present = int(np.count_nonzero(codes >= 0))
            counts.append(UnseenCount(feature.name, present, int(np.count_nonzero(codes >= len(feature.categories)))))
    return tuple(counts)


def merge(*tallies: Iterable[UnseenCount]) -> tuple[UnseenCount, ...]:
    """Counts of the same columns (from several batches) added up, columns in first-met order."""
    merged: dict[str, UnseenCount] = {}
    for tally in tallies:
        for count in tally:
            old = merged.get(count.column)
            if old is None:
                merged[count.column] = count
                continue
            examples = tuple(dict.fromkeys(old.examples + count.examples))[:EXAMPLES]
            merged[count.column] = UnseenCount(
                count.column, old.present + count.present, old.unseen + count.unseen, examples
            )
    return tuple(merged.values())


def summary(counts: Iterable[UnseenCount]) -> str | None:
    """One line naming every column with unseen values, None when there were none."""
    parts = [f"{c.column} {c.unseen:,} of {c.present:,} ({c.share:.1%}{_examples(c)})" for c in counts if c.unseen]
    if not parts:
        return None
    return "values never seen in training (each scored its column's unseen_nats): " + "; ".join(parts)


def warnings(counts: Iterable[UnseenCount], features: Sequence[Feature]) -> list[str]:
    """A message per mostly-unseen column: it looks renamed or recoded; what training saw."""
    by_name = {f.name: f for f in features}
    messages = []
    for count in counts:
        if not count.mostly_unseen or count.column not in by_name:
            continue
        seen = [str(c) for c in by_name[count.column].categories]
        folded = {c.casefold() for c in seen}
        case_only = bool(count.examples) and all(e.casefold() in folded for e in count.examples)
        messages.append(
            f"column {quote(count.column)}: {count.share:.0%} of its {count.present:,} values were never seen in "
            f"training{_examples(count)}; it looks renamed or recoded"
            + (" (its values match training's up to letter case)" if case_only else "")
            + f": training saw {quote_list(seen)}"
        )
    return messages


def to_json(counts: Iterable[UnseenCount]) -> str:
    return json.dumps([asdict(c) for c in counts])


def from_json(text: str | bytes) -> tuple[UnseenCount, ...]:
    return tuple(UnseenCount(**{**c, "examples": tuple(c["examples"])}) for c in json.loads(text))


def _examples(count: UnseenCount) -> str:
    return f", e.g. {', '.join(quote(e) for e in count.examples)}" if count.examples else ""

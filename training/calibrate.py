"""Which rows train and which calibrate, and the held-out rows' scores that calibrate p-values.

With ``folds`` K >= 2 every normal row trains K - 1 members and is held out by one: its
calibration score is that member's, the score of a model that never saw it. With one fold,
``validation_fraction`` of the rows are held out. Early stopping scores at most
``VALIDATION_ROWS`` of the held-out rows; calibration scores them all, in chunks, so that its
memory does not grow with the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.bundle import ROW_SCORES
from service.tables import sample_positions
from training import data as data_mod
from training.config import VALIDATION_ROWS, TrainSettings, resolve_folds
from training.export import ScoringGraph, torch_outputs
from training.models import Ensemble

# Repeat r of a cross-fitting partitions the rows with seed s + r * REPEAT_SEED_STRIDE (a prime).
REPEAT_SEED_STRIDE = 1_299_709
# Rows per onnxruntime or torch call when scoring the calibration rows. The defensive prior's
# density compares every draw of every row with each of the 512 bank posteriors, a (draws, rows,
# 512, latent) tensor: 16,384 rows took 2 GiB of onnxruntime's arena on a 5-dimensional latent.
SCORING_CHUNK_ROWS = 2_048


def fit_splits(n_rows: int, settings: TrainSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit rows, held-out rows) of each distinct fit: one split, or one per fold and repeat.

    With ``folds`` K >= 2, fit k holds out fold k and trains on the other K - 1, so every
    normal row is held out by exactly one member of each of the ``repeats`` partitions (repeat
    r shuffles the rows with seed ``seed + r * REPEAT_SEED_STRIDE``; repeat 0 is the plain one).
    """
    count = resolve_folds(settings, n_rows)
    if count == 1:
        return [data_mod.split_rows(n_rows, settings.validation_fraction, settings.seed)]
    splits = []
    for r in range(settings.repeats):
        folds = data_mod.fold_rows(n_rows, count, settings.seed + r * REPEAT_SEED_STRIDE)
        splits += [(np.setdiff1d(np.arange(n_rows), fold), fold) for fold in folds]
    return splits


def calibration_rows(splits: list[tuple[np.ndarray, np.ndarray]], folds: int) -> np.ndarray:
    """The held-out rows that calibrate the p-values, each once: the first partition's folds in turn."""
    return np.concatenate([held for _, held in splits[: max(1, folds)]])


def out_of_fold_scores(
    graph: ScoringGraph, x_normal: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Each of ``rows`` scored by the mixture of the members that never saw it (one per repeat).

    Their primary score calibrates the mixture's p-values, and the report shows their scores as
    the held-out rows'. A new row is scored by every member, and the mixture's negative ELBO is
    at most the mean of the members' (Jensen), so a normal row's mixture score tends to fall
    below that of the few members that never saw it: the p-values err on the safe side.
    """
    members = graph.model.members
    unseen = np.zeros((len(rows), len(members)), dtype=bool)
    position = np.full(len(x_normal), -1)
    position[rows] = np.arange(len(rows))
    for k, (_, held) in enumerate(splits):
        unseen[position[held], k] = True
    scores = {name: np.empty(len(rows), dtype=np.float32) for name in ROW_SCORES}
    for pattern in np.unique(unseen, axis=0):
        where = np.flatnonzero((unseen == pattern).all(axis=1))
        chosen = [members[k] for k in np.flatnonzero(pattern)]
        model = chosen[0] if len(chosen) == 1 else Ensemble(chosen)
        part = chunked_torch_outputs(ScoringGraph(graph.preprocessor, model, graph.eps), x_normal[rows[where]])
        for name in ROW_SCORES:
            scores[name][where] = part[name]
    return scores


def validation_rows(held: np.ndarray, seed: int) -> np.ndarray:
    """The held-out rows that early stopping scores: all of ``held``, or a seeded sample of ``VALIDATION_ROWS``."""
    return held[sample_positions(len(held), VALIDATION_ROWS, seed)]


def run_graph(session: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """The onnxruntime ``session``'s outputs on ``x``, by name, scored ``SCORING_CHUNK_ROWS`` rows at a time."""
    names = [o.name for o in session.get_outputs()]
    parts = [
        session.run(None, {"x": x[start : start + SCORING_CHUNK_ROWS]})
        for start in range(0, len(x), SCORING_CHUNK_ROWS)
    ]
    return {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}


def chunked_torch_outputs(graph: ScoringGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """``torch_outputs`` of ``graph`` on ``x``, ``SCORING_CHUNK_ROWS`` rows at a time."""
    parts = [
        torch_outputs(graph, x[start : start + SCORING_CHUNK_ROWS]) for start in range(0, len(x), SCORING_CHUNK_ROWS)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

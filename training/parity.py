"""The exported graph checked against torch before a bundle is written: onnxruntime must agree.

``check_parity`` scores held-out rows and rows far from the training data (missing values and
unseen codes among them) with both and compares each output in units of what it splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.bundle import Feature
from training.export import (
    PARITY_RTOL,
    ScoringGraph,
    category_probabilities,
    forgive_category_ties,
    mixture_split_allowance,
    parity_error,
    torch_outputs,
)


def random_rows(features: Sequence[Feature], n: int, seed: int) -> np.ndarray:
    """Rows far and near the training data, with missing values and unseen codes."""
    rng = np.random.default_rng(seed + 1)
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        if f.is_categorical:
            x[:, j] = rng.integers(-1, len(f.categories) + 1, n)  # -1 missing, len(categories) unseen
        elif f.is_constant:
            x[:, j] = np.where(rng.random(n) < 0.5, f.center, f.center + rng.standard_normal(n))
            x[rng.random(n) < 0.1, j] = np.nan
        else:
            x[:, j] = f.center + f.scale * rng.standard_normal(n) * rng.choice([0.5, 1, 3, 10], n)
            x[rng.random(n) < 0.1, j] = np.nan
    return x


def check_parity(graph: ScoringGraph, session: Any, x: np.ndarray, features: Sequence[Feature]) -> float:
    """onnxruntime against torch on ``x``.

    ``expected`` is compared in each feature's standard deviations, ``feature_scores`` and ``kl``
    in units of the row's ``neg_elbo``, the total they split: a mixture of members splits it by
    weights that a float32 rounding of nearly tied members' scores moves (on a row 10 standard
    deviations out, scored 12,926 nats, one feature's 0.73 nats moved by 0.001). Where the
    members also disagree on where a far row's nats lie, that move grows with the row's total,
    so a mixture's split outputs get ``mixture_split_allowance`` besides (a bounded decoder's
    mixture on mammography: one feature of a row of 18,700 nats, 3,267.17 nats in torch and
    3,244.32 in onnxruntime, every other output within 5e-5). A categorical
    column of ``expected`` may name the other category where two are tied to float32 rounding
    (``forgive_category_ties``); before that, an AE trained on the bank table failed the check
    by 1/6: one code where torch named category 6.
    """
    ort_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    expected = torch_outputs(graph, x)
    ties = category_probabilities(graph, x)
    ort_out["expected"] = forgive_category_ties(expected["expected"], ort_out["expected"], ties, PARITY_RTOL)
    total = np.abs(expected["neg_elbo"].astype(np.float64))
    units = {
        "expected": np.array([f.scale or 1.0 for f in features], dtype=np.float64),
        "feature_scores": total[:, None],
        "kl": total,
    }
    for name, allowance in mixture_split_allowance(graph, x).items():  # in units that PARITY_RTOL scales
        units[name] = np.maximum(units.get(name, 0.0), allowance / PARITY_RTOL)
    error = parity_error(expected, ort_out, units)
    if not error <= PARITY_RTOL:
        msg = f"onnxruntime and torch disagree on the exported graph (relative error {error:.2e})"
        raise RuntimeError(msg)
    return error

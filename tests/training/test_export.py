"""The scoring graph's export checks: how ONNX and torch outputs are compared (parity in
units of a row's total, NaN, category ties) and the allowance a mixture's split gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.features import encode_frame
from tests.training.tables import mixed_table
from training.export import (
    MEMBER_TOTAL_ROUNDING,
    forgive_category_ties,
    mixture_split_allowance,
    parity_error,
    torch_outputs,
)
from training.pipeline import train_bundle


def test_parity_can_measure_a_split_in_units_of_the_row_total() -> None:
    # One row far out, 12,926 nats in all: a 0.001 shift of one small share is a rounding of the total.
    torch_side = {"feature_scores": np.array([[0.727, 12925.15], [0.5, 0.5]])}
    ort_side = {"feature_scores": np.array([[0.728, 12925.149], [0.5, 0.5]])}
    assert parity_error(torch_side, ort_side) == pytest.approx(1e-3, rel=1e-3)
    totals = np.array([[12925.88], [1.0]])
    assert parity_error(torch_side, ort_side, {"feature_scores": totals}) < 1e-6


@pytest.mark.slow
def test_a_mixtures_split_allowance_bounds_what_rounding_its_member_totals_can_move(
    tmp_path: Path, quick: dict
) -> None:
    result = train_bundle(mixed_table(300), tmp_path / "b", overrides={**quick, "folds": 3})
    graph, features = result.graph, result.manifest.features
    x = encode_frame(mixed_table(40, seed=2), features).x
    x[20:, :3] *= 300.0  # half the rows far out: tens of thousands of nats, members disagreeing
    allowance = mixture_split_allowance(graph, x)
    total = np.abs(torch_outputs(graph, x)["neg_elbo"].astype(np.float64))
    assert (allowance["feature_scores"][:20] < 1e-4 * total[:20, None]).all()  # near rows: nothing loosened
    # Round each member's total differently, as another runtime may, by at most what the bound assumes.
    with torch.no_grad():
        batch = graph.preprocess(torch.from_numpy(x))
        each = [member.score(batch, graph.eps) for member in graph.model.members]
        totals = torch.stack([scores["neg_elbo"] for scores in each]).double()
        values = torch.stack([scores["feature_scores"] for scores in each]).double()
    rounding = MEMBER_TOTAL_ROUNDING * totals.abs().amax(0)
    split = (torch.softmax(-totals, 0)[..., None] * values).sum(0)
    for sign in ([1, -1, 0], [-1, 1, 1], [0, 1, -1]):
        moved = totals + torch.tensor(sign, dtype=torch.float64)[:, None] * rounding
        resplit = (torch.softmax(-moved, 0)[..., None] * values).sum(0)
        assert ((resplit - split).abs().numpy() <= allowance["feature_scores"] + 1e-9).all()
    assert (allowance["feature_scores"][:20].sum(1) > 0).all()  # the members share the near rows: a real test
    single = train_bundle(mixed_table(300), tmp_path / "one", overrides=quick)  # no weights, no split
    assert mixture_split_allowance(single.graph, x) == {}


def test_parity_fails_a_graph_that_gives_nan_where_torch_does_not() -> None:
    torch_side = {"neg_elbo": np.array([1.0, 2.0, 3.0])}
    assert parity_error(torch_side, {"neg_elbo": np.array([1.0, np.nan, 3.0])}) == np.inf
    assert parity_error(torch_side, {"neg_elbo": np.array([1.0, 2.0, np.inf])}) == np.inf
    assert parity_error({"neg_elbo": np.array([np.nan])}, {"neg_elbo": np.array([np.nan])}) == np.inf


def test_parity_forgives_a_category_named_differently_only_at_a_tie() -> None:
    # Column 1 is categorical with 3 categories; column 0 numeric.
    torch_expected = np.array([[0.5, 2.0], [0.5, 0.0], [0.5, 1.0]])
    ort_expected = np.array([[0.5, 1.0], [0.5, 2.0], [0.5, 1.0]])
    probabilities = {1: np.array([[0.1, 0.4500004, 0.45], [0.6, 0.1, 0.3], [0.2, 0.7, 0.1]])}
    forgiven = forgive_category_ties(torch_expected, ort_expected, probabilities, tolerance=1e-3)
    assert forgiven[0, 1] == 2.0  # 0.4500004 against 0.45: a tie, torch's choice is kept
    assert forgiven[1, 1] == 2.0  # 0.6 against 0.3: a real disagreement stays
    assert parity_error({"expected": torch_expected}, {"expected": forgiven}) == pytest.approx(2.0)  # code 0 against 2
    assert ort_expected[0, 1] == 1.0  # the input is not changed

"""The data plane over a real registry of the fixture bundle: readiness, scoring through the
micro-batcher, and the checks every request's rows and columns pass first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.batching import MicroBatcher
from service.dataplane import DataPlane, check_column_names, max_columns, scoring_function
from service.errors import InvalidInput
from service.registry import ModelRegistry
from service.scorer import Scorer
from tests.service.conftest import FEATURES, normal_rows, reference_outputs, write_bundle

MODEL = "sensors"


def with_plane(tmp_path: Path, work: Callable[[DataPlane], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work`` against a DataPlane over one model, as ``latentwatch serve`` wires it."""
    write_bundle(tmp_path / MODEL / "1")

    async def main() -> Any:
        with ThreadPoolExecutor(1) as pool:
            registry = ModelRegistry(
                tmp_path,
                open_scorer=lambda p: Scorer.open(p, device="cpu", intra_op_threads=1),
                make_batcher=lambda n, s: MicroBatcher(scoring_function(n, s), executor=pool, name=n),
            )
            await registry.reload()
            return await work(DataPlane(registry, max_request_rows=100))

    return asyncio.run(main())


def test_a_loaded_model_is_ready_and_scores_as_its_graph(tmp_path: Path) -> None:
    x = normal_rows(5, seed=1)

    async def work(plane: DataPlane):
        assert plane.live()
        assert plane.ready()
        assert plane.model_ready(MODEL)
        assert not plane.model_ready("other")
        result = await plane.infer(plane.model(MODEL), x, alpha=0.5)
        plane.shutting_down = True
        assert not plane.ready()
        assert not plane.model_ready(MODEL)
        return result

    result = with_plane(tmp_path, work)
    assert (result.model.name, result.model.version) == (MODEL, "1")
    np.testing.assert_allclose(result.scores.neg_elbo, reference_outputs(x)["neg_elbo"], rtol=1e-6)
    assert result.scores.alpha == 0.5
    np.testing.assert_array_equal(result.scores.is_anomaly, result.scores.p_value < 0.5)


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        (np.zeros((2, 2)), r"rows must have shape \(n_rows, 3\)"),
        (np.zeros((0, 3)), "the request holds no rows"),
        (np.zeros((101, 3)), "holds 101 rows, more than the limit of 100"),
        (np.array([[0.0, np.inf, 0.0]]), "row 0, column 'load'"),
        (
            np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]),
            r"row 1, column 'site' is categorical: 3.0 is not a code from -1 to 2",
        ),
        (np.array([[0.0, 0.0, 0.5]]), "row 0, column 'site' is categorical"),
    ],
)
def test_bad_rows_are_refused_naming_where(tmp_path: Path, rows: np.ndarray, says: str) -> None:
    async def work(plane: DataPlane) -> None:
        with pytest.raises(InvalidInput, match=says):
            plane.check_x(plane.model(MODEL), rows)

    with_plane(tmp_path, work)


def test_named_columns_are_encoded_in_the_bundles_order(tmp_path: Path) -> None:
    columns = {"site": ["south", None, "north"], "load": [1.0, 2.0, None], "temperature": ["3.5", 4, 5]}

    async def work(plane: DataPlane) -> np.ndarray:
        return plane.encode_columns(plane.model(MODEL), columns)

    x = with_plane(tmp_path, work)
    np.testing.assert_array_equal(x, [[3.5, 1.0, 1.0], [4.0, 2.0, -1.0], [5.0, np.nan, 0.0]])


def test_columns_of_different_lengths_are_refused(tmp_path: Path) -> None:
    async def work(plane: DataPlane) -> None:
        with pytest.raises(InvalidInput, match="columns have different lengths"):
            plane.encode_columns(plane.model(MODEL), {"temperature": [1.0], "load": [1.0, 2.0], "site": ["east"]})

    with_plane(tmp_path, work)


def test_column_names_are_checked_all_at_once_with_suggestions(bundle_dir: Path) -> None:
    manifest = Scorer.open(bundle_dir, device="cpu").manifest
    check_column_names("m", ["site", "load", "temperature"], manifest)  # any order
    with pytest.raises(InvalidInput) as info:
        check_column_names("m", ["site", "site", "lod", "temperature"], manifest)
    assert str(info.value) == (
        "model 'm': duplicate column(s) ['site']; missing feature column(s) ['load']; "
        "unknown column 'lod' (did you mean 'load'?); the model's features are ['temperature', 'load', 'site']"
    )


def test_a_request_may_carry_every_feature_and_a_few_mistakes() -> None:
    assert max_columns(len(FEATURES)) == 2 * 3 + 16

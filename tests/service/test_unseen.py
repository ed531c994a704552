"""The service counts categorical values never seen in training, per model and column.

A bundle trained on ``mixed_table`` (``site``: north, south, east; ``flag``: a boolean) served
through the real DataPlane, micro-batcher and onnxruntime: labels never seen in training, or
their code K in ``x``, are counted in ``latentwatch_unseen_categories_total``, cost nats, and a
column a request sends mostly unseen is logged once. A bundle written before unseen values were
scored (the hand-built fixture) still loads, says so, and takes -1 for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from service.batching import MicroBatcher
from service.bundle import load_bundle
from service.dataplane import DataPlane, scoring_function
from service.errors import InvalidInput
from service.features import encode_frame
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.scorer import Scorer
from tests.service.conftest import FEATURES
from tests.training.tables import QUICK, mixed_table

MODEL = "telemetry"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.pipeline import train_bundle

    root = tmp_path_factory.mktemp("served")
    train_bundle(mixed_table(400), root / MODEL, overrides=dict(QUICK, name=MODEL))
    return root


def serve(models: Path, metrics: Metrics, work: Callable[[DataPlane], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work`` against a DataPlane over ``models``, as ``latentwatch serve`` wires it."""

    async def main() -> Any:
        with ThreadPoolExecutor(1) as pool:
            registry = ModelRegistry(
                models,
                open_scorer=lambda p: Scorer.open(p, device="cpu", intra_op_threads=1),
                make_batcher=lambda n, s: MicroBatcher(scoring_function(n, s, metrics), executor=pool, name=n),
                metrics=metrics,
            )
            await registry.reload()
            return await work(DataPlane(registry, metrics, max_request_rows=10_000))

    return asyncio.run(main())


def unseen_total(metrics: Metrics, column: str) -> float | None:
    return metrics.registry.get_sample_value("latentwatch_unseen_categories_total", {"model": MODEL, "column": column})


@pytest.mark.slow
def test_unseen_labels_and_codes_are_counted_per_column(models: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rows = mixed_table(30, seed=3)
    rows.loc[rows.index[:4], "site"] = "mars"

    async def work(plane: DataPlane) -> tuple[np.ndarray, np.ndarray]:
        model = plane.model(MODEL)
        columns = {name: rows[name].tolist() for name in model.manifest.feature_names}
        x = plane.encode_columns(model, columns)
        named = await plane.infer(model, x)
        # A raw-x client: every flag sent as the unseen code, 2 (the boolean's two categories, then "new").
        flag = model.manifest.feature_names.index("flag")
        raw = x.copy()
        raw[:, flag] = 2
        coded = await plane.infer(model, raw)
        raw[0, flag] = 3
        with pytest.raises(InvalidInput, match=r"is not a code from -1 \(missing\) to 2 \(unseen\)"):
            plane.check_x(model, raw)
        return named.scores.feature_scores[:, flag], coded.scores.feature_scores[:, flag]

    with caplog.at_level(logging.WARNING, logger="service.dataplane"):
        seen_flag, unseen_flag = serve(models, metrics, work)
    assert unseen_total(metrics, "site") == 2 * 4  # in both requests
    assert unseen_total(metrics, "flag") == 30
    assert unseen_total(metrics, "load") is None  # a numeric column has no categories
    manifest = load_bundle(models / MODEL).manifest
    nats = manifest.features[manifest.feature_names.index("flag")].unseen_nats
    np.testing.assert_allclose(unseen_flag, nats, rtol=1e-6)
    assert (seen_flag < nats).all()
    said = [r.getMessage() for r in caplog.records if "never seen in training" in r.getMessage()]
    assert len(said) == 1  # flag was mostly unseen; site (4 of 30) was not
    assert "column 'flag': 100% of its 30 values" in said[0]
    assert "renamed or recoded" in said[0]


@pytest.mark.slow
def test_a_column_sent_mostly_unseen_is_logged_once_per_column(models: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    rows = mixed_table(20, seed=4).assign(site=lambda f: f["site"].str.upper())

    async def work(plane: DataPlane) -> None:
        model = plane.model(MODEL)
        for _ in range(3):
            x = plane.encode_columns(model, {name: rows[name].tolist() for name in model.manifest.feature_names})
            await plane.infer(model, x)

    with caplog.at_level(logging.WARNING, logger="service.dataplane"):
        serve(models, metrics, work)
    said = [r.getMessage() for r in caplog.records if "never seen in training" in r.getMessage()]
    assert len(said) == 1
    assert "column 'site'" in said[0]
    assert "training saw ['north', 'south', 'east']" in said[0]
    assert unseen_total(metrics, "site") == 3 * int(rows["site"].notna().sum())


def test_an_older_bundle_loads_says_so_and_takes_minus_one(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.bundle"):
        bundle = load_bundle(bundle_dir)
    assert any("predates the scoring of unseen categories" in r.getMessage() for r in caplog.records)
    site = bundle.manifest.features[2]
    assert site.unseen_nats is None
    assert site.unseen_code == -1
    frame = {"temperature": [0.0, 0.0], "load": [0.0, 0.0], "site": ["east", "mars"]}
    encoded = encode_frame(pd.DataFrame(frame), FEATURES)
    np.testing.assert_array_equal(encoded.x[:, 2], [2, -1])
    assert encoded.unseen[0].unseen == 1  # counted all the same, from the label

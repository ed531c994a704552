"""Explanations: a planted anomaly's column gets the largest feature score, and ``expected`` is normal.

The table's columns follow one factor ``a`` (``b = 2a``, ``c = -a``, ``e = a + 1``,
``f = a / 2``, each with noise of std 0.1) beside an independent ``d``. Adding 4 to ``b`` keeps
it inside ``b``'s own range (about -6 to 6) for the rows used, so only the correlation gives
the anomaly away: an explanation must name ``b`` and say that a normal row holds ``b ≈ 2a``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.scorer import Scorer
from training.pipeline import train_bundle

SHIFT = 4.0
COLUMNS = ["a", "b", "c", "e", "f", "d"]


def correlated_table(n_rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n_rows)

    def noise() -> np.ndarray:
        return 0.1 * rng.normal(size=n_rows)

    columns = {"a": a, "b": 2 * a + noise(), "c": -a + noise(), "e": a + 1 + noise(), "f": 0.5 * a + noise()}
    return pd.DataFrame({**columns, "d": rng.normal(size=n_rows)})


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    settings = {"max_steps": 2000, "warmup_steps": 600, "folds": 1, "report": False}
    result = train_bundle(correlated_table(600, seed=0), tmp_path_factory.mktemp("expl") / "b", overrides=settings)
    return Scorer.open(result.bundle_dir, device="cpu")


@pytest.mark.slow
def test_the_planted_column_explains_the_anomaly_and_expected_is_normal(scorer: Scorer) -> None:
    training = correlated_table(600, seed=0)
    normal = correlated_table(200, seed=1)
    normal = normal[normal["a"].abs() < 0.8].head(20).reset_index(drop=True)
    planted = normal.assign(b=normal["b"] + SHIFT)
    assert planted["b"].between(training["b"].min(), training["b"].max()).all()  # only the correlation is off

    out = scorer.score_frame(planted, explain=True)
    scores = out[[f"feature_score_{c}" for c in COLUMNS]].to_numpy()
    assert (scores.argmax(axis=1) == COLUMNS.index("b")).all(), scores.round(2)

    expected_b = out["expected_b"].to_numpy()
    implied = 2 * normal["a"].to_numpy()  # what the correlation says b should be
    assert np.all((expected_b >= training["b"].min()) & (expected_b <= training["b"].max()))
    gap = np.abs(expected_b - implied)
    assert gap.max() < 0.4 * SHIFT, gap.round(3)  # far nearer 2a than the planted 2a + 4
    assert gap.mean() < 0.3 * SHIFT, gap.round(3)

    before = scorer.score_frame(normal)
    assert (out["neg_elbo"].to_numpy() > before["neg_elbo"].to_numpy()).all()
    assert np.median(out["p_value"]) < np.median(before["p_value"])

"""A category never seen in training is evidence, not absence: it costs nats, and is named.

The bundle is trained on ``mixed_table`` (``site``: north, south, east; ``flag``: a boolean).
A missing value costs nothing; a value never seen in training costs its column's
``unseen_nats``, log(n + K + 1) for n training values over K categories (the rule of succession
with "a new value" as one more outcome). A column sent recoded (``site`` upper-cased, ``flag``
as yes/no) is named by ``evaluate``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.bundle import Feature
from service.features import encode_frame
from service.scorer import Scorer
from tests.training.tables import QUICK, mixed_table
from training.evaluate import evaluate_bundle, format_evaluation
from training.pipeline import TrainResult, train_bundle


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_bundle(mixed_table(400), tmp_path_factory.mktemp("unseen") / "b", overrides=QUICK)


@pytest.fixture(scope="module")
def scorer(trained: TrainResult) -> Scorer:
    return Scorer.open(trained.bundle_dir, device="cpu")


def feature(trained: TrainResult, name: str) -> Feature:
    return trained.manifest.features[trained.manifest.feature_names.index(name)]


@pytest.mark.slow
def test_the_manifest_records_the_smoothed_price_of_an_unseen_value(trained: TrainResult) -> None:
    site = feature(trained, "site")
    n_train = trained.manifest.training["rows"]["train"]
    n_present = round(n_train * (1 - site.missing_in_training))
    assert site.unseen_nats == pytest.approx(math.log(n_present + len(site.categories) + 1))
    assert site.unseen_code == len(site.categories) == 3
    assert feature(trained, "flag").unseen_nats == pytest.approx(math.log(n_train + 2 + 1))
    assert feature(trained, "load").unseen_nats is None


@pytest.mark.slow
def test_an_unseen_value_costs_its_nats_where_a_missing_one_costs_none(trained: TrainResult, scorer: Scorer) -> None:
    rows = mixed_table(40, seed=5)
    nats = feature(trained, "site").unseen_nats
    seen = scorer.score_frame(rows, explain=True)
    unseen = scorer.score_frame(rows.assign(site="mars"), explain=True)
    missing = scorer.score_frame(rows.assign(site=None), explain=True)

    # The encoder sees the same all-zero group for both: only the charge differs.
    np.testing.assert_allclose(unseen["neg_elbo"] - missing["neg_elbo"], nats, rtol=1e-5)
    np.testing.assert_allclose(unseen["kl"], missing["kl"], rtol=1e-6)
    np.testing.assert_allclose(unseen["feature_score_site"], nats, rtol=1e-6)
    assert (missing["feature_score_site"] == 0).all()
    # An unseen value never scores below the seen one it replaced.
    assert (unseen["neg_elbo"] > seen["neg_elbo"]).all()
    assert (unseen["recon_error"] > missing["recon_error"]).all()
    assert (unseen["p_value"] <= seen["p_value"]).all()


@pytest.mark.slow
def test_the_contracts_codes_minus_one_missing_and_k_unseen(trained: TrainResult, scorer: Scorer) -> None:
    rows = mixed_table(10, seed=6)
    x = encode_frame(rows.assign(site="mars", flag="maybe"), trained.manifest.features).x
    column = trained.manifest.feature_names.index("site")
    assert (x[:, column] == 3).all()
    assert (x[:, trained.manifest.feature_names.index("flag")] == 2).all()
    as_missing = x.copy()
    as_missing[:, column] = -1
    charged, free = scorer.run(x), scorer.run(as_missing)
    np.testing.assert_allclose(charged["feature_scores"][:, column], feature(trained, "site").unseen_nats, rtol=1e-6)
    assert (free["feature_scores"][:, column] == 0).all()


@pytest.mark.slow
def test_evaluate_names_a_recoded_column(trained: TrainResult) -> None:
    frame = mixed_table(200, seed=8)
    frame["label"] = 0
    frame.loc[frame.index[:10], ["load", "label"]] = [8.0, 1]
    recoded = frame.assign(site=frame["site"].str.upper(), flag=np.where(frame["flag"], "yes", "no"))
    result = evaluate_bundle(trained.bundle_dir, recoded, "label", source="recoded.csv", device="cpu")
    text = format_evaluation(result)
    assert "values never seen in training" in text
    assert "column 'site': 100% of its" in text
    assert "it looks renamed or recoded (its values match training's up to letter case)" in text
    assert "column 'flag': 100% of its 200 values were never seen in training, e.g. '" in text
    assert "training saw ['False', 'True']" in text
    clean = evaluate_bundle(trained.bundle_dir, frame, "label", source="clean.csv", device="cpu")
    assert not [note for note in clean.notes if "never seen" in note]


@pytest.mark.slow
def test_a_few_new_values_are_counted_but_not_called_a_recoding(trained: TrainResult) -> None:
    frame = mixed_table(100, seed=9)
    frame.loc[frame.index[:3], "site"] = "west"
    counts = {c.column: c for c in encode_frame(frame, trained.manifest.features).unseen}
    assert counts["site"].unseen == 3
    assert counts["site"].present == int(frame["site"].notna().sum())
    assert counts["site"].examples == ("west",)
    assert counts["flag"].unseen == 0
    assert not counts["site"].mostly_unseen

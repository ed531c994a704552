"""The score columns' names, order and values (service/columns.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service.batch.rows import score_fields
from service.bundle import Feature
from service.columns import ROW_COLUMNS, decode_codes, score_column_names, score_columns

FEATURES = (
    Feature("temp", "numeric", center=0.0, scale=1.0, fill=0.0),
    Feature("mode", "categorical", dtype="string", categories=("idle", "run")),
)


def _scores(n_rows: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "recon_error": rng.random(n_rows, dtype=np.float32),
        "neg_elbo": rng.random(n_rows, dtype=np.float32),
        "kl": rng.random(n_rows, dtype=np.float32),
        "p_value": rng.random(n_rows),
        "is_anomaly": np.array([True, False, False][:n_rows]),
        "feature_scores": rng.random((n_rows, 2), dtype=np.float32),
        "expected": np.array([[1.5, 0.0], [2.5, 1.0], [3.5, -1.0]], dtype=np.float32)[:n_rows],
        "latent": rng.random((n_rows, 4), dtype=np.float32),
    }


def test_names_in_table_order() -> None:
    assert score_column_names(FEATURES, 2, explain=False, latent=False) == list(ROW_COLUMNS)
    assert score_column_names(FEATURES, 2, explain=True, latent=True) == [
        "recon_error",
        "neg_elbo",
        "kl",
        "p_value",
        "is_anomaly",
        "feature_score_temp",
        "feature_score_mode",
        "expected_temp",
        "expected_mode",
        "latent_0",
        "latent_1",
    ]


def test_values_follow_the_names_and_decode_categories() -> None:
    scores = _scores()
    columns = score_columns(scores, FEATURES, explain=True, latent=True)
    assert list(columns) == score_column_names(FEATURES, 4, explain=True, latent=True)
    np.testing.assert_array_equal(columns["feature_score_mode"], scores["feature_scores"][:, 1])
    np.testing.assert_array_equal(columns["expected_temp"], [1.5, 2.5, 3.5])
    assert list(columns["expected_mode"]) == ["idle", "run", None]
    np.testing.assert_array_equal(columns["latent_3"], scores["latent"][:, 3])


def test_without_explain_or_latent_the_arrays_are_not_needed() -> None:
    scores = {name: values for name, values in _scores().items() if name in ROW_COLUMNS}
    assert list(score_columns(scores, FEATURES, explain=False, latent=False)) == list(ROW_COLUMNS)


def test_decode_codes_rounds_and_leaves_unknown_codes_empty() -> None:
    codes = np.array([0.0, 0.9, 1.2, -1.0, 2.0, 7.0])
    assert list(decode_codes(codes, ("a", "b"))) == ["a", "b", "b", None, None, None]


def test_grpc_feature_descriptions_give_the_same_columns() -> None:
    described = [
        pb.FeatureDescription(name=f.name, kind=f.kind, categories=[str(c) for c in f.categories]) for f in FEATURES
    ]
    mine = score_columns(_scores(), FEATURES, explain=True, latent=True)
    theirs = score_columns(_scores(), described, explain=True, latent=True)
    assert list(mine) == list(theirs)
    assert list(theirs["expected_mode"]) == list(mine["expected_mode"])


def test_batch_schema_uses_the_same_names_with_arrow_types() -> None:
    fields = score_fields(FEATURES, 2, explain=True, latent=True)
    assert [f.name for f in fields] == [*score_column_names(FEATURES, 2, explain=True, latent=True), "error"]
    types = {f.name: f.type for f in fields}
    assert types["p_value"] == pa.float64()
    assert types["is_anomaly"] == pa.bool_()
    assert types["expected_mode"] == pa.string()
    assert types["expected_temp"] == pa.float32()

"""One record batch through the output plan: the columns a job writes, and a bad row kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from service.batch.rows import ERROR_COLUMN, ScoreOptions, make_plan, score_arrow
from service.bundle import ROW_SCORES, load_bundle
from service.errors import InvalidInput
from service.scorer import Scorer
from tests.service.batch.conftest import scoring_table


def plan_for(bundle: Path, table: pa.Table, **options: object):
    manifest = load_bundle(bundle).manifest
    return make_plan(manifest.features, manifest.latent_dim, table.schema, ScoreOptions(**options), "rows.parquet")


def test_the_plan_puts_passthrough_columns_first_then_the_scores_then_error(trained_bundle: Path) -> None:
    table = pa.Table.from_pandas(scoring_table(10), preserve_index=False)
    plan = plan_for(trained_bundle, table)
    assert plan.passthrough == ("event_id", "seen_at")
    assert plan.schema.names == ["event_id", "seen_at", *ROW_SCORES, "p_value", "is_anomaly", ERROR_COLUMN]


def test_explain_and_latent_add_columns_per_feature_and_dimension(trained_bundle: Path) -> None:
    manifest = load_bundle(trained_bundle).manifest
    table = pa.Table.from_pandas(scoring_table(10), preserve_index=False)
    names = plan_for(trained_bundle, table, explain=True, latent=True).schema.names
    for feature in manifest.features:
        assert f"feature_score_{feature.name}" in names
        assert f"expected_{feature.name}" in names
    assert [n for n in names if n.startswith("latent_")] == [f"latent_{i}" for i in range(manifest.latent_dim)]


def test_an_input_column_named_like_a_score_is_refused_by_name(trained_bundle: Path) -> None:
    frame = scoring_table(10)
    frame["p_value"] = 0.5
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pytest.raises(InvalidInput, match=r"rows\.parquet: input column\(s\) \['p_value'\]"):
        plan_for(trained_bundle, table)


def test_a_batch_scores_like_the_scorer_and_keeps_its_bad_row(trained_bundle: Path) -> None:
    frame = scoring_table(50)
    frame["power"] = frame["power"].astype(float)
    frame.loc[7, "power"] = np.inf
    table = pa.Table.from_pandas(frame, preserve_index=False)
    plan = plan_for(trained_bundle, table)
    scorer = Scorer.open(trained_bundle, device="cpu")

    out = score_arrow(table.select(list(plan.read_columns)), scorer, plan, source="rows.parquet", row_offset=100)

    assert out.num_rows == 50
    errors = out.column(ERROR_COLUMN).to_pylist()
    assert [i for i, e in enumerate(errors) if e is not None] == [7]
    assert "power" in errors[7]  # the reason names the column
    assert out.column("neg_elbo")[7].as_py() is None
    good = frame.drop(index=7)
    expected = scorer.score_frame(good)["neg_elbo"].to_numpy()
    got = np.asarray(out.column("neg_elbo").to_pylist(), dtype=object)
    np.testing.assert_allclose(np.delete(got, 7).astype(np.float32), expected, rtol=1e-6)

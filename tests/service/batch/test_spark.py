"""score_pandas: a pandas frame scored as the local engine scores a file (Spark's ``mapInPandas``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from service.batch import dask as dask_engine
from service.batch.local import run_job
from service.batch.rows import ScoreOptions
from service.batch.spark import BundlePayload, score_pandas
from service.errors import InvalidInput
from tests.service.batch.conftest import scoring_table


def test_score_pandas_equals_the_file_output_where_the_bundle_folder_is_gone(
    trained_bundle: Path, tmp_path: Path
) -> None:
    frame = scoring_table(900, seed=9)
    frame.to_parquet(tmp_path / "in.parquet")
    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(explain=True))
    expected = pd.read_parquet(tmp_path / "out.parquet")

    copy = tmp_path / "bundle"
    shutil.copytree(trained_bundle, copy)
    payload = BundlePayload.from_bundle(copy)
    shutil.rmtree(copy)  # like a Spark executor: only the payload's bytes are there

    def map_in_pandas(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in frames:
            yield score_pandas(chunk, payload, explain=True)

    chunks = [frame.iloc[i : i + 250] for i in range(0, 900, 250)]
    scored = pd.concat(list(map_in_pandas(iter(chunks))))
    assert scored.index.tolist() == frame.index.tolist()
    pd.testing.assert_frame_equal(scored.reset_index(drop=True), expected, check_dtype=False)


def test_score_pandas_marks_bad_rows_and_keeps_chosen_columns(trained_bundle: Path) -> None:
    frame = scoring_table(100, seed=10)
    frame["load"] = frame["load"].astype(object)
    frame.loc[7, "load"] = "??"
    frame.index = frame.index + 500
    scored = score_pandas(frame, trained_bundle, keep_columns=["event_id"])
    assert list(scored.columns) == ["event_id", "recon_error", "neg_elbo", "kl", "p_value", "is_anomaly", "error"]
    assert scored.loc[507, "error"] == "column 'load': '??' is not a number"
    assert pd.isna(scored.loc[507, "neg_elbo"])
    assert scored.drop(index=507)["neg_elbo"].notna().all()
    with pytest.raises(InvalidInput, match=r"row 7, column 'load'"):
        score_pandas(frame, trained_bundle, strict=True)


def test_score_pandas_needs_no_dask_and_still_imports_from_the_dask_module() -> None:
    code = (
        "import sys; import service.batch.spark; "
        "print(sorted(m for m in ('dask', 'distributed', 'service.batch.dask') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    # README and older code import these from service.batch.dask.
    assert dask_engine.score_pandas is score_pandas
    assert dask_engine.BundlePayload is BundlePayload

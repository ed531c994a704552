"""Broken input and output files: every row comes out (with its reason), or the job fails
before it reads a row, naming the line, column or path at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service.batch.local import run_job
from service.batch.rows import ScoreOptions
from service.bundle import ROW_SCORES
from service.errors import ConfigError, InvalidInput
from service.scorer import Scorer
from tests.service.batch.conftest import corrupt_csv, scoring_table

SCORES = [*ROW_SCORES, "p_value", "is_anomaly"]


def reference_scores(bundle: Path, frame: pd.DataFrame) -> pd.DataFrame:
    return Scorer.open(bundle, device="cpu").score_frame(frame).reset_index(drop=True)


def binary_csv(path: Path) -> Path:
    """A file named .csv that holds bytes, not text (here: a Parquet file)."""
    scoring_table(50).to_parquet(path)
    return path


# -- lines with the wrong number of fields ---------------------------------------------------


@pytest.mark.slow
def test_lines_with_too_many_or_too_few_fields_are_kept_with_their_line_number(
    trained_bundle: Path, tmp_path: Path
) -> None:
    frame = scoring_table(1200)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[1 + 100] += ",surplus"  # row 100: one field too many
    lines[1 + 500] = lines[1 + 500].rsplit(",", 2)[0]  # row 500: two fields too few
    lines.insert(1 + 800, "")  # a blank line before row 800: not a row, but a line
    lines[-1] = lines[-1][: len(lines[-1]) // 2].rsplit(",", 1)[0]  # the last line cut short, without a newline
    path.write_text("\n".join(lines))

    summary = run_job(trained_bundle, path, tmp_path / "out.parquet", ScoreOptions(batch_rows=300))

    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 1200 == summary.rows  # rows out = rows in
    assert summary.errors == 3
    bad = [100, 500, 1199]
    assert out.index[out["error"].notna()].tolist() == bad
    assert out.loc[100, "error"].startswith("line 102: 8 fields where the header has 7: ")
    assert out.loc[500, "error"].startswith("line 502: 5 fields where the header has 7: ")
    assert out.loc[1199, "error"].startswith(f"line {1200 + 2}: ")  # the blank line counts as a line
    assert out.loc[bad, ["event_id", *SCORES]].isna().all().all()
    assert out.drop(index=bad)["event_id"].tolist() == frame.drop(index=bad)["event_id"].tolist()
    reference = reference_scores(trained_bundle, frame.drop(index=bad))
    pd.testing.assert_frame_equal(
        out.drop(index=bad)[SCORES].reset_index(drop=True), reference[SCORES], check_dtype=False
    )


def test_strict_stops_at_a_line_with_the_wrong_number_of_fields(trained_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    scoring_table(400).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[1 + 250] += ",1,2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match=r"in\.csv: line 252: 9 fields where the header has 7"):
        run_job(trained_bundle, path, tmp_path / "out.parquet", ScoreOptions(strict=True, batch_rows=100))
    assert not (tmp_path / "out.parquet").exists()


# -- numbers float32 cannot hold ---------------------------------------------------------------


def test_numbers_beyond_float32_are_kept_with_a_reason_not_scored(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(300)
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    corrupt_csv(path, {4: ("load", "1e39"), 50: ("power", "-1e300"), 90: ("count", "3.4e38")})

    summary = run_job(trained_bundle, path, tmp_path / "out.parquet")

    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 300
    assert summary.errors == 2
    assert out.loc[4, "error"] == "column 'load': 1e+39 is beyond float32's range (±3.403e+38)"
    assert out.loc[50, "error"] == "column 'power': -1e+300 is beyond float32's range (±3.403e+38)"
    assert out.loc[[4, 50], SCORES].isna().all().all()
    assert pd.isna(out.loc[90, "error"])  # 3.4e38 is within float32's range: scored
    assert pd.notna(out.loc[90, "neg_elbo"])


# -- column types unlike the training data's --------------------------------------------------


def test_a_categorical_column_of_integers_is_refused_naming_it(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(200)
    frame["site"] = frame["site"].map({"north": 0, "south": 1, "east": 2}).astype("Int64")  # codes, not labels
    frame.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput) as caught:
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    message = caught.value.message
    assert message.startswith(f"{tmp_path / 'in.parquet'}: column 'site' holds int64 values")
    assert "['north', 'south', 'east']" in message
    assert not (tmp_path / "out.parquet").exists()


def test_a_timestamp_in_a_numeric_feature_is_refused_naming_it(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(200)
    frame["count"] = frame["seen_at"]
    frame.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput, match=r"column 'count' holds timestamp\[(ns|us)\] values.*numeric feature"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_boolean_stored_as_zero_and_one_scores_as_the_boolean(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(200)
    as_integers = frame.assign(flag=frame["flag"].astype(np.int8))
    as_integers.to_parquet(tmp_path / "in.parquet")
    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(explain=True))
    out = pd.read_parquet(tmp_path / "out.parquet")
    reference = Scorer.open(trained_bundle, device="cpu").score_frame(frame, explain=True)
    assert out["error"].isna().all()
    np.testing.assert_allclose(out["feature_score_flag"], reference["feature_score_flag"], rtol=1e-6)
    pd.testing.assert_frame_equal(out[SCORES], reference[SCORES].reset_index(drop=True), check_dtype=False)


# -- outputs that cannot be written -----------------------------------------------------------


def test_an_output_under_a_file_fails_before_the_input_is_read(trained_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "results").write_text("a file, not a folder")
    unreadable = binary_csv(tmp_path / "in.csv")  # reading it would fail: the output is checked first
    with pytest.raises(ConfigError, match=r"--output .*results/day1/out\.parquet: .*results is a file, not a folder"):
        run_job(trained_bundle, unreadable, tmp_path / "results" / "day1" / "out.parquet")


def test_an_output_that_is_a_folder_fails_before_the_input_is_read(trained_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "out.parquet").mkdir()
    unreadable = binary_csv(tmp_path / "in.csv")
    with pytest.raises(ConfigError, match=r"--output .*out\.parquet is a folder; name a file"):
        run_job(trained_bundle, unreadable, tmp_path / "out.parquet")
    assert list((tmp_path / "out.parquet").iterdir()) == []


# -- files that are not comma-separated text ---------------------------------------------------


def test_a_binary_file_named_csv_is_refused_before_reading_rows(trained_bundle: Path, tmp_path: Path) -> None:
    path = binary_csv(tmp_path / "in.csv")
    with pytest.raises(InvalidInput) as caught:
        run_job(trained_bundle, path, tmp_path / "out.parquet")
    message = caught.value.message
    assert message.startswith(f"{path}: not a CSV text file")
    assert "a Parquet file: name it .parquet" in message
    assert message.isprintable()
    assert len(message) < 300


def test_a_semicolon_separated_csv_gets_a_hint(trained_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    scoring_table(20).to_csv(path, index=False, sep=";", decimal=",")
    with pytest.raises(InvalidInput, match=r"missing feature column.*the header reads as one column.*separated by ';'"):
        run_job(trained_bundle, path, tmp_path / "out.parquet")


def test_a_renamed_column_gets_a_suggestion(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(20).rename(columns={"load": "Load", "power": "power_kw"}).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput) as caught:
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    message = caught.value.message
    assert "missing feature column(s) ['load', 'power']" in message
    assert "input column 'Load' (did you mean 'load'?)" in message
    assert "input column 'power_kw' (did you mean 'power'?)" in message

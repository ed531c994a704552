"""The local batch engine on real files and a real trained bundle."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.batch import local
from service.batch.io import AtomicWriter, resolve_inputs
from service.batch.local import run_job
from service.batch.rows import ScoreOptions
from service.bundle import ROW_SCORES
from service.errors import ConfigError, DataError, InvalidInput
from service.scorer import Scorer
from tests.service.batch.conftest import scoring_table

SCORES = [*ROW_SCORES, "p_value", "is_anomaly"]


def expected_scores(bundle: Path, frame: pd.DataFrame, **kwargs: bool) -> pd.DataFrame:
    """The reference: Scorer.score_frame on the whole frame at once."""
    return Scorer.open(bundle, device="cpu").score_frame(frame, **kwargs).reset_index(drop=True)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


def test_scores_every_row_in_order_across_batches(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(2500)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=900)
    summary = run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(batch_rows=256))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == len(frame) == summary.rows
    assert out["event_id"].tolist() == frame["event_id"].tolist()  # shuffled ids: order kept
    assert (out["seen_at"] == frame["seen_at"]).all()
    reference = expected_scores(trained_bundle, frame)
    pd.testing.assert_frame_equal(out[SCORES], reference[SCORES], check_dtype=False)
    assert out["error"].isna().all()
    assert summary.errors == 0
    assert summary.anomalies == int(reference["is_anomaly"].sum()) > 0
    assert list(out.columns) == ["event_id", "seen_at", *SCORES, "error"]
    assert out["recon_error"].dtype == np.float32
    assert out["is_anomaly"].dtype == bool


@pytest.mark.slow
def test_values_never_seen_in_training_are_summed_up_and_a_recoded_column_named(
    trained_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = scoring_table(2500)
    recoded = frame.assign(flag=np.where(frame["flag"], "yes", "no"))  # a boolean sent as yes/no
    upper = recoded.index[::10]
    recoded.loc[upper, "site"] = recoded.loc[upper, "site"].str.upper()  # one row in ten upper-cased
    recoded.to_parquet(tmp_path / "in.parquet", row_group_size=900)
    with caplog.at_level(logging.WARNING, logger="service.batch.local"):
        summary = run_job(
            trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(batch_rows=256)
        )
    counts = {c.column: c for c in summary.unseen}
    n_site = int(recoded.loc[upper, "site"].notna().sum())
    assert (counts["site"].unseen, counts["site"].present) == (n_site, int(recoded["site"].notna().sum()))
    assert (counts["flag"].unseen, counts["flag"].present) == (2500, 2500)
    assert sorted(counts["flag"].examples) == ["no", "yes"]
    line = summary.describe().splitlines()[1]
    assert line.startswith("values never seen in training")
    assert f"site {n_site:,} of" in line
    assert "flag 2,500 of 2,500 (100.0%, e.g. '" in line
    said = [r.getMessage() for r in caplog.records if "never seen" in r.getMessage()]
    assert len(said) == 1  # flag is mostly unseen, site is not
    assert said[0].startswith("column 'flag': 100% of its 2,500 values were never seen in training")
    assert "renamed or recoded: training saw ['False', 'True']" in said[0]
    assert b"latentwatch.unseen" not in (pq.read_schema(tmp_path / "out.parquet").metadata or {})
    out = pd.read_parquet(tmp_path / "out.parquet")
    clean = expected_scores(trained_bundle, frame)
    assert (out["neg_elbo"] > clean["neg_elbo"]).all()  # every row holds an unseen flag: none scores lower
    plain = run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "again.parquet", ScoreOptions())
    assert plain.unseen == summary.unseen  # one batch or eleven, the same counts


def test_bad_rows_stay_with_empty_scores_and_a_reason(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(1200)
    frame.to_csv(tmp_path / "in.csv", index=False)
    lines = (tmp_path / "in.csv").read_text().splitlines()
    header = lines[0].split(",")
    bad = {5: ("load", "abc"), 700: ("count", "1e999"), 1100: ("power", "12..5")}
    for row, (column, text) in bad.items():
        cells = lines[row + 1].split(",")
        cells[header.index(column)] = text
        lines[row + 1] = ",".join(cells)
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")

    summary = run_job(trained_bundle, tmp_path / "in.csv", tmp_path / "out.parquet", ScoreOptions(batch_rows=300))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 1200
    assert summary.errors == 3
    assert out["event_id"].tolist() == frame["event_id"].tolist()
    assert out["error"][5] == "column 'load': 'abc' is not a number"
    assert out["error"][700] == "column 'count': infinite value inf"
    assert "column 'power': '12..5' is not a number" == out["error"][1100]
    bad_rows = out.loc[list(bad)]
    assert bad_rows[SCORES].isna().all().all()
    good = out.drop(index=list(bad))
    assert good["error"].isna().all()
    reference = expected_scores(trained_bundle, frame.drop(index=list(bad)))
    pd.testing.assert_frame_equal(good[SCORES].reset_index(drop=True), reference[SCORES], check_dtype=False)


def test_strict_stops_at_the_first_bad_row_naming_file_and_row(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(900)
    frame["load"] = frame["load"].astype(str)  # numbers as text in Parquet: parsed, each cell checked
    frame.loc[611, "load"] = "n/a?"
    frame.loc[800, "load"] = "worse"
    frame.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput, match=r"in\.parquet: row 611, column 'load': 'n/a\?' is not a number"):
        run_job(
            trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(strict=True, batch_rows=200)
        )
    assert not (tmp_path / "out.parquet").exists()
    assert leftovers(tmp_path) == []


def test_failure_midway_leaves_no_file_and_keeps_an_old_one(
    trained_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring_table(3000).to_parquet(tmp_path / "in.parquet")
    real = local.score_arrow
    calls: list[int] = []

    def failing(*args: object, **kwargs: object) -> pa.Table:
        calls.append(1)
        if len(calls) == 4:
            msg = "disk on fire"
            raise OSError(msg)
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "score_arrow", failing)
    with pytest.raises(OSError, match="disk on fire"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "new.parquet", ScoreOptions(batch_rows=500))
    assert len(calls) == 4  # three batches were written before the failure
    assert not (tmp_path / "new.parquet").exists()
    assert leftovers(tmp_path) == []

    (tmp_path / "old.csv").write_text("previous,run\n1,2\n")
    calls.clear()
    with pytest.raises(OSError, match="disk on fire"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "old.csv", ScoreOptions(batch_rows=500))
    assert (tmp_path / "old.csv").read_text() == "previous,run\n1,2\n"
    assert leftovers(tmp_path) == []


def test_atomic_writer_renames_only_on_commit(tmp_path: Path) -> None:
    schema = pa.schema([("a", pa.int64())])
    table = pa.table({"a": [1, 2, 3]})
    with AtomicWriter(tmp_path / "x.parquet", schema) as writer:
        writer.write(table, "test")
        assert not (tmp_path / "x.parquet").exists()
        assert len(leftovers(tmp_path)) == 1
        writer.commit()
    assert pq.read_table(tmp_path / "x.parquet").equals(table)
    assert leftovers(tmp_path) == []


def test_a_missing_feature_column_fails_before_any_row_is_scored(
    trained_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = scoring_table(600)
    frame.iloc[:300].to_parquet(folder / "part-0.parquet")
    frame.iloc[300:].drop(columns=["power", "site"]).to_parquet(folder / "part-1.parquet")

    def never(*args: object, **kwargs: object) -> None:
        pytest.fail("a row was scored before the schema check")

    monkeypatch.setattr(local, "score_arrow", never)
    with pytest.raises(InvalidInput) as caught:
        run_job(trained_bundle, folder, tmp_path / "out.parquet")
    message = caught.value.message
    assert "part-1.parquet" in message
    assert "missing feature column(s) ['power', 'site']" in message
    names = Scorer.open(trained_bundle, device="cpu").manifest.feature_names
    assert f"the model expects {names}" in message
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.slow
def test_csv_parquet_folder_and_glob_inputs_give_the_same_scores(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(1500, seed=3)
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet")
    (tmp_path / "parts").mkdir()
    for i, start in enumerate(range(0, 1500, 400)):
        frame.iloc[start : start + 400].to_parquet(tmp_path / "parts" / f"part-{i:02d}.parquet")
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    (tmp_path / "parts" / ".part-99.parquet.crc").write_text("")
    outputs = {}
    for name, source in {
        "csv": tmp_path / "in.csv",
        "parquet": tmp_path / "in.parquet",
        "folder": tmp_path / "parts",
        "glob": str(tmp_path / "parts" / "part-*.parquet"),
    }.items():
        summary = run_job(trained_bundle, source, tmp_path / f"{name}.parquet", ScoreOptions(batch_rows=350))
        assert summary.rows == 1500
        outputs[name] = pd.read_parquet(tmp_path / f"{name}.parquet")
    reference = expected_scores(trained_bundle, frame)
    for name, out in outputs.items():
        assert out["event_id"].tolist() == frame["event_id"].tolist(), name
        pd.testing.assert_frame_equal(out[SCORES], reference[SCORES], check_dtype=False, obj=name)
    # The CSV's text columns were typed as pandas reads them: the same features, the same scores.
    assert pd.Series(outputs["csv"]["seen_at"]).dt.second.tolist()[:3] == [0, 1, 2]


def test_csv_output_and_passthrough_choices(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(400)
    frame.to_parquet(tmp_path / "in.parquet")
    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "all.csv", ScoreOptions(threads=1))
    written = pd.read_csv(tmp_path / "all.csv")
    assert list(written.columns) == ["event_id", "seen_at", *SCORES, "error"]
    reference = expected_scores(trained_bundle, frame)
    np.testing.assert_allclose(written["neg_elbo"], reference["neg_elbo"], rtol=1e-6)
    assert written["is_anomaly"].tolist() == reference["is_anomaly"].tolist()

    run_job(
        trained_bundle,
        tmp_path / "in.parquet",
        tmp_path / "some.parquet",
        ScoreOptions(keep_columns=("site", "event_id")),
    )
    some = pd.read_parquet(tmp_path / "some.parquet")
    assert list(some.columns)[:2] == ["site", "event_id"]  # a feature may be kept too, in the order asked
    assert some["site"].tolist() == frame["site"].tolist()

    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "none.parquet", ScoreOptions(keep_columns=()))
    assert list(pd.read_parquet(tmp_path / "none.parquet").columns) == [*SCORES, "error"]

    with pytest.raises(InvalidInput, match=r"--keep-columns names \['customer'\].*event_id"):
        run_job(
            trained_bundle, tmp_path / "in.parquet", tmp_path / "x.parquet", ScoreOptions(keep_columns=("customer",))
        )
    frame.rename(columns={"event_id": "p_value"}).to_parquet(tmp_path / "clash.parquet")
    with pytest.raises(InvalidInput, match=r"\['p_value'\] have the names of score columns"):
        run_job(trained_bundle, tmp_path / "clash.parquet", tmp_path / "x.parquet")


def test_explain_and_latent_columns_match_the_scorer(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(700)
    frame.loc[3, "load"] = np.inf
    frame.to_parquet(tmp_path / "in.parquet")
    options = ScoreOptions(explain=True, latent=True, batch_rows=200)
    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", options)
    out = pd.read_parquet(tmp_path / "out.parquet")
    scorer = Scorer.open(trained_bundle, device="cpu")
    names = scorer.manifest.feature_names
    assert [c for c in out.columns if c.startswith("feature_score_")] == [f"feature_score_{n}" for n in names]
    assert [c for c in out.columns if c.startswith("expected_")] == [f"expected_{n}" for n in names]
    assert [c for c in out.columns if c.startswith("latent_")] == [
        f"latent_{i}" for i in range(scorer.manifest.latent_dim)
    ]
    good = frame.drop(index=[3])
    reference = scorer.score_frame(good, explain=True, latent=True).reset_index(drop=True)
    mine = out.drop(index=[3]).reset_index(drop=True)[reference.columns]
    pd.testing.assert_frame_equal(mine, reference, check_dtype=False)
    assert set(out["expected_site"].dropna()) <= {"north", "south", "east"}
    assert out.loc[3, "error"] == "column 'load': infinite value inf"
    assert out.loc[3, [c for c in out.columns if c.startswith(("feature_score_", "latent_"))]].isna().all()


def test_empty_input_writes_an_empty_table_with_every_column(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(50).iloc[:0].to_parquet(tmp_path / "in.parquet")
    summary = run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == 0
    assert len(out) == 0
    assert list(out.columns) == ["event_id", "seen_at", *SCORES, "error"]


def test_bad_arguments_name_what_is_wrong(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(20).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(ConfigError, match=r"out\.json: name it \.parquet"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.json")
    with pytest.raises(ConfigError, match="also an input"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "in.parquet")
    with pytest.raises(DataError, match="no such file or folder"):
        run_job(trained_bundle, tmp_path / "nothing.parquet", tmp_path / "out.parquet")
    with pytest.raises(DataError, match="matches no file"):
        run_job(trained_bundle, str(tmp_path / "nothing-*.parquet"), tmp_path / "out.parquet")
    with pytest.raises(ConfigError, match="batch_rows"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(batch_rows=0))
    with pytest.raises(
        ConfigError, match=r"threads must be a whole number, 0 \(onnxruntime's default\) or more, got -1"
    ):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", ScoreOptions(threads=-1))
    with pytest.raises(ConfigError, match="only to --engine dask"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", workers=2)
    (tmp_path / "notes.txt.md").write_text("x")
    with pytest.raises(DataError, match="not a CSV or Parquet file"):
        resolve_inputs(tmp_path / "notes.txt.md")

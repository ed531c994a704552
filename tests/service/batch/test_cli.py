"""``latentwatch score`` as a user runs it: a real process, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from service.batch.cli import _keep_columns
from service.cli import build_parser
from tests.service.batch.conftest import scoring_table


def latentwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_score_prints_a_summary_and_writes_every_row(trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(1000)
    frame.loc[10, "count"] = -1  # still a number: scored
    frame.to_csv(tmp_path / "in.csv", index=False)
    result = latentwatch(
        "score", "--model", str(trained_bundle), "--input", str(tmp_path / "in.csv"),
        "--output", str(tmp_path / "out.parquet"), "--keep-columns", "event_id", "--explain", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scored 1,000 rows in" in result.stdout
    assert "0 rows with errors" in result.stdout
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.columns[0] == "event_id"
    assert "feature_score_load" in out.columns
    assert out["event_id"].tolist() == frame["event_id"].tolist()


@pytest.mark.slow
def test_a_schema_mismatch_exits_2_with_one_line_and_no_file(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(100).drop(columns=["flag"]).to_parquet(tmp_path / "in.parquet")
    result = latentwatch(
        "score", "--model", str(trained_bundle), "--input", str(tmp_path / "in.parquet"),
        "--output", str(tmp_path / "out.parquet"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'in.parquet'}: missing feature column(s) ['flag']")
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.slow
def test_the_dask_engine_without_the_extra_says_what_to_install(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(50).to_parquet(tmp_path / "in.parquet")
    hide_dask = "import sys; sys.modules['distributed'] = None; from service.cli import main; sys.exit(main())"
    result = subprocess.run(
        [
            sys.executable, "-c", hide_dask, "score", "--model", str(trained_bundle),
            "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"), "--engine", "dask",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'latentwatch[dask]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_parser_knows_score_without_loading_the_scoring_modules() -> None:
    code = (
        "import sys; from service.cli import build_parser; build_parser(); "
        "heavy = ('service.batch.local', 'service.batch.rows', 'service.batch.dask', 'distributed', 'torch'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
    args = build_parser().parse_args(
        [
            "score",
            "--model",
            "b",
            "--input",
            "i.csv",
            "--output",
            "o.parquet",
            "--keep-columns",
            "a,b",
            "--keep-columns",
            "c",
        ]
    )
    assert _keep_columns(args.keep_columns) == ("a", "b", "c")
    assert _keep_columns([""]) == ()  # --keep-columns '': pass nothing through
    assert _keep_columns(None) is None
    assert args.engine == "local"


@pytest.mark.slow
def test_an_unwritable_output_exits_2_with_one_line(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(20).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "results").write_text("a file")
    result = latentwatch(
        "score", "--model", str(trained_bundle), "--input", str(tmp_path / "in.parquet"),
        "--output", str(tmp_path / "results" / "out.parquet"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    output, parent = tmp_path / "results" / "out.parquet", tmp_path / "results"
    assert result.stderr == f"error: --output {output}: {parent} is a file, not a folder\n"


@pytest.mark.slow
def test_a_binary_file_given_as_csv_prints_one_readable_line(trained_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(bytes(range(256)) * 64)
    result = latentwatch(
        "score", "--model", str(trained_bundle), "--input", str(tmp_path / "in.csv"),
        "--output", str(tmp_path / "out.parquet"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'in.csv'}: not a CSV text file")
    assert result.stderr.count("\n") == 1
    assert result.stderr[:-1].isprintable()

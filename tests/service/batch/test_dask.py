"""The Dask engine on a real LocalCluster (two worker processes)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster

from service.batch import dask as dask_engine
from service.batch import payload as bundle_payload
from service.batch.dask import Piece, plan_pieces
from service.batch.io import InputFile
from service.batch.local import run_job
from service.batch.rows import ScoreOptions
from service.errors import InvalidInput
from tests.service.batch.conftest import corrupt_csv, scoring_table


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as connected,
    ):
        yield connected


def _worker_scorers() -> list[str]:
    return [str(scorer.bundle.path) for scorer in bundle_payload._scorers.values()]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 400 rows, so that a small file keeps both workers busy."""
    monkeypatch.setattr(dask_engine, "PIECE_ROWS", 400)


@pytest.mark.usefixtures("small_pieces")
@pytest.mark.slow
def test_dask_output_equals_local_row_for_row(client: Client, trained_bundle: Path, tmp_path: Path) -> None:
    frame = scoring_table(3000, seed=5)
    frame["load"] = frame["load"].astype(str)
    frame.loc[[17, 2222], "load"] = ["oops", "1,5"]
    frame.loc[[5, 1900, 2999], "site"] = "mars"  # never seen in training: counted on the workers
    (tmp_path / "parts").mkdir()
    frame.iloc[:1700].to_parquet(tmp_path / "parts" / "a.parquet", row_group_size=300)
    frame.iloc[1700:].to_parquet(tmp_path / "parts" / "b.parquet", row_group_size=1300)  # a group to split
    # A copy of the bundle that the workers never see: only its bytes travel.
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    options = ScoreOptions(explain=True, latent=True, batch_rows=256)

    local = run_job(bundle, tmp_path / "parts", tmp_path / "local.parquet", options)
    distributed = run_job(bundle, tmp_path / "parts", tmp_path / "dask.parquet", options, engine="dask", client=client)

    expected = pd.read_parquet(tmp_path / "local.parquet")
    got = pd.read_parquet(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(got, expected)
    assert got["error"].notna().sum() == 2 == distributed.errors
    assert (distributed.rows, distributed.anomalies) == (local.rows, local.anomalies) == (3000, local.anomalies)
    assert distributed.unseen == local.unseen
    assert {c.column: c.unseen for c in local.unseen} == {"site": 3, "flag": 0}
    # Both workers scored, each with one cached scorer opened from the bytes it received.
    paths = client.run(_worker_scorers)
    assert len(paths) == 2
    for worker_paths in paths.values():
        assert len(worker_paths) == 1
        assert "latentwatch-bundles-" in worker_paths[0]
        assert not worker_paths[0].startswith(str(tmp_path))


def test_dask_scores_csv_batches_sent_by_the_client(client: Client, trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(1500, seed=6).to_csv(tmp_path / "in.csv", index=False)
    corrupt_csv(tmp_path / "in.csv", {40: ("count", "many"), 1400: ("power", "inf")})
    options = ScoreOptions(batch_rows=200)
    run_job(trained_bundle, tmp_path / "in.csv", tmp_path / "local.csv", options)
    summary = run_job(trained_bundle, tmp_path / "in.csv", tmp_path / "dask.csv", options, engine="dask", client=client)
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert summary.errors == 2


@pytest.mark.usefixtures("small_pieces")
def test_dask_strict_names_the_same_first_bad_row_as_local(
    client: Client, trained_bundle: Path, tmp_path: Path
) -> None:
    frame = scoring_table(2000, seed=7)
    frame["count"] = frame["count"].astype(str)
    frame.loc[[1500, 1900], "count"] = ["seven", "eight"]
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=250)
    options = ScoreOptions(strict=True)
    with pytest.raises(InvalidInput) as local_error:
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "local.parquet", options)
    with pytest.raises(InvalidInput) as dask_error:
        run_job(
            trained_bundle, tmp_path / "in.parquet", tmp_path / "dask.parquet", options, engine="dask", client=client
        )
    assert dask_error.value.message == local_error.value.message
    assert "row 1500, column 'count': 'seven' is not a number" in dask_error.value.message
    assert not (tmp_path / "dask.parquet").exists()


@pytest.mark.slow
def test_the_command_starts_its_own_local_cluster(trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(800, seed=8).to_parquet(tmp_path / "in.parquet")
    summary = run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", engine="dask", workers=2)
    local = run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "local.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    )
    assert summary.engine == "dask"
    assert summary.rows == local.rows == 800


@pytest.mark.slow
def test_pieces_follow_row_groups_and_split_large_ones(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": range(1000)})
    frame.iloc[:300].to_parquet(tmp_path / "small.parquet", row_group_size=100)
    frame.to_parquet(tmp_path / "mixed.parquet", row_group_size=700)  # groups of 700 and 300
    small = InputFile(tmp_path / "small.parquet", "parquet")
    mixed = InputFile(tmp_path / "mixed.parquet", "parquet")
    assert plan_pieces(small, 250) == [Piece(small, 0, 200), Piece(small, 200, 300)]
    assert plan_pieces(mixed, 250) == [
        Piece(mixed, 0, 233),
        Piece(mixed, 233, 466),
        Piece(mixed, 466, 700),
        Piece(mixed, 700, 850),
        Piece(mixed, 850, 1000),
    ]
    assert plan_pieces(mixed, 5000) == [Piece(mixed, 0, 1000)]

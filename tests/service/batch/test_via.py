"""``--via``: the same job scored by a real ``latentwatch serve`` on loopback, equal to the local engine."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from service.batch.local import run_job
from service.batch.rows import ScoreOptions
from service.bundle import file_sha256, load_bundle, write_manifest
from service.config import ServiceConfig
from service.errors import BundleError, ConfigError, ModelNotFound, ModelNotReady
from tests.service.batch.conftest import corrupt_csv, scoring_table
from tests.service.grpc.conftest import ServerThread


@pytest.fixture(scope="module")
def served(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A service whose repository holds the trained bundle under its manifest's name and version."""
    manifest = load_bundle(trained_bundle).manifest
    root = tmp_path_factory.mktemp("repository")
    shutil.copytree(trained_bundle, root / manifest.name / manifest.version)
    config = ServiceConfig(
        models=root, host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=0, reload_interval_s=0,
        intra_op_threads=1, inter_op_threads=1, inference_threads=2, max_batch_delay_s=0.002, grace_s=1.0,
        device="cpu",
    ).validate()  # fmt: skip
    server = ServerThread(config).start()
    yield server
    server.stop()


def test_via_the_service_equals_the_local_engine(served: ServerThread, trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(2000, seed=11).to_csv(tmp_path / "in.csv", index=False)
    corrupt_csv(tmp_path / "in.csv", {3: ("load", "x"), 1999: ("count", "inf")})
    options = ScoreOptions(explain=True, latent=True, batch_rows=700)
    local = run_job(trained_bundle, tmp_path / "in.csv", tmp_path / "local.parquet", options)
    remote = run_job(trained_bundle, tmp_path / "in.csv", tmp_path / "via.parquet", options, via=served.target)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "via.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    )
    assert (remote.rows, remote.errors, remote.anomalies) == (local.rows, 2, local.anomalies)
    assert remote.engine == f"via {served.target}"


@pytest.mark.slow
def test_via_by_model_name_from_the_command_line(served: ServerThread, trained_bundle: Path, tmp_path: Path) -> None:
    manifest = load_bundle(trained_bundle).manifest
    scoring_table(300, seed=12).to_parquet(tmp_path / "in.parquet")
    run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "local.parquet")
    result = subprocess.run(
        [
            sys.executable, "-m", "service", "score", "--model", manifest.name, "--via", served.target,
            "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "via.parquet"), "--quiet",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"engine via {served.target}" in result.stdout
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "via.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    )


def test_via_errors_name_what_is_wrong(served: ServerThread, trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(50, seed=13).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(ModelNotFound, match="nosuchmodel"):
        run_job("nosuchmodel", tmp_path / "in.parquet", tmp_path / "out.parquet", via=served.target)
    other = tmp_path / "other"
    shutil.copytree(trained_bundle, other)
    graph = other / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")  # another graph under the same name and version
    # Written through write_manifest, as a trainer would: a valid bundle of its own.
    write_manifest(other, dataclasses.replace(load_bundle(trained_bundle).manifest, onnx_sha256=file_sha256(graph)))
    with pytest.raises(BundleError, match="is served with graph sha256"):
        run_job(other, tmp_path / "in.parquet", tmp_path / "out.parquet", via=served.target)
    with pytest.raises(ConfigError, match="--via"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", via=served.target, engine="dask")
    with pytest.raises(ModelNotReady, match=r"--via 127\.0\.0\.1:1: the service did not answer \(UNAVAILABLE\)"):
        run_job(trained_bundle, tmp_path / "in.parquet", tmp_path / "out.parquet", via="127.0.0.1:1")
    assert not (tmp_path / "out.parquet").exists()

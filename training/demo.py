"""``latentwatch demo``: the quick start's main job, the whole loop on the embedded sample.

1. writes a training table and a fresh table from the same machines (both with a few
   labelled anomalies);
2. trains a VAE on the first: one model (``folds = 1``) rather than the default's three
   cross-fitted members, which take three times as long; the loop is the same;
3. evaluates the bundle on the second;
4. shows the rows it finds most anomalous and the column that made each one anomalous;
5. starts ``latentwatch serve`` on loopback and scores rows through gRPC with the client;
6. runs a batch job (``latentwatch score``) over the fresh table;
7. shows the service's Prometheus metrics, then stops the service.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from service.bundle import load_bundle
from service.info import format_manifest
from service.sample_data import ID_COLUMN, LABEL_COLUMN, write_sample
from service.scorer import Scorer
from training.evaluate import evaluate_bundle, format_evaluation
from training.pipeline import train_bundle

MODEL = "telemetry"
# A demo of about 30 s: one model instead of cross-fitted members, and early stopping after 300
# steps without a better validation loss instead of 1,000 (``latentwatch train`` does both).
DEMO_SETTINGS = {"folds": 1, "patience_steps": 300}


def demo_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    train_path = write_sample(out / "telemetry-train.csv", n_rows=3000, seed=7)
    new_path = write_sample(out / "telemetry-new.csv", n_rows=2000, seed=8)
    print(f"1. sample data: {train_path} (training), {new_path} (new rows to score)")

    result = train_bundle(
        pd.read_csv(train_path),
        out / "bundle",
        label_column=LABEL_COLUMN,
        exclude=[ID_COLUMN],
        source=str(train_path),
        overrides={"name": MODEL, "version": "1", **DEMO_SETTINGS},
        quiet=args.quiet,
    )
    print(f"\n2. trained in {result.seconds:.1f} s -> {result.bundle_dir}\n")
    print(format_manifest(load_bundle(result.bundle_dir).manifest))

    new_rows = pd.read_csv(new_path)
    print("\n3. evaluation on the new rows:")
    print(format_evaluation(evaluate_bundle(result.bundle_dir, new_rows, LABEL_COLUMN, source=str(new_path))))

    local = _show_top_rows(result.bundle_dir, new_rows)
    repository = out / "models"
    shutil.rmtree(repository, ignore_errors=True)
    shutil.copytree(result.bundle_dir, repository / MODEL / "1")
    with _serving(repository) as (grpc_port, metrics_port):
        _score_through_grpc(grpc_port, new_rows, local)
        _batch_job(out, new_path)
        _show_metrics(metrics_port)
    print(f"\nreport: {result.bundle_dir / 'report' / 'index.html'}")
    return 0


def _show_top_rows(bundle_dir: Path, new_rows: pd.DataFrame) -> pd.DataFrame:
    scorer = Scorer.open(bundle_dir, device="auto")
    scored = scorer.score_frame(new_rows, explain=True)
    primary = scorer.manifest.primary_score
    top = scored.sort_values(primary, ascending=False).head(5)
    feature_columns = [c for c in top.columns if c.startswith("feature_score_")]
    why = top[feature_columns].idxmax(axis=1).str.removeprefix("feature_score_")
    shown = new_rows.loc[top.index, [ID_COLUMN, LABEL_COLUMN]].assign(
        **{primary: top[primary], "p_value": top["p_value"], "is_anomaly": top["is_anomaly"], "top_feature": why}
    )
    print(f"\n4. the five most anomalous new rows (scored in-process with onnxruntime, {scorer.provider}):")
    print(shown.to_string())
    return scored


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _serving(repository: Path) -> Iterator[tuple[int, int]]:
    """``latentwatch serve`` in a subprocess on loopback; yields its gRPC and metrics ports."""
    grpc_port, metrics_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "service", "serve", "--models", str(repository), "--host", "127.0.0.1"]
    command += ["--port", str(grpc_port), "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
    print(f"\n5. serving: latentwatch {' '.join(command[3:])}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_serving(grpc_port, process)
        yield grpc_port, metrics_port
    finally:
        process.terminate()
        process.wait(30)


def _wait_until_serving(port: int, process: subprocess.Popen[str]) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"latentwatch serve exited: {process.stderr.read() if process.stderr else ''}"
                raise RuntimeError(msg)
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service=MODEL), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    msg = "latentwatch serve did not become healthy within 60 s"
    raise RuntimeError(msg)


def _score_through_grpc(port: int, new_rows: pd.DataFrame, local: pd.DataFrame) -> None:
    from service.client import Client

    with Client(f"127.0.0.1:{port}") as client:
        remote = client.score(new_rows, MODEL)
    same = np.allclose(remote["neg_elbo"], local["neg_elbo"], rtol=1e-5)
    print(
        f"   scored {len(remote)} rows through gRPC (model {remote.attrs.get('model')} version "
        f"{remote.attrs.get('version')}): {int(remote['is_anomaly'].sum())} anomalies; "
        f"{'the same scores as in-process' if same else 'SCORES DIFFER from in-process'}"
    )


def _batch_job(out: Path, new_path: Path) -> None:
    output = out / "scored.parquet"
    command = [sys.executable, "-m", "service", "score", "--model", str(out / "bundle"), "--input", str(new_path)]
    command += ["--output", str(output), "--keep-columns", f"{ID_COLUMN},{LABEL_COLUMN}"]
    print(f"\n6. batch job: latentwatch {' '.join(command[3:])}")
    subprocess.run(command, check=True)


def _show_metrics(port: int) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    wanted = ("latentwatch_requests_total", "latentwatch_rows_scored_total", "latentwatch_anomalies_total")
    lines = [line for line in text.splitlines() if line.startswith((*wanted, "latentwatch_model_info"))]
    print(f"\n7. Prometheus metrics at {url} (while the service runs), for example:")
    print("\n".join(f"   {line}" for line in lines[:8]))
    print("   run `latentwatch serve --models demo-output/models` to keep it up; deploy/ has Prometheus and Grafana")

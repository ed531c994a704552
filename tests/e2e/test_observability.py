"""The observability loop, for real: a trained bundle served by `latentwatch serve`, batch jobs
pushing to a Pushgateway, and a real Prometheus running the project's own config and rules
(deploy/prometheus, targets and intervals changed only), all on loopback.

After gRPC traffic (good calls and bad ones) and two batch runs (one success, then one
failure), Prometheus's HTTP API must show: every target up, every rule evaluating without
error, every recording rule with a finite value for the model, every query of both Grafana
dashboards returning series, and the alert that a failed batch job raises.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from service.bundle import load_bundle
from service.client import Client
from service.errors import InvalidInput, ModelNotFound
from service.features import encode_frame
from service.sample_data import make_sample
from tests.deploy.support import (
    BATCH_DASHBOARD,
    DEPLOY,
    PROMETHEUS,
    SERVICE_DASHBOARD,
    dashboard_queries,
    load_script,
    recorded_names,
    tool,
)

pytestmark = pytest.mark.slow  # starts the whole stack: serve, Prometheus, Grafana, a Pushgateway

# `latentwatch serve`, run by this Python.
SERVE_COMMAND = (sys.executable, "-m", "service", "serve")
MODEL = "telemetry"
JOB = "e2e_nightly"
# Grafana's variables, as Grafana would fill them in ("All" for the multi-value ones).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$model": ".*",
    "$job": ".*",
    "$alpha": "0.01",
}
healthcheck = load_script(DEPLOY / "docker" / "healthcheck.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(
    condition: Callable[[], bool],
    seconds: float,
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log else ""
            pytest.fail(f"{what}: the process exited with status {process.returncode}\n{tail}")
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {seconds:.0f} s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Stack:
    """Addresses of the running parts."""

    grpc: str
    metrics_port: int
    pushgateway: str
    prometheus: str
    bundle: Path
    logs: Path

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]


class Processes:
    """Processes this test started; stopped (by their own handles) in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.started.append((process, log))
        return process

    def stop(self) -> None:
        for process, log in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()  # type: ignore[attr-defined]


def _start_with_free_port(
    processes: Processes, name: str, argv: Callable[[int], list[str]], ready: Callable[[int], bool]
) -> int:
    """Start ``argv(port)`` on a free port; another process may take the port first, so retry."""
    for _attempt in range(5):
        port = _free_port()
        process = processes.start(name, argv(port))
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if ready(port):
                return port
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
    pytest.fail(f"{name} did not start; see {processes.logs / (name + '.log')}")


def _prometheus_config(directory: Path, metrics_port: int, pushgateway_port: int, own_port: int) -> Path:
    """The project's prometheus.yml and rules in ``directory``, targets on loopback, 1 s intervals."""
    shutil.copytree(PROMETHEUS / "rules", directory / "rules", dirs_exist_ok=True)
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    targets = {
        "latentwatch": f"127.0.0.1:{metrics_port}",
        "pushgateway": f"127.0.0.1:{pushgateway_port}",
        "prometheus": f"127.0.0.1:{own_port}",
    }
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from training.pipeline import train_bundle

    root = tmp_path_factory.mktemp("observability")
    logs = root / "logs"
    logs.mkdir()
    frame = make_sample(n_rows=1500, anomaly_share=0.0, seed=3).drop(columns=["machine_id", "label"])
    bundle = root / "models" / MODEL / "1"
    # Named as its place in the repository, so the service's labels (from the directories)
    # and the batch job's (from the manifest) agree.
    overrides = {"max_steps": 300, "warmup_steps": 100, "folds": 1, "report": False, "name": MODEL, "version": "1"}
    train_bundle(frame, bundle, overrides=overrides)

    processes = Processes(logs)
    try:
        pushgateway_port = _start_with_free_port(
            processes,
            "pushgateway",
            lambda port: [tool("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
            lambda port: _http_ok(f"http://127.0.0.1:{port}/-/ready"),
        )

        grpc_port, metrics_port = _free_port(), _free_port()
        service = processes.start(
            "latentwatch",
            [
                *SERVE_COMMAND,
                "--models",
                str(root / "models"),
                "--host",
                "127.0.0.1",
                "--port",
                str(grpc_port),
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(metrics_port),
                "--reload-interval",
                "0",
            ],
        )
        # The container's health check, against the real server.
        _wait(
            lambda: healthcheck.check(f"127.0.0.1:{grpc_port}", timeout_s=1.0)[0],
            60,
            "latentwatch serve reporting SERVING",
            service,
            logs / "latentwatch.log",
        )

        config_dir = root / "prometheus"
        config_dir.mkdir()

        def prometheus_argv(port: int) -> list[str]:
            config = _prometheus_config(config_dir, metrics_port, pushgateway_port, port)
            return [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]

        def prometheus_ready(port: int) -> bool:
            return _http_ok(f"http://127.0.0.1:{port}/-/ready")

        prometheus_port = _start_with_free_port(processes, "prometheus", prometheus_argv, prometheus_ready)
        yield Stack(
            grpc=f"127.0.0.1:{grpc_port}",
            metrics_port=metrics_port,
            pushgateway=f"http://127.0.0.1:{pushgateway_port}",
            prometheus=f"http://127.0.0.1:{prometheus_port}",
            bundle=bundle,
            logs=logs,
        )
    finally:
        processes.stop()


def _send_traffic(stack: Stack, seconds: float) -> None:
    """Good and bad calls, spread over ``seconds`` so that every scrape sees counters move."""
    rows = make_sample(n_rows=400, anomaly_share=0.05, seed=11)
    features = load_bundle(stack.bundle).manifest.features
    x = encode_frame(rows, features, source="e2e").x.astype(np.float32)
    deadline = time.monotonic() + seconds
    with Client(stack.grpc, timeout_s=30) as client:
        while time.monotonic() < deadline:
            scored = client.score(rows, model=MODEL, batch_rows=100)  # StreamScore
            assert len(scored) == len(rows)
            assert scored["p_value"].between(0, 1).all()
            reply = client.score_x(x[:64], model=MODEL)  # unary Score, the packed layout
            assert len(reply.p_value) == 64
            with pytest.raises(InvalidInput):  # wrong feature count: INVALID_ARGUMENT for the model
                client.score_x(x[:4, :2], model=MODEL)
            with pytest.raises(ModelNotFound):
                client.score_x(x[:4], model="no-such-model")
            time.sleep(0.25)


def _run_batch_job(stack: Stack, input_path: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "score",
            "--model",
            str(stack.bundle),
            "--input",
            str(input_path),
            "--output",
            str(output),
            "--pushgateway",
            stack.pushgateway,
            "--job",
            JOB,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def observed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The stack after traffic, a successful batch run and then a failed one."""
    work = tmp_path_factory.mktemp("batch")
    _send_traffic(stack, seconds=4)

    rows = make_sample(n_rows=2000, anomaly_share=0.03, seed=5)
    good = work / "new.csv"
    rows.to_csv(good, index=False)
    success = _run_batch_job(stack, good, work / "scored.parquet")
    assert success.returncode == 0, success.stderr
    assert len(pd.read_parquet(work / "scored.parquet")) == len(rows)

    broken = work / "broken.csv"
    rows.drop(columns=["temperature_c"]).to_csv(broken, index=False)
    failure = _run_batch_job(stack, broken, work / "never.parquet")
    assert failure.returncode == 2
    assert "temperature_c" in failure.stderr

    _send_traffic(stack, seconds=2)
    return stack


def _series_for_all(stack: Stack, exprs: dict[str, str], seconds: float = 45) -> dict[str, list[dict]]:
    """Query each expression until all return series (rules and rates need a few scrapes)."""
    results: dict[str, list[dict]] = {}

    def all_have_series() -> bool:
        for where, expr in exprs.items():
            if not results.get(where):
                results[where] = stack.query(expr)
        return all(results.values())

    deadline = time.monotonic() + seconds
    while not all_have_series() and time.monotonic() < deadline:
        time.sleep(0.5)
    return results


def _fill_variables(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr.replace('"$1"', ""), f"a Grafana variable is left in {expr!r}"
    return expr


def test_every_target_is_up_and_every_rule_evaluates(observed: Stack) -> None:
    targets = observed.api("targets")["activeTargets"]
    _wait(
        lambda: all(t["health"] == "up" for t in observed.api("targets")["activeTargets"]),
        20,
        f"targets up: {[(t['labels']['job'], t['health'], t['lastError']) for t in targets]}",
    )
    assert {t["labels"]["job"] for t in targets} == {"latentwatch", "pushgateway", "prometheus"}
    groups = observed.api("rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert recorded_names() <= loaded
    assert "LatentwatchPValueDrift" in loaded
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_recording_rules_return_values_for_the_model(observed: Stack) -> None:
    exprs = {name: f'{name}{{model="{MODEL}"}}' for name in sorted(recorded_names())}
    results = _series_for_all(observed, exprs)
    empty = sorted(name for name, series in results.items() if not series)
    assert empty == [], f"recording rules without a value for {MODEL}"
    # A method called once in the window (DescribeModel) has no latency quantile (NaN): each
    # rule needs one finite value, the busy methods' included.
    for name, series in results.items():
        assert any(math.isfinite(float(sample["value"][1])) for sample in series), f"{name}: {series}"
    value = {name: float(series[0]["value"][1]) for name, series in results.items()}
    assert value["model:latentwatch_rows_scored:rate5m"] > 0
    assert value["model:latentwatch_requests:rate5m"] > 0
    # A quarter of the calls named the model with the wrong feature count: client errors only.
    assert 0 < value["model:latentwatch_requests_errors:ratio_rate5m"] < 1
    assert value["model:latentwatch_requests_server_errors:ratio_rate5m"] == 0
    assert 0 <= value["model:latentwatch_anomalies:ratio_rate5m"] < 0.5
    alphas = {s["metric"]["alpha"] for s in results["model:latentwatch_p_value_below_alpha:ratio_rate5m"]}
    assert alphas == {"0.001", "0.01", "0.05"}
    for quantile in ("p50", "p99"):
        by_method = {
            sample["metric"]["method"]: float(sample["value"][1])
            for sample in results[f"model_method:latentwatch_request_duration_seconds:{quantile}_rate5m"]
        }
        assert 0 < by_method["Score"] < 10, by_method


@pytest.mark.parametrize("dashboard", [SERVICE_DASHBOARD, BATCH_DASHBOARD], ids=lambda p: p.name)
def test_every_dashboard_query_returns_series(observed: Stack, dashboard: Path) -> None:
    exprs = {query.where: _fill_variables(query.expr) for query in dashboard_queries(dashboard)}
    results = _series_for_all(observed, exprs)
    empty = sorted(where for where, series in results.items() if not series)
    assert empty == [], "queries that return no series"


def test_model_variable_lists_the_served_model(observed: Stack) -> None:
    values = observed.api("label/model/values", **{"match[]": "latentwatch_model_info"})
    assert values == [MODEL]
    info = observed.query("latentwatch_model_info")
    assert info[0]["metric"]["provider"] in {"CPUExecutionProvider", "CUDAExecutionProvider"}
    assert info[0]["metric"]["model_type"] == "vae"


def test_batch_metrics_arrive_with_the_job_label(observed: Stack) -> None:
    results = _series_for_all(
        observed,
        {
            "success": f'latentwatch_batch_last_success_timestamp_seconds{{job="{JOB}", model="{MODEL}"}}',
            "rows": f'latentwatch_batch_rows_scored{{job="{JOB}"}} + latentwatch_batch_rows_with_errors',
            "failure": f'latentwatch_batch_last_failure_timestamp_seconds{{job="{JOB}"}}',
        },
    )
    assert float(results["rows"][0]["value"][1]) == 2000
    assert float(results["failure"][0]["value"][1]) > float(results["success"][0]["value"][1])


def test_failed_batch_job_raises_its_alert(observed: Stack) -> None:
    def firing() -> set[tuple[str, str]]:
        alerts = observed.api("alerts")["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("job", "")) for a in alerts if a["state"] == "firing"}

    _wait(lambda: ("LatentwatchBatchJobFailed", JOB) in firing(), 30, "LatentwatchBatchJobFailed firing")
    names = {name for name, _ in firing()}
    assert "LatentwatchTargetDown" not in names
    assert "LatentwatchNoModelLoaded" not in names

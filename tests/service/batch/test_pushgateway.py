"""Job metrics pushed to a real Prometheus Pushgateway (Debian's prometheus-pushgateway) and read back."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.batch.local import Summary
from service.batch.pushgateway import PushError, push_failure, push_summary
from tests.service.batch.conftest import scoring_table

BINARY = "prometheus-pushgateway"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Pushgateway started for these tests on a free loopback port."""
    binary = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None)
    assert binary, f"{BINARY} is not installed: scripts/setup.sh --dev installs it (scripts/debian-packages.txt)"
    log = (tmp_path_factory.mktemp("pushgateway") / "log.txt").open("w")
    for _attempt in range(5):  # another process may take the port between probe and bind
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline and not _ready(url):
            time.sleep(0.1)
        if process.poll() is None and _ready(url):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"{BINARY} did not start; see {log.name}")
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


def scraped(url: str, job: str) -> dict[str, tuple[float, dict[str, str]]]:
    """Metric name -> (value, labels) of ``job``'s samples on the Pushgateway's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") == job:
                samples[sample.name] = (sample.value, sample.labels)
    return samples


def summary(**changes: object) -> Summary:
    values = dict(
        model="telemetry", version="20260101", engine="local", output=Path("out.parquet"),
        rows=1000, anomalies=12, errors=3, seconds=4.25,
    )  # fmt: skip
    values.update(changes)
    return Summary(**values)  # type: ignore[arg-type]


def test_pushed_metrics_read_back(pushgateway: str) -> None:
    before = time.time()
    push_summary(pushgateway, "nightly", summary())
    metrics = scraped(pushgateway, "nightly")
    assert metrics["latentwatch_batch_rows_scored"][0] == 997
    assert metrics["latentwatch_batch_anomalies"][0] == 12
    assert metrics["latentwatch_batch_rows_with_errors"][0] == 3
    assert metrics["latentwatch_batch_duration_seconds"][0] == 4.25
    last_success, labels = metrics["latentwatch_batch_last_success_timestamp_seconds"]
    assert before - 1 <= last_success <= time.time() + 1
    assert labels == {"job": "nightly", "instance": "", "model": "telemetry", "version": "20260101"}


def test_a_failure_keeps_the_last_success(pushgateway: str) -> None:
    push_summary(pushgateway, "hourly", summary(rows=50, anomalies=1, errors=0))
    success = scraped(pushgateway, "hourly")["latentwatch_batch_last_success_timestamp_seconds"][0]
    push_failure(pushgateway, "hourly", seconds=1.5)
    metrics = scraped(pushgateway, "hourly")
    assert metrics["latentwatch_batch_last_success_timestamp_seconds"][0] == success
    assert metrics["latentwatch_batch_rows_scored"][0] == 50
    assert metrics["latentwatch_batch_last_failure_timestamp_seconds"][0] >= success
    assert metrics["latentwatch_batch_failed_duration_seconds"][0] == 1.5
    # The next success replaces its own metrics, and leaves the failure time.
    push_summary(pushgateway, "hourly", summary(rows=70, anomalies=2, errors=1, version="2"))
    metrics = scraped(pushgateway, "hourly")
    assert metrics["latentwatch_batch_rows_scored"] == (
        69,
        {"job": "hourly", "instance": "", "model": "telemetry", "version": "2"},
    )
    assert "latentwatch_batch_last_failure_timestamp_seconds" in metrics


@pytest.mark.slow
def test_the_score_command_pushes_when_it_ends(pushgateway: str, trained_bundle: Path, tmp_path: Path) -> None:
    scoring_table(300).to_parquet(tmp_path / "in.parquet")
    result = subprocess.run(
        [
            sys.executable, "-m", "service", "score", "--model", str(trained_bundle),
            "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
            "--pushgateway", pushgateway, "--job", "from_cli",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = scraped(pushgateway, "from_cli")
    assert metrics["latentwatch_batch_rows_scored"][0] == 300
    assert metrics["latentwatch_batch_rows_with_errors"][0] == 0
    assert metrics["latentwatch_batch_duration_seconds"][0] > 0


def test_an_unreachable_pushgateway_is_named() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(PushError, match=rf"--pushgateway {url}: cannot push"):
        push_summary(url, "job", summary())
    push_failure(url, "job", seconds=1.0, quiet=True)  # a failed job's push never hides the job's own error

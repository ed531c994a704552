"""Metrics: every contract name with its type and labels, the p-value histogram, the drift
gauge on real scores, the /metrics endpoint, and the names dashboards and alerts use."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.batching import MicroBatcher
from service.dataplane import DataPlane, scoring_function
from service.metrics import CONTRACT_METRICS, P_VALUE_BUCKETS, Metrics
from service.registry import ModelRegistry
from service.scorer import Scorer
from tests.service.conftest import normal_rows, write_bundle

ROOT = Path(__file__).resolve().parents[2]

# docs/architecture.md, "Metrics (contract)": name -> (type, labels).
CONTRACT = {
    "latentwatch_requests": ("counter", {"model", "method", "code"}),
    "latentwatch_request_duration_seconds": ("histogram", {"model", "method"}),
    "latentwatch_inference_duration_seconds": ("histogram", {"model"}),
    "latentwatch_batch_rows": ("histogram", {"model"}),
    "latentwatch_rows_scored": ("counter", {"model", "version"}),
    "latentwatch_anomalies": ("counter", {"model", "version"}),
    "latentwatch_p_value": ("histogram", {"model"}),
    "latentwatch_queue_rows": ("gauge", {"model"}),
    "latentwatch_model_info": ("gauge", {"model", "version", "model_type", "provider"}),
    "latentwatch_model_alpha": ("gauge", {"model", "version"}),
    "latentwatch_model_load_failures": ("counter", {"model"}),
    "latentwatch_p_value_drift": ("gauge", {"model"}),
    "latentwatch_unseen_categories": ("counter", {"model", "column"}),
}


def exercised() -> Metrics:
    """Metrics after one of everything, so every labelled family has a sample."""
    metrics = Metrics(CollectorRegistry())
    metrics.model_loaded("m", "1", "vae", "CPUExecutionProvider", alpha=0.01)
    metrics.observe_request("m", "Score", "OK", 0.003)
    metrics.observe_batch("m", 16, 0.001)
    metrics.observe_scores("m", "1", np.array([0.5, 0.004]), np.array([False, True]))
    metrics.set_queue_source(lambda: {"m": 3})
    metrics.load_failed("m")
    metrics.observe_unseen("m", {"site": 2})
    return metrics


def test_every_contract_metric_with_its_type_and_labels() -> None:
    metrics = exercised()
    families = {f.name: f for f in metrics.registry.collect()}
    assert set(CONTRACT) == set(CONTRACT_METRICS)
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        assert family.samples, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)


def test_process_metrics_are_exported() -> None:
    names = {f.name for f in Metrics(CollectorRegistry()).registry.collect()}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names


def test_p_value_histogram_buckets_and_anomaly_counts() -> None:
    metrics = Metrics(CollectorRegistry(), process_metrics=False)
    p = np.array([0.0005, 0.001, 0.02, 0.3, 0.3, 1.0, np.nan])
    metrics.observe_scores("m", "1", p, p < 0.01)
    get = metrics.registry.get_sample_value
    assert P_VALUE_BUCKETS[0] == 0.001
    assert P_VALUE_BUCKETS[-1] == 1.0
    assert get("latentwatch_p_value_bucket", {"model": "m", "le": "0.001"}) == 2
    assert get("latentwatch_p_value_bucket", {"model": "m", "le": "0.025"}) == 3
    assert get("latentwatch_p_value_bucket", {"model": "m", "le": "0.5"}) == 5
    assert get("latentwatch_p_value_bucket", {"model": "m", "le": "+Inf"}) == 6
    assert get("latentwatch_p_value_count", {"model": "m"}) == 6  # NaN is not a p-value
    assert get("latentwatch_p_value_sum", {"model": "m"}) == pytest.approx(1.6215)
    assert get("latentwatch_rows_scored_total", {"model": "m", "version": "1"}) == 7
    assert get("latentwatch_anomalies_total", {"model": "m", "version": "1"}) == 2


def test_drift_stays_low_on_normal_rows_and_rises_on_shifted_rows(tmp_path: Path) -> None:
    """Real scores through the DataPlane: p-values uniform on rows like the calibration."""
    write_bundle(tmp_path / "models" / "sensors" / "1")
    metrics = Metrics(CollectorRegistry(), process_metrics=False, drift_window=500)

    async def main() -> tuple[float, float]:
        with ThreadPoolExecutor(1) as pool:
            registry = ModelRegistry(
                tmp_path / "models",
                open_scorer=lambda p: Scorer.open(p, device="cpu", intra_op_threads=1),
                make_batcher=lambda n, s: MicroBatcher(scoring_function(n, s, metrics), executor=pool, name=n),
                metrics=metrics,
            )
            await registry.reload()
            plane = DataPlane(registry, metrics, max_request_rows=10_000)
            model = plane.model("sensors")
            for seed in range(10):  # 500 rows like the calibration data, unseen before
                await plane.infer(model, normal_rows(50, seed=1000 + seed))
            normal = metrics.drift("sensors")
            shifted = normal_rows(500, seed=99)
            shifted[:, :2] += 2.5
            await plane.infer(model, shifted)
            return normal, metrics.drift("sensors")

    normal, shifted = asyncio.run(main())
    assert normal < 0.1
    assert shifted > 0.5
    value = metrics.registry.get_sample_value("latentwatch_p_value_drift", {"model": "sensors"})
    assert value == pytest.approx(shifted)


@pytest.mark.slow
def test_metrics_http_endpoint() -> None:
    metrics = exercised()
    server = metrics.serve_http("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert 'latentwatch_requests_total{code="OK",method="Score",model="m"} 1.0' in text
    assert 'latentwatch_p_value_drift{model="m"}' in text
    assert "process_cpu_seconds_total" in text


def test_every_metric_named_in_deploy_is_exported() -> None:
    """Dashboards and alert rules may only name metrics the service exports.

    Recording-rule series (``model:latentwatch_requests:rate5m``) are not exports, and the
    batch jobs' pushed metrics (``latentwatch_batch_*`` other than the service's
    ``latentwatch_batch_rows`` histogram) are checked with ``service.batch``.
    """
    exported = {f.name for f in exercised().registry.collect()}
    named: set[str] = set()
    deploy = ROOT / "deploy"
    files = [p for p in deploy.rglob("*") if p.is_file()] if deploy.is_dir() else []
    for path in files:
        text = path.read_text(errors="replace")
        if "expr" not in text:  # only alert/recording rules and dashboards hold PromQL
            continue
        named |= set(re.findall(r"(?<![:\w])latentwatch_[a-z0-9_]+(?![\w:])", text))
    service_names = {
        n for n in named if not n.startswith("latentwatch_batch_") or _family(n) == "latentwatch_batch_rows"
    }
    # Also the contract's names, so that the check never runs empty.
    service_names |= set(CONTRACT)
    missing = sorted(n for n in service_names if _family(n) not in exported)
    assert missing == []
    if files:  # the deploy/ folder names at least the core request and drift metrics
        assert {"latentwatch_requests_total", "latentwatch_p_value_drift"} <= named


def _family(sample: str) -> str:
    """A sample or series name -> its family (drop _bucket/_sum/_count/_total/_created)."""
    return re.sub(r"_(bucket|sum|count|total|created)$", "", sample)

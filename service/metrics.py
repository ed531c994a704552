"""Every Prometheus metric of the service, defined once on an injected registry.

The names, types and labels are a contract (docs/architecture.md, "Metrics"): dashboards and
alert rules in ``deploy/`` read them. Times are in seconds. :class:`Metrics` owns them all,
plus the process metrics (CPU, memory, file descriptors, GC) on the same registry, and
serves them over HTTP (:meth:`Metrics.serve_http`).

``latentwatch_p_value``, ``latentwatch_p_value_drift`` and ``latentwatch_queue_rows`` are
custom collectors, so that the request path does as little as possible: p-values arrive by
the batch and are counted with numpy when Prometheus scrapes (not one ``observe`` per row),
the drift (Kolmogorov-Smirnov distance of the last ``drift_window`` p-values to
Uniform(0, 1)) is computed then too, and queue depths are read from the batchers then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from service.calibration import PValueWindow

PREFIX = "latentwatch"
# Request and inference latency, 0.25 ms to 10 s.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Rows per onnxruntime call: powers of two up to 65536.
ROW_BUCKETS = tuple(float(2**k) for k in range(17))
# p-values, 0.001 to 1 (the contract).
P_VALUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)

# Every metric family this module exports (without _bucket/_sum/_count/_total suffixes).
CONTRACT_METRICS = (
    "latentwatch_requests",
    "latentwatch_request_duration_seconds",
    "latentwatch_inference_duration_seconds",
    "latentwatch_batch_rows",
    "latentwatch_rows_scored",
    "latentwatch_anomalies",
    "latentwatch_p_value",
    "latentwatch_queue_rows",
    "latentwatch_model_info",
    "latentwatch_model_alpha",
    "latentwatch_model_load_failures",
    "latentwatch_p_value_drift",
    "latentwatch_unseen_categories",
)


class _PValueCollector(Collector):
    """``latentwatch_p_value`` (histogram) and ``latentwatch_p_value_drift`` (gauge) by model.

    :meth:`observe` only appends the batch's array to a pending list (the hot path); the
    arrays are folded into the bucket counts and the drift window when Prometheus scrapes,
    when the drift is read, or once ``FOLD_EVERY`` arrays are pending.
    """

    FOLD_EVERY = 256

    def __init__(self, drift_window: int) -> None:
        self._drift_window = drift_window
        self._lock = threading.Lock()
        self._pending: dict[str, list[np.ndarray]] = {}
        # model -> bucket counts (not cumulative; the last one is +Inf) and sum of p-values
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._windows: dict[str, PValueWindow] = {}
        self._edges = np.asarray(P_VALUE_BUCKETS, dtype=np.float64)

    def observe(self, model: str, p: np.ndarray) -> None:
        """Record the p-values ``p`` (shape ``(n_rows,)``, NaN ignored) of ``model``."""
        with self._lock:
            pending = self._pending.setdefault(model, [])
            pending.append(p)
            if len(pending) >= self.FOLD_EVERY:
                self._fold(model)

    def drift(self, model: str) -> float:
        """KS distance of ``model``'s recent p-values to Uniform(0, 1); NaN before any."""
        with self._lock:
            self._fold(model)
            window = self._windows.get(model)
        return float("nan") if window is None else window.drift()

    def _fold(self, model: str) -> None:
        """Move ``model``'s pending p-values into its counts and window (lock held)."""
        pending = self._pending.pop(model, None)
        if not pending:
            return
        p = np.concatenate(pending).astype(np.float64, copy=False)
        p = p[np.isfinite(p)]
        if model not in self._counts:
            self._counts[model] = np.zeros(self._edges.size + 1, dtype=np.int64)
            self._sums[model] = 0.0
            self._windows[model] = PValueWindow(self._drift_window)
        # Bucket i holds values in (edges[i-1], edges[i]]; the last one is above every edge.
        index = np.searchsorted(self._edges, p, side="left")
        self._counts[model] += np.bincount(index, minlength=self._edges.size + 1)
        self._sums[model] += float(p.sum())
        self._windows[model].add(p)

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            f"{PREFIX}_p_value",
            "Conformal p-values of scored rows (lower = more anomalous)",
            labels=["model"],
        )
        drift = GaugeMetricFamily(
            f"{PREFIX}_p_value_drift",
            "Kolmogorov-Smirnov distance between the last window of p-values and "
            "Uniform(0, 1); low while traffic looks like the calibration data",
            labels=["model"],
        )
        with self._lock:
            for model in list(self._pending):
                self._fold(model)
            snapshot = {m: (c.copy(), self._sums[m]) for m, c in self._counts.items()}
            windows = dict(self._windows)
        for model, (counts, total) in sorted(snapshot.items()):
            cumulative = np.cumsum(counts)
            buckets = [(str(le), float(cumulative[i])) for i, le in enumerate(P_VALUE_BUCKETS)]
            buckets.append(("+Inf", float(cumulative[-1])))
            histogram.add_metric([model], buckets, total)
        for model, window in sorted(windows.items()):
            drift.add_metric([model], window.drift())
        yield histogram
        yield drift


class _QueueCollector(Collector):
    """``latentwatch_queue_rows``: read from the micro-batchers when Prometheus scrapes."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(f"{PREFIX}_queue_rows", "Rows waiting in the micro-batching queue", labels=["model"])
        for model, rows in sorted((self.source() if self.source else {}).items()):
            gauge.add_metric([model], rows)
        yield gauge


@dataclass
class MetricsServer:
    """The running ``/metrics`` HTTP endpoint."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Metrics:
    """The service's metrics on ``registry`` (a fresh one when None).

    Args:
        registry: where to register; tests pass their own to read values back.
        process_metrics: also register the process, platform and GC collectors.
        drift_window: p-values per model behind ``latentwatch_p_value_drift``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        process_metrics: bool = True,
        drift_window: int = 1000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests_total",
            "gRPC calls by model, method and status code",
            ["model", "method", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "gRPC call latency, seconds",
            ["model", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "onnxruntime call latency, seconds",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_rows",
            "Rows per onnxruntime call (after micro-batching)",
            ["model"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.rows_scored = Counter(
            f"{PREFIX}_rows_scored_total",
            "Rows scored",
            ["model", "version"],
            registry=r,
        )
        self.anomalies = Counter(
            f"{PREFIX}_anomalies_total",
            "Rows flagged is_anomaly",
            ["model", "version"],
            registry=r,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "Model versions being served (value 1)",
            ["model", "version", "model_type", "provider"],
            registry=r,
        )
        self.model_alpha = Gauge(
            f"{PREFIX}_model_alpha",
            "The bundle's alpha (target false-positive rate) of each model version being served",
            ["model", "version"],
            registry=r,
        )
        self.model_load_failures = Counter(
            f"{PREFIX}_model_load_failures_total",
            "Model versions refused at load (bad manifest, digest, graph or warm-up)",
            ["model"],
            registry=r,
        )
        self.unseen_categories = Counter(
            f"{PREFIX}_unseen_categories_total",
            "Categorical values never seen in training (each scored its column's unseen_nats), by model and column",
            ["model", "column"],
            registry=r,
        )
        # Label children looked up once (the hot path counts every call).
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._row_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._model_children: dict[str, tuple[Any, Any]] = {}
        self._p_values = _PValueCollector(drift_window)
        r.register(self._p_values)
        self._queues = _QueueCollector()
        r.register(self._queues)
        if process_metrics and r is not REGISTRY:
            # prometheus_client registers these on its own default registry at import.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def observe_request(self, model: str, method: str, code: str, seconds: float) -> None:
        """Count one gRPC call and its latency; ``code`` is a status code name (``OK``...)."""
        key = (model, method, code)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(model, method, code),
                self.request_duration.labels(model, method),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, rows: int, seconds: float) -> None:
        """One onnxruntime call of ``rows`` rows that took ``seconds``."""
        children = self._model_children.get(model)
        if children is None:
            children = self._model_children[model] = (
                self.batch_rows.labels(model),
                self.inference_duration.labels(model),
            )
        children[0].observe(rows)
        children[1].observe(seconds)

    def observe_p_values(self, model: str, p_value: np.ndarray) -> None:
        """p-values of scored rows (``(n_rows,)``) into the histogram and the drift window."""
        self._p_values.observe(model, p_value)

    def observe_rows(self, model: str, version: str, rows: int, anomalies: int) -> None:
        """One request's rows scored and how many of them were flagged ``is_anomaly``."""
        key = (model, version)
        children = self._row_children.get(key)
        if children is None:
            children = (self.rows_scored.labels(model, version), self.anomalies.labels(model, version))
            self._row_children[key] = children
        children[0].inc(rows)
        if anomalies:
            children[1].inc(anomalies)

    def observe_scores(self, model: str, version: str, p_value: np.ndarray, is_anomaly: np.ndarray) -> None:
        """Both of the above for rows scored outside the micro-batcher (``(n_rows,)`` each)."""
        self.observe_p_values(model, p_value)
        self.observe_rows(model, version, int(np.shape(p_value)[0]), int(np.count_nonzero(is_anomaly)))

    def observe_unseen(self, model: str, counts: Mapping[str, int]) -> None:
        """Values never seen in training of one request, by column (``{column: count}``)."""
        for column, count in counts.items():
            self.unseen_categories.labels(model, column).inc(count)

    def set_queue_source(self, source: Callable[[], dict[str, int]]) -> None:
        """Where ``latentwatch_queue_rows`` comes from: model -> rows queued, read at scrape."""
        self._queues.source = source

    def model_loaded(
        self, model: str, version: str, model_type: str, provider: str, alpha: float | None = None
    ) -> None:
        self.model_info.labels(model, version, model_type, provider).set(1)
        if alpha is not None:
            self.model_alpha.labels(model, version).set(alpha)
        # Make the per-version counters visible at 0 before the first request.
        self.rows_scored.labels(model, version)
        self.anomalies.labels(model, version)
        self.model_load_failures.labels(model)

    def model_unloaded(self, model: str, version: str, model_type: str, provider: str) -> None:
        for gauge, labels in (
            (self.model_info, (model, version, model_type, provider)),
            (self.model_alpha, (model, version)),
        ):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass

    def load_failed(self, model: str) -> None:
        self.model_load_failures.labels(model).inc()

    def drift(self, model: str) -> float:
        """``latentwatch_p_value_drift`` of ``model`` right now; NaN before any p-value."""
        return self._p_values.drift(model)

    def serve_http(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` (0 = a free port) in a daemon thread."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)

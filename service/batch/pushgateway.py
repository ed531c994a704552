"""A batch job's metrics, pushed to a Prometheus Pushgateway when the job ends.

A batch job does not live long enough to be scraped, so it pushes its figures once, on a
fresh ``CollectorRegistry``, grouped under ``job`` (the Pushgateway adds the ``job`` label).
Each value describes the job's last run, so each is a gauge (a counter would restart at
every run):

=====================================================  =====================================
metric (labels ``model``, ``version``)                  value
=====================================================  =====================================
``latentwatch_batch_rows_scored``                      rows given scores
``latentwatch_batch_anomalies``                        rows with ``is_anomaly``
``latentwatch_batch_rows_with_errors``                 rows kept unscored, with an ``error``
``latentwatch_batch_duration_seconds``                 the job's wall time, seconds
``latentwatch_batch_last_success_timestamp_seconds``   Unix time the job last succeeded
=====================================================  =====================================

A failed job pushes only ``latentwatch_batch_last_failure_timestamp_seconds`` (no labels)
and ``latentwatch_batch_failed_duration_seconds``. Both pushes use the Pushgateway's POST
(``pushadd``), which replaces the metrics of those names in the group and keeps the others:
a failure does not erase the last success, so an alert on
``time() - latentwatch_batch_last_success_timestamp_seconds`` keeps working.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from service.errors import LatentwatchError

if TYPE_CHECKING:
    from service.batch.local import Summary

logger = logging.getLogger(__name__)

PREFIX = "latentwatch_batch_"
PUSH_TIMEOUT_SECONDS = 10.0


class PushError(LatentwatchError):
    """The Pushgateway could not be reached or refused the metrics."""

    code = "UNAVAILABLE"


def summary_registry(summary: Summary, *, now: float | None = None) -> CollectorRegistry:
    """A fresh registry holding ``summary``'s gauges (see the module docstring); ``now`` in Unix seconds."""
    registry = CollectorRegistry()
    labels = {"model": summary.model, "version": summary.version}

    def gauge(name: str, documentation: str, value: float) -> None:
        Gauge(PREFIX + name, documentation, list(labels), registry=registry).labels(**labels).set(value)

    gauge("rows_scored", "Rows given scores by the job's last run.", summary.scored)
    gauge("anomalies", "Rows flagged is_anomaly by the job's last run.", summary.anomalies)
    gauge("rows_with_errors", "Rows the job's last run could not score (kept with an error).", summary.errors)
    gauge("duration_seconds", "Wall time of the job's last successful run, in seconds.", summary.seconds)
    gauge(
        "last_success_timestamp_seconds",
        "Unix time at which the job last succeeded.",
        time.time() if now is None else now,
    )
    return registry


def _push(url: str, job: str, registry: CollectorRegistry) -> None:
    try:
        pushadd_to_gateway(url, job=job, registry=registry, timeout=PUSH_TIMEOUT_SECONDS)
    except OSError as err:  # URLError, HTTPError, timeouts and refused connections are OSErrors
        msg = f"--pushgateway {url}: cannot push the job's metrics: {err}"
        raise PushError(msg) from None


def push_summary(url: str, job: str, summary: Summary) -> None:
    """Push a successful run's metrics to the Pushgateway at ``url`` under ``job``.

    Raises:
        PushError: the push failed (the job's output is written all the same).
    """
    _push(url, job, summary_registry(summary))


def push_failure(url: str, job: str, *, seconds: float, quiet: bool = False) -> None:
    """Push that the job failed now, after ``seconds``; with ``quiet`` a failed push only logs."""
    registry = CollectorRegistry()
    Gauge(
        PREFIX + "last_failure_timestamp_seconds", "Unix time at which the job last failed.", registry=registry
    ).set_to_current_time()
    Gauge(
        PREFIX + "failed_duration_seconds", "Wall time of the job's last failed run, in seconds.", registry=registry
    ).set(seconds)
    try:
        _push(url, job, registry)
    except PushError as err:
        if not quiet:
            raise
        logger.warning("%s", err.message)

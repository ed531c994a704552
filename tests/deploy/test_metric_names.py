"""Every metric a dashboard, recording rule or alert names is one the service or a batch job
exports: the names come from the PromQL, the exports from the code's own registries."""

from __future__ import annotations

import re

import pytest

from tests.deploy.support import (
    BATCH_DASHBOARD,
    PROMETHEUS_SERIES,
    SERVICE_DASHBOARD,
    Query,
    batch_metric_names,
    dashboard_queries,
    metric_names,
    recorded_names,
    rule_expressions,
    rules,
    service_metric_names,
    variable_selector,
)

EXPORTED = service_metric_names() | batch_metric_names()
ALL_QUERIES = rule_expressions() + dashboard_queries(SERVICE_DASHBOARD) + dashboard_queries(BATCH_DASHBOARD)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (model, le) (rate(a_bucket{model=~"$model", le="0.01"}[$__rate_interval]))', {"a_bucket"}),
        ("histogram_quantile(0.99, sum without (instance) (rate(b[5m])))", {"b"}),
        ("x / ignoring (le) group_left () y or on (model) z unless w offset 15m", {"x", "y", "z", "w"}),
        ('label_replace(m:rec:rate5m, "alpha", "$1", "le", "(.+)")', {"m:rec:rate5m"}),
        ("time() - max by (job) (c) > 26 * 3600 and vector($alpha) < 1e3", {"c"}),
        ("count(d) by (provider) > bool 0", {"d"}),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_variable_selector_keeps_the_metric_not_the_label() -> None:
    assert variable_selector("label_values(latentwatch_model_info, model)") == ("latentwatch_model_info", "model")
    assert metric_names(variable_selector("label_values(latentwatch_model_info, model)")[0]) == {
        "latentwatch_model_info"
    }


def test_the_registries_hold_the_contract_metrics() -> None:
    """The contract table of docs/architecture.md, as exported (a counter as its _total series)."""
    for name in (
        "latentwatch_requests_total",
        "latentwatch_request_duration_seconds_bucket",
        "latentwatch_inference_duration_seconds_bucket",
        "latentwatch_batch_rows_bucket",
        "latentwatch_rows_scored_total",
        "latentwatch_anomalies_total",
        "latentwatch_p_value_bucket",
        "latentwatch_queue_rows",
        "latentwatch_model_info",
        "latentwatch_model_load_failures_total",
        "latentwatch_p_value_drift",
        "latentwatch_batch_last_success_timestamp_seconds",
    ):
        assert name in EXPORTED, name


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda q: q.where)
@pytest.mark.slow
def test_every_named_metric_is_exported(query: Query) -> None:
    names = metric_names(query.expr)
    if not names:  # a constant line, such as alpha on the anomaly-rate panel
        assert re.fullmatch(r"\s*vector\([^()]*\)\s*", query.expr), f"{query.where}: no metric in {query.expr!r}"
    unknown = names - EXPORTED - recorded_names() - PROMETHEUS_SERIES
    assert unknown == set(), f"{query.where} names metrics nothing exports: {sorted(unknown)}"


def test_recording_rules_read_only_exported_metrics() -> None:
    """Recording rules are built on raw metrics, not on other recording rules."""
    for rule in rules():
        if "record" in rule:
            assert metric_names(rule["expr"]) <= EXPORTED, rule["record"]


def test_every_recording_rule_is_used() -> None:
    used = set().union(*(metric_names(q.expr) for q in ALL_QUERIES))
    assert recorded_names() - used == set(), "recording rules no alert or dashboard reads"


def test_label_names_used_exist_on_the_metrics() -> None:
    """Label matchers and groupings only name labels the metrics carry (or Prometheus adds)."""
    known = {"model", "method", "code", "version", "model_type", "provider", "le", "alpha"}
    known |= {"job", "instance"}  # Prometheus's target labels
    for query in ALL_QUERIES:
        matchers = re.findall(r"\{([^}]*)\}", re.sub(r"\$\{\w+\}", "", query.expr))
        labels = {m.split("=")[0].strip("!~ ") for group in matchers for m in group.split(",") if m.strip()}
        groupings = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", query.expr)
        labels |= {label.strip() for group in groupings for label in group.split(",") if label.strip()}
        assert labels <= known, f"{query.where}: unknown labels {sorted(labels - known)}"


# The metric contract of docs/architecture.md (name, type, labels), transcribed here;
# change it only together with that table.
CONTRACT = (
    ("latentwatch_requests_total", "counter", {"model", "method", "code"}),
    ("latentwatch_request_duration_seconds", "histogram", {"model", "method"}),
    ("latentwatch_inference_duration_seconds", "histogram", {"model"}),
    ("latentwatch_batch_rows", "histogram", {"model"}),
    ("latentwatch_rows_scored_total", "counter", {"model", "version"}),
    ("latentwatch_anomalies_total", "counter", {"model", "version"}),
    ("latentwatch_p_value", "histogram", {"model"}),
    ("latentwatch_queue_rows", "gauge", {"model"}),
    ("latentwatch_model_info", "gauge", {"model", "version", "model_type", "provider"}),
    ("latentwatch_model_load_failures_total", "counter", {"model"}),
    ("latentwatch_p_value_drift", "gauge", {"model"}),
)


def test_contract_metrics_are_exported_with_their_type() -> None:
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    families = {family.name: family for family in registry.collect()}
    for name, kind, _labels in CONTRACT:
        family_name = name.removesuffix("_total") if kind == "counter" else name
        assert family_name in families, name
        family = families[family_name]
        assert family.type == kind, f"{name}: {family.type}"
        exported = {"counter": name, "histogram": f"{name}_bucket", "gauge": name}[kind]
        assert exported in EXPORTED, name

"""deploy/grafana/dashboards: importable as they are (valid JSON, the data source a
variable, no data source pinned by uid) and every panel has a query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.support import BATCH_DASHBOARD, DASHBOARDS, SERVICE_DASHBOARD, iter_panels, load_dashboard

BOARDS = tuple(sorted(DASHBOARDS.glob("*.json")))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_both_dashboards_exist() -> None:
    assert set(BOARDS) == {SERVICE_DASHBOARD, BATCH_DASHBOARD}


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_valid_json_with_identity(path: Path) -> None:
    board = json.loads(path.read_text())
    assert 0 < len(board["uid"]) <= 40
    assert board["title"].startswith("latentwatch")
    assert isinstance(board["schemaVersion"], int)
    assert "id" not in board or board["id"] is None  # an id would clash on import


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_datasource_is_a_variable(path: Path) -> None:
    board = load_dashboard(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    # Nothing refers to a data source of the machine the dashboard was made on.
    text = path.read_text()
    assert '"uid": "prometheus"' not in text
    assert "__inputs" not in board


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_query(path: Path) -> None:
    board = load_dashboard(path)
    panels = [p for p in iter_panels(board["panels"]) if p["type"] != "row"]
    assert len(panels) >= 8
    ids = [p["id"] for p in iter_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["title"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]


def test_service_dashboard_covers_what_operators_watch() -> None:
    board = load_dashboard(SERVICE_DASHBOARD)
    exprs = " ".join(t["expr"] for p in iter_panels(board["panels"]) for t in p.get("targets", []))
    for needle in (
        "latentwatch_requests_total",  # traffic and errors
        "histogram_quantile(0.99, sum by (method, le) (rate(latentwatch_request_duration_seconds_bucket",
        "latentwatch_batch_rows_bucket",  # batch sizes
        "latentwatch_queue_rows",
        "model:latentwatch_anomalies:ratio_rate5m",
        "vector($alpha)",  # anomaly rate against alpha
        "latentwatch_p_value_bucket",  # the p-value distribution
        "latentwatch_p_value_drift",
        "latentwatch_model_info",  # versions and providers
    ):
        assert needle in exprs, needle
    table = next(p for p in iter_panels(board["panels"]) if p["type"] == "table")
    assert "latentwatch_model_info" in table["targets"][0]["expr"]
    assert table["targets"][0]["format"] == "table"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "model", "alpha"} <= variables


def test_batch_dashboard_covers_the_pushed_metrics() -> None:
    board = load_dashboard(BATCH_DASHBOARD)
    exprs = " ".join(t["expr"] for p in iter_panels(board["panels"]) for t in p.get("targets", []))
    for name in (
        "latentwatch_batch_last_success_timestamp_seconds",
        "latentwatch_batch_last_failure_timestamp_seconds",
        "latentwatch_batch_rows_scored",
        "latentwatch_batch_anomalies",
        "latentwatch_batch_rows_with_errors",
        "latentwatch_batch_duration_seconds",
    ):
        assert name in exprs, name

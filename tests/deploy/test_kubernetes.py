"""deploy/k8s: every overlay builds with kustomize, validates against the Kubernetes schemas
offline, and agrees with the service (ports, settings, model path, images, shutdown)."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.config import ServiceConfig
from tests.deploy.support import DOCKERFILES, K8S, OVERLAYS, tool

# The oldest release with GA gRPC probes, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
SERVICE_DEFAULTS = ServiceConfig()


@functools.cache
def build(path: Path) -> tuple[dict, ...]:
    result = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def one(docs: tuple[dict, ...], kind: str) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: tuple[dict, ...]) -> dict:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(docs: tuple[dict, ...]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(docs)["env"]}


def built_images() -> set[str]:
    """The image names the Dockerfiles document (their `docker build ... -t NAME .` line)."""
    names = set()
    for dockerfile in DOCKERFILES:
        names |= set(re.findall(r"docker build -f \S+ -t (\S+) \.", dockerfile.read_text()))
    return names


def test_overlays_exist() -> None:
    assert {p.name for p in OVERLAYS} == {"cpu", "gpu"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.slow
def test_overlay_validates_against_the_kubernetes_schemas(overlay: Path, version: str) -> None:
    docs = build(overlay)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ServiceAccount",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    docs = build(OVERLAYS[0])
    broken = yaml.safe_load(yaml.safe_dump(one(docs, "Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_settings_are_the_service_s_own(overlay: Path) -> None:
    """The LATENTWATCH_* variables are settings ServiceConfig knows and accepts."""
    variables = env(build(overlay))
    config = ServiceConfig.load(env=variables)
    assert str(config.models) == "/models"
    assert config.port == SERVICE_DEFAULTS.port == 50051
    assert config.metrics_port == SERVICE_DEFAULTS.metrics_port == 9108
    fields = {f"LATENTWATCH_{name.upper()}" for name in ServiceConfig.__dataclass_fields__}
    assert set(variables) <= fields
    assert container(build(overlay))["args"][0] == "serve"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_ports_probes_and_scrape_annotations_agree(overlay: Path) -> None:
    docs = build(overlay)
    config = ServiceConfig.load(env=env(docs))
    spec = container(docs)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"grpc": config.port, "metrics": config.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert spec[probe]["grpc"]["port"] == config.port, probe
        assert spec[probe]["grpc"].get("service", "") == "", probe  # the whole server's health
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports == {"grpc": (config.port, "grpc"), "metrics": (config.metrics_port, "metrics")}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_termination_grace_outlasts_the_drain(overlay: Path) -> None:
    docs = build(overlay)
    config = ServiceConfig.load(env=env(docs))
    spec = container(docs)
    pre_stop = spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(pre_stop[1]) + config.grace_s + 5


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_models_come_from_a_read_only_volume_at_the_served_path(overlay: Path) -> None:
    docs = build(overlay)
    config = ServiceConfig.load(env=env(docs))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    mount = mounts[str(config.models)]
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    for dockerfile in DOCKERFILES:
        if "ENTRYPOINT" in dockerfile.read_text() and "serve" in dockerfile.read_text().split("CMD")[-1]:
            assert f"LATENTWATCH_MODELS={config.models}" in dockerfile.read_text(), dockerfile.name


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_pods_run_as_the_image_s_non_root_user(overlay: Path) -> None:
    docs = build(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = pod["securityContext"]["runAsUser"]
    assert uid != 0
    security = container(docs)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    image = container(docs)["image"]
    dockerfile = next(d for d in DOCKERFILES if f"-t {image} " in d.read_text())
    assert f"USER {uid}:" in dockerfile.read_text()


def test_images_are_the_ones_deploy_docker_builds() -> None:
    images = {p.name: container(build(p))["image"] for p in OVERLAYS}
    assert images == {"cpu": "latentwatch:0.1.0-cpu", "gpu": "latentwatch:0.1.0-cuda"}
    assert set(images.values()) <= built_images()


def test_gpu_overlay_requests_a_gpu_and_cuda_and_cpu_does_not() -> None:
    gpu, cpu = build(K8S / "overlays" / "gpu"), build(K8S / "overlays" / "cpu")
    resources = container(gpu)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert env(gpu)["LATENTWATCH_DEVICE"] == "cuda"
    assert any(t["key"] == "nvidia.com/gpu" for t in one(gpu, "Deployment")["spec"]["template"]["spec"]["tolerations"])
    assert "nvidia.com/gpu" not in str(container(cpu)["resources"])
    assert env(cpu)["LATENTWATCH_DEVICE"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_hpa_and_pdb_select_the_deployment(overlay: Path) -> None:
    docs = build(overlay)
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < hpa["minReplicas"]  # a drain can always evict one pod
    assert one(docs, "Service")["spec"]["selector"].items() <= labels.items()


def test_servicemonitor_component_scrapes_the_metrics_port(tmp_path: Path) -> None:
    """The optional Prometheus Operator component builds onto an overlay and names a real port."""
    overlay = tmp_path / "with-servicemonitor"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "overlays" / "cpu", overlay)],
                "components": [os.path.relpath(K8S / "components" / "servicemonitor", overlay)],
            }
        )
    )
    docs = build(overlay)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    # job="latentwatch", as the rules select: the Service label that jobLabel names.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "latentwatch"
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":  # a CRD: not in the core schemas
            kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)

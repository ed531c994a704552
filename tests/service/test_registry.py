"""ModelRegistry on real bundles: discovery, numeric-aware versions, swap after a full load,
broken versions refused (and counted) while the old one serves, in-flight requests."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.batching import MicroBatcher
from service.bundle import MANIFEST_FILE, ONNX_FILE
from service.errors import ModelNotFound
from service.metrics import Metrics
from service.registry import ModelRegistry, version_key
from service.scorer import Scorer
from tests.service.conftest import ALPHA, normal_rows, reference_outputs, write_bundle


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


@pytest.fixture
def make_registry(tmp_path: Path, executor, metrics: Metrics):
    opened: list[Path] = []

    def open_scorer(path: Path) -> Scorer:
        opened.append(path)
        return Scorer.open(path, device="cpu", intra_op_threads=1)

    def make(root: Path | None = None) -> ModelRegistry:
        registry = ModelRegistry(
            root or tmp_path / "models",
            open_scorer=open_scorer,
            make_batcher=lambda name, scorer: MicroBatcher(scorer.run, executor=executor, name=name),
            metrics=metrics,
        )
        registry.opened = opened  # type: ignore[attr-defined]
        return registry

    return make


def break_bundle(directory: Path) -> None:
    with (directory / ONNX_FILE).open("ab") as stream:
        stream.write(b"tampered")


def info(metrics: Metrics, model: str, version: str) -> float | None:
    labels = {"model": model, "version": version, "model_type": "vae", "provider": "CPUExecutionProvider"}
    return metrics.registry.get_sample_value("latentwatch_model_info", labels)


def failures(metrics: Metrics, model: str) -> float:
    value = metrics.registry.get_sample_value("latentwatch_model_load_failures_total", {"model": model})
    return 0.0 if value is None else value


def test_version_key_is_numeric_aware() -> None:
    versions = ["10", "2", "1", "v1.10", "v1.9", "v1.9a", "20240102"]
    assert sorted(versions, key=version_key) == ["1", "2", "10", "20240102", "v1.9", "v1.9a", "v1.10"]


def test_newest_version_served_unless_named(tmp_path: Path, make_registry, metrics) -> None:
    root = tmp_path / "models"
    for version in ("1", "2", "10"):
        write_bundle(root / "sensors" / version)
    write_bundle(root / "pumps" / "3")
    registry = make_registry()
    report = asyncio.run(registry.reload())
    assert sorted(report.loaded) == [("pumps", "3"), ("sensors", "1"), ("sensors", "10"), ("sensors", "2")]
    assert registry.names() == ["pumps", "sensors"]
    assert registry.versions("sensors") == ["1", "2", "10"]
    assert registry.get("sensors").version == "10"
    assert registry.get("sensors", "2").version == "2"
    assert registry.ready
    assert info(metrics, "sensors", "10") == 1
    with pytest.raises(ModelNotFound, match=r"no version '3'.*\['1', '2', '10'\]"):
        registry.get("sensors", "3")
    with pytest.raises(ModelNotFound, match=r"'nope'.*\['pumps', 'sensors'\]"):
        registry.get("nope")


def test_unchanged_versions_are_not_reloaded(tmp_path: Path, make_registry) -> None:
    write_bundle(tmp_path / "models" / "sensors" / "1")
    registry = make_registry()
    asyncio.run(registry.reload())
    first = registry.get("sensors")
    report = asyncio.run(registry.reload())
    assert not report.changed
    assert registry.get("sensors") is first
    assert len(registry.opened) == 1


def test_broken_version_is_refused_counted_and_old_keeps_serving(tmp_path: Path, make_registry, metrics) -> None:
    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    registry = make_registry()
    asyncio.run(registry.reload())
    good = registry.get("sensors")

    write_bundle(root / "sensors" / "2")
    break_bundle(root / "sensors" / "2")
    report = asyncio.run(registry.reload())
    assert report.loaded == []
    assert [(m, v) for m, v, _ in report.failed] == [("sensors", "2")]
    assert "sha256" in report.failed[0][2]
    assert registry.get("sensors") is good
    assert registry.versions("sensors") == ["1"]
    assert failures(metrics, "sensors") == 1

    # Not retried (nor counted again) until its files change.
    asyncio.run(registry.reload())
    assert failures(metrics, "sensors") == 1

    write_bundle(root / "sensors" / "2")  # fixed in place
    report = asyncio.run(registry.reload())
    assert report.loaded == [("sensors", "2")]
    assert registry.get("sensors").version == "2"


def test_broken_only_version_means_not_served(tmp_path: Path, make_registry, metrics) -> None:
    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    manifest = root / "sensors" / "1" / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["features"][0]["kind"] = "mystery"
    manifest.write_text(json.dumps(data))
    registry = make_registry()
    report = asyncio.run(registry.reload())
    assert "mystery" in report.failed[0][2]
    assert not registry.ready
    assert failures(metrics, "sensors") == 1


def test_removed_version_is_unloaded(tmp_path: Path, make_registry, metrics) -> None:
    import shutil

    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    write_bundle(root / "sensors" / "2")
    registry = make_registry()
    asyncio.run(registry.reload())
    shutil.rmtree(root / "sensors" / "2")
    report = asyncio.run(registry.reload())
    assert report.removed == [("sensors", "2")]
    assert registry.get("sensors").version == "1"
    assert info(metrics, "sensors", "2") is None
    assert info(metrics, "sensors", "1") == 1
    alpha = metrics.registry.get_sample_value
    assert alpha("latentwatch_model_alpha", {"model": "sensors", "version": "1"}) == ALPHA
    assert alpha("latentwatch_model_alpha", {"model": "sensors", "version": "2"}) is None


def test_in_flight_request_finishes_on_the_old_version(tmp_path: Path, make_registry) -> None:
    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    registry = make_registry()
    x = normal_rows(5, seed=3)

    async def main() -> dict[str, np.ndarray]:
        await registry.reload()
        old = registry.get("sensors")  # a request took this version...
        write_bundle(root / "sensors" / "2")
        await registry.reload()  # ...then version 2 was swapped in
        assert registry.get("sensors").version == "2"
        return await old.batcher.submit(x)  # the old version still scores

    outputs = asyncio.run(main())
    np.testing.assert_allclose(outputs["neg_elbo"], reference_outputs(x)["neg_elbo"], rtol=1e-6)


def test_layout_rules(tmp_path: Path, make_registry) -> None:
    root = tmp_path / "models"
    write_bundle(root / "flat")  # DIR/<model>/ is itself a bundle: the manifest's version
    write_bundle(root / "sensors" / "1")
    write_bundle(root / "sensors" / ".2-partial")  # hidden: a trainer still writing
    (root / "sensors" / "3").mkdir()  # no bundle (yet): skipped, not a failure
    (root / "sensors" / "3" / ONNX_FILE).write_bytes(b"half")
    (root / "README.txt").write_text("not a model")
    registry = make_registry()
    report = asyncio.run(registry.reload())
    assert report.failed == []
    assert registry.names() == ["flat", "sensors"]
    assert registry.versions("flat") == ["7"]
    assert registry.versions("sensors") == ["1"]


def test_listeners_hear_about_changes(tmp_path: Path, make_registry) -> None:
    write_bundle(tmp_path / "models" / "sensors" / "1")
    registry = make_registry()
    heard: list[list[str]] = []
    registry.add_listener(lambda r: heard.append(r.names()))
    asyncio.run(registry.reload())
    asyncio.run(registry.reload())
    assert heard == [["sensors"]]

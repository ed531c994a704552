"""ModelRegistry on real bundles: discovery, numeric-aware versions, swap after a full load,
broken versions refused (and counted) while the old one serves, in-flight requests, bundles
copied into place file by file."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.batching import MicroBatcher
from service.bundle import DECODER_FILE, MANIFEST_FILE, ONNX_FILE
from service.errors import ModelNotFound
from service.metrics import Metrics
from service.registry import SETTLE_S, ModelRegistry, version_key
from service.scorer import Scorer
from tests.service.conftest import ALPHA, normal_rows, reference_outputs, write_bundle


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_metrics=False)


# A clock step after which every file a test wrote is older than the settle time.
SETTLED_S = SETTLE_S + 60


class FakeClock:
    """``time.time()`` frozen at its creation, moved on only by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_registry(tmp_path: Path, executor, metrics: Metrics, clock: FakeClock):
    opened: list[Path] = []

    def open_scorer(path: Path) -> Scorer:
        opened.append(path)
        return Scorer.open(path, device="cpu", intra_op_threads=1)

    def make(root: Path | None = None, **settings: float) -> ModelRegistry:
        registry = ModelRegistry(
            root or tmp_path / "models",
            open_scorer=open_scorer,
            make_batcher=lambda name, scorer: MicroBatcher(scorer.run, executor=executor, name=name),
            metrics=metrics,
            clock=clock,
            **settings,
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


def test_broken_version_is_refused_counted_and_old_keeps_serving(
    tmp_path: Path, make_registry, metrics, clock: FakeClock
) -> None:
    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    registry = make_registry()
    asyncio.run(registry.reload())
    good = registry.get("sensors")

    write_bundle(root / "sensors" / "2")
    break_bundle(root / "sensors" / "2")
    clock.advance(SETTLED_S)  # its files have stopped changing
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

    write_bundle(root / "sensors" / "2")  # fixed in place: retried at once
    report = asyncio.run(registry.reload())
    assert report.loaded == [("sensors", "2")]
    assert registry.get("sensors").version == "2"


def test_broken_only_version_means_not_served(tmp_path: Path, make_registry, metrics, clock: FakeClock) -> None:
    root = tmp_path / "models"
    write_bundle(root / "sensors" / "1")
    manifest = root / "sensors" / "1" / MANIFEST_FILE
    data = json.loads(manifest.read_text())
    data["features"][0]["kind"] = "mystery"
    manifest.write_text(json.dumps(data))
    clock.advance(SETTLED_S)
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


BUNDLE_FILES = (MANIFEST_FILE, ONNX_FILE, DECODER_FILE)


def copy_half(source: Path, target: Path, name: str) -> None:
    """Write the first half of ``source/name`` as ``target/name``: a copy under way."""
    target.mkdir(parents=True, exist_ok=True)
    data = (source / name).read_bytes()
    (target / name).write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("order", list(itertools.permutations(BUNDLE_FILES)), ids="-".join)
def test_a_bundle_copied_file_by_file_in_any_order_is_served_once_complete(
    tmp_path: Path, make_registry, metrics, trained_bundle: Path, order: tuple[str, ...]
) -> None:
    # As `cp -r` does into a running server's repository: file after file, each written in
    # pieces, with a reload (a poll, or SIGHUP) after each piece. The clock stands still,
    # so the files are always fresh.
    assert sorted(p.name for p in trained_bundle.iterdir()) == sorted(BUNDLE_FILES)
    target = tmp_path / "models" / "sensors" / "2"
    registry = make_registry()

    async def copy() -> list[list[tuple[str, str]]]:
        pending = []
        for name in order:
            copy_half(trained_bundle, target, name)
            for whole in (False, True):
                if whole:
                    shutil.copy(trained_bundle / name, target / name)
                    if name == order[-1]:
                        break
                report = await registry.reload()
                assert report.failed == []
                assert registry.versions("sensors") == []
                assert failures(metrics, "sensors") == 0
                pending.append([(m, v) for m, v, _ in report.pending])
        report = await registry.reload()
        assert report.loaded == [("sensors", "2")]
        return pending

    pending = asyncio.run(copy())
    assert registry.get("sensors").version == "2"
    assert failures(metrics, "sensors") == 0
    assert registry.pending == []
    # Once manifest.json and model.onnx were there, each failed load was "pending": retried.
    assert pending[-1] == [("sensors", "2")]


def test_a_copy_left_incomplete_is_refused_once_settled_and_retried_when_a_file_changes(
    tmp_path: Path, make_registry, metrics, trained_bundle: Path, clock: FakeClock
) -> None:
    target = tmp_path / "models" / "sensors" / "2"
    target.mkdir(parents=True)
    for name in (MANIFEST_FILE, ONNX_FILE):  # decoder.onnx is missing
        shutil.copy(trained_bundle / name, target / name)
    registry = make_registry()

    report = asyncio.run(registry.reload())
    assert [(m, v) for m, v, _ in report.pending] == [("sensors", "2")]
    assert report.failed == []
    assert failures(metrics, "sensors") == 0

    clock.advance(SETTLED_S)  # nothing changed since: a broken bundle, not a copy in progress
    report = asyncio.run(registry.reload())
    assert [(m, v) for m, v, _ in report.failed] == [("sensors", "2")]
    assert DECODER_FILE in report.failed[0][2]
    assert failures(metrics, "sensors") == 1
    asyncio.run(registry.reload())  # not retried while nothing changes
    assert failures(metrics, "sensors") == 1

    shutil.copy(trained_bundle / DECODER_FILE, target / DECODER_FILE)  # the missing file arrives
    report = asyncio.run(registry.reload())
    assert report.loaded == [("sensors", "2")]
    assert failures(metrics, "sensors") == 1


def test_polling_retries_a_pending_version_even_when_the_repository_is_not_polled(
    tmp_path: Path, make_registry, metrics, trained_bundle: Path
) -> None:
    target = tmp_path / "models" / "sensors" / "2"
    registry = make_registry(settle_s=0.05)

    async def main() -> None:
        copy_half(trained_bundle, target, MANIFEST_FILE)
        shutil.copy(trained_bundle / ONNX_FILE, target / ONNX_FILE)
        report = await registry.reload()  # what SIGHUP does, in the middle of the copy
        assert [(m, v) for m, v, _ in report.pending] == [("sensors", "2")]
        poller = asyncio.ensure_future(registry.poll(0))  # 0: no scheduled polls
        shutil.copy(trained_bundle / DECODER_FILE, target / DECODER_FILE)
        shutil.copy(trained_bundle / MANIFEST_FILE, target / MANIFEST_FILE)
        deadline = time.monotonic() + 30  # a guard against a hang, not a timing check
        while not registry.versions("sensors") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        poller.cancel()

    asyncio.run(main())
    assert registry.versions("sensors") == ["2"]
    assert failures(metrics, "sensors") == 0

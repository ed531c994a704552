"""``latentwatch publish``: a bundle enters a model repository whole, in one rename."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.batching import MicroBatcher
from service.bundle import ONNX_FILE, load_bundle
from service.cli import main
from service.registry import ModelRegistry
from service.scorer import Scorer


def test_publish_copies_verifies_and_renames_into_the_repository(
    trained_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "models" / "telemetry" / "1"
    assert main(["publish", str(trained_bundle), str(target)]) == 0
    assert f"as {target}" in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in trained_bundle.iterdir())
    load_bundle(target)
    assert [p.name for p in target.parent.iterdir()] == ["1"]  # no staging folder left
    with ThreadPoolExecutor(1) as pool:
        registry = ModelRegistry(
            tmp_path / "models",
            open_scorer=lambda path: Scorer.open(path, device="cpu", intra_op_threads=1),
            make_batcher=lambda name, scorer: MicroBatcher(scorer.run, executor=pool, name=name),
        )
        report = asyncio.run(registry.reload())
    assert report.loaded == [("telemetry", "1")]


def test_publish_refuses_an_existing_version_and_a_broken_bundle(
    trained_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "models" / "telemetry" / "1"
    assert main(["publish", str(trained_bundle), str(target)]) == 0
    capsys.readouterr()
    assert main(["publish", str(trained_bundle), str(target)]) == 2
    assert "exists already" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    for file in trained_bundle.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    with (broken / ONNX_FILE).open("ab") as stream:
        stream.write(b"tampered")
    assert main(["publish", str(broken), str(tmp_path / "models" / "telemetry" / "2")]) == 2
    assert "sha256" in capsys.readouterr().err
    assert [p.name for p in target.parent.iterdir()] == ["1"]  # nothing published, nothing left over

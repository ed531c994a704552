"""Device, alpha and onnxruntime threads (service/validation.py), and every place that follows them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from service.batch.rows import ScoreOptions
from service.config import ServiceConfig
from service.errors import ConfigError, InvalidInput
from service.scorer import Scorer, resolve_alpha
from service.validation import alpha_problem, check, device_problem, onnx_threads_problem


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda"])
def test_devices(value: str) -> None:
    assert device_problem(value) is None


@pytest.mark.parametrize("value", ["tpu", "CPU", "", None])
def test_other_devices_are_refused(value: object) -> None:
    assert device_problem(value) == "must be one of ['auto', 'cpu', 'cuda']"


@pytest.mark.parametrize("value", [0.01, 0.5, "0.2", 1e-9])
def test_alphas(value: object) -> None:
    assert alpha_problem(value) is None


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, math.nan, "x", None, True])
def test_other_alphas_are_refused(value: object) -> None:
    assert alpha_problem(value) == "must be a number between 0 and 1 (exclusive)"


@pytest.mark.parametrize(
    ("value", "good"), [(None, True), (0, True), (4, True), (-1, False), (1.5, False), (True, False)]
)
def test_onnx_threads_zero_is_onnxruntimes_default(value: object, good: bool) -> None:
    assert (onnx_threads_problem(value) is None) == good


def test_check_names_the_setting_and_the_value() -> None:
    check("alpha", 0.5, None)
    with pytest.raises(ConfigError, match=r"^device must be one of \['auto', 'cpu', 'cuda'\], got 'tpu'$"):
        check("device", "tpu", device_problem("tpu"))
    with pytest.raises(InvalidInput, match="alpha must be a number"):
        check("alpha", 2, alpha_problem(2), InvalidInput)


def test_serve_score_and_the_scorer_agree_on_threads(bundle_dir: Path) -> None:
    """0 threads is onnxruntime's default everywhere; a negative count is refused everywhere."""
    ServiceConfig(models=bundle_dir, intra_op_threads=0, inter_op_threads=0).validate()
    ScoreOptions(threads=0).validate()
    Scorer.open(bundle_dir, device="cpu", intra_op_threads=0, inter_op_threads=0)
    with pytest.raises(ConfigError, match="intra_op_threads must be a whole number, 0"):
        ServiceConfig(models=bundle_dir, intra_op_threads=-1).validate()
    with pytest.raises(ConfigError, match="threads must be a whole number, 0"):
        ScoreOptions(threads=-1).validate()
    with pytest.raises(ConfigError, match="intra_op_threads must be a whole number, 0"):
        Scorer.open(bundle_dir, device="cpu", intra_op_threads=-1)


def test_serve_score_and_the_scorer_agree_on_device_and_alpha(bundle_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"device must be one of \['auto', 'cpu', 'cuda'\]"):
        ServiceConfig(models=bundle_dir, device="tpu").validate()
    with pytest.raises(ConfigError, match=r"device must be one of \['auto', 'cpu', 'cuda'\]"):
        ScoreOptions(device="tpu").validate()
    with pytest.raises(ConfigError, match=r"device must be one of \['auto', 'cpu', 'cuda'\]"):
        Scorer.open(bundle_dir, device="tpu")
    manifest = Scorer.open(bundle_dir, device="cpu").manifest
    assert resolve_alpha(None, manifest) == manifest.calibration.alpha
    assert resolve_alpha(0.2, manifest) == 0.2
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(InvalidInput, match=r"alpha must be a number between 0 and 1 \(exclusive\)"):
            resolve_alpha(bad, manifest)
        with pytest.raises(ConfigError, match=r"alpha must be a number between 0 and 1 \(exclusive\)"):
            ScoreOptions(alpha=bad).validate()

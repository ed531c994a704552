"""Scorer on a real onnxruntime session over the fixture bundle (see conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from service.bundle import ONNX_FILE, OUTPUT_NAMES, load_bundle
from service.calibration import ks_uniform_distance
from service.errors import BundleError, ConfigError, InvalidInput, ModelNotReady
from service.scorer import Scorer, Scores, threshold
from tests.service.conftest import (
    ALPHA,
    FEATURES,
    LATENT_DIM,
    calibration_scores,
    make_graph_bytes,
    normal_rows,
    reference_outputs,
)


def cuda_really_runs() -> bool:
    """Whether onnxruntime on this machine puts a session on CUDA (the oracle for device tests)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    session = ort.InferenceSession(make_graph_bytes(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    return session.get_providers()[0] == "CUDAExecutionProvider"


@pytest.fixture
def scorer(bundle_dir: Path) -> Scorer:
    return Scorer.open(bundle_dir, device="cpu")


def test_open_reports_provider_manifest_and_bundle(scorer: Scorer, bundle_dir: Path) -> None:
    assert scorer.provider == "CPUExecutionProvider"
    assert scorer.manifest.name == "fixture"
    assert scorer.bundle.path == bundle_dir
    assert scorer.manifest.feature_names == ["temperature", "load", "site"]


def test_open_accepts_a_loaded_bundle(bundle_dir: Path) -> None:
    scorer = Scorer.open(load_bundle(bundle_dir), device="cpu", intra_op_threads=1)
    assert scorer.run(normal_rows(3, seed=0))["neg_elbo"].shape == (3,)


def test_run_returns_every_output_matching_the_graph(scorer: Scorer) -> None:
    x = normal_rows(50, seed=1)
    x[3, 0] = np.nan
    outputs = scorer.run(x)
    assert set(outputs) == set(OUTPUT_NAMES)
    expected = reference_outputs(x)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-6, err_msg=name)
    assert outputs["latent"].shape == (50, LATENT_DIM)
    assert outputs["feature_scores"].shape == (50, 3)


def test_run_accepts_float64_and_non_contiguous_input(scorer: Scorer) -> None:
    x = normal_rows(20, seed=2).astype(np.float64)
    view = np.asfortranarray(x)
    np.testing.assert_array_equal(scorer.run(view)["neg_elbo"], scorer.run(x)["neg_elbo"])


def test_chunked_scoring_equals_one_call(bundle_dir: Path) -> None:
    x = normal_rows(103, seed=3)
    whole = Scorer.open(bundle_dir, device="cpu").run(x)
    chunked = Scorer.open(bundle_dir, device="cpu", max_chunk_rows=10).run(x)
    for name in OUTPUT_NAMES:
        np.testing.assert_array_equal(chunked[name], whole[name], err_msg=name)


def test_empty_input_gives_empty_outputs_of_the_right_shapes(scorer: Scorer) -> None:
    outputs = scorer.run(np.empty((0, 3), dtype=np.float32))
    assert outputs["neg_elbo"].shape == (0,)
    assert outputs["expected"].shape == (0, 3)
    assert outputs["latent"].shape == (0, LATENT_DIM)
    scores = scorer.score(np.empty((0, 3)))
    assert len(scores) == 0
    assert scores.is_anomaly.dtype == bool


def test_wrong_width_names_both_counts(scorer: Scorer) -> None:
    with pytest.raises(InvalidInput, match=r"4 columns.*3 features"):
        scorer.run(np.zeros((2, 4)))


def test_one_dimensional_or_non_numeric_input_is_refused(scorer: Scorer) -> None:
    with pytest.raises(InvalidInput, match="2-D"):
        scorer.run(np.zeros(3))
    with pytest.raises(InvalidInput, match="float32"):
        scorer.run(np.array([["a", "b", "c"]]))


def test_p_values_follow_the_conformal_formula(scorer: Scorer) -> None:
    x = normal_rows(200, seed=4)
    scores = scorer.score(x)
    calibration = np.asarray(calibration_scores())
    brute = np.array([(1 + np.sum(calibration >= s)) / (len(calibration) + 1) for s in scores.neg_elbo])
    np.testing.assert_allclose(scores.p_value, brute)
    np.testing.assert_array_equal(scores.is_anomaly, scores.p_value < ALPHA)
    assert scores.primary_score == "neg_elbo"
    assert scores.primary is scores.neg_elbo
    assert scores.alpha == ALPHA


def test_p_values_of_calibration_like_rows_are_roughly_uniform(scorer: Scorer) -> None:
    scores = scorer.score(normal_rows(5000, seed=5))
    # Two-sample KS (2000 calibration rows vs 5000 scored): 0.05 is beyond the 0.1% level.
    assert ks_uniform_distance(scores.p_value) < 0.05
    counts, _ = np.histogram(scores.p_value, bins=10, range=(0, 1))
    assert counts.min() > 380
    assert counts.max() < 620
    assert scores.is_anomaly.mean() == pytest.approx(ALPHA, abs=0.015)


def test_outlying_rows_get_small_p_values(scorer: Scorer) -> None:
    x = np.array([[8.0, -9.0, 2.0], [0.1, 0.0, 0.0]], dtype=np.float32)
    scores = scorer.score(x)
    assert scores.p_value[0] == pytest.approx(1 / (len(calibration_scores()) + 1))
    assert scores.is_anomaly.tolist() == [True, False]


def test_alpha_override_moves_only_the_threshold(scorer: Scorer) -> None:
    x = normal_rows(1000, seed=6)
    default = scorer.score(x)
    loose = scorer.score(x, alpha=0.5)
    np.testing.assert_array_equal(loose.p_value, default.p_value)
    assert loose.is_anomaly.sum() > 3 * default.is_anomaly.sum()
    np.testing.assert_array_equal(loose.is_anomaly, loose.p_value < 0.5)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan"), "low"])
def test_bad_alpha_is_refused(scorer: Scorer, alpha: object) -> None:
    with pytest.raises(InvalidInput, match="alpha"):
        scorer.score(np.zeros((1, 3)), alpha=alpha)  # type: ignore[arg-type]


def test_scores_rows_slices_every_array(scorer: Scorer) -> None:
    scores = scorer.score(normal_rows(10, seed=7))
    part = scores.rows(2, 5)
    assert isinstance(part, Scores)
    assert len(part) == 3
    np.testing.assert_array_equal(part.latent, scores.latent[2:5])
    np.testing.assert_array_equal(part.p_value, scores.p_value[2:5])


def test_concurrent_calls_agree(scorer: Scorer) -> None:
    batches = [normal_rows(300, seed=s) for s in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(scorer.score, batches))
    for x, scores in zip(batches, results, strict=True):
        np.testing.assert_allclose(scores.neg_elbo, reference_outputs(x)["neg_elbo"], rtol=1e-6)


def test_tampered_graph_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / ONNX_FILE).write_bytes(make_graph_bytes(latent_dim=3))
    with pytest.raises(BundleError, match="sha256"):
        Scorer.open(bundle_dir, device="cpu")


def test_graph_missing_an_output_is_refused(make_bundle: Callable[..., Path]) -> None:
    graph = make_graph_bytes(outputs=("recon_error", "neg_elbo", "kl", "feature_scores", "expected"))
    with pytest.raises(BundleError, match=r"lacks the outputs \['latent'\]"):
        Scorer.open(make_bundle(graph=graph), device="cpu")


def test_graph_with_other_input_name_is_refused(make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(BundleError, match="named 'x'"):
        Scorer.open(make_bundle(graph=make_graph_bytes(input_name="rows")), device="cpu")


def test_graph_of_other_width_is_refused(make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(BundleError, match="3 features"):
        Scorer.open(make_bundle(graph=make_graph_bytes(n_features=4)), device="cpu")


def test_latent_dim_disagreeing_with_the_graph_is_refused(make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(BundleError, match="'latent' has shape"):
        Scorer.open(make_bundle(latent_dim=5), device="cpu")


def test_unreadable_graph_is_refused(make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(BundleError, match="cannot load the graph"):
        Scorer.open(make_bundle(graph=b"not an onnx model"), device="cpu")


def test_missing_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        Scorer.open(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"device": "tpu"}, "device must be one of"),
        ({"max_chunk_rows": 0}, "max_chunk_rows"),
        ({"intra_op_threads": -1}, "intra_op_threads"),
    ],
)
def test_bad_settings_are_refused(bundle_dir: Path, settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Scorer.open(bundle_dir, **settings)


def test_device_cuda_runs_on_cuda_or_says_why_not(bundle_dir: Path) -> None:
    if cuda_really_runs():
        assert Scorer.open(bundle_dir, device="cuda").provider == "CUDAExecutionProvider"
    else:
        with pytest.raises(ModelNotReady, match=r"model 'fixture': device 'cuda' was asked for"):
            Scorer.open(bundle_dir, device="cuda")


def test_device_auto_falls_back_to_cpu_and_says_why(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.scorer"):
        scorer = Scorer.open(bundle_dir, device="auto")
    if cuda_really_runs():
        assert scorer.provider == "CUDAExecutionProvider"
    else:
        assert scorer.provider == "CPUExecutionProvider"
        assert "scoring on CPU" in caplog.text
    x = normal_rows(64, seed=8)
    np.testing.assert_allclose(scorer.run(x)["neg_elbo"], reference_outputs(x)["neg_elbo"], rtol=1e-5)


def sensor_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "site": ["south", "east", None, "mars", "north"],
            "temperature": [0.5, -1.0, 2.0, 0.0, np.nan],
            "load": [1.0, 0.0, 0.5, 3.0, 0.25],
            "serial": ["a1", "a2", "a3", "a4", "a5"],
        },
        index=pd.Index([10, 11, 12, 13, 14], name="reading"),
    )


def test_score_frame_with_categories_explained(scorer: Scorer) -> None:
    frame = sensor_frame()
    out = scorer.score_frame(frame, explain=True, latent=True)
    assert out.index.equals(frame.index)
    assert list(out.columns[:5]) == ["recon_error", "neg_elbo", "kl", "p_value", "is_anomaly"]
    # Codes: south 1, east 2, missing -1, unseen "mars" -1, north 0.
    x = np.array(
        [[0.5, 1.0, 1], [-1.0, 0.0, 2], [2.0, 0.5, -1], [0.0, 3.0, -1], [np.nan, 0.25, 0]],
        dtype=np.float32,
    )
    reference = reference_outputs(x)
    np.testing.assert_allclose(out["neg_elbo"], reference["neg_elbo"], rtol=1e-6)
    np.testing.assert_allclose(out["feature_score_site"], [1.0, 4.0, 1.0, 1.0, 0.0])
    labels = out["expected_site"]
    assert labels[[10, 11, 14]].tolist() == ["south", "east", "north"]
    assert labels[[12, 13]].isna().all()
    np.testing.assert_allclose(out["expected_temperature"], [0.5, -1.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(out[["latent_0", "latent_1"]].to_numpy(), reference["latent"])
    assert out["is_anomaly"].dtype == bool


def test_score_frame_plain_has_only_the_row_scores(scorer: Scorer) -> None:
    out = scorer.score_frame(sensor_frame(), alpha=0.5)
    assert list(out.columns) == ["recon_error", "neg_elbo", "kl", "p_value", "is_anomaly"]
    np.testing.assert_array_equal(out["is_anomaly"], out["p_value"] < 0.5)


def test_score_frame_names_missing_columns_and_bad_values(scorer: Scorer) -> None:
    with pytest.raises(InvalidInput, match=r"sensors\.csv: missing feature column\(s\) \['load'\]"):
        scorer.score_frame(sensor_frame().drop(columns="load"), source="sensors.csv")
    bad = sensor_frame().astype({"temperature": object})
    bad.loc[12, "temperature"] = "hot"
    with pytest.raises(InvalidInput, match=r"row 2, column 'temperature': 'hot' is not a number"):
        scorer.score_frame(bad)


def test_feature_order_follows_the_manifest_not_the_frame(scorer: Scorer) -> None:
    frame = sensor_frame()
    shuffled = frame[["load", "serial", "site", "temperature"]]
    pd.testing.assert_frame_equal(scorer.score_frame(shuffled), scorer.score_frame(frame))
    assert [f.name for f in FEATURES] == scorer.manifest.feature_names


def test_score_is_threshold_of_the_p_valued_outputs(scorer: Scorer) -> None:
    """One rule turns outputs and p-values into is_anomaly: score() and the service's batches share it."""
    x = normal_rows(50, seed=3)
    outputs = scorer.run_p_values(x)
    for alpha in (0.05, 0.5, 0.9):
        direct, split = scorer.score(x, alpha), threshold(outputs, alpha, scorer.manifest.primary_score)
        for name, values in direct.arrays().items():
            np.testing.assert_array_equal(values, getattr(split, name))
        np.testing.assert_array_equal(split.is_anomaly, outputs["p_value"] < alpha)

"""Conformal p-values, thresholds and the KS drift window."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.calibration import (
    PValueWindow,
    is_anomaly,
    ks_uniform_distance,
    p_values,
    score_threshold,
)


def brute_force_p(scores: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    return np.array([(1 + np.sum(calibration >= s)) / (len(calibration) + 1) for s in scores])


def test_p_values_match_brute_force_count_with_ties() -> None:
    rng = np.random.default_rng(1)
    calibration = np.sort(rng.integers(0, 20, size=300).astype(float))
    scores = rng.integers(-3, 25, size=500).astype(float)
    np.testing.assert_allclose(p_values(scores, calibration), brute_force_p(scores, calibration))


def test_p_values_bounds_and_nan() -> None:
    calibration = np.array([1.0, 2.0, 3.0])
    p = p_values(np.array([100.0, -100.0, 2.0, np.nan]), calibration)
    assert p[0] == pytest.approx(1 / 4)  # above every calibration score: the smallest p
    assert p[1] == pytest.approx(1.0)
    assert p[2] == pytest.approx(3 / 4)  # ties count as "at least as high"
    assert np.isnan(p[3])


def test_p_values_of_calibration_like_scores_are_uniform() -> None:
    rng = np.random.default_rng(2)
    calibration = np.sort(rng.gamma(2.0, size=5000))
    p = p_values(rng.gamma(2.0, size=20000), calibration)
    assert ks_uniform_distance(p) < 0.02
    assert np.mean(is_anomaly(p, 0.05)) == pytest.approx(0.05, abs=0.01)


def test_p_values_of_shifted_scores_are_not_uniform() -> None:
    rng = np.random.default_rng(3)
    calibration = np.sort(rng.normal(size=2000))
    p = p_values(rng.normal(loc=2.0, size=2000), calibration)
    assert ks_uniform_distance(p) > 0.4


def test_is_anomaly_is_strict_and_nan_is_normal() -> None:
    flags = is_anomaly(np.array([0.01, 0.05, 0.2, np.nan]), 0.05)
    assert flags.dtype == bool
    assert flags.tolist() == [True, False, False, False]


def test_ks_distance_known_values() -> None:
    assert ks_uniform_distance(np.array([0.5])) == pytest.approx(0.5)
    n = 100
    grid = (np.arange(n) + 0.5) / n
    assert ks_uniform_distance(grid) == pytest.approx(0.5 / n)
    assert ks_uniform_distance(np.zeros(10)) == pytest.approx(1.0)
    assert ks_uniform_distance(np.array([0.25, np.nan])) == pytest.approx(0.75)
    assert np.isnan(ks_uniform_distance(np.array([])))


@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.1, 0.5, 0.999])
def test_score_threshold_agrees_with_is_anomaly(alpha: float) -> None:
    rng = np.random.default_rng(4)
    calibration = np.sort(rng.integers(0, 50, size=999).astype(float))
    scores = np.concatenate([rng.uniform(-5, 60, size=3000), calibration])
    flagged = is_anomaly(p_values(scores, calibration), alpha)
    np.testing.assert_array_equal(flagged, scores > score_threshold(calibration, alpha))


def test_score_threshold_when_calibration_is_too_small() -> None:
    # With 9 rows the smallest p-value is 1/10, so alpha 0.05 can never be reached.
    assert score_threshold(np.arange(9.0), 0.05) == np.inf


def test_window_keeps_only_the_latest_values() -> None:
    window = PValueWindow(size=5)
    assert np.isnan(window.drift())
    window.add(np.array([0.9, 0.9, 0.9]))
    window.add(np.array([0.1, np.nan, 0.3, 0.5, 0.7]))
    assert len(window) == 5
    # The window now holds 0.9, 0.1, 0.3, 0.5, 0.7: an evenly spread sample.
    assert window.drift() == pytest.approx(ks_uniform_distance(np.array([0.9, 0.1, 0.3, 0.5, 0.7])))


def test_window_add_is_thread_safe() -> None:
    window = PValueWindow(size=100_000)

    def feed() -> None:
        for _ in range(200):
            window.add(np.full(10, 0.5))

    threads = [threading.Thread(target=feed) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(window) == 8 * 200 * 10


def test_window_drift_detects_small_p_values() -> None:
    rng = np.random.default_rng(5)
    window = PValueWindow(size=1000)
    window.add(rng.uniform(size=1000))
    assert window.drift() < 0.06
    window.add(rng.uniform(0, 0.1, size=1000))
    assert window.drift() > 0.8


def test_window_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PValueWindow(size=0)

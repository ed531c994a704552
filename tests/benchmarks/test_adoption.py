"""The rule a change to the defaults must pass (benchmarks/adoption.py), on made-up tables."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def adoption(import_benchmark):
    return import_benchmark("adoption")


HALF_OF = {"a": "odd", "b": "even", "c": "odd", "d": "even"}


def test_the_halves_follow_the_file_numbers(adoption) -> None:
    stems = {"ALOI": "1_ALOI", "annthyroid": "2_annthyroid", "magic.gamma": "22_magic.gamma", "bank": "bank"}
    assert adoption.halves(stems) == {"ALOI": "odd", "annthyroid": "even", "magic.gamma": "even"}


def test_a_broad_gain_on_both_halves_is_adopted(adoption) -> None:
    reference = pd.Series({"a": 0.80, "b": 0.70, "c": 0.90, "d": 0.60})
    candidate = reference + pd.Series({"a": 0.010, "b": 0.012, "c": 0.008, "d": 0.011})
    result = adoption.compare(candidate, reference, HALF_OF)
    assert result.better == 4
    assert result.worse == 0
    assert result.by_half == pytest.approx({"odd": 0.009, "even": 0.0115})
    assert result.largest_mover == "b"
    assert result.without_largest == pytest.approx(0.029 / 3)
    assert result.adopted


def test_a_gain_carried_by_one_table_is_not(adoption) -> None:
    reference = pd.Series({"a": 0.80, "b": 0.70, "c": 0.90, "d": 0.60})
    candidate = reference + pd.Series({"a": -0.002, "b": 0.20, "c": -0.002, "d": -0.002})
    result = adoption.compare(candidate, reference, HALF_OF)
    assert result.mean > 0
    assert result.by_half["odd"] < 0  # the odd half lost
    assert result.without_largest < 0
    assert not result.adopted
    assert "without b (+0.200)" in result.summary()


def test_a_gain_inside_the_noise_is_not(adoption) -> None:
    reference = pd.Series({"a": 0.80, "b": 0.70, "c": 0.90, "d": 0.60})
    candidate = reference + pd.Series({"a": 0.03, "b": 0.002, "c": -0.02, "d": 0.003})
    result = adoption.compare(candidate, reference, HALF_OF)
    assert result.mean > 0
    assert result.better > result.worse
    assert result.mean < result.standard_error
    assert not result.adopted


def test_tables_outside_the_halves_are_left_out(adoption) -> None:
    reference = pd.Series({"a": 0.8, "b": 0.7, "bank": 0.5})
    candidate = pd.Series({"a": 0.9, "b": 0.8, "bank": 0.1})
    result = adoption.compare(candidate, reference, HALF_OF)
    assert result.tables == 2
    assert result.mean == pytest.approx(0.1)
    assert adoption.compare(candidate[["a"]], reference[["a"]], HALF_OF) is None

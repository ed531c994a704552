"""The rules every input path shares: numbers float32 can hold, column types training saw."""

from __future__ import annotations

import numpy as np
import pytest

from service.bundle import Feature
from service.errors import did_you_mean
from service.features import beyond_float32, kind_problem

SITE = Feature(name="site", kind="categorical", dtype="string", categories=("north", "south"))
ZIP = Feature(name="zip", kind="categorical", dtype="string", categories=("01234", "1.5"))
CODE = Feature(name="code", kind="categorical", dtype="int", categories=("3", "7"))
FLAG = Feature(name="flag", kind="categorical", dtype="bool", categories=("False", "True"))
LOAD = Feature(name="load", kind="numeric", dtype="float")


def test_beyond_float32_marks_what_float32_makes_infinite() -> None:
    values = np.array([0.0, np.nan, 3.4e38, 3.5e38, -1e300, np.inf, -np.inf])
    assert beyond_float32(values).tolist() == [False, False, False, True, True, True, True]
    assert not beyond_float32(np.array([1.0], dtype=np.float32)).any()


@pytest.mark.parametrize(
    ("feature", "kind", "refused"),
    [
        (SITE, "int", True),
        (SITE, "float", True),
        (SITE, "bool", True),
        (SITE, "string", False),
        (SITE, "null", False),
        (SITE, "temporal", True),
        (ZIP, "int", True),  # neither "01234" nor "1.5" is an integer's label
        (ZIP, "float", False),  # but "1.5" is a float's
        (CODE, "int", False),
        (CODE, "string", False),
        (FLAG, "bool", False),
        (FLAG, "int", False),  # 0 and 1 read as False and True
        (LOAD, "int", False),
        (LOAD, "string", False),  # parsed row by row
        (LOAD, "temporal", True),
        (LOAD, "other", True),
    ],
)
def test_kind_problem_refuses_only_types_that_cannot_hold_the_training_values(
    feature: Feature, kind: str, refused: bool
) -> None:
    problem = kind_problem(feature, kind)
    assert (problem is not None) == refused
    if refused:
        assert repr(feature.name) in problem


def test_did_you_mean_prefers_a_case_change_then_the_closest_name() -> None:
    assert did_you_mean("Load", ["load", "lead"]) == " (did you mean 'load'?)"
    assert did_you_mean("temprature", ["temperature", "site"]) == " (did you mean 'temperature'?)"
    assert did_you_mean("event_id", ["load", "power"]) == ""
    assert did_you_mean("x" * 1000, ["x"]) == ""

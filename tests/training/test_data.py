"""Planning columns and splitting rows: kinds, dropped columns, and errors that name the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.errors import DataError
from tests.training.tables import mixed_table
from training.data import fold_rows, parse_labels, plan_columns, split_rows


def test_kinds_constant_and_identifier_columns() -> None:
    frame = mixed_table(300)
    frame["constant"] = 7.0
    frame["one_site"] = "north"
    frame["row_id"] = [f"r{i}" for i in range(300)]
    frame["when"] = pd.date_range("2026-01-01", periods=300, freq="h")
    plan = plan_columns(frame, source="t.csv", categorical=["count"])
    assert plan.numeric == ["load", "power", "constant"]  # a constant number stays: another value is news
    assert plan.categorical == ["count", "site", "flag"]
    reasons = {d["column"]: d["reason"] for d in plan.dropped}
    assert reasons["one_site"] == "constant column"
    assert reasons["row_id"].startswith("looks like an identifier")
    assert reasons["when"] == "date or time column"


def test_infinity_names_column_and_row() -> None:
    frame = mixed_table(30)
    frame.loc[17, "load"] = np.inf
    with pytest.raises(DataError, match=r"t.csv: column 'load', row 17: infinite value"):
        plan_columns(frame, source="t.csv")


def test_missing_label_and_feature_columns_list_the_columns() -> None:
    frame = mixed_table(30)
    with pytest.raises(DataError, match=r"label column\(s\) \['target'\] not found; the columns are"):
        plan_columns(frame, source="t.csv", label_column="target")
    with pytest.raises(DataError, match=r"excluded column\(s\) \['nope'\]"):
        plan_columns(frame, source="t.csv", exclude=["nope"])


def test_no_usable_feature() -> None:
    frame = pd.DataFrame({"a": [1.0] * 20, "b": ["x"] * 20})
    with pytest.raises(DataError, match=r"no usable feature column: each of \['a'\] holds one value"):
        plan_columns(frame, source="t.csv")
    with pytest.raises(DataError, match=r"no usable feature column \(left out"):
        plan_columns(frame[["b"]], source="t.csv")


def test_labels_accept_numbers_booleans_and_words() -> None:
    labels = pd.DataFrame({"y": [1, 0, "anomaly", "normal", True, "FALSE", 1.0]})
    assert parse_labels(labels, "y", "t.csv").tolist() == [True, False, True, False, True, False, True]
    with pytest.raises(DataError, match=r"row 1, label column 'y': 'maybe' is neither"):
        parse_labels(pd.DataFrame({"y": [0, "maybe"]}), "y", "t.csv")


def test_folds_share_out_every_row_once() -> None:
    folds = fold_rows(11, 3, seed=0)
    assert [len(f) for f in folds] == [4, 4, 3]
    assert sorted(np.concatenate(folds).tolist()) == list(range(11))
    assert [f.tolist() for f in fold_rows(11, 3, seed=0)] == [f.tolist() for f in folds]
    with pytest.raises(DataError, match="5 normal rows cannot make 3 folds"):
        fold_rows(5, 3, seed=0)


def test_split_keeps_a_row_on_each_side() -> None:
    train, holdout = split_rows(10, 0.2, seed=0)
    assert len(train) == 8
    assert len(holdout) == 2
    assert set(train) | set(holdout) == set(range(10))
    assert split_rows(2, 0.01, seed=0)[1].size == 1

"""Feature statistics and the in-graph preprocessing: what the encoder sees of a raw row, and
how missing values and unseen categories come through."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from training.preprocess import Preprocessor, fit_categorical, fit_features, fit_numeric


def test_numeric_statistics_impute_with_the_median_and_standardize_with_mean_and_std() -> None:
    feature = fit_numeric(pd.Series([1.0, 2.0, 6.0, np.nan]), "load")
    assert (feature.kind, feature.dtype) == ("numeric", "int")  # whole numbers, stored as floats
    assert feature.fill == 2.0
    assert feature.center == 3.0
    assert feature.scale == pytest.approx(np.std([1.0, 2.0, 6.0]))
    assert feature.missing_in_training == 0.25
    assert not feature.is_constant


def test_a_column_of_one_value_is_constant_and_charges_log_n_plus_2_for_another() -> None:
    feature = fit_numeric(pd.Series([7.5] * 4), "setpoint")
    assert feature.is_constant
    assert (feature.center, feature.scale) == (7.5, 1.0)
    assert feature.off_value_nats == pytest.approx(math.log(6))


def test_categories_are_ordered_by_frequency_then_label() -> None:
    feature = fit_categorical(pd.Series(["b", "c", "a", "c", None, "b"]), "site")
    assert feature.categories == ("b", "c", "a")
    assert feature.unseen_code == 3
    assert feature.missing_in_training == pytest.approx(1 / 6)
    assert feature.unseen_nats == pytest.approx(math.log(5 + 3 + 1))


def test_features_keep_the_tables_column_order() -> None:
    frame = pd.DataFrame({"site": ["a", "b"], "load": [1.0, 2.0], "ignored": [0, 0]})
    features = fit_features(frame, numeric=["load"], categorical=["site"])
    assert [(f.name, f.kind) for f in features] == [("site", "categorical"), ("load", "numeric")]


def test_the_encoder_sees_standardized_numbers_a_missing_indicator_and_one_hot_groups() -> None:
    frame = pd.DataFrame({"load": [0.0, 2.0, np.nan], "site": ["a", "b", "a"]})
    pre = Preprocessor(fit_features(frame, ["load"], ["site"]))
    assert pre.n_inputs == 1 + 1 + 2  # load, its missing indicator, the site's two categories
    # load 2.0; missing load (imputed with the median 1.0); site missing (-1) and unseen (2).
    x = torch.tensor([[2.0, 1.0], [np.nan, 0.0], [0.0, np.nan], [0.0, 2.0]])
    enc_in, num, observed, codes = pre(x)
    np.testing.assert_allclose(num[:, 0], [1.0, 0.0, -1.0, -1.0])  # (value - 1) / std 1
    assert observed[:, 0].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert codes[:, 0].tolist() == [1, 0, -1, 2]
    assert enc_in[:, 1:].tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]]  # missing and unseen: no one-hot
    assert pre.unseen(codes)[:, 0].tolist() == [0.0, 0.0, 0.0, pytest.approx(math.log(3 + 2 + 1))]  # n + K + 1

"""``latentwatch info``: the manifest as text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.bundle import Feature, load_bundle
from service.info import format_manifest
from tests.service.conftest import FEATURES


def info_text(make_bundle: Callable[..., Path], **kwargs: object) -> str:
    return format_manifest(load_bundle(make_bundle(**kwargs)).manifest)


def test_header_names_the_model_and_digest(make_bundle: Callable[..., Path]) -> None:
    directory = make_bundle()
    manifest = load_bundle(directory).manifest
    text = format_manifest(manifest)
    assert "fixture (version 7)" in text
    assert "vae" in text
    assert "2026-01-02T03:04:05Z by latentwatch 0.1.0" in text
    assert manifest.onnx_sha256 in text
    assert "3 features, latent dimension 2" in text


def test_feature_table_is_aligned_with_kinds_and_encodings(
    make_bundle: Callable[..., Path],
) -> None:
    features = (
        dataclasses.replace(FEATURES[0], fill=21.5, center=20.0, scale=4.25),
        *FEATURES[1:],
    )
    lines = info_text(make_bundle, features=features).splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "name"])
    rows = lines[header + 1 : header + 4]
    assert [r.split()[1] for r in rows] == ["temperature", "load", "site"]
    assert "fill 21.5, center 20, scale 4.25" in rows[0]
    assert "categorical" in rows[2]
    assert "3 categories: north, south, east" in rows[2]
    # Every row's "kind" column starts where the header's does.
    column = lines[header].index("kind")
    assert {r[column:].split()[0] for r in rows} == {"numeric", "categorical"}


def test_a_constant_feature_shows_its_value_and_price(make_bundle: Callable[..., Path]) -> None:
    firmware = Feature(name="firmware", kind="numeric", fill=3.0, center=3.0, scale=1.0, off_value_nats=6.2166)
    text = info_text(make_bundle, features=(*FEATURES[:2], firmware))
    assert "constant 3; another value costs 6.2166 nats" in text


def test_long_category_lists_are_shortened(make_bundle: Callable[..., Path]) -> None:
    many = Feature(name="site", kind="categorical", categories=tuple(f"s{i}" for i in range(20)))
    text = info_text(make_bundle, features=(*FEATURES[:2], many))
    assert "20 categories: s0, s1, s2, s3, s4, s5, ... (+14)" in text
    assert "s19" not in text


def test_scores_section_shows_calibration_and_threshold(make_bundle: Callable[..., Path]) -> None:
    scores = tuple(float(v) for v in range(1, 100))  # 99 rows: 1..99
    text = info_text(make_bundle, scores=scores, alpha=0.05)
    assert "primary score  neg_elbo" in text
    assert "alpha          0.05" in text
    assert "99 held-out normal rows" in text
    assert f"50% {np.quantile(scores, 0.5):g}" in text
    # p < 0.05 needs (1 + count) / 100 < 0.05: at most 3 calibration scores >= s, so s > 96.
    assert "neg_elbo > 96" in text


def test_scores_section_warns_when_alpha_cannot_be_reached(
    make_bundle: Callable[..., Path],
) -> None:
    text = info_text(make_bundle, scores=(1.0, 2.0, 3.0), alpha=0.1)
    assert "nothing: 3 calibration rows cannot reach p < 0.1" in text


def test_training_summary_and_dropped_columns(make_bundle: Callable[..., Path]) -> None:
    training = {
        "seconds": 8.5,
        "epochs": 12,
        "val_losses": [5.0, 4.0, 3.5, 3.3, 3.25],
        "settings": {"batch_size": 256},
        "trained_on": {"device": "cuda", "device_name": "NVIDIA H200", "torch": "2.11.0+cu130"},
    }
    lines = info_text(make_bundle, training=training).splitlines()
    section = lines[lines.index("training") + 1 :]
    assert [line.split()[0] for line in section] == [
        "epochs",
        "seconds",
        "trained_on.device",
        "trained_on.device_name",
        "settings.batch_size",
        "trained_on.torch",
        "val_losses",
    ]
    assert section[-1].endswith("[5 values, last: 3.3, 3.25]")
    text = "\n".join(lines)
    assert "serial  unique per row" in text


def test_empty_training_summary_is_left_out(make_bundle: Callable[..., Path]) -> None:
    assert "training" not in info_text(make_bundle, training={}).splitlines()

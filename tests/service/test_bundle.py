"""The bundle contract in code: the manifest's fields, what a loaded bundle holds, and what
a manifest must be for it to be written or read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from service.bundle import (
    MANIFEST_FILE,
    Feature,
    decoder_output_names,
    load_bundle,
    manifest_from_dict,
    write_manifest,
)
from service.errors import BundleError
from tests.service.conftest import FEATURES

SITE = Feature(name="site", kind="categorical", dtype="string", categories=("north", "south"))


def test_a_loaded_bundle_holds_the_manifest_as_written(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    assert manifest.features == FEATURES
    assert manifest.feature_names == ["temperature", "load", "site"]
    assert manifest.n_features == 3
    assert manifest.primary_score == "neg_elbo"
    assert bundle.onnx_path == bundle_dir / "model.onnx"
    assert bundle.decoder_path is None  # the manifest records no decoder
    assert manifest.integrity is not None  # write_manifest added the integrity record


def test_the_manifests_json_reads_back_the_same_and_ignores_fields_it_does_not_know(bundle_dir: Path) -> None:
    manifest = load_bundle(bundle_dir).manifest
    data = json.loads(manifest.to_json())
    assert manifest_from_dict(data) == manifest
    assert manifest_from_dict({**data, "added_by_a_newer_version": 1}) == manifest


def test_another_format_version_is_refused(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    with pytest.raises(BundleError, match="format_version 2 is not supported"):
        manifest_from_dict({**data, "format_version": 2})


def test_a_manifest_without_a_required_field_is_refused_naming_it(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    del data["calibration"]
    with pytest.raises(BundleError, match="not a valid latentwatch manifest: 'calibration'"):
        manifest_from_dict(data, source="m.json")


@pytest.mark.parametrize(
    ("feature", "says"),
    [
        (Feature(name="site", kind="text"), "unknown kind 'text'"),
        (Feature(name="site", kind="categorical"), "lists no categories"),
        (Feature(name="site", kind="numeric", unseen_nats=2.0), "only a categorical feature has them"),
        (dataclasses.replace(SITE, off_value_nats=1.0), "must be numeric with its value as center"),
    ],
)
def test_a_manifest_with_a_bad_feature_is_not_written(
    bundle_dir: Path, tmp_path: Path, feature: Feature, says: str
) -> None:
    manifest = dataclasses.replace(load_bundle(bundle_dir).manifest, features=(*FEATURES[:2], feature))
    with pytest.raises(BundleError, match=says):
        write_manifest(tmp_path / "out", manifest)
    assert not (tmp_path / "out" / MANIFEST_FILE).exists()


def test_an_unseen_category_has_its_own_code_only_where_the_graph_charges_it() -> None:
    assert SITE.unseen_code == -1  # a bundle from before unseen values were scored: read as missing
    assert dataclasses.replace(SITE, unseen_nats=1.5).unseen_code == 2


def test_decoder_outputs_are_the_numeric_moments_then_one_probability_table_per_category() -> None:
    assert decoder_output_names(FEATURES) == ["numeric_mean", "numeric_std", "category_probs_2"]
    assert decoder_output_names([SITE, FEATURES[0], SITE]) == [
        "numeric_mean",
        "numeric_std",
        "category_probs_0",
        "category_probs_2",
    ]
    assert decoder_output_names([SITE]) == ["category_probs_0"]

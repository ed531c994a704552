"""Bundle edits are refused at load, each with a message naming the file or field; a bundle
written before integrity records existed loads with a warning."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.bundle import DECODER_FILE, MANIFEST_FILE, ONNX_FILE, file_sha256, load_bundle
from service.errors import BundleError
from service.integrity import INTEGRITY_KEY
from tests.service.conftest import ALPHA, make_graph_bytes, write_bundle

Edit = Callable[[dict[str, Any], Path], None]


def read(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / MANIFEST_FILE).read_text())


def edit_manifest(bundle: Path, change: Edit) -> None:
    data = read(bundle)
    change(data, bundle)
    (bundle / MANIFEST_FILE).write_text(json.dumps(data, indent=2))


def set_scores(value: float) -> Edit:
    def change(data: dict[str, Any], bundle: Path) -> None:
        data["calibration"]["scores"] = [value] * len(data["calibration"]["scores"])

    return change


def set_one_score(index: int, value: float) -> Edit:
    def change(data: dict[str, Any], bundle: Path) -> None:
        data["calibration"]["scores"][index] = value

    return change


def alpha(data: dict[str, Any], bundle: Path) -> None:
    data["calibration"]["alpha"] = 0.5


def swap_features(data: dict[str, Any], bundle: Path) -> None:
    features = data["features"]
    features[0], features[1] = features[1], features[0]


def rename_category(data: dict[str, Any], bundle: Path) -> None:
    data["features"][2]["categories"][0] = "North"


def another_model(data: dict[str, Any], bundle: Path) -> None:
    (bundle / ONNX_FILE).write_bytes(make_graph_bytes(latent_dim=2) + b"\0")
    data["onnx_sha256"] = file_sha256(bundle / ONNX_FILE)


def another_model_and_its_record(data: dict[str, Any], bundle: Path) -> None:
    another_model(data, bundle)
    data[INTEGRITY_KEY]["files"][ONNX_FILE] = data["onnx_sha256"]


def rename_model(data: dict[str, Any], bundle: Path) -> None:
    data["name"] = "payments"


def add_field(data: dict[str, Any], bundle: Path) -> None:
    data["label_column"] = "is_fraud"


def new_field(data: dict[str, Any], bundle: Path) -> None:
    data["threshold_override"] = 3.5


def drop_field(data: dict[str, Any], bundle: Path) -> None:
    del data["dropped_columns"]


def forge_record(data: dict[str, Any], bundle: Path) -> None:
    data[INTEGRITY_KEY]["fields"]["calibration"] = "0" * 64


def broken_record(data: dict[str, Any], bundle: Path) -> None:
    data[INTEGRITY_KEY] = "trust me"


EDITS = [
    ("calibration scores NaN", set_scores(float("nan")), "calibration.scores[0] is nan"),
    ("calibration scores infinite", set_one_score(-1, float("inf")), "calibration.scores[1999] is inf"),
    ("calibration scores 1e9", set_scores(1e9), "'calibration' changed"),
    ("calibration scores -1e9", set_scores(-1e9), "'calibration' changed"),
    ("calibration out of order", set_one_score(0, 1e9), "calibration.scores are not in ascending order"),
    ("alpha 0.5", alpha, "'calibration' changed"),
    ("two features swapped", swap_features, "'features' changed"),
    ("a category renamed", rename_category, "'features' changed"),
    ("another model, its digest updated", another_model, "'onnx_sha256' changed"),
    ("another model, its digest and file record updated", another_model_and_its_record, "field 'integrity'"),
    ("the model renamed", rename_model, "'name' changed"),
    ("a field added", add_field, "'label_column' changed"),
    ("a new field", new_field, "'threshold_override' added"),
    ("a field removed", drop_field, "'dropped_columns' removed"),
    ("the record forged", forge_record, "field 'integrity'"),
    ("the record replaced", broken_record, "field 'integrity' is not a record"),
]


@pytest.mark.parametrize(("name", "change", "says"), EDITS, ids=[e[0] for e in EDITS])
def test_each_manifest_edit_is_refused_naming_the_field(bundle_dir: Path, name: str, change: Edit, says: str) -> None:
    load_bundle(bundle_dir)
    edit_manifest(bundle_dir, change)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert says in str(info.value)
    assert MANIFEST_FILE in str(info.value)


def test_the_record_covers_every_file_of_the_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / DECODER_FILE).write_bytes(b"a decoder graph")
    (bundle / ".partial").write_bytes(b"a writer's temporary file")
    write_bundle(bundle)
    record = read(bundle)[INTEGRITY_KEY]
    assert sorted(record["files"]) == [DECODER_FILE, ONNX_FILE]
    assert set(record["fields"]) == set(read(bundle)) - {INTEGRITY_KEY}
    load_bundle(bundle)
    (bundle / DECODER_FILE).write_bytes(b"another decoder graph")
    with pytest.raises(BundleError, match=r"decoder\.onnx: sha256 .* does not match the manifest's 'integrity' record"):
        load_bundle(bundle)
    (bundle / DECODER_FILE).unlink()
    with pytest.raises(BundleError, match=r"decoder\.onnx is missing \(the manifest's 'integrity' record lists it\)"):
        load_bundle(bundle)


def test_files_outside_the_record_do_not_matter(bundle_dir: Path) -> None:
    (bundle_dir / "report").mkdir()
    (bundle_dir / "report" / "index.html").write_text("<html></html>")
    (bundle_dir / "NOTES.txt").write_text("added by hand after training")
    assert load_bundle(bundle_dir).manifest.name == "fixture"


def test_a_copy_loads_and_a_reformatted_manifest_too(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    load_bundle(copy)
    edit_manifest(copy, lambda data, bundle: None)  # same content, other layout
    (copy / MANIFEST_FILE).write_text(json.dumps(read(copy), separators=(",", ":"), sort_keys=True))
    assert load_bundle(copy).manifest == load_bundle(bundle_dir).manifest


def test_a_manifest_without_a_record_loads_with_a_warning(bundle_dir: Path, caplog) -> None:
    edit_manifest(bundle_dir, lambda data, bundle: data.pop(INTEGRITY_KEY))
    with caplog.at_level(logging.WARNING, logger="service.bundle"):
        bundle = load_bundle(bundle_dir)
    assert bundle.manifest.integrity is None
    assert any("has no integrity record" in r.getMessage() for r in caplog.records)
    # Its graph's digest is still checked.
    (bundle_dir / ONNX_FILE).write_bytes(make_graph_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 .* does not match"):
        load_bundle(bundle_dir)


def test_a_calibration_too_small_for_its_alpha_loads_with_a_warning(make_bundle, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="service.bundle"):
        load_bundle(make_bundle(scores=[1.0] * 19, alpha=ALPHA))
    assert any("19 scores, too few for alpha 0.05" in r.getMessage() for r in caplog.records)
    assert any("at least 20 scores" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.bundle"):
        load_bundle(make_bundle("enough", scores=[1.0] * 20, alpha=ALPHA))
    assert not [r for r in caplog.records if "too few for alpha" in r.getMessage()]


@pytest.mark.parametrize(
    ("scores", "says"),
    [([], "holds no scores"), ([1.0, float("nan")], "calibration.scores[1] is nan"), ([2.0, 1.0], "ascending")],
)
def test_a_bad_calibration_cannot_be_written(make_bundle, scores: list[float], says: str) -> None:
    with pytest.raises(BundleError, match=rf"manifest\.json: .*{re.escape(says)}"):
        make_bundle(scores=scores)


def test_sign_records_an_old_bundle_as_it_is(bundle_dir: Path, capsys, caplog) -> None:
    from service.cli import main

    edit_manifest(bundle_dir, lambda data, bundle: data.pop(INTEGRITY_KEY))
    assert main(["sign", str(bundle_dir)]) == 0
    assert "integrity record written" in capsys.readouterr().out
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.bundle"):
        assert load_bundle(bundle_dir).manifest.integrity is not None
    assert not [r for r in caplog.records if "integrity" in r.getMessage()]
    assert main(["sign", str(bundle_dir)]) == 0
    assert "already has an integrity record" in capsys.readouterr().out
    edit_manifest(bundle_dir, alpha)
    assert main(["sign", str(bundle_dir)]) == 2
    assert "'calibration' changed" in capsys.readouterr().err

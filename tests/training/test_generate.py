"""decoder.onnx and the serving side's generation: parity, digest, types, interpolation, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from service.bundle import DECODER_FILE, NUMERIC_MEAN, NUMERIC_STD, decoder_output_names, file_sha256, load_bundle
from service.errors import BundleError, InvalidInput
from service.features import encode_frame
from service.generate import Generator, interpolate, sample_rows
from service.scorer import Scorer
from tests.training.tables import QUICK, mixed_table
from training.decoder_export import DecoderGraph, decoder_torch_outputs
from training.pipeline import TrainResult, train_bundle


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_bundle(mixed_table(), tmp_path_factory.mktemp("gen") / "bundle", overrides=QUICK)


def _copy(trained: TrainResult, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained.bundle_dir, tmp_path / "copy"))


@pytest.mark.slow
def test_the_bundle_records_and_verifies_its_decoder(trained: TrainResult) -> None:
    bundle = load_bundle(trained.bundle_dir)
    assert bundle.decoder_path == trained.bundle_dir / DECODER_FILE
    assert bundle.manifest.decoder_sha256 == file_sha256(bundle.decoder_path)
    session = ort.InferenceSession(str(bundle.decoder_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z"]
    assert session.get_inputs()[0].shape[1] == bundle.manifest.latent_dim
    names = [o.name for o in session.get_outputs()]
    assert names == decoder_output_names(bundle.manifest.features)
    assert names == [NUMERIC_MEAN, NUMERIC_STD, "category_probs_3", "category_probs_4"]
    assert trained.manifest.training["decoder_parity_max_relative_error"] <= 1e-4


@pytest.mark.slow
def test_decoder_matches_torch_on_prior_and_wide_draws(trained: TrainResult) -> None:
    graph = DecoderGraph(trained.graph.preprocessor, trained.graph.model)
    rng = np.random.default_rng(1)
    z = np.concatenate(
        [
            rng.standard_normal((200, trained.manifest.latent_dim)),
            6 * rng.standard_normal((50, trained.manifest.latent_dim)),
        ]
    )
    z = z.astype(np.float32)
    session = ort.InferenceSession(str(trained.bundle_dir / DECODER_FILE), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ort_out = dict(zip(names, session.run(None, {"z": z}), strict=True))
    torch_out = decoder_torch_outputs(graph, z, names)
    for name in names:
        np.testing.assert_allclose(ort_out[name], torch_out[name], rtol=1e-4, atol=1e-5)
        assert np.isfinite(ort_out[name]).all()


@pytest.mark.slow
def test_decoder_outputs_are_in_raw_units_and_agree_with_model_onnx(trained: TrainResult) -> None:
    """At a row's latent mean the decoder's means / top categories are model.onnx's ``expected``."""
    scorer = Scorer.open(trained.bundle_dir, device="cpu")
    generator = Generator.open(trained.bundle_dir)
    x = encode_frame(mixed_table(50, seed=3), scorer.manifest.features).x
    out = scorer.run(x)
    decoded = generator.decode(out["latent"])
    numeric = [j for j, f in enumerate(scorer.manifest.features) if not f.is_categorical]
    np.testing.assert_allclose(decoded.numeric_mean, out["expected"][:, numeric], rtol=1e-4, atol=1e-4)
    for k, j in enumerate([3, 4]):
        np.testing.assert_allclose(decoded.category_probs[k].sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(decoded.category_probs[k].argmax(1), out["expected"][:, j])
    model = trained.graph.model
    std = (torch.exp(0.5 * model.decoder_log_var()) * trained.graph.preprocessor.scale).detach().numpy()
    np.testing.assert_allclose(decoded.numeric_std, np.broadcast_to(std, decoded.numeric_std.shape), rtol=1e-5)
    scales = np.array([f.scale for f in scorer.manifest.features if not f.is_categorical])
    assert np.all(decoded.numeric_std < 3 * scales)  # a fitted decoder is no wider than the data


@pytest.mark.slow
def test_a_changed_or_missing_decoder_is_refused(trained: TrainResult, tmp_path: Path) -> None:
    path = _copy(trained, tmp_path)
    data = bytearray((path / DECODER_FILE).read_bytes())
    data[-1] ^= 1
    (path / DECODER_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder.onnx: sha256 .* does not match"):
        load_bundle(path)
    (path / DECODER_FILE).unlink()
    with pytest.raises(BundleError, match=r"records decoder.onnx, but the file is missing"):
        load_bundle(path)


@pytest.mark.slow
def test_a_manifest_from_before_generation_still_loads(trained: TrainResult, tmp_path: Path) -> None:
    path = _copy(trained, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["decoder_sha256"]
    del manifest["integrity"]  # a manifest from before generation has no integrity record either
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / DECODER_FILE).unlink()
    bundle = load_bundle(path)
    assert bundle.decoder_path is None
    assert len(Scorer.open(bundle, device="cpu").run(np.zeros((2, 5), dtype=np.float32))["neg_elbo"]) == 2
    with pytest.raises(BundleError, match=r"has no decoder\.onnx"):
        sample_rows(path, 5)


@pytest.mark.slow
def test_samples_have_the_training_columns_and_types(trained: TrainResult) -> None:
    rows = sample_rows(trained.bundle_dir, 300, seed=3)
    assert list(rows.columns) == ["load", "power", "count", "site", "flag"]
    assert len(rows) == 300
    assert rows["count"].dtype == np.int64
    assert rows["flag"].dtype == bool
    assert rows["load"].dtype == np.float64
    assert set(rows["site"]) <= {"north", "south", "east"}
    assert rows.notna().all().all()
    assert rows["flag"].nunique() == 2
    assert rows["site"].nunique() == 3
    pd.testing.assert_frame_equal(rows, sample_rows(trained.bundle_dir, 300, seed=3))
    assert not rows.equals(sample_rows(trained.bundle_dir, 300, seed=4))
    with pytest.raises(InvalidInput, match="number of rows"):
        sample_rows(trained.bundle_dir, 0)


@pytest.mark.slow
def test_the_manifest_compares_synthetic_and_training_columns(trained: TrainResult) -> None:
    summary = trained.manifest.training["synthetic_vs_training"]
    columns = summary["columns"]
    assert set(columns) == {"load", "power", "count", "site", "flag"}
    assert columns["load"]["metric"] == "ks"
    assert columns["site"]["metric"] == "total_variation"
    assert set(columns["site"]["training"]) == {"north", "south", "east"}
    assert abs(sum(columns["site"]["synthetic"].values()) - 1.0) < 1e-6
    assert all(0.0 <= c["distance"] <= 1.0 for c in columns.values())
    assert summary["max_distance"] == max(c["distance"] for c in columns.values())
    assert summary["max_distance"] < 0.5  # even a 300-step model is far from disjoint


@pytest.mark.slow
def test_interpolation_walks_from_one_row_to_the_other(trained: TrainResult) -> None:
    frame = mixed_table(30, seed=11)
    path = interpolate(trained.bundle_dir, frame, 2, 7, 6)
    assert list(path.columns) == ["step", "t", "load", "power", "count", "site", "flag", "neg_elbo", "p_value"]
    assert path["step"].tolist() == list(range(6))
    np.testing.assert_allclose(path["t"], np.linspace(0, 1, 6))
    scorer = Scorer.open(trained.bundle_dir, device="cpu")
    ends = scorer.score_frame(frame.iloc[[2, 7]], explain=True)
    np.testing.assert_allclose(path["load"].iloc[[0, -1]], ends["expected_load"], rtol=1e-4, atol=1e-4)
    assert path["site"].iloc[[0, -1]].tolist() == ends["expected_site"].tolist()
    assert path["count"].dtype == np.int64
    assert path["flag"].dtype == bool
    loads = path["load"].to_numpy()
    assert np.all(np.diff(loads) > 0) or np.all(np.diff(loads) < 0) or np.ptp(loads) < 1e-3
    again = scorer.score_frame(path[["load", "power", "count", "site", "flag"]])
    np.testing.assert_allclose(path["neg_elbo"], again["neg_elbo"], rtol=1e-5)
    assert ((path["p_value"] > 0) & (path["p_value"] <= 1)).all()


@pytest.mark.parametrize(
    ("rows", "steps", "message"),
    [
        ((0, 30), 4, r"--to row 30 is out of range: input has 30 rows, numbered 0 to 29"),
        ((-1, 3), 4, r"--from row -1 is out of range: input has 30 rows"),
        ((0, 3), 1, r"--steps must be a whole number from 2"),
    ],
)
@pytest.mark.slow
def test_bad_rows_and_steps_are_named(trained: TrainResult, rows: tuple, steps: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        interpolate(trained.bundle_dir, mixed_table(30), rows[0], rows[1], steps)


def _latentwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_sample_and_interpolate_commands(trained: TrainResult, tmp_path: Path) -> None:
    bundle = str(trained.bundle_dir)
    done = _latentwatch("sample", "--model", bundle, "--rows", "40", "--output", str(tmp_path / "s.parquet"))
    assert done.returncode == 0, done.stderr
    parquet = pd.read_parquet(tmp_path / "s.parquet")
    assert len(parquet) == 40
    assert parquet["flag"].dtype == bool
    assert parquet["count"].dtype == np.int64
    done = _latentwatch("sample", "--model", bundle, "--rows", "40", "--output", str(tmp_path / "s.csv"), "--seed", "0")
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv"), parquet, check_dtype=False, atol=1e-9)

    mixed_table(20, seed=2).to_csv(tmp_path / "rows.csv", index=False)
    args = ["interpolate", "--model", bundle, "--data", str(tmp_path / "rows.csv"), "--from", "1", "--to", "4"]
    printed = _latentwatch(*args, "--steps", "3")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.strip().splitlines()
    assert lines[0].split() == ["step", "t", "load", "power", "count", "site", "flag", "neg_elbo", "p_value"]
    assert len(lines) == 4
    written = _latentwatch(*args, "--steps", "5", "--output", str(tmp_path / "path.csv"))
    assert written.returncode == 0, written.stderr
    assert len(pd.read_csv(tmp_path / "path.csv")) == 5
    wrong = _latentwatch(
        "interpolate", "--model", bundle, "--data", str(tmp_path / "rows.csv"), "--from", "0", "--to", "20"
    )
    assert wrong.returncode == 2
    assert "--to row 20 is out of range" in wrong.stderr
    assert "has 20 rows" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_generation_never_imports_torch() -> None:
    code = (
        "import sys, service.generate, service.tables\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'sklearn', 'matplotlib')]\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr

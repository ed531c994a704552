"""Training every model type end to end: bundle, ONNX parity, determinism, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.bundle import OUTPUT_NAMES, load_bundle
from service.features import encode_frame
from service.scorer import Scorer
from tests.training.tables import QUICK, mixed_table
from training.export import category_probabilities, parity_error, torch_outputs
from training.pipeline import train_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    frame = mixed_table()
    out = {}
    for model, extra in (("vae", {}), ("aae", {}), ("ae", {"denoise": 0.1})):
        path = tmp_path_factory.mktemp(model) / "bundle"
        out[model] = train_bundle(frame, path, model=model, overrides={**QUICK, **extra})
    return out


@pytest.mark.parametrize("model", ["vae", "aae", "ae"])
@pytest.mark.slow
def test_bundle_loads_with_every_output(bundles: dict, model: str) -> None:
    bundle = load_bundle(bundles[model].bundle_dir)
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    assert bundle.manifest.model_type == model
    kinds = {f.name: f.kind for f in bundle.manifest.features}
    assert kinds == {
        "load": "numeric",
        "power": "numeric",
        "count": "numeric",
        "site": "categorical",
        "flag": "categorical",
    }


@pytest.mark.parametrize("model", ["vae", "ae"])
@pytest.mark.slow
def test_category_probabilities_are_what_expected_names(bundles: dict, model: str) -> None:
    result = bundles[model]
    x = encode_frame(mixed_table(50, seed=7), result.manifest.features).x
    probabilities = category_probabilities(result.graph, x)
    columns = [j for j, f in enumerate(result.manifest.features) if f.kind == "categorical"]
    assert sorted(probabilities) == columns
    expected = torch_outputs(result.graph, x)["expected"]
    for column, probs in probabilities.items():
        assert probs.shape == (50, len(result.manifest.features[column].categories))
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(probs.argmax(1), expected[:, column])


@pytest.mark.parametrize("model", ["vae", "aae", "ae"])
@pytest.mark.slow
def test_onnx_matches_torch_on_real_and_random_rows(bundles: dict, model: str) -> None:
    result = bundles[model]
    graph = result.graph
    frame = mixed_table(200, seed=5)
    x = encode_frame(frame, result.manifest.features).x
    rng = np.random.default_rng(0)
    random_rows = rng.normal(scale=5, size=(100, x.shape[1])).astype(np.float32)
    random_rows[:, 3] = rng.integers(-1, 4, 100)  # site codes, -1 = missing, 3 = unseen
    random_rows[:, 4] = rng.integers(-1, 3, 100)
    random_rows[rng.random(random_rows.shape) < 0.1] = np.nan
    both = np.concatenate([x, random_rows])
    session = ort.InferenceSession(str(result.bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    ort_out = dict(zip(OUTPUT_NAMES, session.run(None, {"x": both}), strict=True))
    assert parity_error(torch_outputs(graph, both), ort_out) <= 1e-4
    assert all(np.isfinite(ort_out[name]).all() for name in OUTPUT_NAMES)


@pytest.mark.slow
def test_scores_are_deterministic_and_independent_of_the_batch(bundles: dict) -> None:
    scorer = Scorer.open(bundles["vae"].bundle_dir, device="cpu")
    x = encode_frame(mixed_table(64, seed=9), scorer.manifest.features).x
    whole = scorer.run(x)
    again = scorer.run(x)
    alone = [scorer.run(x[i : i + 1])["neg_elbo"][0] for i in range(8)]
    np.testing.assert_array_equal(whole["neg_elbo"], again["neg_elbo"])
    np.testing.assert_allclose(whole["neg_elbo"][:8], alone, rtol=1e-5)


@pytest.mark.slow
def test_same_seed_same_bundle_scores(tmp_path: object, quick: dict) -> None:
    frame = mixed_table(200)
    a = train_bundle(frame, tmp_path / "a", seed=3, overrides=quick)
    b = train_bundle(frame, tmp_path / "b", seed=3, overrides=quick)
    assert a.manifest.calibration.scores == b.manifest.calibration.scores


@pytest.mark.slow
def test_restarts_keep_the_best_validation_loss_and_restart_zero_is_the_plain_run(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(200)
    plain = train_bundle(frame, tmp_path / "plain", seed=3, overrides=quick)
    three = train_bundle(frame, tmp_path / "three", seed=3, overrides={**quick, "restarts": 3})

    restarts = three.manifest.training["restarts"]
    losses = restarts["validation_losses"]
    assert len(losses) == 3
    assert losses[0] == pytest.approx(plain.fit.best_val)  # restart 0 is the run without restarts
    assert restarts["kept"] == int(np.argmin(losses))
    assert three.fit.best_val == min(losses)
    assert len(set(losses)) == 3  # the other restarts really start elsewhere


@pytest.mark.slow
def test_manifest_records_settings_calibration_and_digest(bundles: dict) -> None:
    manifest = json.loads((bundles["vae"].bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["settings"]["model"] == "vae"
    trained_on = manifest["training"]["trained_on"]  # device "auto": CUDA where torch sees it
    assert trained_on["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert trained_on["torch"] == torch.__version__
    assert manifest["calibration"]["score"] == "neg_elbo"
    assert manifest["calibration"]["alpha"] == 0.01
    scores = manifest["calibration"]["scores"]
    assert scores == sorted(scores)
    assert len(scores) == 80
    site = next(f for f in manifest["features"] if f["name"] == "site")
    assert site["categories"] == ["north", "south", "east"]
    power = next(f for f in manifest["features"] if f["name"] == "power")
    assert power["missing_in_training"] > 0


@pytest.mark.slow
def test_kl_is_zero_for_the_plain_autoencoder(bundles: dict) -> None:
    scorer = Scorer.open(bundles["ae"].bundle_dir, device="cpu")
    scores = scorer.score(encode_frame(mixed_table(50, seed=2), scorer.manifest.features).x)
    assert np.all(scores.kl == 0)
    np.testing.assert_allclose(scores.neg_elbo, scores.feature_scores.sum(1), rtol=1e-5)


@pytest.mark.slow
def test_missing_values_add_nothing_to_the_likelihood(bundles: dict) -> None:
    scorer = Scorer.open(bundles["vae"].bundle_dir, device="cpu")
    x = encode_frame(mixed_table(20, seed=4), scorer.manifest.features).x
    x[:, 1] = np.nan
    x[:, 3] = -1
    out = scorer.run(x)
    assert np.all(out["feature_scores"][:, 1] == 0)
    assert np.all(out["feature_scores"][:, 3] == 0)
    assert np.isfinite(out["neg_elbo"]).all()


@pytest.mark.slow
def test_a_failed_run_keeps_the_old_bundle(tmp_path: object, quick: dict) -> None:
    good = train_bundle(mixed_table(200), tmp_path / "b", overrides=quick)
    before = (good.bundle_dir / "manifest.json").read_text()
    with pytest.raises(Exception, match="setting 'draws'"):
        train_bundle(mixed_table(200), tmp_path / "b", overrides={**quick, "draws": 0})
    assert (tmp_path / "b" / "manifest.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.tmp")]


@pytest.mark.parametrize("columns", [["site", "flag"], ["load", "power"]])
@pytest.mark.slow
def test_tables_of_one_kind_export_and_score(tmp_path: Path, quick: dict, columns: list[str]) -> None:
    frame = mixed_table(200)[columns]
    result = train_bundle(frame, tmp_path / "b", overrides=quick)
    scorer = Scorer.open(result.bundle_dir, device="cpu")
    scores = scorer.score(encode_frame(frame, scorer.manifest.features).x)
    assert np.isfinite(scores.neg_elbo).all()
    assert scores.feature_scores.shape == (200, 2)


@pytest.mark.parametrize("columns", [["load", "power", "site"], ["site", "flag", "load"]])
@pytest.mark.slow
def test_the_graph_copies_no_likelihoods_into_the_manifests_order(
    tmp_path: Path, quick: dict, columns: list[str]
) -> None:
    """The manifest keeps the table's order; the graph puts only its (N, F) outputs in it, once each."""
    import onnx

    result = train_bundle(mixed_table(200)[columns], tmp_path / "b", overrides=quick)
    assert result.manifest.feature_names == columns
    graph = onnx.load(str(result.bundle_dir / "model.onnx")).graph
    reordered = [n.output[0] for n in graph.node if any("to_manifest_order" in name for name in n.input)]
    assert reordered == ([] if columns[0] == "load" else ["feature_scores", "expected"])


def test_columns_in_another_order_are_put_in_the_manifests() -> None:
    from training.models import VAE, Architecture

    arch = Architecture(
        n_inputs=4, n_numeric=1, group_sizes=(3,), feature_order=(1, 0), hidden=4, depth=1, latent_dim=2, min_scale=0.01
    )
    numeric, categorical = torch.tensor([[1.0]]), torch.tensor([[2.0]])
    assert VAE(arch).manifest_ordered([numeric, categorical]).tolist() == [[2.0, 1.0]]

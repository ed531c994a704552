"""The VAE-GAN and the hierarchical VAE end to end: contract, ONNX parity, decoder, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.bundle import DECODER_FILE, OUTPUT_NAMES, load_bundle
from service.cli import build_parser
from service.errors import ConfigError
from service.features import encode_frame
from service.generate import Generator
from service.scorer import Scorer
from tests.training.tables import QUICK, mixed_table
from training import likelihood
from training.config import TrainSettings, make_settings, resolve, resolve_prior
from training.decoder_export import DecoderGraph, decoder_torch_outputs
from training.export import parity_error, torch_outputs
from training.models import VAEGAN, Architecture, Batch, build_model
from training.models.hvae import HVAE, group_sizes
from training.pipeline import TrainResult, train_bundle

MODELS = ["vaegan", "hvae"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainResult]:
    frame = mixed_table()
    return {m: train_bundle(frame, tmp_path_factory.mktemp(m) / "bundle", model=m, overrides=QUICK) for m in MODELS}


def _rows(result: TrainResult) -> np.ndarray:
    x = encode_frame(mixed_table(200, seed=5), result.manifest.features).x
    rng = np.random.default_rng(0)
    random_rows = rng.normal(scale=5, size=(100, x.shape[1])).astype(np.float32)
    random_rows[:, 3] = rng.integers(-1, 4, 100)  # site codes, -1 = missing, 3 = unseen
    random_rows[:, 4] = rng.integers(-1, 2, 100)
    random_rows[rng.random(random_rows.shape) < 0.1] = np.nan
    return np.concatenate([x, random_rows])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_bundle_has_the_contract_outputs_and_a_decoder(bundles: dict, model: str) -> None:
    bundle = load_bundle(bundles[model].bundle_dir)
    assert bundle.manifest.model_type == model
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    assert bundle.decoder_path == bundle.path / DECODER_FILE
    scored = Scorer.open(bundle, device="cpu").score_frame(mixed_table(30, seed=1), explain=True, latent=True)
    assert scored["p_value"].between(0, 1).all()
    assert scored.filter(like="expected_").shape[1] == 5


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_onnx_matches_torch_on_real_and_random_rows(bundles: dict, model: str) -> None:
    result = bundles[model]
    x = _rows(result)
    session = ort.InferenceSession(str(result.bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ort_out = dict(zip(names, session.run(None, {"x": x}), strict=True))
    torch_out = torch_outputs(result.graph, x)
    assert set(torch_out) == set(names)
    assert parity_error(torch_out, ort_out) <= 1e-4
    assert all(np.isfinite(v).all() for v in ort_out.values())


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_decoder_matches_torch_and_reproduces_expected(bundles: dict, model: str) -> None:
    result = bundles[model]
    graph = DecoderGraph(result.graph.preprocessor, result.graph.model)
    z = np.random.default_rng(3).standard_normal((300, result.manifest.latent_dim)).astype(np.float32)
    session = ort.InferenceSession(str(result.bundle_dir / DECODER_FILE), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ort_out = dict(zip(names, session.run(None, {"z": z}), strict=True))
    assert parity_error(decoder_torch_outputs(graph, z, names), ort_out) <= 1e-4
    # Decoding a row's ``latent`` (for hvae: through the top-down path) gives its ``expected``.
    scorer = Scorer.open(result.bundle_dir, device="cpu")
    out = scorer.run(encode_frame(mixed_table(40, seed=6), scorer.manifest.features).x)
    decoded = Generator.open(result.bundle_dir).decode(out["latent"])
    np.testing.assert_allclose(decoded.numeric_mean, out["expected"][:, :3], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(decoded.category_probs[0].argmax(1), out["expected"][:, 3])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_scores_are_deterministic_and_independent_of_the_batch(bundles: dict, model: str) -> None:
    scorer = Scorer.open(bundles[model].bundle_dir, device="cpu")
    x = encode_frame(mixed_table(64, seed=9), scorer.manifest.features).x
    whole, again = scorer.run(x), scorer.run(x)
    alone = [scorer.run(x[i : i + 1]) for i in range(6)]
    for name in whole:
        np.testing.assert_array_equal(whole[name], again[name])
        np.testing.assert_allclose(whole[name][:6], np.concatenate([a[name] for a in alone]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_same_seed_same_bundle(tmp_path: Path, model: str) -> None:
    frame = mixed_table(120)
    settings = {**QUICK, "max_steps": 60, "warmup_steps": 20}
    a = train_bundle(frame, tmp_path / "a", model=model, seed=2, overrides=settings)
    b = train_bundle(frame, tmp_path / "b", model=model, seed=2, overrides=settings)
    assert a.manifest.calibration.scores == b.manifest.calibration.scores
    assert a.manifest.decoder_sha256 == b.manifest.decoder_sha256


@pytest.mark.slow
def test_neg_elbo_sums_the_likelihood_and_every_group_kl(bundles: dict) -> None:
    result = bundles["hvae"]
    model = result.graph.model
    assert isinstance(model, HVAE)
    assert sum(model.group_sizes) == result.manifest.latent_dim
    scorer = Scorer.open(result.bundle_dir, device="cpu")
    out = scorer.run(encode_frame(mixed_table(50, seed=2), scorer.manifest.features).x)
    np.testing.assert_allclose(out["neg_elbo"], out["feature_scores"].sum(1) + out["kl"], rtol=1e-5)
    assert (out["kl"] > 0).all()
    batch = result.graph.preprocess(torch.from_numpy(encode_frame(mixed_table(50, seed=2), result.manifest.features).x))
    with torch.no_grad():
        _, m, log_var = model._walk(batch.enc_in, result.graph.eps.unsqueeze(1))
        per_group = [
            (0.5 * (m[..., s:e].pow(2) + log_var[..., s:e].exp() - 1 - log_var[..., s:e])).sum(-1).mean(0)
            for s, e in ((0, model.group_sizes[0]), (model.group_sizes[0], result.manifest.latent_dim))
        ]
    np.testing.assert_allclose(out["kl"], (per_group[0] + per_group[1]).numpy(), rtol=1e-4)


@pytest.mark.slow
def test_the_prior_path_gives_rows_like_the_training_rows(bundles: dict) -> None:
    for model in MODELS:
        summary = bundles[model].manifest.training["synthetic_vs_training"]
        assert summary["max_distance"] < 0.3, (model, summary["columns"])


def test_settings_and_command_line_know_the_new_models() -> None:
    for model in MODELS:
        settings = make_settings(model=model)
        assert resolve(settings, n_train=400, n_features=5, n_inputs=9).warmup_steps >= 500  # KL is warmed up
        args = build_parser().parse_args(["train", "--data", "t.csv", "--out", "b", "--model", model])
        assert args.model == model
    assert resolve(TrainSettings(model="aae"), n_train=400, n_features=5, n_inputs=9).warmup_steps == 0
    with pytest.raises(ConfigError, match="at least 2 for --model hvae"):
        make_settings(model="hvae", latent_dim=1)
    assert group_sizes(5) == (3, 2)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        group_sizes(1)


def test_the_vaegan_trains_on_the_vaes_own_kl_so_free_bits_and_the_prior_apply() -> None:
    arch = Architecture(
        n_inputs=4, n_numeric=2, group_sizes=(2,), feature_order=(0, 1, 2), hidden=8, depth=1, latent_dim=3,
        min_scale=0.01,
    )  # fmt: skip
    batch = Batch(torch.randn(16, 4), torch.randn(16, 2), torch.ones(16, 2), torch.randint(-1, 3, (16, 1)))
    for free_bits in (0.0, 2.0):
        torch.manual_seed(0)
        net = build_model("vaegan", arch, free_bits=free_bits)
        assert isinstance(net, VAEGAN)
        assert net.free_bits == free_bits
        with torch.no_grad():
            mu, log_var = net.encode(batch.enc_in)
            expected = net.training_kl(mu, log_var).item()
        torch.manual_seed(1)
        losses = net.train_step(batch, net.configure_optimizers(1e-3, 0.0), beta=1.0)
        assert losses["kl"] == pytest.approx(expected, rel=1e-6)
    assert losses["kl"] >= arch.latent_dim * 2.0  # every dimension counts at least its free bits
    settings = make_settings({"free_bits": 1.0, "prior": "defensive"}, model="vaegan")
    assert (settings.free_bits, resolve_prior(settings)) == (1.0, "defensive")
    net.use_defensive_prior(mu, log_var)
    kl = net.score(batch, torch.randn(4, 3))["kl"]
    assert not torch.allclose(kl, likelihood.gaussian_kl(mu, log_var))  # scored against the bank, not N(0, I)

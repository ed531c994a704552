"""The VAE: its training objective (the plain ELBO, or free bits per latent dimension) and the
defensive prior its scores' KL term uses by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.features import encode_frame
from tests.training.tables import mixed_table
from training import likelihood
from training.export import torch_outputs
from training.models import VAE, Architecture
from training.pipeline import train_bundle


def _vae(free_bits: float) -> VAE:
    arch = Architecture(
        n_inputs=3, n_numeric=3, group_sizes=(), feature_order=(0, 1, 2), hidden=8, depth=1, latent_dim=2,
        min_scale=0.01,
    )  # fmt: skip
    return VAE(arch, free_bits=free_bits)


def test_without_free_bits_the_kl_term_is_the_mean_kl_per_row() -> None:
    mu, log_var = torch.randn(16, 2), torch.randn(16, 2)
    expected = likelihood.gaussian_kl(mu, log_var).mean()
    assert _vae(0.0).training_kl(mu, log_var) == pytest.approx(expected.item())


def test_free_bits_count_each_dimension_only_above_the_floor() -> None:
    # Dimension 0 holds 0.5 * 3^2 = 4.5 nats on every row; dimension 1 matches the prior (0 nats).
    mu = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])
    log_var = torch.zeros(2, 2)
    assert _vae(1.0).training_kl(mu, log_var) == pytest.approx(4.5 + 1.0)
    assert _vae(0.0).training_kl(mu, log_var) == pytest.approx(4.5)


@pytest.mark.slow
def test_free_bits_keep_more_information_in_the_code_and_scores_stay_the_elbo(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(300)
    standard = {**quick, "prior": "standard"}  # the KL to N(0, I) that training sees
    plain = train_bundle(frame, tmp_path / "plain", seed=1, overrides=standard)
    free = train_bundle(frame, tmp_path / "free", seed=1, overrides={**standard, "free_bits": 2.0})
    assert free.manifest.training["settings"]["free_bits"] == 2.0

    def mean_kl(result) -> float:
        rows = encode_frame(frame, result.manifest.features).x
        return float(torch_outputs(result.graph, rows)["kl"].mean())

    assert mean_kl(free) > mean_kl(plain)
    # Validation used the exact ELBO: the exported graph's holdout scores average to it.
    assert np.mean(free.manifest.calibration.scores) == pytest.approx(free.fit.best_val, rel=1e-4)


def test_without_a_prior_bank_the_kl_is_the_closed_form() -> None:
    vae = _vae(0.0).eval()
    mu, log_var = torch.randn(5, 2), torch.randn(5, 2)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(8, 1, 2)
    torch.testing.assert_close(vae.latent_penalty(mu, log_var, z), likelihood.gaussian_kl(mu, log_var))


def test_the_defensive_kl_is_the_draws_average_of_log_q_over_the_mixture_prior() -> None:
    vae = _vae(0.0).eval()
    bank_mu, bank_log_var = torch.tensor([[2.0, 0.0], [-2.0, 1.0]]), torch.tensor([[-1.0, 0.0], [0.0, -2.0]])
    vae.use_defensive_prior(bank_mu, bank_log_var)
    mu, log_var = torch.tensor([[0.5, -0.3]]), torch.tensor([[-0.5, 0.2]])
    z = mu + torch.exp(0.5 * log_var) * torch.randn(8, 1, 2)
    normal = torch.distributions.Normal
    log_q = normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
    log_bank = normal(bank_mu, torch.exp(0.5 * bank_log_var)).log_prob(z.unsqueeze(-2)).sum(-1)  # (8, 1, 2)
    log_standard = normal(0.0, 1.0).log_prob(z).sum(-1)
    log_prior = torch.log(0.5 * log_standard.exp() + 0.5 * log_bank.exp().mean(-1))
    torch.testing.assert_close(vae.latent_penalty(mu, log_var, z), (log_q - log_prior).mean(0))


@pytest.mark.slow
def test_the_default_scores_against_a_prior_built_from_fit_rows_only(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(300)
    default = train_bundle(frame, tmp_path / "default", seed=2, overrides=quick)
    standard = train_bundle(frame, tmp_path / "standard", seed=2, overrides={**quick, "prior": "standard"})
    assert default.manifest.training["resolved"]["prior"] == "defensive"
    assert standard.manifest.training["resolved"]["prior"] == "standard"
    fit_rows = default.manifest.training["rows"]["train"]
    assert default.graph.model.prior_bank_mu.shape == (fit_rows, default.manifest.latent_dim)
    assert standard.graph.model.prior_bank_mu.shape[0] == 0
    # Same weights, another prior: the reconstruction terms agree, the KL terms do not.
    rows = encode_frame(frame, default.manifest.features).x
    with_bank, without = torch_outputs(default.graph, rows), torch_outputs(standard.graph, rows)
    np.testing.assert_allclose(with_bank["feature_scores"], without["feature_scores"], rtol=1e-5)
    assert not np.allclose(with_bank["kl"], without["kl"], rtol=1e-2)
    # The prior puts mass where the encoder puts normal rows: their codes cost fewer nats.
    assert np.median(with_bank["kl"]) < np.median(without["kl"])

"""The VAE's training objective: the plain ELBO, or free bits per latent dimension."""

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


def test_free_bits_keep_more_information_in_the_code_and_scores_stay_the_elbo(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(300)
    plain = train_bundle(frame, tmp_path / "plain", seed=1, overrides=quick)
    free = train_bundle(frame, tmp_path / "free", seed=1, overrides={**quick, "free_bits": 2.0})
    assert free.manifest.training["settings"]["free_bits"] == 2.0

    def mean_kl(result) -> float:
        rows = encode_frame(frame, result.manifest.features).x
        return float(torch_outputs(result.graph, rows)["kl"].mean())

    assert mean_kl(free) > mean_kl(plain)
    # Validation used the exact ELBO: the exported graph's holdout scores average to it.
    assert np.mean(free.manifest.calibration.scores) == pytest.approx(free.fit.best_val, rel=1e-4)

"""The plain and denoising autoencoder: its code is the encoder's mean, its score has no
latent term, and the denoising noise touches training only."""

from __future__ import annotations

import torch

from tests.training.networks import batch_and_architecture
from training.models import AE


def test_scores_are_the_reconstruction_at_the_code_with_no_latent_term() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AE(arch).eval()
    with torch.no_grad():
        scores = model.score(batch, eps=torch.randn(4, 2))
        mu, _ = model.encode(batch.enc_in)
        expected = model.feature_nll(mu, batch)
    assert torch.equal(scores["kl"], torch.zeros(len(batch)))
    assert torch.equal(scores["latent"], mu)
    torch.testing.assert_close(scores["feature_scores"], expected)
    torch.testing.assert_close(scores["neg_elbo"], expected.sum(-1))


def test_without_noise_the_training_loss_is_the_mean_score() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AE(arch)
    loss, parts = model.training_loss(batch, beta=1.0)
    assert parts == {}
    with torch.no_grad():
        torch.testing.assert_close(loss, model.score(batch, torch.zeros(1, 2))["neg_elbo"].mean())


def test_denoising_corrupts_the_training_input_only() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AE(arch, noise=0.5)
    with torch.no_grad():
        clean = model.score(batch, torch.zeros(1, 2))["neg_elbo"].mean()
        torch.manual_seed(1)
        noisy, _ = model.training_loss(batch, beta=1.0)
        torch.manual_seed(2)
        other, _ = model.training_loss(batch, beta=1.0)
        again = model.score(batch, torch.zeros(1, 2))["neg_elbo"].mean()
    assert noisy != other  # a fresh corruption each step
    assert noisy != clean
    assert again == clean  # scoring never corrupts


def test_training_steps_lower_the_reconstruction_loss() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AE(arch, noise=0.1)
    optimizers = model.configure_optimizers(learning_rate=1e-2, weight_decay=0.0)
    with torch.no_grad():
        before = model.score(batch, torch.zeros(1, 2))["neg_elbo"].mean()
    for _ in range(50):
        model.train_step(batch, optimizers, beta=1.0)
    with torch.no_grad():
        after = model.score(batch, torch.zeros(1, 2))["neg_elbo"].mean()
    assert after < before

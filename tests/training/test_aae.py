"""The adversarial autoencoder: a latent discriminator instead of a KL term, three optimizers
per step, and scores whose latent term is the prior's negative log density of the code."""

from __future__ import annotations

import torch

from tests.training.networks import batch_and_architecture
from training import likelihood
from training.models import AAE


def test_the_latent_term_is_the_priors_negative_log_density_of_the_posterior_mean() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AAE(arch).eval()
    eps = torch.randn(8, arch.latent_dim)
    with torch.no_grad():
        scores = model.score(batch, eps)
        mu, _ = model.encode(batch.enc_in)
    torch.testing.assert_close(scores["kl"], likelihood.prior_nll(mu))
    torch.testing.assert_close(scores["neg_elbo"], scores["feature_scores"].sum(-1) + scores["kl"])
    with torch.no_grad():
        again = model.score(batch, eps)
    assert torch.equal(again["neg_elbo"], scores["neg_elbo"])  # fixed draws: deterministic


def test_the_discriminator_has_its_own_optimizer_and_the_autoencoder_never_trains_it() -> None:
    _, arch = batch_and_architecture()
    model = AAE(arch)
    reconstruction, discriminate, generate = model.configure_optimizers(learning_rate=1e-3, weight_decay=0.0)
    discriminator = {id(p) for p in model.discriminator.parameters()}

    def params(optimizer: torch.optim.Optimizer) -> set[int]:
        return {id(p) for group in optimizer.param_groups for p in group["params"]}

    assert params(discriminate) == discriminator
    assert not params(reconstruction) & discriminator
    assert not params(generate) & discriminator
    assert params(generate) < params(reconstruction)  # the encoder only: the decoder is not asked to fool


def test_a_training_step_runs_all_three_phases() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AAE(arch)
    optimizers = model.configure_optimizers(learning_rate=1e-2, weight_decay=0.0)
    decoder = [p.detach().clone() for p in model.decoder.parameters()]
    discriminator = [p.detach().clone() for p in model.discriminator.parameters()]
    losses = model.train_step(batch, optimizers, beta=1.0)
    assert set(losses) == {"loss", "d_loss", "g_loss"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(decoder, model.decoder.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(discriminator, model.discriminator.parameters(), strict=True))


def test_training_lowers_the_reconstruction_loss() -> None:
    batch, arch = batch_and_architecture()
    torch.manual_seed(0)
    model = AAE(arch)
    optimizers = model.configure_optimizers(learning_rate=1e-2, weight_decay=0.0)
    first = [model.train_step(batch, optimizers, beta=1.0)["loss"] for _ in range(5)]
    for _ in range(50):
        last = model.train_step(batch, optimizers, beta=1.0)["loss"]
    assert last < min(first)

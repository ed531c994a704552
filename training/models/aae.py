"""Adversarial autoencoder (Makhzani et al., 2015, "Adversarial Autoencoders").

The Gaussian encoder's codes are pushed toward the N(0, I) prior by a latent discriminator
instead of a KL term. Each step has a reconstruction phase (encoder and decoder on the
reconstruction negative log-likelihood of a reparameterized draw) and a regularization
phase (the discriminator learns prior draws from codes, then the encoder learns to fool it).

Scores: ``neg_elbo`` is the reconstruction negative log-likelihood (fixed draws) plus the
prior's negative log density of the posterior mean, ``-log N(mu; 0, I)``; ``kl`` holds that
prior term. It is not an ELBO, but it has the same shape: fit to the data plus how far
the code lies from where normal codes live.
"""

from __future__ import annotations

import torch
from torch import nn

from training import likelihood
from training.models.base import Architecture, Autoencoder, Batch, adamw, gan_loss, mlp, optimizer_step


class AAE(Autoencoder):
    def __init__(self, arch: Architecture) -> None:
        super().__init__(arch)
        self.discriminator = nn.Sequential(mlp(arch.latent_dim, arch.hidden, 2), nn.Linear(arch.hidden, 1))

    def latent_penalty(self, mu: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return likelihood.prior_nll(mu)

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        autoencoder = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        encoder = [
            *self.encoder.parameters(),
            *self.to_mu.parameters(),
            *self.to_log_var.parameters(),
        ]
        return [
            adamw(autoencoder, lr=learning_rate, weight_decay=weight_decay),
            adamw(self.discriminator.parameters(), lr=learning_rate / 2, betas=(0.5, 0.9)),
            adamw(encoder, lr=learning_rate / 2, betas=(0.5, 0.9)),
        ]

    def _codes(self, batch: Batch) -> torch.Tensor:
        mu, log_var = self.encode(batch.enc_in)
        return self.reparameterize(mu, log_var, torch.randn_like(mu))

    def train_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer], beta: float) -> dict[str, float]:
        reconstruction, discriminate, generate = optimizers
        nll = self.feature_nll(self._codes(batch), batch).sum(-1).mean()
        optimizer_step(reconstruction, nll)

        z_fake = self._codes(batch).detach()
        z_real = torch.randn_like(z_fake)
        real, fake = self.discriminator(z_real), self.discriminator(z_fake)
        d_loss = gan_loss(real, real=True) + gan_loss(fake, real=False)
        optimizer_step(discriminate, d_loss)

        fooled = self.discriminator(self._codes(batch))
        g_loss = gan_loss(fooled, real=True)
        optimizer_step(generate, g_loss)
        return {"loss": nll.item(), "d_loss": d_loss.item(), "g_loss": g_loss.item()}

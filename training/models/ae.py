"""Plain and denoising autoencoder.

The code is the encoder's mean (no sampling, no KL: ``kl`` is 0 and ``neg_elbo`` is the
reconstruction negative log-likelihood). With ``noise > 0`` it trains as a denoising
autoencoder: Gaussian noise of that std corrupts the encoder's input, the targets stay
clean; scoring never corrupts.
"""

from __future__ import annotations

import torch

from training.models.base import Architecture, Autoencoder, Batch


class AE(Autoencoder):
    stochastic = False

    def __init__(self, arch: Architecture, noise: float = 0.0) -> None:
        super().__init__(arch)
        self.noise = noise

    def latent_penalty(self, mu: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(mu[:, 0])

    def training_loss(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        enc_in = batch.enc_in
        if self.noise > 0:
            enc_in = enc_in + self.noise * torch.randn_like(enc_in)
        mu, _ = self.encode(enc_in)
        return self.feature_nll(mu, batch).sum(-1).mean(), {}

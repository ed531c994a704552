"""Variational autoencoder (Kingma and Welling, 2014) for mixed tabular rows.

Trained on the ELBO: reconstruction negative log-likelihood of a reparameterized draw
z = mu + sigma * eps plus beta * KL(q(z|x) || N(0, I)), with beta warmed up from 0.
"""

from __future__ import annotations

import torch

from training import likelihood
from training.models.base import Autoencoder, Batch


class VAE(Autoencoder):
    def train_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer], beta: float) -> dict[str, float]:
        (optimizer,) = optimizers
        mu, log_var = self.encode(batch.enc_in)
        z = self.reparameterize(mu, log_var, torch.randn_like(mu))
        nll = self.feature_nll(z, batch).sum(-1).mean()
        kl = likelihood.gaussian_kl(mu, log_var).mean()
        loss = nll + beta * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), "nll": nll.item(), "kl": kl.item()}

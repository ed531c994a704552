"""Variational autoencoder (Kingma and Welling, 2014) for mixed tabular rows.

Trained on the ELBO: reconstruction negative log-likelihood of a reparameterized draw
z = mu + sigma * eps plus beta * KL(q(z|x) || N(0, I)), with beta warmed up from 0.

With ``free_bits`` > 0 the training loss uses free bits (Kingma et al., 2016): each latent
dimension's KL, averaged over the batch, counts only above that many nats, so the KL
pressure cannot switch a dimension off before it has learned something. Only training
changes: validation, early stopping and every score use the exact ELBO.

The scores' KL term can use a *defensive* prior instead of N(0, I), set after training by
:meth:`VAE.use_defensive_prior` from a bank of fit rows' posteriors: half N(0, I), half the
mixture of those posteriors (the aggregate posterior, where the trained encoder actually puts
normal rows). A code in a region of the latent space that N(0, I) covers but normal rows never
reach then costs more nats; the ELBO stays a bound on log p(x) under the model with that prior.
With a prior bank the KL is estimated with the graph's fixed draws, E_q[log q(z|x) - log p(z)],
so it can be slightly negative for one row; without one it is the closed form.
"""

from __future__ import annotations

import torch

from training import likelihood
from training.models.base import Architecture, Autoencoder, Batch


class VAE(Autoencoder):
    def __init__(self, arch: Architecture, free_bits: float = 0.0) -> None:
        super().__init__(arch)
        self.free_bits = free_bits
        self.register_buffer("prior_bank_mu", torch.zeros(0, arch.latent_dim))
        self.register_buffer("prior_bank_log_var", torch.zeros(0, arch.latent_dim))

    def use_defensive_prior(self, mu: torch.Tensor, log_var: torch.Tensor) -> None:
        """Score the KL against ½ N(0, I) + ½ the mixture of these posteriors, ``(M, L)`` each."""
        self.prior_bank_mu = mu.detach().clone()
        self.prior_bank_log_var = log_var.detach().clone()

    def latent_penalty(self, mu: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.prior_bank_mu.shape[0] == 0:
            return likelihood.gaussian_kl(mu, log_var)
        log_q = likelihood.gaussian_log_density(z, mu, log_var)  # (K, N)
        log_prior = likelihood.defensive_prior_log_density(z, self.prior_bank_mu, self.prior_bank_log_var)
        return (log_q - log_prior).mean(0)

    def training_kl(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """The batch's KL term as the loss sees it: the mean KL per row, or its free-bits form."""
        if self.free_bits == 0:
            return likelihood.gaussian_kl(mu, log_var).mean()
        per_dimension = likelihood.gaussian_kl_per_dimension(mu, log_var).mean(0)
        return per_dimension.clamp(min=self.free_bits).sum()

    def training_terms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A reparameterized draw ``z`` ``(N, L)``, the batch's mean NLL at it and ``training_kl``."""
        mu, log_var = self.encode(batch.enc_in)
        z = self.reparameterize(mu, log_var, torch.randn_like(mu))
        nll = self.feature_nll(z, batch).sum(-1).mean()
        return z, nll, self.training_kl(mu, log_var)

    def training_loss(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _, nll, kl = self.training_terms(batch)
        return nll + beta * kl, {"nll": nll.detach(), "kl": kl.detach()}

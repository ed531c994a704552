"""VAE-GAN (Larsen et al., 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE whose decoder also plays against a discriminator in data space. The discriminator sees
rows in the model's data representation (standardized numerics, one-hot categories; a missing
value is 0 on both sides) and learns real training rows from two kinds of generated rows:
reconstructions (a draw of the decoder at z ~ q(z|x)) and prior samples (z ~ N(0, I)).
Generated rows are draws, not means: numerics ``mean + sigma * noise``, categories by
straight-through Gumbel-softmax, so they look like real rows to the discriminator.

Each step, as in the paper's Algorithm 1:

- encoder and decoder minimize ``nll + beta * kl + FEATURE_WEIGHT * feature_error``, where
  ``nll`` and ``kl`` are the VAE's own training terms (``VAE.training_terms``: free bits apply), and
  ``feature_error`` is the squared distance between the discriminator's last hidden layer on
  the row and on its reconstruction (the paper's reconstruction term measured in the
  discriminator's feature space); the decoder also minimizes ``ADVERSARIAL_WEIGHT`` times the
  non-saturating GAN loss of its reconstructions and prior samples (the encoder does not:
  that term sees ``z`` detached). Unlike the paper, the data-space likelihood ``nll`` stays in
  the objective: the bundle's scores are built on it.
- the discriminator minimizes the GAN loss (real vs reconstructions and prior samples).

Scores follow the contract exactly as the VAE's (``neg_elbo`` = reconstruction NLL + KL,
fixed draws, against the defensive prior when one is set): the discriminator shapes the
decoder in training and is not part of the scoring graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training import likelihood
from training.models.base import Architecture, Batch, adamw, gan_loss, mlp, optimizer_step
from training.models.vae import VAE

ADVERSARIAL_WEIGHT = 0.1  # decoder's GAN loss; small: the likelihood must stay well fitted
FEATURE_WEIGHT = 1.0  # reconstruction error in the discriminator's feature space
GUMBEL_TAU = 0.5  # temperature of the straight-through Gumbel-softmax draws of categories


class VAEGAN(VAE):
    def __init__(self, arch: Architecture, free_bits: float = 0.0) -> None:
        super().__init__(arch, free_bits=free_bits)
        n_data = arch.n_numeric + sum(arch.group_sizes)
        self.disc_features = mlp(n_data, arch.hidden, arch.depth)
        self.disc_head = nn.Linear(arch.hidden, 1)
        self.register_buffer("category_range", torch.arange(max(arch.group_sizes, default=1)))

    def _masks(self, batch: Batch) -> list[torch.Tensor]:
        """Per categorical group, ``(N, 1)`` 1.0 where the code is a known category."""
        sizes = self.arch.group_sizes
        return [likelihood.known_category(batch.codes[:, j], k).unsqueeze(-1) for j, k in enumerate(sizes)]

    def _real(self, batch: Batch) -> torch.Tensor:
        """The row as the discriminator sees it, ``(N, Fn + sum K)``."""
        parts = [batch.num * batch.observed]
        for j, size in enumerate(self.arch.group_sizes):
            parts.append(likelihood.one_hot(batch.codes[:, j], self.category_range[:size]))
        return torch.cat(parts, dim=-1)

    def _drawn(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """A differentiable draw of the decoder at ``z``, masked like ``batch``'s rows."""
        mean, logits = self.decode(z)
        numeric = mean + torch.exp(0.5 * self.decoder_log_var()) * torch.randn_like(mean)
        parts = [numeric * batch.observed]
        for group, mask in zip(logits, self._masks(batch), strict=True):
            parts.append(F.gumbel_softmax(group, tau=GUMBEL_TAU, hard=True) * mask)
        return torch.cat(parts, dim=-1)

    def discriminate(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden features ``(N, H)`` and the logit ``(N, 1)`` of "real training row"."""
        features = self.disc_features(rows)
        return features, self.disc_head(features)

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        disc = [p for n, p in self.named_parameters() if n.startswith("disc_")]
        rest = [p for n, p in self.named_parameters() if not n.startswith("disc_")]
        return [
            adamw(rest, lr=learning_rate, weight_decay=weight_decay),
            adamw(disc, lr=learning_rate / 2, betas=(0.5, 0.9)),
        ]

    def train_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer], beta: float) -> dict[str, float]:
        autoencoder, discriminator = optimizers
        z, nll, kl = self.training_terms(batch)
        real = self._real(batch)
        real_features, _ = self.discriminate(real)
        recon = self._drawn(z, batch)
        recon_features, _ = self.discriminate(recon)
        feature_error = (recon_features - real_features.detach()).pow(2).mean(-1).mean()
        recon_for_gan = self._drawn(z.detach(), batch)  # the GAN term trains the decoder, not the encoder
        prior = self._drawn(torch.randn_like(z), batch)
        fooled = torch.cat([self.discriminate(recon_for_gan)[1], self.discriminate(prior)[1]])
        g_loss = gan_loss(fooled, real=True)
        loss = nll + beta * kl + FEATURE_WEIGHT * feature_error + ADVERSARIAL_WEIGHT * g_loss
        optimizer_step(autoencoder, loss)

        real_logit = self.discriminate(real)[1]
        fake_logit = self.discriminate(torch.cat([recon_for_gan.detach(), prior.detach()]))[1]
        d_loss = gan_loss(real_logit, real=True) + gan_loss(fake_logit, real=False)
        optimizer_step(discriminator, d_loss)
        return {
            "loss": loss.item(),
            "nll": nll.item(),
            "kl": kl.item(),
            "feature_loss": feature_error.item(),
            "g_loss": g_loss.item(),
            "d_loss": d_loss.item(),
        }

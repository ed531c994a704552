"""MLP blocks and the ``Autoencoder`` template shared by AE, VAE and AAE.

A model sees preprocessed tensors (see ``training.preprocess.Preprocessor``):
``enc_in`` ``(N, D_in)``, ``num`` ``(N, Fn)``, ``observed`` ``(N, Fn)``, ``codes`` ``(N, Fc)``.
Subclasses fill in ``latent_penalty`` (the KL term or its stand-in) and ``training_loss`` (or
``train_step``, for models with more than one optimizer).
Scores are higher = more anomalous.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training import likelihood


@dataclass(frozen=True)
class Batch:
    """One batch of preprocessed rows."""

    enc_in: torch.Tensor
    num: torch.Tensor
    observed: torch.Tensor
    codes: torch.Tensor

    def __len__(self) -> int:
        return self.enc_in.shape[0]


@dataclass(frozen=True)
class Architecture:
    n_inputs: int
    n_numeric: int
    group_sizes: tuple[int, ...]
    feature_order: tuple[int, ...]  # output position of each [numeric..., categorical...]; see manifest_ordered
    hidden: int
    depth: int
    latent_dim: int
    min_scale: float
    bounded_decoder: bool = False  # see ``Autoencoder.decode``


def adamw(params: Iterable[nn.Parameter], **options: Any) -> torch.optim.AdamW:
    """AdamW with its fused kernel, on CPU as on CUDA: one call updates every parameter.

    On these small MLPs the optimizer's step is a quarter of a training step. The fused kernel
    does the same arithmetic as the foreach one up to float rounding (about 1e-7 after 200
    steps) and makes whole fits 1.15-1.22x faster (benchmarks/fit_speed.py).
    """
    return torch.optim.AdamW(params, fused=True, **options)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One gradient step of ``optimizer`` on ``loss``: clear its gradients, backpropagate, update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def gan_loss(logits: torch.Tensor, *, real: bool) -> torch.Tensor:
    """The discriminator's cross-entropy of ``logits`` against the label "real" (or "generated")."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def mlp(n_in: int, hidden: int, depth: int, *, normalized: bool = False) -> nn.Sequential:
    """``depth`` hidden layers: Linear, then LayerNorm when ``normalized``, then GELU."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(n_in if i == 0 else hidden, hidden))
        if normalized:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Gaussian encoder q(z|x), decoder p(x|z) with a mixed Gaussian/categorical likelihood."""

    stochastic = True  # False: the code is the posterior mean (plain AE)

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.encoder = mlp(arch.n_inputs, arch.hidden, arch.depth)
        self.to_mu = nn.Linear(arch.hidden, arch.latent_dim)
        self.to_log_var = nn.Linear(arch.hidden, arch.latent_dim)
        n_outputs = arch.n_numeric + sum(arch.group_sizes)
        self.decoder = nn.Sequential(
            mlp(arch.latent_dim, arch.hidden, arch.depth, normalized=arch.bounded_decoder),
            nn.Linear(arch.hidden, n_outputs),
        )
        # The bias is the decoder's own; this path adds only what grows with the code.
        self.linear_path = nn.Linear(arch.latent_dim, n_outputs, bias=False) if arch.bounded_decoder else None
        self.raw_log_var = nn.Parameter(torch.zeros(arch.n_numeric))
        inverse = [0] * len(arch.feature_order)
        for k, position in enumerate(arch.feature_order):
            inverse[position] = k
        self.register_buffer("to_manifest_order", torch.tensor(inverse, dtype=torch.long))
        self.in_manifest_order = inverse == list(range(len(inverse)))

    def manifest_ordered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """``[numeric..., categorical...]`` columns joined on the last axis, in ``feature_order``.

        The pipeline keeps that order (an identity ``feature_order``): the columns are returned as
        they are and the exported graph holds no copy of them, and the scoring graph puts its
        ``(N, F)`` outputs in manifest order once (``Preprocessor.manifest_ordered``). On mnist the
        copies here (a Concat and a Gather of each member's ``(draws, N, F)`` likelihoods) took
        about a sixth of the graph's time.
        """
        joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return joined if self.in_manifest_order else joined.index_select(-1, self.to_manifest_order)

    def encode(self, enc_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(enc_in)
        return self.to_mu(hidden), self.to_log_var(hidden).clamp(-12.0, 8.0)

    def reparameterize(self, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * log_var) * eps

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``z`` ``(..., N, L)`` to numeric means ``(..., N, Fn)`` and one logits tensor per group.

        A bounded decoder (``arch.bounded_decoder``) normalizes each hidden layer, so its MLP's
        outputs stay in one bounded range however far the code lies from the prior: an anomaly
        that the encoder maps far out cannot be reconstructed by extrapolating the decoder's
        curvature. Its linear path from the code keeps linear structure, which extrapolates.
        """
        out = self.decoder(z)
        if self.linear_path is not None:
            out = out + self.linear_path(z)
        mean = out[..., : self.arch.n_numeric]
        logits, start = [], self.arch.n_numeric
        for size in self.arch.group_sizes:
            logits.append(out[..., start : start + size])
            start += size
        return mean, logits

    def decoder_log_var(self) -> torch.Tensor:
        """Per-feature log-variance, floored at ``min_scale**2`` (standardized units)."""
        return torch.log(F.softplus(self.raw_log_var) + self.arch.min_scale**2)

    def feature_nll(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-feature negative log-likelihood in ``feature_order``, ``(..., N, F)``."""
        mean, logits = self.decode(z)
        parts = []
        if self.arch.n_numeric:
            parts.append(likelihood.gaussian_nll(batch.num, batch.observed, mean, self.decoder_log_var()))
        if logits:
            parts.append(likelihood.categorical_nll(batch.codes, logits))
        return self.manifest_ordered(parts)

    def latent_penalty(self, mu: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The per-row latent term added to the reconstruction NLL in ``neg_elbo``, ``(N,)``.

        ``z`` are the codes the reconstruction term was scored at: ``(K, N, L)`` fixed draws,
        or the posterior mean ``(N, L)`` for a deterministic model.
        """
        return likelihood.gaussian_kl(mu, log_var)

    def score(self, batch: Batch, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic scores of a batch; ``eps`` ``(K, L)`` are the fixed draws."""
        mu, log_var = self.encode(batch.enc_in)
        if self.stochastic:
            z = self.reparameterize(mu.unsqueeze(0), log_var.unsqueeze(0), eps.unsqueeze(1))  # (K, N, L)
        else:
            z = mu
        feature_nll = self.feature_nll(z, batch)
        feature_scores = feature_nll.mean(0) if self.stochastic else feature_nll
        kl = self.latent_penalty(mu, log_var, z)
        return {
            "neg_elbo": feature_scores.sum(-1) + kl,
            "kl": kl,
            "feature_scores": feature_scores,
            "latent": mu,
        }

    def configure_optimizers(self, learning_rate: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        return [adamw(self.parameters(), lr=learning_rate, weight_decay=weight_decay)]

    def training_loss(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch's loss (a scalar to minimize) and its parts, for models with one optimizer."""
        raise NotImplementedError

    def forward(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss: what ``DistributedDataParallel`` runs, so that it can average the gradients."""
        return self.training_loss(batch, beta)

    def train_step(
        self,
        batch: Batch,
        optimizers: list[torch.optim.Optimizer],
        beta: float,
        *,
        module: nn.Module | None = None,
    ) -> dict[str, float]:
        """One gradient step on ``batch``; returns the losses for the progress display.

        ``module`` runs the loss instead of the model itself: its ``DistributedDataParallel``
        wrapper in a multi-process fit (``training.distributed``).
        """
        (optimizer,) = optimizers
        loss, parts = (module or self)(batch, beta)
        optimizer_step(optimizer, loss)
        return {"loss": loss.item(), **{name: value.item() for name, value in parts.items()}}

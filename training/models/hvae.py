"""Hierarchical VAE with a top-down generative path (after NVAE: Vahdat and Kautz, 2020), sized for tables.

The latent space is split into groups, top first (``z = [z_1, ..., z_G]``, G = ``GROUPS``).
The generative path runs top-down: ``z_1 ~ N(0, I)``, then for each lower group a small MLP
reads the groups above and gives the prior ``p(z_l | z_<l) = N(mu_p, sigma_p^2)``; the data
decoder reads all groups. The encoder is a bottom-up MLP; the top group's posterior comes from
its last layer, lower groups' from earlier layers combined with the top-down state.

Residual parameterization (NVAE, eq. 2): each lower posterior is a correction of its prior,
``q(z_l | x, z_<l) = N(mu_p + sigma_p * m_l, (sigma_p * s_l)^2)``, where the network outputs
``m_l`` and ``log s_l^2``. In the prior's *whitened* coordinates ``w_l = (z_l - mu_p) / sigma_p``
the posterior is ``N(m_l, s_l^2)`` and the prior N(0, I), so each group's KL is the closed form
``KL(N(m_l, s_l^2) || N(0, I))``, small when the posterior stays near the prior. ``neg_elbo``
adds the KL terms of all groups (lower groups' KL averaged over the fixed draws of the groups
above) to the reconstruction negative log-likelihood.

Coordinates: every latent tensor this class exposes is whitened ``w`` (``latent_dim`` =
the sum of the group sizes). ``decode(w)`` runs the top-down path (``z_1 = w_1``,
``z_l = mu_p + sigma_p * w_l``), so ``w ~ N(0, I)`` samples the hierarchical prior and
decoding the ``latent`` output reproduces the posterior-mean path. ``latent`` is the
concatenation of every group's whitened posterior mean along that path (top group first; its
first ``group_sizes[0]`` coordinates are the top group's posterior mean itself).

Not taken from NVAE (images): convolutional cells, spectral regularization, KL balancing and
normalizing flows; the KL warm-up of the trainer plays the role of NVAE's KL annealing.
"""

from __future__ import annotations

import torch
from torch import nn

from training import likelihood
from training.models.base import Architecture, Autoencoder, Batch, mlp

GROUPS = 2  # latent groups; needs latent_dim >= GROUPS
LOG_VAR_RANGE = (-12.0, 8.0)


def group_sizes(latent_dim: int, groups: int = GROUPS) -> tuple[int, ...]:
    """Split ``latent_dim`` into ``groups`` sizes, the top group first taking any remainder."""
    if latent_dim < groups:
        msg = f"a hierarchical VAE with {groups} latent groups needs latent_dim >= {groups}, got {latent_dim}"
        raise ValueError(msg)
    base, extra = divmod(latent_dim, groups)
    return tuple(base + (1 if g < extra else 0) for g in range(groups))


class HVAE(Autoencoder):
    def __init__(self, arch: Architecture, groups: int = GROUPS) -> None:
        super().__init__(arch)
        self.group_sizes = group_sizes(arch.latent_dim, groups)
        top, hidden = self.group_sizes[0], arch.hidden
        self.to_mu = nn.Linear(hidden, top)  # the top group's posterior, from the last encoder layer
        self.to_log_var = nn.Linear(hidden, top)
        above = [sum(self.group_sizes[:g]) for g in range(1, groups)]
        self.top_down = nn.ModuleList(mlp(n, hidden, 1) for n in above)  # z_<l -> state h_l
        self.prior_heads = nn.ModuleList(nn.Linear(hidden, 2 * s) for s in self.group_sizes[1:])
        self.posterior_heads = nn.ModuleList(nn.Linear(2 * hidden, 2 * s) for s in self.group_sizes[1:])

    def _bottom_up(self, enc_in: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's activations after each hidden layer, ``depth`` tensors ``(N, H)``."""
        features, h = [], enc_in
        for layer in self.encoder:
            h = layer(h)
            if isinstance(layer, nn.GELU):
                features.append(h)
        return features

    def _prior(self, g: int, above: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-down state ``(..., N, H)`` and prior mean / log-variance of group ``g`` (>= 1)."""
        state = self.top_down[g - 1](torch.cat(above, dim=-1))
        mu_p, log_var_p = self.prior_heads[g - 1](state).chunk(2, dim=-1)
        return state, mu_p, log_var_p.clamp(*LOG_VAR_RANGE)

    def _walk(self, enc_in: torch.Tensor, eps: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The posterior pass, group by group, top first.

        ``eps`` is standard normal noise broadcastable to ``(..., N, L)`` (e.g. ``(K, 1, L)``
        fixed draws), or None for the posterior-mean path. Returns whitened ``w``, and the
        posterior mean ``m`` and log-variance, all ``(..., N, L)``.
        """
        features = self._bottom_up(enc_in)
        m = self.to_mu(features[-1])
        log_var = self.to_log_var(features[-1]).clamp(*LOG_VAR_RANGE)
        ws, ms, log_vars, zs = [], [], [], []
        start = 0
        for g, size in enumerate(self.group_sizes):
            if g > 0:
                state, mu_p, log_var_p = self._prior(g, zs)
                level = features[max(0, len(features) - 1 - g)].expand(*state.shape[:-1], -1)
                m, log_var = self.posterior_heads[g - 1](torch.cat([level, state], dim=-1)).chunk(2, dim=-1)
                log_var = log_var.clamp(*LOG_VAR_RANGE)
            w = m if eps is None else m + torch.exp(0.5 * log_var) * eps[..., start : start + size]
            z = w if g == 0 else mu_p + torch.exp(0.5 * log_var_p) * w
            if g == 0 and eps is not None:  # the top group's m and log_var are per row: give them the draws' axes
                m, log_var = m.expand_as(w), log_var.expand_as(w)
            ws.append(w)
            ms.append(m)
            log_vars.append(log_var)
            zs.append(z)
            start += size
        return torch.cat(ws, dim=-1), torch.cat(ms, dim=-1), torch.cat(log_vars, dim=-1)

    def encode(self, enc_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened posterior mean and log-variance ``(N, L)`` along the posterior-mean path."""
        _, m, log_var = self._walk(enc_in, None)
        return m, log_var

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Whitened ``z`` ``(..., N, L)`` through the top-down path, then the data decoder."""
        zs, start = [], 0
        for g, size in enumerate(self.group_sizes):
            w = z[..., start : start + size]
            if g > 0:
                _, mu_p, log_var_p = self._prior(g, zs)
                w = mu_p + torch.exp(0.5 * log_var_p) * w
            zs.append(w)
            start += size
        return super().decode(torch.cat(zs, dim=-1))

    def score(self, batch: Batch, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic scores; ``eps`` ``(K, L)`` are the fixed draws of every group."""
        w, m, log_var = self._walk(batch.enc_in, eps.unsqueeze(1))  # (K, N, L)
        feature_scores = self.feature_nll(w, batch).mean(0)
        kl = likelihood.gaussian_kl(m, log_var).mean(0)  # every group's KL, summed; mean over draws
        latent, _ = self.encode(batch.enc_in)
        return {
            "neg_elbo": feature_scores.sum(-1) + kl,
            "kl": kl,
            "feature_scores": feature_scores,
            "latent": latent,
        }

    def training_loss(self, batch: Batch, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        eps = torch.randn(len(batch), self.arch.latent_dim, device=batch.enc_in.device)
        w, m, log_var = self._walk(batch.enc_in, eps)
        nll = self.feature_nll(w, batch).sum(-1).mean()
        kl = likelihood.gaussian_kl(m, log_var).mean()
        return nll + beta * kl, {"nll": nll.detach(), "kl": kl.detach()}

"""The decoder's likelihood and the latent terms behind the scores, in nats.

Numeric features are Gaussian in standardized units with a learned per-feature variance;
categorical features are categorical distributions over their one-hot group. A missing
value (numeric NaN, category code -1 or out of range) contributes zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def gaussian_nll(
    value: torch.Tensor, observed: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """Per-feature Gaussian negative log-likelihood, ``(..., N, Fn)``; zero where not observed."""
    nll = 0.5 * (LOG_2PI + log_var + (value - mean).pow(2) * torch.exp(-log_var))
    return nll * observed


def categorical_nll(codes: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
    """Per-feature categorical negative log-likelihood, ``(..., N, Fc)``.

    ``codes`` is ``(N, Fc)``; ``logits[j]`` is ``(..., N, K_j)``. Codes outside ``[0, K_j)``
    (missing or unseen) score zero.
    """
    columns = []
    for j, group in enumerate(logits):
        size = group.shape[-1]
        code = codes[:, j]
        valid = ((code >= 0) & (code < size)).float()
        index = code.clamp(0, size - 1).unsqueeze(-1).expand(*group.shape[:-1], 1)
        log_p = F.log_softmax(group, dim=-1).gather(-1, index).squeeze(-1)
        columns.append(-log_p * valid)
    return torch.stack(columns, dim=-1)


def gaussian_kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) of each latent dimension, ``(N, L)``."""
    return 0.5 * (mu.pow(2) + torch.exp(log_var) - 1.0 - log_var)


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) per row, ``(N,)``."""
    return gaussian_kl_per_dimension(mu, log_var).sum(-1)


def prior_nll(z: torch.Tensor) -> torch.Tensor:
    """Negative log density of ``z`` under N(0, I), per row, ``(N,)``."""
    return 0.5 * (z.pow(2) + LOG_2PI).sum(-1)

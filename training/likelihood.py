"""The decoder's likelihood and the latent terms behind the scores, in nats.

Numeric features are Gaussian in standardized units with a learned per-feature variance;
categorical features are categorical distributions over their one-hot group. A missing
value (numeric NaN, category code -1) contributes zero, and so does a category code out of
range here: the scoring graph charges a category never seen in training (code K) itself
(``training.preprocess.Preprocessor.unseen``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
EXP_FLOOR = -80.0  # exp(-80) ~ 1.8e-35, above float32's smallest normal number (1.2e-38)


def gaussian_nll(
    value: torch.Tensor, observed: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """Per-feature Gaussian negative log-likelihood, ``(..., N, Fn)``; zero where not observed."""
    nll = 0.5 * (LOG_2PI + log_var + (value - mean).pow(2) * torch.exp(-log_var))
    return nll * observed


def known_category(code: torch.Tensor, size: int) -> torch.Tensor:
    """1.0 where ``code`` is one of a group's ``size`` categories, 0.0 where missing (-1) or unseen (K)."""
    return ((code >= 0) & (code < size)).float()


def one_hot(code: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
    """``code`` ``(N,)`` against a group's ``categories`` ``(K,)`` (``0..K-1``): ``(N, K)``.

    A missing (-1) or unseen (K) code is all zeros.
    """
    return (code.unsqueeze(-1).to(categories.dtype) == categories).float()


def categorical_nll(codes: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
    """Per-feature categorical negative log-likelihood, ``(..., N, Fc)``.

    ``codes`` is ``(N, Fc)``; ``logits[j]`` is ``(..., N, K_j)``. Codes outside ``[0, K_j)``
    (missing or unseen) score zero.
    """
    columns = []
    for j, group in enumerate(logits):
        size = group.shape[-1]
        code = codes[:, j]
        valid = known_category(code, size)
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


def stable_logsumexp(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(sum(exp(values)))`` over ``dim``, shifted by the maximum so that nothing overflows.

    Written out rather than ``torch.logsumexp`` so that the exported ONNX graph carries the
    shift itself, whatever its runtime does with ``ReduceLogSumExp``. Shifted values are
    clamped at ``EXP_FLOOR``: below it ``exp`` returns subnormal floats, which CPUs compute
    many times slower (the mixture prior's graph on mnist scored 21,500 rows/s unclamped,
    35,600 clamped), while the sum, at least 1, moves by less than float32 resolves.
    """
    top = values.max(dim=dim, keepdim=True).values
    shifted = (values - top).clamp(min=EXP_FLOOR)
    return (top + torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))).squeeze(dim)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(log_var))) summed over the last axis; arguments broadcast."""
    return (-0.5 * (LOG_2PI + log_var + (z - mean).pow(2) * torch.exp(-log_var))).sum(-1)


def mixture_log_density(z: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:
    """log of (1/M) sum_m N(z; means[m], diag(exp(log_vars[m]))), ``(..., N)``.

    ``z`` is ``(..., N, L)``; ``means`` and ``log_vars`` ``(M, L)``. Each component's log density
    is expanded into one product, ``[z^2, z, 1] @ w`` with ``w`` made of the precisions P, ``P m``
    and the constant terms, so that no ``(..., N, M, L)`` tensor is formed and the ``(..., N, M)``
    result is written once. The expansion subtracts large terms (P reaches e^12), so it runs in
    float64: in float32 it lost up to 0.02 nats on a trained graph, and torch and onnxruntime
    disagreed on its scores.
    """
    means64, log_vars64 = means.double(), log_vars.double()
    precision = torch.exp(-log_vars64)
    constant = (means64.pow(2) * precision).sum(-1) + log_vars64.sum(-1) + z.shape[-1] * LOG_2PI
    weights = -0.5 * torch.cat([precision, -2 * means64 * precision, constant.unsqueeze(-1)], dim=-1)  # (M, 2L+1)
    z64 = z.double()
    powers = torch.cat([z64.pow(2), z64, torch.ones_like(z64[..., :1])], dim=-1)  # (..., N, 2L+1)
    return stable_logsumexp((powers @ weights.T).to(z.dtype), dim=-1) - math.log(means.shape[0])


def defensive_prior_log_density(z: torch.Tensor, means: torch.Tensor, log_vars: torch.Tensor) -> torch.Tensor:
    """log of the half-and-half mixture of N(0, I) and the posteriors in ``means``/``log_vars``.

    The second half is the aggregate posterior of the rows behind the bank (the density the
    encoder actually puts normal rows at); the first keeps the density of every code bounded
    below by half the standard prior, so a code far from every bank row is never scored worse
    than under N(0, I) plus log 2 nats.
    """
    both = torch.stack([-prior_nll(z), mixture_log_density(z, means, log_vars)])
    return stable_logsumexp(both, dim=0) - math.log(2)

"""The likelihood's helpers and the latent densities behind the scores: stable sums and the mixture priors."""

from __future__ import annotations

import math

import torch

from training import likelihood


def test_stable_logsumexp_agrees_with_torch_and_never_overflows() -> None:
    values = torch.randn(4, 50) * 10
    torch.testing.assert_close(likelihood.stable_logsumexp(values, dim=-1), torch.logsumexp(values, dim=-1))
    far_apart = torch.tensor([[1e4, 0.0, -1e4]])
    torch.testing.assert_close(likelihood.stable_logsumexp(far_apart, dim=-1), torch.tensor([1e4]))


def test_the_mixture_density_is_the_mean_of_its_components() -> None:
    means, log_vars = torch.randn(3, 2), torch.randn(3, 2) * 0.5
    z = torch.randn(5, 2)
    components = torch.distributions.Normal(means, torch.exp(0.5 * log_vars)).log_prob(z.unsqueeze(1)).sum(-1)
    expected = torch.log(components.exp().mean(-1))
    torch.testing.assert_close(likelihood.mixture_log_density(z, means, log_vars), expected)


def test_the_defensive_prior_never_falls_below_half_the_standard_prior() -> None:
    means, log_vars = torch.zeros(4, 3) + 5.0, torch.full((4, 3), -4.0)  # a bank far from where z is
    z = torch.randn(100, 3) * 3
    floor = -likelihood.prior_nll(z) - math.log(2)
    assert (likelihood.defensive_prior_log_density(z, means, log_vars) >= floor - 1e-5).all()


def test_the_mixture_density_stays_exact_for_tight_posteriors_far_from_the_origin() -> None:
    """Posteriors as tight as the encoder allows (log-variance -12) at codes near 3 in 32 dimensions."""
    generator = torch.Generator().manual_seed(0)
    means = 3 + torch.randn(64, 32, generator=generator)
    log_vars = torch.full((64, 32), -12.0)
    z = means[:8] + torch.exp(0.5 * log_vars[:8]) * torch.randn(8, 32, generator=generator)
    exact = torch.distributions.Normal(means.double(), torch.exp(0.5 * log_vars.double()))
    expected = torch.logsumexp(exact.log_prob(z.double().unsqueeze(1)).sum(-1), dim=-1) - math.log(64)
    torch.testing.assert_close(likelihood.mixture_log_density(z, means, log_vars).double(), expected, atol=1e-3, rtol=0)


def test_a_missing_or_unseen_code_is_no_known_category_and_an_all_zero_one_hot() -> None:
    codes = torch.tensor([0, 2, -1, 3])  # group of 3 categories: -1 missing, 3 unseen
    assert likelihood.known_category(codes, 3).tolist() == [1.0, 1.0, 0.0, 0.0]
    for categories in (torch.arange(3), torch.arange(3).float()):
        expected = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
        assert likelihood.one_hot(codes, categories).tolist() == expected
        assert likelihood.one_hot(codes.float(), categories).tolist() == expected

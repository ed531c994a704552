"""An equal-weight mixture of independently trained members, scored as one model.

The members share the preprocessing, the held-out rows and the fixed draws; they differ in
initialization and batch order. Together they are one generative model,
p(x) = (1/K) sum_k p_k(x): a discrete latent k picks a member, then that member's z and
decoder make the row. Its ELBO with the best q(k|x), the responsibilities
r_k = softmax_k(ELBO_k), is

    log (1/K) sum_k exp(ELBO_k) = sum_k r_k ELBO_k - KL(r || uniform),

a bound on log p(x) at least as tight as the mean of the members' ELBOs. So ``neg_elbo`` stays a
negative ELBO (in nats, higher = more anomalous), and it splits the way one model's does:
``feature_scores`` are the members' feature scores weighted by r, and ``kl`` is the members'
KL terms weighted by r plus KL(r || uniform), the nats that choosing a member costs.

``latent``, ``recon_error``, ``expected`` and the generator (``decoder.onnx``) are the first
member's: each member has its own latent space, and a mean of codes from different spaces
would mean nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from training import likelihood
from training.models.base import Architecture, Autoencoder, Batch


class Ensemble(nn.Module):
    """``members`` (at least two, one architecture) scored as their equal-weight mixture."""

    def __init__(self, members: Sequence[Autoencoder]) -> None:
        super().__init__()
        if len(members) < 2:
            msg = f"an ensemble needs at least two members, got {len(members)}"
            raise ValueError(msg)
        self.members = nn.ModuleList(members)

    @property
    def first(self) -> Autoencoder:
        return self.members[0]

    @property
    def arch(self) -> Architecture:
        return self.first.arch

    @property
    def to_manifest_order(self) -> torch.Tensor:
        return self.first.to_manifest_order

    def manifest_ordered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.first.manifest_ordered(parts)

    def encode(self, enc_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first.encode(enc_in)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.first.decode(z)

    def decoder_log_var(self) -> torch.Tensor:
        return self.first.decoder_log_var()

    def score(self, batch: Batch, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mixture's scores of a batch; ``eps`` ``(K, L)`` are the fixed draws every member uses."""
        each = [member.score(batch, eps) for member in self.members]
        member_neg_elbo = torch.stack([s["neg_elbo"] for s in each])  # (members, N)
        log_total = likelihood.stable_logsumexp(-member_neg_elbo, dim=0)  # (N,)
        log_r = -member_neg_elbo - log_total  # log responsibilities, (members, N)
        r = torch.exp(log_r)
        choice_kl = (r * log_r).sum(0) + math.log(len(self.members))  # KL(r || uniform), (N,)

        def weighted(name: str) -> torch.Tensor:
            values = torch.stack([s[name] for s in each])  # (members, N, ...)
            return (values * r.reshape(*r.shape, *[1] * (values.dim() - 2))).sum(0)

        return {
            "neg_elbo": math.log(len(self.members)) - log_total,
            "kl": weighted("kl") + choice_kl,
            "feature_scores": weighted("feature_scores"),
            "latent": each[0]["latent"],
        }

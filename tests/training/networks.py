"""A small batch and network for the tests of one model type (needs torch, unlike ``tables``)."""

from __future__ import annotations

import torch

from service.features import encode_frame
from tests.training.tables import mixed_table
from training.models import Architecture, Batch
from training.preprocess import Preprocessor, fit_features


def batch_and_architecture() -> tuple[Batch, Architecture]:
    """A batch of a small mixed table, and a small network for it."""
    frame = mixed_table(64)
    features = fit_features(frame, ["load", "power", "count"], ["site", "flag"])
    pre = Preprocessor(features)
    x = torch.from_numpy(encode_frame(frame, features).x)
    arch = Architecture(
        n_inputs=pre.n_inputs, n_numeric=pre.n_numeric, group_sizes=tuple(pre.group_sizes),
        feature_order=(0, 1, 2, 3, 4), hidden=8, depth=1, latent_dim=2, min_scale=0.01,
    )  # fmt: skip
    return Batch(*pre(x)), arch

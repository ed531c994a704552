"""The probe scripts' shared table and the member probes' variance refit (no datasets needed)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def probes(import_benchmark):
    return import_benchmark("score_probes"), import_benchmark("member_probes")


def _record(dataset: str, **rocs: float) -> dict:
    return {"dataset": dataset, "seed": 0, "metrics": {name: {"roc_auc": v, "ap": v / 2} for name, v in rocs.items()}}


def test_the_table_pairs_each_probe_with_the_named_baseline(probes) -> None:
    score_probes, _ = probes
    records = [_record("a", mixture=0.90, other=0.92), _record("b", mixture=0.80, other=0.79)]
    table = score_probes.report(records, ("mixture", "other"), baseline="mixture")
    assert "ROC-AUC minus mixture" in table
    assert "| other | 0.8550 | 0.4275 | +0.0050 | +0.0025 | 1 / 1 |" in table
    assert "| mixture | 0.8500 | 0.4250 | +0.0000 | +0.0000 | 0 / 0 |" in table


def test_set_variances_makes_the_decoder_report_them(probes) -> None:
    _, member_probes = probes
    from training.models.base import Architecture
    from training.models.vae import VAE

    arch = Architecture(
        n_inputs=3, n_numeric=3, group_sizes=(), feature_order=(0, 1, 2),
        hidden=8, depth=1, latent_dim=2, min_scale=0.01,
    )  # fmt: skip
    member = VAE(arch)
    wanted = torch.tensor([0.5, 2.0, 1e-6])  # the last is below the floor, 0.01 ** 2
    with torch.no_grad():
        member_probes.set_variances(member, wanted)
    got = torch.exp(member.decoder_log_var()).detach()
    assert torch.allclose(got[:2], wanted[:2], rtol=1e-5)
    assert got[2] == pytest.approx(1e-4, rel=1e-3)

"""The ensemble: members trained apart, scored as their equal-weight mixture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from service.features import encode_frame
from tests.training.tables import mixed_table
from training.config import PRIOR_BANK_ROWS
from training.export import torch_outputs
from training.members import MEMBER_SEED_STRIDE
from training.models import VAE, Architecture, Batch, Ensemble
from training.pipeline import train_bundle

ARCH = Architecture(
    n_inputs=3, n_numeric=3, group_sizes=(), feature_order=(0, 1, 2), hidden=8, depth=1, latent_dim=2, min_scale=0.01
)


def _batch(rows: int) -> Batch:
    num = torch.randn(rows, 3) * torch.tensor([1.0, 1.0, 6.0])  # some rows far out
    return Batch(enc_in=num, num=num, observed=torch.ones(rows, 3), codes=torch.zeros(rows, 0, dtype=torch.long))


def test_the_mixture_score_is_the_log_mean_exp_of_the_members_elbos() -> None:
    torch.manual_seed(0)
    members = [VAE(ARCH).eval() for _ in range(3)]
    batch, eps = _batch(64), torch.randn(8, 2)
    with torch.no_grad():
        each = torch.stack([m.score(batch, eps)["neg_elbo"] for m in members])  # (3, 64)
        mixed = Ensemble(members).score(batch, eps)
    expected = math.log(3) - torch.logsumexp(-each, dim=0)
    torch.testing.assert_close(mixed["neg_elbo"], expected)
    # Never worse than the best member by more than log 3 nats, never better than it.
    best = each.min(0).values
    assert torch.all(mixed["neg_elbo"] <= best + math.log(3) + 1e-5)
    assert torch.all(mixed["neg_elbo"] >= best - 1e-5)
    # It splits like one model's: features plus the latent term, which holds KL(r || uniform) >= 0.
    torch.testing.assert_close(mixed["feature_scores"].sum(-1) + mixed["kl"], mixed["neg_elbo"], rtol=1e-5, atol=1e-4)
    responsibilities = torch.softmax(-each, dim=0)
    member_kl = torch.stack([m.score(batch, eps)["kl"] for m in members])
    assert torch.all(mixed["kl"] >= (responsibilities * member_kl).sum(0) - 1e-5)


def test_the_embedding_and_the_decoder_are_the_first_members() -> None:
    torch.manual_seed(1)
    members = [VAE(ARCH).eval() for _ in range(2)]
    ensemble = Ensemble(members)
    batch = _batch(5)
    torch.testing.assert_close(ensemble.score(batch, torch.randn(4, 2))["latent"], members[0].encode(batch.enc_in)[0])
    z = torch.randn(5, 2)
    torch.testing.assert_close(ensemble.decode(z)[0], members[0].decode(z)[0])
    with pytest.raises(ValueError, match="at least two members"):
        Ensemble(members[:1])


@pytest.mark.slow
def test_two_members_train_apart_and_member_zero_is_the_single_model(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(800)  # more fit rows than a member's share of the prior's bank
    default = train_bundle(frame, tmp_path / "two", seed=4, overrides={**quick, "members": 2})
    single = train_bundle(frame, tmp_path / "one", seed=4, overrides=quick)
    members = default.manifest.training["members"]
    assert [m["seed"] for m in members] == [4, 4 + MEMBER_SEED_STRIDE]
    assert members[0]["best_validation_loss"] == pytest.approx(single.fit.best_val)
    assert members[1]["best_validation_loss"] != pytest.approx(members[0]["best_validation_loss"])
    ensemble = default.graph.model
    assert isinstance(ensemble, Ensemble)
    assert not isinstance(single.graph.model, Ensemble)
    # The defensive prior's bank of fit rows is shared out: half of PRIOR_BANK_ROWS at most each.
    fit_rows = default.manifest.training["rows"]["train"]
    assert fit_rows > PRIOR_BANK_ROWS // 2
    assert [m.prior_bank_mu.shape[0] for m in ensemble.members] == [PRIOR_BANK_ROWS // 2] * 2
    rows = encode_frame(frame, default.manifest.features).x
    two, one = torch_outputs(default.graph, rows), torch_outputs(single.graph, rows)
    np.testing.assert_allclose(two["latent"], one["latent"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(two["neg_elbo"], one["neg_elbo"], rtol=1e-3)
    # The calibration scores are the exported mixture's own.
    holdout = np.sort(torch_outputs(default.graph, rows[_holdout_rows(default)])["neg_elbo"])
    np.testing.assert_allclose(default.manifest.calibration.scores, holdout, rtol=1e-4)


def _holdout_rows(result) -> np.ndarray:
    from training.data import split_rows

    settings = result.manifest.training["settings"]
    rows = result.manifest.training["rows"]
    return split_rows(rows["train"] + rows["holdout"], settings["validation_fraction"], settings["seed"])[1]


@pytest.mark.slow
def test_every_model_type_can_be_mixed(tmp_path: Path, quick: dict) -> None:
    frame = mixed_table(200)
    aae = train_bundle(frame, tmp_path / "aae", model="aae", seed=0, overrides={**quick, "members": 2})
    assert isinstance(aae.graph.model, Ensemble)
    rows = encode_frame(frame, aae.manifest.features).x
    out = torch_outputs(aae.graph, rows)
    np.testing.assert_allclose(out["feature_scores"].sum(-1) + out["kl"], out["neg_elbo"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_three_folds_calibrate_each_row_by_the_member_that_never_saw_it(tmp_path: Path, quick: dict) -> None:
    from training.data import fold_rows
    from training.export import ScoringGraph

    frame = mixed_table(300)
    result = train_bundle(frame, tmp_path / "folds", seed=2, overrides={**quick, "folds": 3})
    ensemble = result.graph.model
    assert isinstance(ensemble, Ensemble)
    assert len(ensemble.members) == len(result.manifest.training["members"]) == 3
    assert result.manifest.training["rows"] == {"train": 200, "holdout": 300}  # 2 folds each; every row held out once
    rows = encode_frame(frame, result.manifest.features).x
    folds = fold_rows(len(frame), 3, seed=2)
    out_of_fold = np.concatenate(
        [
            torch_outputs(ScoringGraph(result.graph.preprocessor, member, result.graph.eps), rows[fold])["neg_elbo"]
            for member, fold in zip(ensemble.members, folds, strict=True)
        ]
    )
    np.testing.assert_allclose(result.manifest.calibration.scores, np.sort(out_of_fold), rtol=1e-5)
    # Member k's defensive prior holds the posteriors of a sample of its share of the bank (170 of
    # its 200 fit rows), all outside fold k: none of the rows it calibrates.
    for member, fold in zip(ensemble.members, folds, strict=True):
        with torch.no_grad():
            codes = member.encode(result.graph.preprocess(torch.from_numpy(rows)).enc_in)[0]
        distance = torch.cdist(member.prior_bank_mu, codes)  # (bank rows, all rows)
        banked = distance.argmin(1).numpy()
        assert distance.min(1).values.max() < 1e-3  # each bank code is some row's own
        assert len(set(banked.tolist())) == len(banked) == min(200, PRIOR_BANK_ROWS // 3)
        assert set(banked.tolist()) <= set(range(len(frame))) - set(fold.tolist())


@pytest.mark.slow
def test_repeated_folds_calibrate_each_row_by_the_mixture_of_the_members_that_never_saw_it(
    tmp_path: Path, quick: dict
) -> None:
    from training.calibrate import fit_splits
    from training.config import make_settings
    from training.export import ScoringGraph

    frame = mixed_table(300)
    overrides = {**quick, "folds": 2, "repeats": 2}
    result = train_bundle(frame, tmp_path / "repeats", seed=3, overrides=overrides)
    members = result.graph.model.members
    assert len(members) == len(result.manifest.training["members"]) == 4  # 2 partitions x 2 folds
    assert result.manifest.training["rows"]["holdout"] == 300  # every row calibrates once
    splits = fit_splits(len(frame), make_settings(overrides, seed=3))
    first, second = (splits[0][1], splits[1][1]), (splits[2][1], splits[3][1])
    assert not np.array_equal(first[0], second[0])  # the second partition shuffles the rows anew
    rows = encode_frame(frame, result.manifest.features).x
    expected = []
    for i in range(len(frame)):
        unseen = [members[k] for k, (_, held) in enumerate(splits) if i in held]
        assert len(unseen) == 2  # one member of each partition
        graph = ScoringGraph(result.graph.preprocessor, Ensemble(unseen), result.graph.eps)
        expected.append(torch_outputs(graph, rows[i : i + 1])["neg_elbo"][0])
    np.testing.assert_allclose(result.manifest.calibration.scores, np.sort(expected), rtol=1e-5)


@pytest.mark.slow
def test_a_small_table_is_cross_fitted_with_five_folds_by_default(tmp_path: Path, quick: dict) -> None:
    defaults = {key: value for key, value in quick.items() if key != "folds"}
    result = train_bundle(mixed_table(60), tmp_path / "small", seed=1, overrides=defaults)
    assert result.manifest.training["settings"]["folds"] == 5
    assert len(result.graph.model.members) == len(result.manifest.training["members"]) == 5
    assert result.manifest.training["rows"] == {"train": 48, "holdout": 60}  # 4 folds each; every row held out once

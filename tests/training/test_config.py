"""Settings: one validated object; bad keys and values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigError
from training.config import TrainSettings, load_config_file, make_settings, resolve, resolve_folds


def test_defaults_and_overrides() -> None:
    settings = make_settings({"beta": 0.5}, model="aae", seed=None)
    assert settings.model == "aae"
    assert settings.beta == 0.5
    assert settings.seed == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"modle": "vae"}, "unknown setting"),
        ({"model": "gan"}, "setting 'model'"),
        ({"alpha": 1.5}, r"setting 'alpha': 1.5 must be a number between 0 and 1 \(exclusive\)"),
        ({"draws": "many"}, "setting 'draws': 'many' must be an integer"),
        ({"restarts": 0}, "setting 'restarts': 0 must be between 1 and 32"),
        ({"members": 0}, "setting 'members': 0 must be between 1 and 16"),
        ({"folds": 11}, "setting 'folds': 11 must be between 1 and 10"),
        ({"members": 2, "folds": 3}, r"'members': 2 members share one split, so 'folds' must be 1 \(it is 3\)"),
        ({"repeats": 2, "folds": 1}, r"'repeats': 2 repeats a cross-fitting, so 'folds' must be at least 2"),
        ({"repeats": 5}, "setting 'repeats': 5 must be between 1 and 4"),
        ({"ema_decay": 1.0}, "setting 'ema_decay': 1.0 must be at least 0 and below 1"),
        ({"grad_clip": 0.5}, r"setting 'grad_clip': 0.5 must be 0 \(off\) or at least 1"),
        ({"denoise": 0.1}, "applies to --model ae only"),
        ({"free_bits": -1.0}, "setting 'free_bits': -1.0 must be at least 0"),
        ({"model": "aae", "free_bits": 0.5}, "applies to --model vae or vaegan only"),
        ({"prior": "uniform"}, "setting 'prior': 'uniform' must be one of"),
        ({"decoder": "resnet"}, r"setting 'decoder': 'resnet' must be one of \('mlp', 'bounded'\)"),
        ({"model": "hvae", "prior": "defensive"}, "'defensive' applies to --model vae or vaegan only"),
        ({"report": "yes"}, "setting 'report'"),
    ],
)
def test_bad_settings_are_named(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(values)


def test_toml_file_with_a_train_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[train]\nmodel = "ae"\ndenoise = 0.2\nmax_steps = 100\n')
    settings = make_settings(load_config_file(path))
    assert (settings.model, settings.denoise, settings.max_steps) == ("ae", 0.2, 100)
    path.write_text("model = [")
    with pytest.raises(ConfigError, match="not a valid TOML file"):
        load_config_file(path)


def test_sizes_scale_with_the_data() -> None:
    small = resolve(TrainSettings(), n_train=100, n_features=7, n_inputs=7)
    large = resolve(TrainSettings(), n_train=100_000, n_features=100, n_inputs=120)
    assert (small.batch_size, small.hidden, small.latent_dim) == (32, 32, 3)
    assert (large.batch_size, large.hidden, large.latent_dim) == (256, 240, 32)
    assert small.warmup_steps >= 500
    assert small.patience_steps >= 300
    assert small.max_steps >= small.warmup_steps + 20_000


@pytest.mark.parametrize(
    ("model", "prior", "resolved"),
    [("vae", "auto", "defensive"), ("vae", "standard", "standard"), ("aae", "auto", "standard")],
)
def test_the_scoring_prior_is_defensive_for_the_vae_by_default(model: str, prior: str, resolved: str) -> None:
    settings = make_settings({"model": model, "prior": prior})
    assert resolve(settings, n_train=100, n_features=7, n_inputs=7).prior == resolved


def test_five_folds_below_500_normal_rows_three_up_to_20000_then_one_model() -> None:
    default = make_settings({})
    assert default.members == 1
    assert [resolve_folds(default, rows) for rows in (10, 499, 500, 20_000, 20_001)] == [5, 5, 3, 3, 1]
    assert resolve_folds(make_settings({"folds": 2}), 100) == 2


def test_members_share_one_split_unless_folds_are_asked_for() -> None:
    members = make_settings({"model": "hvae"}, members=3)
    assert (members.members, resolve_folds(members, 100)) == (3, 1)
    assert make_settings({"model": "hvae", "folds": 1}, members=3).members == 3


def _measured_schedule(n_train: int) -> tuple[int, int, int, int]:
    """The schedule as the detection benchmark measured it, counted in epochs of every fit row."""
    batch = min(256, max(32, n_train // 20), n_train)
    per_epoch = -(-n_train // batch)
    warmup = max(500, 20 * per_epoch)
    return batch, warmup, max(1000, 15 * per_epoch), warmup + max(20_000, 100 * per_epoch)


@pytest.mark.parametrize("n_train", [10, 100, 640, 5_119, 5_120, 13_333, 16_000, 16_384])
def test_up_to_16384_fit_rows_the_schedule_is_the_measured_one(n_train: int) -> None:
    sizes = resolve(TrainSettings(), n_train=n_train, n_features=7, n_inputs=7)
    assert (sizes.batch_size, sizes.warmup_steps, sizes.patience_steps, sizes.max_steps) == _measured_schedule(n_train)


def test_beyond_16384_fit_rows_every_table_takes_the_same_steps() -> None:
    sizes = [resolve(TrainSettings(), n_train=n, n_features=7, n_inputs=7) for n in (16_384, 65_536, 2_000_000)]
    schedules = {(s.batch_size, s.warmup_steps, s.patience_steps, s.max_steps, s.steps_per_epoch) for s in sizes}
    assert schedules == {(256, 1_280, 1_000, 21_280, 64)}  # flat in the table's size


def test_a_step_cap_within_the_warm_up_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"'max_steps': 400 steps end within the KL warm-up \(500 steps\)"):
        resolve(make_settings({"max_steps": 400}), n_train=100, n_features=7, n_inputs=7)
    assert resolve(make_settings({"model": "ae", "max_steps": 400}), n_train=100, n_features=7, n_inputs=7)

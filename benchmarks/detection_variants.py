"""Variants of the default latentwatch detector (``lw-vae~NAME``): one trainer setting changed each.

``ABLATIONS`` names every variant with what it changes and its trainer overrides, either fixed
or computed from the table's training row count with the trainer's own sizing rules (imported
from ``training`` when first needed). ``lw_overrides`` turns a detector name into the overrides
that ``detection_lw.run_latentwatch`` passes to ``train_bundle``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detection_data import ensure_repo_importable


def _default_sizes(n_train: int) -> Any:
    """The trainer's derived sizes (``training.config.Resolved``) for ``n_train`` protocol rows.

    The trainer sizes every member by the first one's fit rows; epochs are counted over those rows.
    """
    ensure_repo_importable()
    from training.config import make_settings, resolve

    return resolve(make_settings(), n_train=_fit_rows(n_train), n_features=1, n_inputs=1)


def _fit_rows(n_train: int) -> int:
    """The rows each of the default's members trains on, of ``n_train`` protocol rows."""
    ensure_repo_importable()
    from training.calibrate import fit_splits
    from training.config import make_settings

    return int(fit_splits(n_train, make_settings())[0][0].size)


def _epoch_schedule(n_train: int) -> dict[str, int]:
    """The reference VAE's schedule in epochs (warm-up 20, patience 15, at most 200)."""
    per_epoch = _default_sizes(n_train).steps_per_epoch
    return {"warmup_steps": 20 * per_epoch, "patience_steps": 15 * per_epoch, "max_steps": 200 * per_epoch}


def _old_step_cap(n_train: int) -> dict[str, int]:
    """The first trainer's step cap: warm-up + max(5,000 steps, 100 epochs) (see docs/decisions.md)."""
    sizes = _default_sizes(n_train)
    return {"max_steps": sizes.warmup_steps + max(5000, 100 * sizes.steps_per_epoch)}


def _short_patience(n_train: int) -> dict[str, int] | None:
    """Patience of max(300 steps, 15 epochs), the default's before its 1,000-step floor (docs/decisions.md);
    None where 15 epochs are at least that floor (the two patiences are the same there)."""
    sizes = _default_sizes(n_train)
    short = max(300, 15 * sizes.steps_per_epoch)
    return None if short == sizes.patience_steps else {"patience_steps": short}


def _long_warmup(n_train: int) -> dict[str, int]:
    """KL warm-up of max(2,000 steps, 20 epochs) instead of max(500 steps, 20 epochs)."""
    return {"warmup_steps": max(2000, _default_sizes(n_train).warmup_steps)}


def _batch_rule(floor: int, cap: int, divisor: int) -> Callable[[int], dict[str, int]]:
    """Batches of min(cap, max(floor, fit rows // divisor)); the default is (32, 256, 20)."""

    def overrides(n_train: int) -> dict[str, int]:
        return {"batch_size": min(cap, max(floor, _fit_rows(n_train) // divisor))}

    return overrides


def _small_table_folds(count: int) -> Callable[[int], dict[str, int] | None]:
    """``count`` folds below ``SMALL_TABLE_ROWS`` (the default has 5 there); None (the default's own run) elsewhere."""

    def overrides(n_train: int) -> dict[str, int] | None:
        ensure_repo_importable()
        from training.config import SMALL_TABLE_ROWS

        return {"folds": count} if n_train < SMALL_TABLE_ROWS else None

    return overrides


# Variants of the default (``lw-vae~NAME``), one choice changed each; shown, never ranked.
# Each maps to (what changes, trainer overrides or a function of the training row count).
# ``seed_offset`` is added to the model's seed only (the protocol's train/test split stays):
# that variant measures how much the means move with the seed alone. A function that returns
# None says the variant trains exactly as the default on that table: its record is then a
# copy of the default's (``detection_tasks.reuse_default``), not a second identical training.
Overrides = dict[str, Any] | Callable[[int], dict[str, Any] | None]
ABLATIONS: dict[str, tuple[str, Overrides]] = {
    "one-draw": ("1 fixed draw of z in the graph instead of 8", {"draws": 1}),
    "four-draws": ("4 fixed draws of z in the graph instead of 8", {"draws": 4}),
    "sixteen-draws": ("16 fixed draws of z in the graph instead of 8", {"draws": 16}),
    "epoch-schedule": (
        "warm-up, patience and cap in epochs (20, 15, 200) instead of the step floors (500, 1,000, 20,000)",
        _epoch_schedule,
    ),
    "step-cap": ("step cap warm-up + max(5,000 steps, 100 epochs) instead of max(20,000 steps, 100 epochs)",
                 _old_step_cap),
    "no-warmup": ("KL weight 1 from the first step instead of rising over max(500 steps, 20 epochs)",
                  {"warmup_steps": 0}),
    "no-weight-decay": ("AdamW weight decay 0 instead of 1e-4", {"weight_decay": 0.0}),
    "no-variance-floor": ("decoder std floor 1e-4 instead of 0.01 (standardized units)", {"min_scale": 1e-4}),
    "no-ema": ("the raw weights of the best step instead of their moving average (decay 0.995)",
               {"ema_decay": 0.0}),
    "three-restarts": ("3 initializations, the best validation loss kept, instead of 1", {"restarts": 3}),
    "free-bits": ("free bits: 0.5 nats of KL per latent dimension left free in training, instead of none",
                  {"free_bits": 0.5}),
    "standard-prior": ("the scores' KL to N(0, I) instead of the defensive prior "
                       "(½ N(0, I) + ½ the posteriors of up to 512 fit rows)", {"prior": "standard"}),
    "other-seed": ("model seed + 100: folds, initialization, batches and draws change; nothing else (the noise floor)",
                   {"seed_offset": 100}),
    "third-seed": ("model seed + 200: a third draw of the default, beside other-seed", {"seed_offset": 200}),
    "one-model": ("one model trained on 80% of the rows, early-stopped and calibrated on the other 20%, "
                  "instead of 3 cross-fitted members (5 below 500 rows)", {"folds": 1}),
    "half-learning-rate": ("AdamW learning rate 5e-4 instead of 1e-3", {"learning_rate": 5e-4}),
    "double-learning-rate": ("AdamW learning rate 2e-3 instead of 1e-3", {"learning_rate": 2e-3}),
    "two-repeats": ("cross-fitting repeated over 2 partitions of the rows: 6 members (10 below 500 rows), "
                    "each row calibrated by the 2 that never saw it, instead of 3 (5)", {"repeats": 2}),
    "short-patience": ("early-stopping patience max(300 steps, 15 epochs) instead of max(1,000 steps, 15 epochs)",
                       _short_patience),
    "plain-decoder": ("a plain MLP decoder (decoder = \"mlp\") instead of LayerNorm in its hidden layers "
                      "and a linear path from the code to its outputs", {"decoder": "mlp"}),
    "no-clip": ("no gradient clipping (grad_clip = 0) instead of each step's norm clipped at 3x its moving average",
                {"grad_clip": 0.0}),
    "long-warmup": ("KL warm-up over max(2,000 steps, 20 epochs) instead of max(500 steps, 20 epochs)",
                    _long_warmup),
    "short-ema": ("weight average of decay 0.99 instead of 0.995", {"ema_decay": 0.99}),
    "large-batch": ("batches of min(512, max(64, fit rows // 10)) instead of min(256, max(32, fit rows // 20))",
                    _batch_rule(64, 512, 10)),
    "small-batch": ("batches of min(128, max(16, fit rows // 40)) instead of min(256, max(32, fit rows // 20))",
                    _batch_rule(16, 128, 40)),
    "two-members": ("2 members on one 80/20 split (seeds s and s + 104,729) instead of 3 cross-fitted members",
                    {"members": 2, "folds": 1}),
    "three-folds": ("3 cross-fitted members below 500 normal rows too, instead of 5 there", _small_table_folds(3)),
    "ten-folds": ("10 cross-fitted members below 500 normal rows, each on 90% of them, instead of 5 on 80%",
                  _small_table_folds(10)),
}  # fmt: skip
ABLATED = tuple(f"lw-vae~{name}" for name in ABLATIONS)
# Each of these undoes one default of today's trainer (the others try a change that was not adopted),
# and ``other-seed`` changes nothing but the model's seed: the noise floor the others are read against.
# ``--detectors all,undone`` is the ablation table that RESULTS.md shows.
UNDONE = tuple(
    f"lw-vae~{name}"
    for name in ("other-seed", "one-model", "three-folds", "standard-prior", "four-draws", "no-ema", "no-warmup",
                 "epoch-schedule", "step-cap", "plain-decoder", "no-clip", "short-patience")
)  # fmt: skip


def lw_overrides(detector: str, n_train: int) -> dict[str, Any] | None:
    """Trainer overrides of ``lw-MODEL~ABLATION`` ({} for a plain ``lw-MODEL``).

    None: the variant trains as the default does on a table of ``n_train`` rows.
    """
    _, _, ablation = detector.partition("~")
    if not ablation:
        return {}
    overrides = ABLATIONS[ablation][1]
    return overrides(n_train) if callable(overrides) else dict(overrides)

"""Training settings: one frozen, validated object, saved in the bundle's manifest.

Sizes left as ``None`` are derived from the data by :func:`resolve` (see each field), so
``latentwatch train`` with no options is good on tables of a hundred rows and of a million.
A TOML file may set any field (``latentwatch train --config FILE``); flags override it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ConfigError
from service.fields import FieldTypeError, coerce, field_types
from service.validation import alpha_problem, device_problem

MODEL_TYPES = ("vae", "aae", "ae", "vaegan", "hvae")
KL_MODELS = ("vae", "vaegan", "hvae")  # trained on a KL term: beta is warmed up from 0
SCORES = ("auto", "neg_elbo", "recon_error")
PRIORS = ("auto", "standard", "defensive")
ELBO_MODELS = ("vae", "vaegan")  # trained on the VAE's own loss: free bits and the defensive prior apply
DECODERS = ("mlp", "bounded")
# Fit rows whose posteriors make the defensive prior (a seeded sample), shared out among the
# members, so that the graph's mixture prior costs the same however many there are. Its size is
# set by the graph's speed: the mixture is about a third of the mnist graph's time. 3 members hold
# 170 rows each (5 members, on small tables, 102). With the bounded decoder, 768 rows scored
# 19,450-21,500 rows/s on this kind of machine and 512 rows 23,000-24,000 (bar 20,000); the smaller
# bank cost -0.0003 ROC-AUC on the 20 ADBench tables and gained +0.002 on the mixed ones
# (docs/decisions.md, "Bank of 512 rows").
PRIOR_BANK_ROWS = 512
# Floor of the step cap after warm-up, high enough that early stopping, not the cap, ends
# training. With 5,000, 14 of 57 benchmark runs (8 of the 20 tables) were cut before the step
# that a higher cap found best on the validation rows (benchmarks/RESULTS.md, ``step-cap``).
MIN_CAP_STEPS = 20_000
# Below this many normal rows the default cross-fits with 5 folds instead of 3, so that each
# member learns from 80% of the rows rather than 67%: there the rows are what limits, and a
# member fits in a few seconds. Measured on the benchmark's tables (docs/decisions.md; variants
# three-folds and ten-folds): the eight under 500 rows gained +0.005 ROC-AUC on average; letter, cardio and
# Cardiotocography (900-1,000 rows) +0.001 ROC-AUC and -0.004 AP, for fits twice as long.
SMALL_TABLE_ROWS = 500
# Floor of the early-stopping patience, in steps after warm-up (the patience is at least 15
# epochs as well). A member's validation loss can rise for several hundred steps after a bad
# batch and then fall again below its best; 300 steps ended such members while they were still
# improving (Wilt lost 0.02 ROC-AUC on every seed; benchmarks/RESULTS.md, ``short-patience``).
MIN_PATIENCE_STEPS = 1000
# The step schedule above was measured on the detection benchmark, whose members train on at
# most 16,000 rows (20,000 training rows, 80% of them with one model). Its epoch terms (20
# epochs of warm-up, 15 of patience, 100 before the cap) count at most this many rows an epoch,
# so that a fit's length follows what the model needs, not the table's size: a larger table's
# fit takes the steps of a 16,384-row table's (at most 21,280 at 256-row batches, 5.4 million
# rows seen), each on fresher rows. Before, they grew with the table: at 2,000,000 rows one
# member's cap was 782,000 steps. Growing the batch with the table as well (to 1,024 rows, the
# steps shrunk in proportion) cost detection at the same rows seen: ROC-AUC 0.957 at 100,000
# rows against 0.971 at 30,000 on planted anomalies (benchmarks/fit_scale.py).
SCHEDULE_EPOCH_ROWS = 16_384
# Early stopping scores a seeded sample of at most this many held-out rows (calibration scores
# them all): a validation pass then costs the same at a million rows as at 8,000 (the benchmark
# holds out at most 6,667).
VALIDATION_ROWS = 8_192
# Above this many normal rows the default trains one model (folds 1): a 20% hold-out then
# calibrates with at least 4,000 rows, the rows no longer limit what a model learns, and one
# model costs a third of three folds to fit and to score. The detection benchmark trains on at
# most 20,000 rows, so its tables keep the folds they were measured with.
LARGE_TABLE_ROWS = 20_000
# Normal rows a fit reads at most; a larger table is a seeded uniform sample of this many rows,
# streamed from Parquet (service/tables.py, ``read_table``), so memory stays flat in the table's
# size. A fit sees at most about 5.4 million rows (above), so a sample of a million rows loses
# little, and its hold-out calibrates p-values down to 5e-6.
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of a training run. ``None`` means "derived from the data"."""

    model: str = "vae"  # vae | aae | ae | vaegan | hvae
    seed: int = 0  # seeds weights, splits, batches and the graph's fixed draws
    device: str = "auto"  # auto uses CUDA when present
    # CPU threads of the fit. Members are fitted side by side, up to ``threads`` at once, each in a
    # process with threads // processes torch threads. None: every core the process may use, one
    # torch thread per process (``cpu_plan``).
    threads: int | None = None
    max_rows: int = MAX_ROWS  # normal rows read at most; a larger table is a seeded uniform sample
    # Architecture.
    hidden: int | None = None  # None: min(256, max(32, 2 * encoder inputs))
    depth: int = 2  # hidden layers in the encoder and in the decoder
    latent_dim: int | None = None  # None: max(2, min(32, features // 2))
    # bounded: LayerNorm in each of the decoder's hidden layers, and a linear path from the code to
    # the outputs (training/models/base.py, ``Autoencoder.decode``), so that a code far from the
    # normal ones cannot reconstruct an anomaly by extrapolating the decoder's curvature.
    # mlp: Linear + GELU layers only (benchmarks/RESULTS.md, ``plain-decoder``).
    decoder: str = "bounded"
    # Objective.
    beta: float = 1.0  # weight of the KL term once warm-up ends
    warmup_steps: int | None = None  # None: max(500, 20 epochs); beta rises linearly from 0
    min_scale: float = 0.01  # floor of the decoder's std, in standardized units
    denoise: float = 0.0  # AE only: std of Gaussian noise added to inputs while training
    free_bits: float = 0.0  # vae, vaegan: nats of KL per latent dimension left free in training; scores stay the ELBO
    # Optimization.
    batch_size: int | None = (
        None  # None: min(256, max(32, train rows // 20)); above 16,384 rows up to rows // 64, at most 1,024
    )
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Clip each optimizer step's gradient norm at this multiple of its typical size (a moving
    # average of recent clipped norms; training/loop.py, ``GradientClipper``); 0: no clipping.
    grad_clip: float = 3.0
    ema_decay: float = 0.995  # validate and export an exponential moving average of the weights; 0: the raw weights
    max_steps: int | None = None  # None: warm-up + max(MIN_CAP_STEPS, 100 epochs); early stopping ends training
    patience_steps: int | None = None  # None: max(MIN_PATIENCE_STEPS, 15 epochs); counted only after warm-up
    restarts: int = 1  # independent initializations; the one with the best validation loss is kept
    # Models trained apart on one split of the rows (folds 1, implied), scored as their equal-weight mixture
    # (training/models/ensemble.py); costs N x the fit, and each member's encoder and decoder in the graph.
    members: int = 1
    # Cross-fitting: K >= 2 splits the normal rows into K folds and trains one member per fold on
    # the other K - 1, early-stopped on its own fold; the graph scores their mixture, and every row
    # is calibrated by the one member that never saw it. Costs K x the fit and K members in the
    # graph. 1: one model, ``validation_fraction`` of the rows held out for early stopping and calibration.
    # None: 5 below SMALL_TABLE_ROWS normal rows, else 3; 1 when ``members`` > 1.
    folds: int | None = None
    # Cross-fitting repeated over this many partitions of the rows: repeats x folds members, and
    # each row is calibrated by the mixture of the ``repeats`` members that never saw it.
    repeats: int = 1
    validation_fraction: float = 0.2  # with folds = 1: held-out normal rows for early stopping and calibration
    # Scoring and calibration.
    draws: int = 8  # fixed Monte-Carlo draws of z in the exported graph
    # The prior p(z) of the scores' KL term; auto: defensive for vae, standard otherwise.
    # defensive (VAE and VAE-GAN): ½ N(0, I) + ½ the posteriors of up to 512 fit rows (shared out among
    # the members), set after training.
    prior: str = "auto"
    score: str = "auto"  # primary score for p-values; auto: neg_elbo
    alpha: float = 0.01  # target false-positive rate
    # Bookkeeping.
    name: str | None = None  # model name; None: the data file's stem
    version: str | None = None  # None: a UTC timestamp, sortable
    report: bool = True  # write report/ beside the bundle

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainSettings)}


def _check_type(key: str, value: Any) -> Any:
    try:
        return coerce(field_types(TrainSettings)[key], value)
    except FieldTypeError as err:
        msg = f"setting {key!r}: {value!r} must be {err.expected}"
        raise ConfigError(msg) from None


def _check_ranges(s: TrainSettings) -> None:
    checks = [
        ("model", s.model in MODEL_TYPES, f"one of {MODEL_TYPES}"),
        ("score", s.score in SCORES, f"one of {SCORES}"),
        ("prior", s.prior in PRIORS, f"one of {PRIORS}"),
        ("decoder", s.decoder in DECODERS, f"one of {DECODERS}"),
        ("threads", s.threads is None or 1 <= s.threads <= 256, "between 1 and 256"),
        ("max_rows", s.max_rows >= 10, "at least 10"),
        ("depth", 1 <= s.depth <= 8, "between 1 and 8"),
        ("hidden", s.hidden is None or s.hidden >= 1, "at least 1"),
        ("latent_dim", s.latent_dim is None or s.latent_dim >= 1, "at least 1"),
        ("beta", s.beta >= 0, "at least 0"),
        ("warmup_steps", s.warmup_steps is None or s.warmup_steps >= 0, "at least 0"),
        ("min_scale", s.min_scale > 0, "above 0"),
        ("denoise", s.denoise >= 0, "at least 0"),
        ("free_bits", s.free_bits >= 0, "at least 0"),
        ("batch_size", s.batch_size is None or s.batch_size >= 1, "at least 1"),
        ("learning_rate", s.learning_rate > 0, "above 0"),
        ("weight_decay", s.weight_decay >= 0, "at least 0"),
        ("ema_decay", 0 <= s.ema_decay < 1, "at least 0 and below 1"),
        ("grad_clip", s.grad_clip == 0 or s.grad_clip >= 1, "0 (off) or at least 1"),
        ("max_steps", s.max_steps is None or s.max_steps >= 1, "at least 1"),
        ("patience_steps", s.patience_steps is None or s.patience_steps >= 1, "at least 1"),
        ("restarts", 1 <= s.restarts <= 32, "between 1 and 32"),
        ("members", 1 <= s.members <= 16, "between 1 and 16"),
        ("folds", s.folds is None or 1 <= s.folds <= 10, "between 1 and 10"),
        ("repeats", 1 <= s.repeats <= 4, "between 1 and 4"),
        ("validation_fraction", 0 < s.validation_fraction < 1, "between 0 and 1"),
        ("draws", 1 <= s.draws <= 256, "between 1 and 256"),
    ]
    for key, ok, expected in checks:
        if not ok:
            msg = f"setting {key!r}: {getattr(s, key)!r} must be {expected}"
            raise ConfigError(msg)
    for key, problem in (("device", device_problem(s.device)), ("alpha", alpha_problem(s.alpha))):
        if problem is not None:
            msg = f"setting {key!r}: {getattr(s, key)!r} {problem}"
            raise ConfigError(msg)
    if s.model == "hvae" and s.latent_dim is not None and s.latent_dim < 2:
        msg = f"setting 'latent_dim': {s.latent_dim} must be at least 2 for --model hvae (one per latent group)"
        raise ConfigError(msg)
    if s.denoise > 0 and s.model != "ae":
        msg = f"setting 'denoise' applies to --model ae only (model is {s.model!r})"
        raise ConfigError(msg)
    if s.free_bits > 0 and s.model not in ELBO_MODELS:
        msg = f"setting 'free_bits' applies to --model vae or vaegan only (model is {s.model!r})"
        raise ConfigError(msg)
    if s.folds is not None and s.folds > 1 and s.members > 1:
        msg = (
            f"setting 'members': {s.members} members share one split, so 'folds' must be 1 (it is {s.folds}); "
            "with folds, each fold trains one member"
        )
        raise ConfigError(msg)
    if s.repeats > 1 and (s.folds == 1 or s.members > 1):
        msg = f"setting 'repeats': {s.repeats} repeats a cross-fitting, so 'folds' must be at least 2 and 'members' 1"
        raise ConfigError(msg)
    if s.prior == "defensive" and s.model not in ELBO_MODELS:
        msg = f"setting 'prior': 'defensive' applies to --model vae or vaegan only (model is {s.model!r})"
        raise ConfigError(msg)


def make_settings(values: dict[str, Any] | None = None, **overrides: Any) -> TrainSettings:
    """Validate ``values`` then ``overrides`` (flags win) into :class:`TrainSettings`.

    Raises:
        ConfigError: naming the unknown key or the bad value.
    """
    merged = {**(values or {}), **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(merged) - set(_FIELDS))
    if unknown:
        msg = f"unknown setting(s) {unknown}; known settings: {sorted(_FIELDS)}"
        raise ConfigError(msg)
    settings = TrainSettings(**{k: _check_type(k, v) for k, v in merged.items()})
    _check_ranges(settings)
    return settings


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML file of settings (top level or a ``[train]`` table)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        msg = f"{path}: config file not found"
        raise ConfigError(msg) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        msg = f"{path}: not a valid TOML file: {err}"
        raise ConfigError(msg) from None
    return data.get("train", data)


@dataclass(frozen=True)
class Resolved:
    """Sizes derived from the data for one run."""

    hidden: int
    latent_dim: int
    batch_size: int
    warmup_steps: int
    patience_steps: int
    max_steps: int
    steps_per_epoch: int
    prior: str  # standard | defensive


def resolve(settings: TrainSettings, *, n_train: int, n_features: int, n_inputs: int) -> Resolved:
    """Fill every ``None`` size from the data's shape (rows, features, encoder inputs).

    The schedule's epochs count at most ``SCHEDULE_EPOCH_ROWS`` rows: up to there it is the one
    the detection benchmark measured; beyond, every table's fit takes the same steps.
    """
    batch = settings.batch_size or min(256, max(32, n_train // 20))
    batch = max(1, min(batch, n_train))
    steps_per_epoch = max(1, -(-min(n_train, SCHEDULE_EPOCH_ROWS) // batch))
    warmup = settings.warmup_steps
    if warmup is None:
        warmup = max(500, 20 * steps_per_epoch)
    if settings.model not in KL_MODELS:
        warmup = 0 if settings.warmup_steps is None else warmup
    max_steps = settings.max_steps or warmup + max(MIN_CAP_STEPS, 100 * steps_per_epoch)
    if warmup and max_steps <= warmup:
        msg = (
            f"setting 'max_steps': {max_steps} steps end within the KL warm-up ({warmup} steps), so no step "
            "would train on the ELBO and early stopping could never pick a model; raise max_steps above "
            f"{warmup} or shorten warmup_steps"
        )
        raise ConfigError(msg)
    return Resolved(
        hidden=settings.hidden or min(256, max(32, 2 * n_inputs)),
        latent_dim=settings.latent_dim or max(2, min(32, n_features // 2)),
        batch_size=batch,
        warmup_steps=warmup,
        patience_steps=settings.patience_steps or max(MIN_PATIENCE_STEPS, 15 * steps_per_epoch),
        max_steps=max_steps,
        steps_per_epoch=steps_per_epoch,
        prior=resolve_prior(settings),
    )


def resolve_folds(settings: TrainSettings, n_rows: int) -> int:
    """The cross-fitting folds of a run on ``n_rows`` normal rows (``settings.folds`` when set)."""
    if settings.folds is not None:
        return settings.folds
    if settings.members > 1 or n_rows > LARGE_TABLE_ROWS:
        return 1
    return 5 if n_rows < SMALL_TABLE_ROWS else 3


def cpu_plan(settings: TrainSettings, members: int) -> tuple[int, int]:
    """``(processes, torch threads in each)`` for a run of ``members`` member fits.

    Members are independent fits, so they share the cores as processes: that scales with the
    cores, and keeps its speed beside other work. A second torch thread inside one fit of these
    small networks gained 1.15x on a quiet machine at 1,024-row batches and lost up to 20x on a
    busy one (threads waiting on each other), so ``threads = None`` gives every process one.
    """
    if settings.threads is None:
        return max(1, min(available_cores(), members)), 1
    processes = max(1, min(settings.threads, members))
    return processes, max(1, settings.threads // processes)


def available_cores() -> int:
    """The cores this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_prior(settings: TrainSettings) -> str:
    """The scores' latent prior: ``auto`` is ``defensive`` for the VAE, ``standard`` otherwise."""
    if settings.prior == "auto":
        return "defensive" if settings.model == "vae" else "standard"
    return settings.prior

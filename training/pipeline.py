"""From a table of normal rows to a verified scoring bundle.

``train_bundle`` plans the columns, fits the preprocessing, trains the model, exports the
scoring graph to ONNX, checks that onnxruntime agrees with torch, calibrates p-values on
held-out normal rows *with the exported graph*, and writes the bundle atomically: a failed
run never leaves a half bundle, and never replaces a good one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from service.bundle import (
    MANIFEST_FILE,
    ONNX_FILE,
    ROW_SCORES,
    SCORE_DESCRIPTIONS,
    Calibration,
    Feature,
    Manifest,
    file_sha256,
    write_manifest,
)
from service.errors import ConfigError, DataError
from service.features import encode_frame
from training import data as data_mod
from training.config import PRIOR_BANK_ROWS, Resolved, TrainSettings, make_settings, resolve, resolve_folds
from training.export import (
    PARITY_RTOL,
    ScoringGraph,
    category_probabilities,
    export_onnx,
    forgive_category_ties,
    mixture_split_allowance,
    parity_error,
    torch_outputs,
)
from training.generative import add_decoder, write_fidelity_report
from training.loop import FitResult, fit
from training.models import Architecture, Autoencoder, Batch, Ensemble, build_model
from training.preprocess import Preprocessor, fit_features

log = logging.getLogger(__name__)
# Restart k of a run seeded s uses seed s + k * RESTART_SEED_STRIDE (a prime: far from s + 1, s + 2...),
# member m seed s + m * MEMBER_SEED_STRIDE (another prime, so that no member repeats a restart).
RESTART_SEED_STRIDE = 7919
MEMBER_SEED_STRIDE = 104_729
# Repeat r of a cross-fitting partitions the rows with seed s + r * REPEAT_SEED_STRIDE (a third prime).
REPEAT_SEED_STRIDE = 1_299_709


@dataclass(frozen=True)
class TrainResult:
    bundle_dir: Path
    manifest: Manifest
    fit: FitResult
    seconds: float
    graph: ScoringGraph  # the torch scoring graph that was exported (CPU, eval mode)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        msg = "--device cuda: torch sees no CUDA device (use --device auto or cpu)"
        raise ConfigError(msg)
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def trained_on(device: torch.device) -> dict[str, str]:
    """Where the weights were fitted, for the manifest: the same seed trains another model on
    CUDA than on the CPU (other random streams and kernels), so reproducing a bundle needs both."""
    where = {"device": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        where["device_name"] = torch.cuda.get_device_name(device)
    return where


def _to_batch(pre: Preprocessor, x: np.ndarray, device: torch.device) -> Batch:
    with torch.no_grad():
        return Batch(*(t.to(device) for t in pre(torch.from_numpy(x))))


def _random_rows(features: Sequence[Feature], n: int, seed: int) -> np.ndarray:
    """Rows far and near the training data, with missing values and unseen codes."""
    rng = np.random.default_rng(seed + 1)
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        if f.is_categorical:
            x[:, j] = rng.integers(-1, len(f.categories), n)
        elif f.is_constant:
            x[:, j] = np.where(rng.random(n) < 0.5, f.center, f.center + rng.standard_normal(n))
            x[rng.random(n) < 0.1, j] = np.nan
        else:
            x[:, j] = f.center + f.scale * rng.standard_normal(n) * rng.choice([0.5, 1, 3, 10], n)
            x[rng.random(n) < 0.1, j] = np.nan
    return x


def _check_parity(graph: ScoringGraph, session: Any, x: np.ndarray, features: Sequence[Feature]) -> float:
    """onnxruntime against torch on ``x``.

    ``expected`` is compared in each feature's standard deviations, ``feature_scores`` and ``kl``
    in units of the row's ``neg_elbo``, the total they split: a mixture of members splits it by
    weights that a float32 rounding of nearly tied members' scores moves (on a row 10 standard
    deviations out, scored 12,926 nats, one feature's 0.73 nats moved by 0.001). Where the
    members also disagree on where a far row's nats lie, that move grows with the row's total,
    so a mixture's split outputs get ``mixture_split_allowance`` besides (a bounded decoder's
    mixture on mammography: one feature of a row of 18,700 nats, 3,267.17 nats in torch and
    3,244.32 in onnxruntime, every other output within 5e-5). A categorical
    column of ``expected`` may name the other category where two are tied to float32 rounding
    (``forgive_category_ties``); before that, an AE trained on the bank table failed the check
    by 1/6: one code where torch named category 6.
    """
    ort_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    expected = torch_outputs(graph, x)
    ties = category_probabilities(graph, x)
    ort_out["expected"] = forgive_category_ties(expected["expected"], ort_out["expected"], ties, PARITY_RTOL)
    total = np.abs(expected["neg_elbo"].astype(np.float64))
    units = {
        "expected": np.array([f.scale or 1.0 for f in features], dtype=np.float64),
        "feature_scores": total[:, None],
        "kl": total,
    }
    for name, allowance in mixture_split_allowance(graph, x).items():  # in units that PARITY_RTOL scales
        units[name] = np.maximum(units.get(name, 0.0), allowance / PARITY_RTOL)
    error = parity_error(expected, ort_out, units)
    if not error <= PARITY_RTOL:
        msg = f"onnxruntime and torch disagree on the exported graph (relative error {error:.2e})"
        raise RuntimeError(msg)
    return error


def _prepare_output(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        msg = f"--out {out}: exists and is not a folder"
        raise ConfigError(msg)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).exists():
        msg = f"--out {out}: the folder is not empty and holds no latentwatch bundle; choose another"
        raise ConfigError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` with two renames; the old bundle is removed last."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train_bundle(
    frame: pd.DataFrame,
    out: str | Path,
    *,
    model: str | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
    label_column: str | None = None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    source: str = "data",
    quiet: bool = True,
) -> TrainResult:
    """Train on the normal rows of ``frame`` and write a bundle to ``out``.

    Every column is a feature unless ``features``/``exclude``/``label_column`` say otherwise;
    rows whose label is anomalous are left out of training and shown in the report.
    """
    started = time.perf_counter()
    settings = settings or make_settings(overrides, model=model, seed=seed)
    plan = data_mod.plan_columns(
        frame,
        source=source,
        label_column=label_column,
        features=features,
        exclude=exclude,
        categorical=categorical,
    )
    anomalous = np.zeros(len(frame), dtype=bool)
    if label_column is not None:
        anomalous = data_mod.parse_labels(frame, label_column, source)
    normal = frame.loc[~anomalous].reset_index(drop=True)
    if len(normal) < 10:
        msg = f"{source}: only {len(normal)} normal rows; at least 10 are needed to train"
        raise DataError(msg)
    settings = dataclasses.replace(settings, folds=resolve_folds(settings, len(normal)))
    splits = fit_splits(len(normal), settings)
    fit_rows = np.unique(np.concatenate([train_rows for train_rows, _ in splits]))
    feature_list = fit_features(normal.iloc[fit_rows], plan.numeric, plan.categorical)
    if all(f.is_constant for f in feature_list):
        msg = f"{source}: every feature column holds one value in the training rows; there is nothing to learn"
        raise DataError(msg)
    x_normal = encode_frame(normal, feature_list, source=source).x
    staging = _prepare_output(Path(out))
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        result = _train_and_write(
            settings,
            plan,
            feature_list,
            x_normal,
            splits,
            frame.loc[anomalous],
            staging,
            source,
            quiet,
        )
        _swap_in(staging, Path(out))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    manifest, fit_result, graph = result
    return TrainResult(Path(out), manifest, fit_result, time.perf_counter() - started, graph)


def _train_and_write(
    settings: TrainSettings,
    plan: data_mod.ColumnPlan,
    features: tuple[Feature, ...],
    x_normal: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    anomalies: pd.DataFrame,
    staging: Path,
    source: str,
    quiet: bool,
) -> tuple[Manifest, FitResult, ScoringGraph]:
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device)
    pre = Preprocessor(features)
    train_idx = splits[0][0]
    holdout_idx = calibration_rows(splits, settings.folds)
    resolved = resolve(settings, n_train=len(train_idx), n_features=pre.network_features, n_inputs=pre.n_inputs)
    network = features[: pre.network_features]  # the constant features come last and skip the networks
    order = tuple(i for i, f in enumerate(network) if not f.is_categorical) + tuple(
        i for i, f in enumerate(network) if f.is_categorical
    )
    arch = Architecture(
        n_inputs=pre.n_inputs,
        n_numeric=pre.n_numeric,
        group_sizes=tuple(pre.group_sizes),
        feature_order=order,
        hidden=resolved.hidden,
        depth=settings.depth,
        latent_dim=resolved.latent_dim,
        min_scale=settings.min_scale,
        bounded_decoder=settings.decoder == "bounded",
    )
    eps = torch.randn(settings.draws, resolved.latent_dim, generator=torch.Generator().manual_seed(settings.seed))
    jobs = [
        _FitJob(
            arch,
            resolved,
            _to_batch(pre, x_normal[rows], device),
            _to_batch(pre, x_normal[held], device),
            eps,
            device,
            quiet,
        )
        for rows, held in splits
    ]
    net, fit_result, members = _fit_members(settings, jobs)

    graph = ScoringGraph(pre, net.cpu(), eps).eval()
    onnx_path = staging / ONNX_FILE
    export_onnx(graph, len(features), onnx_path)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    parity = _check_parity(
        graph,
        session,
        np.concatenate([x_normal[holdout_idx][:512], _random_rows(features, 256, settings.seed)]),
        features,
    )
    primary = "neg_elbo" if settings.score == "auto" else settings.score
    held = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"x": x_normal[holdout_idx]}), strict=True)
    )
    if settings.folds > 1:
        held.update(_out_of_fold_scores(graph, x_normal, splits, holdout_idx))
    holdout_scores = held[primary]
    manifest = Manifest(
        name=settings.name or _default_name(source),
        version=settings.version or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        model_type=settings.model,
        features=features,
        latent_dim=resolved.latent_dim,
        calibration=Calibration(score=primary, alpha=settings.alpha, scores=tuple(np.sort(holdout_scores).tolist())),
        onnx_sha256=file_sha256(onnx_path),
        dropped_columns=tuple(plan.dropped),
        label_column=plan.label_column,
        preprocessing={
            "numeric": "median imputation + missing indicator; standardized with training mean and std",
            "categorical": "one-hot; missing and unseen categories (code -1) are skipped by the likelihood",
            "constant": "a numeric column with one value in the training rows skips the networks; any other "
            "value adds off_value_nats = log(n + 2) to neg_elbo (rule of succession), a missing one nothing",
        },
        training={
            **_training_summary(settings, resolved, fit_result, len(train_idx), len(holdout_idx), parity, source),
            "trained_on": trained_on(device),
            "restarts": members[0]["restarts"],
            "members": members,
        },
        scores={**SCORE_DESCRIPTIONS, **getattr(net, "extra_outputs", {})},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        latentwatch_version=_version(),
    )
    manifest, synthetic = add_decoder(
        staging, pre, net, manifest, held["latent"][:512], x_normal[train_idx], settings.seed
    )
    write_manifest(staging, manifest)
    if settings.report:
        _write_report(staging, session, manifest, fit_result, held, anomalies)
        write_fidelity_report(staging / "report", synthetic, manifest.features)
    return manifest, fit_result, graph


def _default_name(source: str) -> str:
    stem = Path(source).name.split(".")[0]
    return stem if stem and stem != "data" else "model"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latentwatch")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class _FitJob:
    """What every member and restart of one run is fitted with: the same rows, draws and sizes."""

    arch: Architecture
    resolved: Resolved
    train: Batch
    holdout: Batch
    eps: torch.Tensor
    device: torch.device
    quiet: bool


def fit_splits(n_rows: int, settings: TrainSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit rows, held-out rows) of each distinct fit: one split, or one per fold and repeat.

    With ``folds`` K >= 2, fit k holds out fold k and trains on the other K - 1, so every
    normal row is held out by exactly one member of each of the ``repeats`` partitions (repeat
    r shuffles the rows with seed ``seed + r * REPEAT_SEED_STRIDE``; repeat 0 is the plain one).
    """
    count = resolve_folds(settings, n_rows)
    if count == 1:
        return [data_mod.split_rows(n_rows, settings.validation_fraction, settings.seed)]
    splits = []
    for r in range(settings.repeats):
        folds = data_mod.fold_rows(n_rows, count, settings.seed + r * REPEAT_SEED_STRIDE)
        splits += [(np.setdiff1d(np.arange(n_rows), fold), fold) for fold in folds]
    return splits


def calibration_rows(splits: list[tuple[np.ndarray, np.ndarray]], folds: int) -> np.ndarray:
    """The held-out rows that calibrate the p-values, each once: the first partition's folds in turn."""
    return np.concatenate([held for _, held in splits[: max(1, folds)]])


def _out_of_fold_scores(
    graph: ScoringGraph, x_normal: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Each of ``rows`` scored by the mixture of the members that never saw it (one per repeat).

    Their primary score calibrates the mixture's p-values, and the report shows their scores as
    the held-out rows'. A new row is scored by every member, and the mixture's negative ELBO is
    at most the mean of the members' (Jensen), so a normal row's mixture score tends to fall
    below that of the few members that never saw it: the p-values err on the safe side.
    """
    members = graph.model.members
    unseen = np.zeros((len(rows), len(members)), dtype=bool)
    position = np.full(len(x_normal), -1)
    position[rows] = np.arange(len(rows))
    for k, (_, held) in enumerate(splits):
        unseen[position[held], k] = True
    scores = {name: np.empty(len(rows), dtype=np.float32) for name in ROW_SCORES}
    for pattern in np.unique(unseen, axis=0):
        where = np.flatnonzero((unseen == pattern).all(axis=1))
        chosen = [members[k] for k in np.flatnonzero(pattern)]
        model = chosen[0] if len(chosen) == 1 else Ensemble(chosen)
        part = torch_outputs(ScoringGraph(graph.preprocessor, model, graph.eps), x_normal[rows[where]])
        for name in ROW_SCORES:
            scores[name][where] = part[name]
    return scores


def _fit_members(
    settings: TrainSettings, jobs: list[_FitJob]
) -> tuple[Autoencoder | Ensemble, FitResult, list[dict[str, Any]]]:
    """Fit the run's members with the same draws, each the best of its restarts.

    With one job, ``settings.members`` members share its rows; with one job per fold, each fold
    has one member. Member 0 is the run's own seed, so a one-member run is the single model it
    always was. The defensive prior's bank of ``PRIOR_BANK_ROWS`` fit rows is shared out among
    the members, so that the graph's mixture costs the same whatever their number.

    Returns:
        The model (one member, or their ``Ensemble``), member 0's fit with every member's
        seconds added, and for the manifest each member's seed, best validation loss and steps.
    """
    nets: list[Autoencoder] = []
    fits: list[FitResult] = []
    summaries: list[dict[str, Any]] = []
    count = len(jobs) if len(jobs) > 1 else settings.members
    for m in range(count):
        job = jobs[m % len(jobs)]
        member_settings = settings
        if m:
            member_settings = dataclasses.replace(settings, seed=settings.seed + m * MEMBER_SEED_STRIDE)
            torch.manual_seed(member_settings.seed)
        net, result, restarts = _fit_best_of_restarts(member_settings, job)
        if job.resolved.prior == "defensive":
            _set_defensive_prior(net, job.train, member_settings.seed, PRIOR_BANK_ROWS // count)
        nets.append(net)
        fits.append(result)
        summaries.append(
            {
                "seed": member_settings.seed,
                "best_validation_loss": result.best_val,
                "steps": result.steps,
                "best_step": result.best_step,
                "clipped_steps": result.clipped_steps,
                "restarts": restarts,
            }
        )
    combined = dataclasses.replace(fits[0], seconds=sum(f.seconds for f in fits))
    return (nets[0] if len(nets) == 1 else Ensemble(nets)), combined, summaries


def _fit_best_of_restarts(settings: TrainSettings, job: _FitJob) -> tuple[Autoencoder, FitResult, dict[str, Any]]:
    """Fit ``settings.restarts`` models on the same rows and draws; keep the best validation loss.

    Restart 0 is the plain run. Restart ``k`` changes only the weights' initialization and the
    batch order (seed ``seed + k * RESTART_SEED_STRIDE``): on small or oddly shaped tables one
    initialization can land in a much worse optimum than another, and the validation loss of
    the held-out normal rows tells them apart without labels.

    Returns:
        The kept model (in eval mode), its fit, and for the manifest every restart's best
        validation loss and the index of the kept one.
    """
    best: tuple[Autoencoder, FitResult, int] | None = None
    losses: list[float] = []
    for k in range(settings.restarts):
        run_settings = settings
        if k:
            run_settings = dataclasses.replace(settings, seed=settings.seed + k * RESTART_SEED_STRIDE)
            torch.manual_seed(run_settings.seed)
        net = build_model(settings.model, job.arch, denoise=settings.denoise, free_bits=settings.free_bits)
        net = net.to(job.device)
        result = fit(net, job.train, job.holdout, job.eps.to(job.device), run_settings, job.resolved, quiet=job.quiet)
        losses.append(result.best_val)
        if best is None or result.best_val < best[1].best_val:
            best = (net, result, k)
    assert best is not None  # restarts >= 1
    net, result, kept = best
    return net, result, {"validation_losses": losses, "kept": kept}


@torch.no_grad()
def _set_defensive_prior(net: Autoencoder, train: Batch, seed: int, bank_rows: int) -> None:
    """Give the trained VAE its scoring prior from a seeded sample of ``bank_rows`` fit rows' posteriors.

    Only fit rows enter the bank: the held-out rows that calibrate the p-values must be scored
    like any new row, not against a prior that holds their own posteriors.
    """
    rows = np.arange(len(train))
    if len(rows) > bank_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, bank_rows, replace=False))
    net.eval()
    mu, log_var = net.encode(train.enc_in[torch.from_numpy(rows).to(train.enc_in.device)])
    net.use_defensive_prior(mu, log_var)


def _training_summary(settings, resolved, fit_result, n_train, n_holdout, parity, source) -> dict[str, Any]:
    return {
        "source": str(source),
        "settings": settings.to_dict(),
        "resolved": vars(resolved),
        "rows": {"train": n_train, "holdout": n_holdout},
        "steps": fit_result.steps,
        "best_step": fit_result.best_step,
        "best_validation_loss": fit_result.best_val,
        "stopped_early": fit_result.stopped_early,
        "clipped_steps": fit_result.clipped_steps,
        "seconds": round(fit_result.seconds, 2),
        "onnx_parity_max_relative_error": parity,
        "history": fit_result.history,
    }


def _write_report(staging, session, manifest, fit_result, held, anomalies) -> None:
    """The human report under ``report/``; ``held`` are the graph's outputs on the holdout rows.

    Never fails the training run.
    """
    try:
        from training.report import write_report
    except ImportError:
        return
    primary = manifest.primary_score
    names = [o.name for o in session.get_outputs()]
    anomaly_scores, anomaly_latent = None, None
    if len(anomalies):
        x_anom = encode_frame(anomalies, manifest.features, strict=False).x
        out = dict(zip(names, session.run(None, {"x": x_anom}), strict=True))
        anomaly_scores = {k: out[k] for k in ("neg_elbo", "recon_error", "kl")}
        anomaly_latent = out["latent"]
    scores = np.asarray(manifest.calibration.scores)
    threshold = float(np.quantile(scores, 1 - manifest.calibration.alpha))
    try:
        write_report(
            staging / "report",
            history=fit_result.history,
            validation_scores={k: held[k] for k in ("neg_elbo", "recon_error", "kl")},
            primary=primary,
            alpha=manifest.calibration.alpha,
            threshold=threshold,
            latent_validation=held["latent"],
            anomaly_scores=anomaly_scores,
            latent_anomalies=anomaly_latent,
            title=f"latentwatch report: {manifest.name} {manifest.version} ({manifest.model_type})",
            summary={
                "rows (train / holdout)": "{train} / {holdout}".format(**manifest.training["rows"]),
                "features": manifest.n_features,
                "steps": fit_result.steps,
                "best validation loss": round(fit_result.best_val, 4),
                "seconds": round(fit_result.seconds, 1),
            },
        )
    except Exception as err:  # a plotting failure must not lose a trained model
        log.warning("report not written: %s", err)

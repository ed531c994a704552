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
from training import distributed
from training.calibrate import calibration_rows, fit_splits, out_of_fold_scores, run_graph, validation_rows
from training.config import (
    Resolved,
    TrainSettings,
    cpu_plan,
    make_settings,
    resolve,
    resolve_folds,
)
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
from training.loop import FitResult
from training.members import FitJob, fit_members
from training.memory import check_memory
from training.models import Architecture, Batch
from training.preprocess import Preprocessor, fit_features
from training.progress import FitProgress

log = logging.getLogger(__name__)


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
) -> TrainResult | None:
    """Train on the normal rows of ``frame`` and write a bundle to ``out``.

    Every column is a feature unless ``features``/``exclude``/``label_column`` say otherwise;
    rows whose label is anomalous are left out of training and shown in the report. A table of
    more than ``max_rows`` rows is sampled to that many.

    Under ``torchrun`` (``training.distributed``) every process calls this with its own shard
    of the rows; process 0 writes the bundle and gets the result, the others get None.
    """
    started = time.perf_counter()
    settings = settings or make_settings(overrides, model=model, seed=seed)
    group = distributed.from_environment(settings.device)
    if group is not None:
        distributed.check_settings(settings)
        settings = dataclasses.replace(settings, folds=1)
    frame = data_mod.sample_frame(frame, settings.max_rows, settings.seed)
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
    if group is not None:  # every process encodes with process 0's statistics
        feature_list = group.broadcast(feature_list)
    if all(f.is_constant for f in feature_list):
        msg = f"{source}: every feature column holds one value in the training rows; there is nothing to learn"
        raise DataError(msg)
    x_normal = encode_frame(normal, feature_list, source=source).x
    check_memory(len(x_normal), Preprocessor(feature_list).n_inputs, len(feature_list), settings, len(splits))
    leader = group is None or group.leader
    staging = _prepare_output(Path(out)) if leader else None
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_plan(settings, len(splits) if len(splits) > 1 else settings.members)[1])
    try:
        result = _train_and_write(
            settings,
            _Inputs(plan, feature_list, x_normal, splits, frame.loc[anomalous], source, group),
            staging,
            quiet or not leader,
        )
        if staging is not None:
            _swap_in(staging, Path(out))
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    if group is not None:
        group.barrier()  # the others return once process 0's bundle is in place
    if result is None:
        return None
    manifest, fit_result, graph = result
    return TrainResult(Path(out), manifest, fit_result, time.perf_counter() - started, graph)


@dataclass(frozen=True)
class _Inputs:
    """What a run trains on: the column plan, the encoded normal rows and their splits."""

    plan: data_mod.ColumnPlan
    features: tuple[Feature, ...]
    x_normal: np.ndarray  # (rows, features) bundle inputs; this process's shard in a multi-process fit
    splits: list[tuple[np.ndarray, np.ndarray]]
    anomalies: pd.DataFrame  # rows labelled anomalous, for the report
    source: str
    group: distributed.Group | None


def _train_and_write(
    settings: TrainSettings, inputs: _Inputs, staging: Path | None, quiet: bool
) -> tuple[Manifest, FitResult, ScoringGraph] | None:
    """Fit, export, calibrate and write the bundle into ``staging``; None on a process other than 0."""
    plan, features, x_normal, splits, group = inputs.plan, inputs.features, inputs.x_normal, inputs.splits, inputs.group
    anomalies, source = inputs.anomalies, inputs.source
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device)
    pre = Preprocessor(features)
    train_idx = splits[0][0]
    holdout_idx = calibration_rows(splits, settings.folds)
    resolved = resolve(
        settings,
        n_train=len(train_idx) if group is None else group.total(len(train_idx)),
        n_features=pre.network_features,
        n_inputs=pre.n_inputs,
    )
    if group is not None:  # the batch is shared out: each process takes its part of every step's rows
        resolved = dataclasses.replace(resolved, batch_size=-(-resolved.batch_size // group.world))
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
        FitJob(
            arch,
            resolved,
            _to_batch(pre, x_normal[rows], device),
            _to_batch(pre, x_normal[validation_rows(held, settings.seed)], device),
            eps,
            device,
            group,
        )
        for rows, held in splits
    ]
    progress = FitProgress(quiet=quiet)
    try:
        net, fit_result, members = fit_members(settings, jobs, progress)
        x_holdout = x_normal[holdout_idx] if group is None else group.gather_rows(x_normal[holdout_idx])
        if x_holdout is None or staging is None:
            return None
        progress.stage("exporting")
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
        progress.stage("calibrating")
        held = run_graph(session, x_holdout)
        if settings.folds > 1:
            held.update(out_of_fold_scores(graph, x_normal, splits, holdout_idx))
        manifest = _manifest(
            settings,
            plan,
            resolved,
            features,
            source,
            _FitSummary(fit_result, members, len(train_idx), parity, device, 1 if group is None else group.world),
            held,
            onnx_path,
            getattr(net, "extra_outputs", {}),
        )
        progress.stage("checking the generative model")
        manifest, synthetic = add_decoder(
            staging, pre, net, manifest, held["latent"][:512], x_normal[train_idx], settings.seed
        )
        write_manifest(staging, manifest)
        if settings.report:
            progress.stage("writing the report")
            _write_report(staging, session, manifest, fit_result, held, anomalies)
            write_fidelity_report(staging / "report", synthetic, manifest.features)
    finally:
        progress.close()
    return manifest, fit_result, graph


@dataclass(frozen=True)
class _FitSummary:
    result: FitResult
    members: list[dict[str, Any]]
    n_train: int
    parity: float
    device: torch.device
    processes: int  # of a multi-process fit (training.distributed); 1 alone


def _manifest(
    settings: TrainSettings,
    plan: data_mod.ColumnPlan,
    resolved: Resolved,
    features: tuple[Feature, ...],
    source: str,
    fit: _FitSummary,
    held: dict[str, np.ndarray],
    onnx_path: Path,
    extra_scores: dict[str, str],
) -> Manifest:
    """The bundle's manifest before the decoder's checks are added (``add_decoder``).

    ``held`` are the graph's outputs on the calibration rows (out-of-fold when cross-fitted).
    """
    primary = "neg_elbo" if settings.score == "auto" else settings.score
    holdout_scores = held[primary]
    return Manifest(
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
            **_training_summary(settings, resolved, fit.result, fit.n_train, len(holdout_scores), fit.parity, source),
            "trained_on": {**trained_on(fit.device), "processes": fit.processes},
            "restarts": fit.members[0]["restarts"],
            "members": fit.members,
        },
        scores={**SCORE_DESCRIPTIONS, **extra_scores},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        latentwatch_version=_version(),
    )


def _default_name(source: str) -> str:
    stem = Path(source).name.split(".")[0]
    return stem if stem and stem != "data" else "model"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latentwatch")
    except PackageNotFoundError:
        return "0+unknown"


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

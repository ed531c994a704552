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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from service.bundle import (
    MANIFEST_FILE,
    ONNX_FILE,
    Feature,
    Manifest,
    write_manifest,
)
from service.calibration import score_threshold
from service.errors import ConfigError, DataError
from service.features import encode_frame
from service.tables import sample_frame
from training import data as data_mod
from training import distributed
from training.calibrate import calibration_rows, fit_splits, out_of_fold_scores, run_graph, validation_rows
from training.config import (
    TrainSettings,
    cpu_plan,
    make_settings,
    resolve,
    resolve_folds,
)
from training.export import (
    ScoringGraph,
    export_onnx,
)
from training.generative import add_decoder, write_fidelity_report
from training.loop import FitResult
from training.manifest import FitSummary, build_manifest
from training.members import FitJob, fit_members
from training.memory import check_memory
from training.models import Architecture, Batch
from training.parity import check_parity, random_rows
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


def _to_batch(pre: Preprocessor, x: np.ndarray, device: torch.device) -> Batch:
    with torch.no_grad():
        return Batch(*(t.to(device) for t in pre(torch.from_numpy(x))))


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
    frame = sample_frame(frame, settings.max_rows, settings.seed)
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
    check_memory(len(x_normal), Preprocessor(feature_list).n_inputs, len(feature_list), len(splits))
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
    arch = Architecture(
        n_inputs=pre.n_inputs,
        n_numeric=pre.n_numeric,
        group_sizes=tuple(pre.group_sizes),
        feature_order=tuple(range(pre.network_features)),  # the Preprocessor's order; it restores the manifest's
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
        parity = check_parity(
            graph,
            session,
            np.concatenate([x_normal[holdout_idx][:512], random_rows(features, 256, settings.seed)]),
            features,
        )
        progress.stage("calibrating")
        held = run_graph(session, x_holdout)
        if settings.folds > 1:
            held.update(out_of_fold_scores(graph, x_normal, splits, holdout_idx))
        manifest = build_manifest(
            settings,
            plan,
            resolved,
            features,
            source,
            FitSummary(fit_result, members, len(train_idx), parity, device, 1 if group is None else group.world),
            held,
            onnx_path,
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
    threshold = score_threshold(np.asarray(manifest.calibration.scores), manifest.calibration.alpha)
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

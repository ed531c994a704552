"""The manifest a training run writes: features, calibration, settings and the fit's summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.bundle import SCORE_DESCRIPTIONS, Calibration, Feature, Manifest, file_sha256
from training import data as data_mod
from training.config import Resolved, TrainSettings
from training.loop import FitResult


def trained_on(device: torch.device) -> dict[str, str]:
    """Where the weights were fitted, for the manifest: the same seed trains another model on
    CUDA than on the CPU (other random streams and kernels), so reproducing a bundle needs both."""
    where = {"device": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        where["device_name"] = torch.cuda.get_device_name(device)
    return where


@dataclass(frozen=True)
class FitSummary:
    result: FitResult
    members: list[dict[str, Any]]
    n_train: int
    parity: float
    device: torch.device
    processes: int  # of a multi-process fit (training.distributed); 1 alone


def build_manifest(
    settings: TrainSettings,
    plan: data_mod.ColumnPlan,
    resolved: Resolved,
    features: tuple[Feature, ...],
    source: str,
    fit: FitSummary,
    held: dict[str, np.ndarray],
    onnx_path: Path,
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
            "categorical": "one-hot; a missing category (code -1) is skipped by the likelihood; one never seen in "
            "training (code K, the number of categories) adds unseen_nats = log(n + K + 1) to neg_elbo "
            "(rule of succession over the n training values)",
            "constant": "a numeric column with one value in the training rows skips the networks; any other "
            "value adds off_value_nats = log(n + 2) to neg_elbo (rule of succession), a missing one nothing",
        },
        training={
            **_training_summary(settings, resolved, fit.result, fit.n_train, len(holdout_scores), fit.parity, source),
            "trained_on": {**trained_on(fit.device), "processes": fit.processes},
            "restarts": fit.members[0]["restarts"],
            "members": fit.members,
        },
        scores=dict(SCORE_DESCRIPTIONS),
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

"""Detection quality of a bundle on labelled rows (``latentwatch evaluate``).

The rows are scored through the *bundle* (:class:`service.scorer.Scorer`, onnxruntime), not
the torch model, so the figures are those the service will reach. Ranking quality comes
from the primary raw score (higher = more anomalous): ROC-AUC and average precision. The
decision quality comes from ``is_anomaly`` at the bundle's alpha: precision, recall, F1
and the false-positive rate reached on the normal rows, which should sit near alpha. The
notes name the categorical columns holding values never seen in training, and a column that
looks renamed or recoded (mostly such values: see :mod:`service.unseen`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from service import unseen
from service.bundle import Feature
from service.errors import DataError
from service.features import encode_frame
from service.scorer import Scorer
from training.data import parse_labels

TOP_ANOMALIES = 10


@dataclass(frozen=True)
class EvaluationResult:
    """Detection figures of one bundle on one labelled data set.

    Attributes:
        source: where the rows came from (a path, for messages and the report).
        model: ``name (version)`` of the bundle.
        primary_score: the raw score ranked and thresholded (higher = more anomalous).
        n_rows: rows scored; ``n_anomalies`` of them labelled anomalous.
        n_flagged: rows with ``p_value < alpha``.
        roc_auc, average_precision: ranking quality of the primary score; None when the
            labels hold one class only (see ``notes``).
        precision, recall, f1: of ``is_anomaly`` at ``alpha``; None where undefined.
        alpha: the bundle's target false-positive rate.
        false_positive_rate: share of label-normal rows flagged; None without normal rows.
        top_anomalies: the highest-scoring rows: their index, label, score, p-value and the
            feature with the largest feature score beside its value and expected value.
        notes: caveats about the figures.
    """

    source: str
    model: str
    primary_score: str
    n_rows: int
    n_anomalies: int
    n_flagged: int
    roc_auc: float | None
    average_precision: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    alpha: float
    false_positive_rate: float | None
    top_anomalies: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def evaluate_bundle(
    bundle_dir: str | os.PathLike[str],
    frame: pd.DataFrame,
    label_column: str,
    *,
    source: str,
    device: str = "auto",
    top: int = TOP_ANOMALIES,
) -> EvaluationResult:
    """Score ``frame`` with the bundle in ``bundle_dir`` and compare with its labels.

    Args:
        bundle_dir: a bundle directory (verified on load).
        frame: rows holding the bundle's feature columns and ``label_column``.
        label_column: 1/0, True/False or words (``anomaly``/``normal``, ...; see
            :func:`training.data.parse_labels`).
        source: the data's name (a path) for error messages.
        device: onnxruntime device, as in :meth:`Scorer.open`.
        top: how many of the highest-scoring rows to list.

    Raises:
        DataError: no rows, a missing label column or a label that is neither.
        BundleError: the bundle does not verify.
        InvalidInput: a missing feature column or a bad value.
    """
    if len(frame) == 0:
        msg = f"{source}: no rows to evaluate"
        raise DataError(msg)
    y_true = parse_labels(frame, label_column, source)
    scorer = Scorer.open(bundle_dir, device=device)
    scored = scorer.score_frame(frame, explain=True, source=source)
    manifest = scorer.manifest
    primary = manifest.primary_score
    y_score = scored[primary].to_numpy(dtype=float)
    flagged = scored["is_anomaly"].to_numpy(dtype=bool)
    notes = _unseen_notes(frame, manifest.features, source)
    roc_auc, ap = _ranking(y_true, y_score, notes)
    precision, recall, f1, fpr = _decision(y_true, flagged)
    return EvaluationResult(
        source=source,
        model=f"{manifest.name} (version {manifest.version})",
        primary_score=primary,
        n_rows=len(frame),
        n_anomalies=int(y_true.sum()),
        n_flagged=int(flagged.sum()),
        roc_auc=roc_auc,
        average_precision=ap,
        precision=precision,
        recall=recall,
        f1=f1,
        alpha=manifest.calibration.alpha,
        false_positive_rate=fpr,
        top_anomalies=_top_anomalies(frame, scored, y_true, scorer, top),
        notes=notes,
    )


def _unseen_notes(frame: pd.DataFrame, features: tuple[Feature, ...], source: str) -> list[str]:
    """The summary of values never seen in training, then a note per column that looks renamed or recoded."""
    categorical = [f for f in features if f.is_categorical]
    if not categorical:
        return []
    counts = encode_frame(frame[[f.name for f in categorical]], categorical, source=source).unseen
    line = unseen.summary(counts)
    return ([line] if line else []) + unseen.warnings(counts, features)


def _ranking(y_true: np.ndarray, y_score: np.ndarray, notes: list[str]) -> tuple[float | None, float | None]:
    if y_true.all() or not y_true.any():
        kind = "anomalous" if y_true.all() else "normal"
        notes.append(f"every row is labelled {kind}: ROC-AUC and average precision are undefined")
        return None, None
    finite = np.isfinite(y_score)
    if not finite.all():
        notes.append(f"{int((~finite).sum())} rows without a finite score were ranked last")
        lowest = float(y_score[finite].min()) if finite.any() else 0.0
        y_score = np.where(finite, y_score, lowest - 1.0)
    roc_auc = float(roc_auc_score(y_true, y_score))
    ap = float(average_precision_score(y_true, y_score))
    return roc_auc, ap


def _decision(y_true: np.ndarray, flagged: np.ndarray) -> tuple[float | None, float | None, float | None, float | None]:
    """Precision, recall, F1 and false-positive rate of ``flagged`` (None where undefined)."""
    tp = int(np.sum(flagged & y_true))
    fp = int(np.sum(flagged & ~y_true))
    precision = tp / int(flagged.sum()) if flagged.any() else None
    recall = tp / int(y_true.sum()) if y_true.any() else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    n_normal = int((~y_true).sum())
    fpr = fp / n_normal if n_normal else None
    return precision, recall, f1, fpr


def _top_anomalies(
    frame: pd.DataFrame, scored: pd.DataFrame, y_true: np.ndarray, scorer: Scorer, top: int
) -> pd.DataFrame:
    """The ``top`` highest-scoring rows with the feature that contributes most to each."""
    primary = scorer.manifest.primary_score
    names = scorer.manifest.feature_names
    order = np.argsort(-scored[primary].to_numpy(dtype=float), kind="stable")[:top]
    contributions = scored[[f"feature_score_{n}" for n in names]].to_numpy(dtype=float)
    contributions = np.where(np.isnan(contributions), -np.inf, contributions)
    rows = []
    for position in order:
        j = int(np.argmax(contributions[position]))
        name = names[j]
        rows.append(
            {
                "row": frame.index[position],
                "label": "anomaly" if y_true[position] else "normal",
                primary: scored[primary].iloc[position],
                "p_value": scored["p_value"].iloc[position],
                "is_anomaly": bool(scored["is_anomaly"].iloc[position]),
                "top_feature": name,
                "feature_score": scored[f"feature_score_{name}"].iloc[position],
                "value": frame[name].iloc[position],
                "expected": scored[f"expected_{name}"].iloc[position],
            }
        )
    return pd.DataFrame(rows)


def format_evaluation(result: EvaluationResult) -> str:
    """The evaluation as plain text: ranking, decision at alpha, then the top anomalies."""
    pairs = [
        ("model", result.model),
        ("data", f"{result.source}: {result.n_rows} rows, {result.n_anomalies} labelled anomalous"),
        ("score", f"{result.primary_score} (higher = more anomalous)"),
        ("ROC-AUC", _figure(result.roc_auc)),
        ("average precision", _figure(result.average_precision)),
        ("flagged", f"{result.n_flagged} rows (p_value < alpha = {result.alpha:g})"),
        ("precision", _figure(result.precision)),
        ("recall", _figure(result.recall)),
        ("F1", _figure(result.f1)),
        (
            "false-positive rate",
            f"{_figure(result.false_positive_rate)} on normal rows (alpha asked: {result.alpha:g})",
        ),
    ]
    width = max(len(k) for k, _ in pairs)
    lines = [f"{k.ljust(width)}  {v}" for k, v in pairs]
    lines += [f"note: {note}" for note in result.notes]
    if not result.top_anomalies.empty:
        table = result.top_anomalies.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        lines += ["", f"top {len(result.top_anomalies)} rows by {result.primary_score}", table]
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

"""The report's figures (PNG), each built on a matplotlib ``Figure`` with the Agg canvas.

Never through ``pyplot``: no display is needed, no global figure is left open, and the caller's
pyplot backend is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.report.values import as_2d, history_keys, history_series, worst_for_missing

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NORMAL_COLOR = "#1f77b4"
ANOMALY_COLOR = "#d62728"
THRESHOLD_COLOR = "#222222"
DPI = 110
LOG_DECADES = 3.0  # log x for scores spanning more than this many decades


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png")
    figure.clear()  # not registered with pyplot: clearing frees it, there is nothing to close


def training_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Each ``*loss`` series by epoch; ``beta`` on a twin axis."""
    figure = new_figure(7.0, 4.0)
    ax = figure.add_subplot()
    ax.set_title("training curves")
    if not history:
        empty_axes(ax, "no training history")
        return figure
    epochs = np.array([float(h.get("epoch", i + 1)) for i, h in enumerate(history)], dtype=np.float64)
    keys = [k for k in history_keys(history) if k.endswith("loss")]
    styles = {"train_loss": ("-", "train"), "val_loss": ("--", "validation")}
    plotted = []
    for key in keys:
        values = history_series(history, key)
        style, label = styles.get(key, (":", key))
        plotted.extend(ax.plot(epochs, values, style, marker="o", markersize=3, label=label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if keys and wide_positive(np.concatenate([history_series(history, k) for k in keys])):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if any(k == "beta" for k in history_keys(history)):
        twin = ax.twinx()
        beta = history_series(history, "beta")
        plotted.extend(twin.plot(epochs, beta, color="grey", alpha=0.7, label="beta (KL weight)"))
        twin.set_ylabel("beta")
    if plotted:
        ax.legend(plotted, [line.get_label() for line in plotted], loc="best")
    else:
        empty_axes(ax, "no loss in the training history")
    return figure


def score_distribution(
    validation: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    primary: str,
    alpha: float,
    threshold: float,
) -> Figure:
    """One histogram per score, primary first; anomalies overlaid; threshold on the primary."""
    names = [primary, *(k for k in validation if k != primary)]
    figure = new_figure(7.0, 2.8 * len(names) + 0.4)
    for i, name in enumerate(names):
        ax = figure.add_subplot(len(names), 1, i + 1)
        normal = validation[name]
        odd = anomalies.get(name, np.empty(0))
        extra = [threshold] if name == primary and math.isfinite(threshold) else []
        everything = np.concatenate([normal, odd, np.asarray(extra, dtype=np.float64)])
        ax.set_title(f"{name}{' (primary)' if name == primary else ''}")
        if everything.size == 0:
            empty_axes(ax, "no finite scores")
            continue
        log_x = wide_positive(everything)
        bins = histogram_bins(everything, log_x)
        if normal.size:
            ax.hist(
                normal,
                bins=bins,
                color=NORMAL_COLOR,
                alpha=0.6,
                label=f"validation rows (n={normal.size})",
            )
        if odd.size:
            ax.hist(
                odd,
                bins=bins,
                color=ANOMALY_COLOR,
                alpha=0.6,
                label=f"labelled anomalies (n={odd.size})",
            )
        if extra:
            ax.axvline(
                threshold,
                color=THRESHOLD_COLOR,
                linestyle="--",
                label=f"threshold {threshold:.4g} (alpha={alpha:g})",
            )
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("rows")
        ax.legend(loc="best", fontsize="small")
    return figure


def roc_curve(
    validation: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    primary: str,
    alpha: float,
) -> tuple[Figure, dict[str, float]]:
    """ROC of each score with both validation and anomaly values; returns the AUCs too.

    A score that could not be computed (NaN, inf) counts as the most anomalous value.
    """
    from sklearn.metrics import auc, roc_curve

    figure = new_figure(5.5, 5.0)
    ax = figure.add_subplot()
    ax.set_title("ROC: held-out normal rows vs labelled anomalies")
    aucs: dict[str, float] = {}
    names = [primary, *(k for k in validation if k != primary and k in anomalies)]
    for name in names:
        normal = np.asarray(validation[name], dtype=np.float64).ravel()
        odd = np.asarray(anomalies[name], dtype=np.float64).ravel()
        if normal.size == 0 or odd.size == 0:
            continue
        scores = worst_for_missing(np.concatenate([normal, odd]))
        truth = np.concatenate([np.zeros(normal.size), np.ones(odd.size)])
        fpr, tpr, _ = roc_curve(truth, scores)
        aucs[name] = float(auc(fpr, tpr))
        ax.plot(
            fpr,
            tpr,
            linewidth=2.2 if name == primary else 1.2,
            label=f"{name}: AUC {aucs[name]:.3f}",
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    if 0.0 < alpha < 1.0:
        ax.axvline(alpha, color=THRESHOLD_COLOR, linestyle="--", label=f"alpha = {alpha:g}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (normal rows flagged)")
    ax.set_ylabel("true-positive rate (anomalies flagged)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure, aucs


def latent_space(latent_validation: np.ndarray, latent_anomalies: np.ndarray | None) -> Figure:
    """Validation and anomaly latents in 2-D: as they are, PCA of the validation, or vs zero."""
    normal = as_2d(latent_validation)
    odd = as_2d(latent_anomalies) if latent_anomalies is not None else np.empty((0, normal.shape[1]))
    if odd.shape[1] != normal.shape[1]:
        raise ValueError(f"latent_anomalies has {odd.shape[1]} dimensions, latent_validation {normal.shape[1]}")
    figure = new_figure(6.0, 5.0)
    ax = figure.add_subplot()
    dim = normal.shape[1]
    normal_2d, odd_2d, labels = _project(normal, odd)
    ax.set_title(f"latent space (dimension {dim})")
    if normal_2d.shape[0]:
        ax.scatter(
            normal_2d[:, 0],
            normal_2d[:, 1],
            s=8,
            alpha=0.5,
            color=NORMAL_COLOR,
            label=f"validation rows (n={normal_2d.shape[0]})",
            linewidths=0,
        )
    if odd_2d.shape[0]:
        ax.scatter(
            odd_2d[:, 0],
            odd_2d[:, 1],
            s=16,
            alpha=0.8,
            color=ANOMALY_COLOR,
            label=f"labelled anomalies (n={odd_2d.shape[0]})",
            linewidths=0,
        )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.grid(alpha=0.3)
    if normal_2d.shape[0] or odd_2d.shape[0]:
        ax.legend(loc="best", fontsize="small")
    else:
        empty_axes(ax, "no latent vectors")
    return figure


def _project(normal: np.ndarray, odd: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both sets in two dimensions, plus the axis labels."""
    dim = normal.shape[1]
    if dim == 0:
        return np.zeros((normal.shape[0], 2)), np.zeros((odd.shape[0], 2)), ["(none)", "(none)"]
    if dim == 1:

        def pad(z: np.ndarray) -> np.ndarray:
            return np.column_stack([z[:, 0], np.zeros(z.shape[0])])

        return pad(normal), pad(odd), ["z1", "(zero: one latent dimension)"]
    if dim == 2:
        return normal, odd, ["z1", "z2"]
    fitted = normal[np.all(np.isfinite(normal), axis=1)]
    if fitted.shape[0] == 0:
        return normal[:, :2], odd[:, :2], ["z1", "z2"]
    mean = fitted.mean(axis=0)
    _, singular, vt = np.linalg.svd(fitted - mean, full_matrices=False)
    components = np.zeros((2, dim))
    components[: min(2, vt.shape[0])] = vt[:2]
    variance = singular**2
    share = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    share = np.concatenate([share, np.zeros(2)])[:2]
    labels = [f"PC{i + 1} ({100 * share[i]:.0f}% of validation variance)" for i in range(2)]
    return (normal - mean) @ components.T, (odd - mean) @ components.T, labels


def wide_positive(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    if finite.size < 2 or finite.min() <= 0:
        return False
    return math.log10(finite.max() / finite.min()) > LOG_DECADES


def histogram_bins(values: np.ndarray, log_x: bool) -> np.ndarray:
    count = int(np.clip(np.sqrt(values.size) * 2, 10, 60))
    low, high = float(values.min()), float(values.max())
    if log_x:
        return np.geomspace(low, high, count + 1)
    if high <= low:
        pad = max(abs(low) * 0.05, 0.5)
        low, high = low - pad, high + pad
    return np.linspace(low, high, count + 1)


def empty_axes(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])

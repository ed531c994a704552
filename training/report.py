"""The human report of a trained model: a few PNG figures and an ``index.html`` that shows them.

:func:`write_report` writes into the bundle's ``report/`` folder:

- ``training_curves.png``: every ``*loss`` series of the training history by epoch (train and
  validation loss, and e.g. an adversarial model's discriminator loss), with the KL weight
  ``beta`` on a second axis when the history has it. A validation loss that turns up while the
  training loss goes down is over-fitting; a flat one, a model that stopped learning.
- ``score_distribution.png``: one histogram per score of the held-out normal (validation) rows,
  the primary score first, with the labelled anomalies overlaid when given and the calibrated
  threshold (the score at which the p-value falls below alpha) as a vertical line on the
  primary score. Log x when the scores span more than three decades. Normal rows left of the
  line and anomalies right of it is what a good model looks like.
- ``roc_curve.png`` (only with labelled anomalies): true- against false-positive rate of each
  score over validation rows plus anomalies, with the area under each curve in the legend, and
  alpha marked on the false-positive axis.
- ``latent_space.png``: the posterior means of the validation rows (blue) and anomalies (red)
  in two dimensions: the coordinates themselves when the latent space has two, the first two
  principal components of the validation latents (numpy SVD) when it has more, and the single
  coordinate against zero when it has one.
- ``synthetic_vs_training.png`` (by :func:`write_synthetic_comparison`, after training): the
  columns where rows sampled from the model differ most from the training rows, with a table
  of every column's distance in ``index.html``.
- ``index.html``: one self-contained page (inline CSS, relative image links) with the title,
  a summary table and the figures with captions.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no display is needed, no global figure is left open, and the caller's pyplot
backend is left alone.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from training.fidelity import ColumnFidelity

INDEX_FILE = "index.html"
CURVES_FILE = "training_curves.png"
SCORES_FILE = "score_distribution.png"
ROC_FILE = "roc_curve.png"
LATENT_FILE = "latent_space.png"

_NORMAL_COLOR = "#1f77b4"
_ANOMALY_COLOR = "#d62728"
_THRESHOLD_COLOR = "#222222"
_DPI = 110
_LOG_DECADES = 3.0  # log x for scores spanning more than this many decades


def write_report(
    directory: Path,
    *,
    history: list[dict[str, float]],
    validation_scores: dict[str, np.ndarray],
    primary: str,
    alpha: float,
    threshold: float,
    latent_validation: np.ndarray,
    anomaly_scores: dict[str, np.ndarray] | None = None,
    latent_anomalies: np.ndarray | None = None,
    title: str = "latentwatch model report",
    summary: dict[str, object] | None = None,
) -> Path:
    """Write the report's figures and ``index.html`` into ``directory``; return the page's path.

    ``history`` holds one dict per epoch (keys such as ``epoch``, ``step``, ``train_loss``,
    ``val_loss``, ``beta``; what is present is plotted). ``validation_scores`` maps score names
    (``recon_error``, ``neg_elbo``, ...) to the held-out normal rows' scores, ``primary`` names
    the one calibrated with ``alpha`` to ``threshold``. ``anomaly_scores`` holds the same
    scores for labelled anomalies, if any; ``roc_curve.png`` is written only with them.
    ``latent_validation`` / ``latent_anomalies`` are posterior means, ``(n_rows, latent_dim)``.
    ``summary`` rows come first in the page's table, before what the report computes itself.
    """
    if primary not in validation_scores:
        raise ValueError(f"primary score {primary!r} is not among the validation scores {sorted(validation_scores)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    validation = {k: _finite(v) for k, v in validation_scores.items()}
    anomalies = {k: _finite(v) for k, v in (anomaly_scores or {}).items()}
    has_anomalies = primary in anomalies and anomalies[primary].size > 0

    figures: list[tuple[str, str]] = []
    _save(_training_curves(history), directory / CURVES_FILE)
    figures.append((CURVES_FILE, _CAPTIONS[CURVES_FILE]))
    _save(
        _score_distribution(validation, anomalies, primary, alpha, threshold),
        directory / SCORES_FILE,
    )
    figures.append((SCORES_FILE, _CAPTIONS[SCORES_FILE]))
    aucs: dict[str, float] = {}
    if has_anomalies:
        figure, aucs = _roc_curve(validation_scores, anomaly_scores or {}, primary, alpha)
        _save(figure, directory / ROC_FILE)
        figures.append((ROC_FILE, _CAPTIONS[ROC_FILE]))
    else:
        (directory / ROC_FILE).unlink(missing_ok=True)  # a stale one from an earlier run
    _save(_latent_space(latent_validation, latent_anomalies), directory / LATENT_FILE)
    figures.append((LATENT_FILE, _CAPTIONS[LATENT_FILE]))

    rows = _summary_rows(
        summary or {},
        history=history,
        validation=validation,
        anomalies=anomalies,
        primary=primary,
        alpha=alpha,
        threshold=threshold,
        aucs=aucs,
        latent_dim=_as_2d(latent_validation).shape[1],
    )
    index = directory / INDEX_FILE
    index.write_text(_page(title, rows, figures), encoding="utf-8")
    return index


# --- figures ------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png")
    figure.clear()  # not registered with pyplot: clearing frees it, there is nothing to close


def _training_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Each ``*loss`` series by epoch; ``beta`` on a twin axis."""
    figure = _new_figure(7.0, 4.0)
    ax = figure.add_subplot()
    ax.set_title("training curves")
    if not history:
        _empty(ax, "no training history")
        return figure
    epochs = np.array([float(h.get("epoch", i + 1)) for i, h in enumerate(history)], dtype=np.float64)
    keys = [k for k in _keys(history) if k.endswith("loss")]
    styles = {"train_loss": ("-", "train"), "val_loss": ("--", "validation")}
    plotted = []
    for key in keys:
        values = _series(history, key)
        style, label = styles.get(key, (":", key))
        plotted.extend(ax.plot(epochs, values, style, marker="o", markersize=3, label=label))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if keys and _wide_positive(np.concatenate([_series(history, k) for k in keys])):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if any(k == "beta" for k in _keys(history)):
        twin = ax.twinx()
        plotted.extend(twin.plot(epochs, _series(history, "beta"), color="grey", alpha=0.7, label="beta (KL weight)"))
        twin.set_ylabel("beta")
    if plotted:
        ax.legend(plotted, [line.get_label() for line in plotted], loc="best")
    else:
        _empty(ax, "no loss in the training history")
    return figure


def _score_distribution(
    validation: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    primary: str,
    alpha: float,
    threshold: float,
) -> Figure:
    """One histogram per score, primary first; anomalies overlaid; threshold on the primary."""
    names = [primary, *(k for k in validation if k != primary)]
    figure = _new_figure(7.0, 2.8 * len(names) + 0.4)
    for i, name in enumerate(names):
        ax = figure.add_subplot(len(names), 1, i + 1)
        normal = validation[name]
        odd = anomalies.get(name, np.empty(0))
        extra = [threshold] if name == primary and math.isfinite(threshold) else []
        everything = np.concatenate([normal, odd, np.asarray(extra, dtype=np.float64)])
        ax.set_title(f"{name}{' (primary)' if name == primary else ''}")
        if everything.size == 0:
            _empty(ax, "no finite scores")
            continue
        log_x = _wide_positive(everything)
        bins = _bins(everything, log_x)
        if normal.size:
            ax.hist(
                normal,
                bins=bins,
                color=_NORMAL_COLOR,
                alpha=0.6,
                label=f"validation rows (n={normal.size})",
            )
        if odd.size:
            ax.hist(
                odd,
                bins=bins,
                color=_ANOMALY_COLOR,
                alpha=0.6,
                label=f"labelled anomalies (n={odd.size})",
            )
        if extra:
            ax.axvline(
                threshold,
                color=_THRESHOLD_COLOR,
                linestyle="--",
                label=f"threshold {threshold:.4g} (alpha={alpha:g})",
            )
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("rows")
        ax.legend(loc="best", fontsize="small")
    return figure


def _roc_curve(
    validation: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    primary: str,
    alpha: float,
) -> tuple[Figure, dict[str, float]]:
    """ROC of each score with both validation and anomaly values; returns the AUCs too.

    A score that could not be computed (NaN, inf) counts as the most anomalous value.
    """
    from sklearn.metrics import auc, roc_curve

    figure = _new_figure(5.5, 5.0)
    ax = figure.add_subplot()
    ax.set_title("ROC: held-out normal rows vs labelled anomalies")
    aucs: dict[str, float] = {}
    names = [primary, *(k for k in validation if k != primary and k in anomalies)]
    for name in names:
        normal = np.asarray(validation[name], dtype=np.float64).ravel()
        odd = np.asarray(anomalies[name], dtype=np.float64).ravel()
        if normal.size == 0 or odd.size == 0:
            continue
        scores = _worst_for_missing(np.concatenate([normal, odd]))
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
        ax.axvline(alpha, color=_THRESHOLD_COLOR, linestyle="--", label=f"alpha = {alpha:g}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (normal rows flagged)")
    ax.set_ylabel("true-positive rate (anomalies flagged)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return figure, aucs


def _latent_space(latent_validation: np.ndarray, latent_anomalies: np.ndarray | None) -> Figure:
    """Validation and anomaly latents in 2-D: as they are, PCA of the validation, or vs zero."""
    normal = _as_2d(latent_validation)
    odd = _as_2d(latent_anomalies) if latent_anomalies is not None else np.empty((0, normal.shape[1]))
    if odd.shape[1] != normal.shape[1]:
        raise ValueError(f"latent_anomalies has {odd.shape[1]} dimensions, latent_validation {normal.shape[1]}")
    figure = _new_figure(6.0, 5.0)
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
            color=_NORMAL_COLOR,
            label=f"validation rows (n={normal_2d.shape[0]})",
            linewidths=0,
        )
    if odd_2d.shape[0]:
        ax.scatter(
            odd_2d[:, 0],
            odd_2d[:, 1],
            s=16,
            alpha=0.8,
            color=_ANOMALY_COLOR,
            label=f"labelled anomalies (n={odd_2d.shape[0]})",
            linewidths=0,
        )
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.grid(alpha=0.3)
    if normal_2d.shape[0] or odd_2d.shape[0]:
        ax.legend(loc="best", fontsize="small")
    else:
        _empty(ax, "no latent vectors")
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


# --- page ---------------------------------------------------------------------------------

_CAPTIONS = {
    CURVES_FILE: "Loss per epoch on the training and validation rows (and any other losses "
    "the model reports), with the KL weight beta on the right axis when it is annealed. "
    "Validation loss rising while training loss falls means over-fitting.",
    SCORES_FILE: "Scores of held-out normal rows (blue) and labelled anomalies (red), one "
    "panel per score, primary first. The dashed line is the calibrated threshold: rows right "
    "of it get a p-value below alpha and are flagged.",
    ROC_FILE: "How well each score separates held-out normal rows from labelled anomalies "
    "at every threshold; AUC 1 is perfect, 0.5 is chance. The dashed line marks alpha, the "
    "target false-positive rate.",
    LATENT_FILE: "Posterior means of held-out normal rows (blue) and labelled anomalies (red) "
    "in two dimensions (principal components of the validation latents when the latent space "
    "has more than two). Anomalies away from the blue cloud are ones the encoder already sees "
    "as unusual.",
}

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 980px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 1rem 0 2rem; min-width: 50%; }
th, td { text-align: left; padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; }
td.value { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; }
figure { margin: 0 0 2.2rem; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92rem; }
"""


def _page(title: str, rows: Sequence[tuple[str, str]], figures: Sequence[tuple[str, str]]) -> str:
    esc = html.escape
    table = "\n".join(f'<tr><th scope="row">{esc(k)}</th><td class="value">{esc(v)}</td></tr>' for k, v in rows)
    blocks = "\n".join(
        f'<figure><img src="{esc(name)}" alt="{esc(name)}"><figcaption>{esc(caption)}</figcaption></figure>'
        for name, caption in figures
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n"
        f"<h2>Summary</h2>\n<table>\n{table}\n</table>\n"
        f"<h2>Figures</h2>\n{blocks}\n</body>\n</html>\n"
    )


def _summary_rows(
    summary: Mapping[str, object],
    *,
    history: Sequence[Mapping[str, float]],
    validation: Mapping[str, np.ndarray],
    anomalies: Mapping[str, np.ndarray],
    primary: str,
    alpha: float,
    threshold: float,
    aucs: Mapping[str, float],
    latent_dim: int,
) -> list[tuple[str, str]]:
    """The caller's rows, then what the report knows: calibration, losses, detection."""
    rows = [(str(k), _format(v)) for k, v in summary.items()]
    known = {k for k, _ in rows}
    normal = validation[primary]
    computed: list[tuple[str, object]] = [
        ("primary score", primary),
        ("alpha (target false-positive rate)", alpha),
        ("threshold", threshold),
        ("validation rows", normal.size),
        ("validation rows above threshold", _share(normal, threshold)),
        ("latent dimension", latent_dim),
    ]
    if history:
        computed.append(("epochs", len(history)))
        last = history[-1]
        computed.extend((f"final {key}", last[key]) for key in _keys(history) if key.endswith("loss") and key in last)
    odd = anomalies.get(primary, np.empty(0))
    if odd.size:
        computed.append(("labelled anomalies", odd.size))
        computed.append(("anomalies above threshold (recall)", _share(odd, threshold)))
    computed.extend((f"ROC AUC ({name})", value) for name, value in aucs.items())
    rows.extend((k, _format(v)) for k, v in computed if k not in known)
    return rows


def _format(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


# --- helpers ------------------------------------------------------------------------------


def _finite(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _worst_for_missing(scores: np.ndarray) -> np.ndarray:
    finite = scores[np.isfinite(scores)]
    worst = (finite.max() + 1.0) if finite.size else 0.0
    best = (finite.min() - 1.0) if finite.size else 0.0
    return np.nan_to_num(scores, nan=worst, posinf=worst, neginf=best)


def _as_2d(latent: np.ndarray) -> np.ndarray:
    array = np.asarray(latent, dtype=np.float64)
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"latents must be (n_rows, latent_dim), got shape {array.shape}")
    return array


def _share(scores: np.ndarray, threshold: float) -> str:
    if scores.size == 0:
        return "n/a"
    above = int(np.count_nonzero(scores > threshold))
    return f"{above} of {scores.size} ({100.0 * above / scores.size:.1f}%)"


def _keys(history: Sequence[Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for entry in history:
        seen.update(dict.fromkeys(entry))
    return list(seen)


def _series(history: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
    return np.array([float(h.get(key, math.nan)) for h in history], dtype=np.float64)


def _wide_positive(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    if finite.size < 2 or finite.min() <= 0:
        return False
    return math.log10(finite.max() / finite.min()) > _LOG_DECADES


def _bins(values: np.ndarray, log_x: bool) -> np.ndarray:
    count = int(np.clip(np.sqrt(values.size) * 2, 10, 60))
    low, high = float(values.min()), float(values.max())
    if log_x:
        return np.geomspace(low, high, count + 1)
    if high <= low:
        pad = max(abs(low) * 0.05, 0.5)
        low, high = low - pad, high + pad
    return np.linspace(low, high, count + 1)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


# --- synthetic rows vs training rows --------------------------------------------------------

SYNTHETIC_FILE = "synthetic_vs_training.png"
_SYNTHETIC_COLOR = "#ff7f0e"
_MAX_BARS = 12
_SYNTHETIC_CAPTION = (
    "The columns where rows sampled from the model (prior, then decoder) differ most from the "
    "training rows: histograms for numeric columns (title: Kolmogorov-Smirnov distance), category "
    "frequencies for categorical ones (title: total-variation distance). 0 = the same "
    "distribution, 1 = disjoint."
)


def write_synthetic_comparison(
    directory: Path,
    columns: Sequence[ColumnFidelity],
    training_values: Mapping[str, np.ndarray],
    synthetic_values: Mapping[str, np.ndarray],
    *,
    worst: int = 6,
) -> Path:
    """Plot the ``worst`` columns of a synthetic-vs-training comparison and link it from ``index.html``.

    ``columns`` come from ``training.fidelity.compare_columns`` (distance in [0, 1], higher =
    further apart); ``training_values`` / ``synthetic_values`` map each numeric column's name
    to its raw values ``(n_rows,)`` (NaN ignored). Writes ``synthetic_vs_training.png`` and
    adds a section (distance table + figure) to ``index.html`` before its end, replacing an
    earlier one; writes a page of its own when ``index.html`` is missing. Returns the page.
    """
    from training.fidelity import worst_first

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranked = worst_first(columns)
    _save(_synthetic_figure(ranked[: max(1, worst)], training_values, synthetic_values), directory / SYNTHETIC_FILE)
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(c.name)}</td><td>{esc(c.kind)}</td><td>{esc(c.metric)}</td>"
        f'<td class="value">{_format(c.distance)}</td></tr>'
        for c in ranked
    )
    section = (
        f"{_SECTION_START}\n<h2>Synthetic rows vs training rows</h2>\n<table>\n"
        "<tr><th>column</th><th>kind</th><th>metric</th><th>distance</th></tr>\n"
        f"{rows}\n</table>\n"
        f'<figure><img src="{SYNTHETIC_FILE}" alt="{SYNTHETIC_FILE}">'
        f"<figcaption>{esc(_SYNTHETIC_CAPTION)}</figcaption></figure>\n{_SECTION_END}\n"
    )
    index = directory / INDEX_FILE
    page = index.read_text(encoding="utf-8") if index.is_file() else _page("latentwatch model report", [], [])
    if _SECTION_START in page:
        page = page[: page.index(_SECTION_START)] + page[page.index(_SECTION_END) + len(_SECTION_END) + 1 :]
    page = page.replace("</body>", section + "</body>", 1)
    index.write_text(page, encoding="utf-8")
    return index


_SECTION_START = "<!-- synthetic:start -->"
_SECTION_END = "<!-- synthetic:end -->"


def _synthetic_figure(
    columns: Sequence[ColumnFidelity],
    training_values: Mapping[str, np.ndarray],
    synthetic_values: Mapping[str, np.ndarray],
) -> Figure:
    n_cols = 2 if len(columns) > 1 else 1
    n_rows = -(-len(columns) // n_cols)
    figure = _new_figure(5.0 * n_cols, 3.0 * n_rows + 0.3)
    for i, column in enumerate(columns):
        ax = figure.add_subplot(n_rows, n_cols, i + 1)
        ax.set_title(f"{column.name}: {column.metric} {column.distance:.3f}", fontsize="medium")
        if column.kind == "categorical":
            _category_bars(ax, column)
        else:
            _overlaid_histograms(ax, training_values.get(column.name), synthetic_values.get(column.name))
    return figure


def _overlaid_histograms(ax: Axes, real: np.ndarray | None, fake: np.ndarray | None) -> None:
    real, fake = _finite(real if real is not None else []), _finite(fake if fake is not None else [])
    both = np.concatenate([real, fake])
    if both.size == 0:
        _empty(ax, "no values")
        return
    low, high = np.quantile(both, [0.001, 0.999])
    count = int(np.clip(np.sqrt(min(real.size, fake.size) or both.size), 10, 40))
    bins = np.linspace(low, high, count + 1) if high > low else _bins(both, log_x=False)
    ax.hist(real, bins=bins, density=True, alpha=0.55, color=_NORMAL_COLOR, label=f"training (n={real.size})")
    ax.hist(fake, bins=bins, density=True, alpha=0.55, color=_SYNTHETIC_COLOR, label=f"synthetic (n={fake.size})")
    ax.set_ylabel("density")
    ax.legend(loc="best", fontsize="small")


def _category_bars(ax: Axes, column: ColumnFidelity) -> None:
    real, fake = column.training or {}, column.synthetic or {}
    labels = sorted(real, key=lambda k: -max(real.get(k, 0.0), fake.get(k, 0.0)))[:_MAX_BARS]
    if not labels:
        _empty(ax, "no categories")
        return
    where = np.arange(len(labels))
    ax.bar(where - 0.2, [real.get(k, 0.0) for k in labels], width=0.4, color=_NORMAL_COLOR, label="training")
    ax.bar(where + 0.2, [fake.get(k, 0.0) for k in labels], width=0.4, color=_SYNTHETIC_COLOR, label="synthetic")
    ax.set_xticks(where, [k if len(k) <= 12 else k[:11] + "…" for k in labels], rotation=30, ha="right")
    ax.set_ylabel("share of rows")
    ax.legend(loc="best", fontsize="small")

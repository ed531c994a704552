"""The report's page: ``index.html`` with a summary table and the figures, and :func:`write_report`."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.report.figures import latent_space, roc_curve, save, score_distribution, training_curves
from training.report.values import as_2d, finite_values, history_keys, share_above

INDEX_FILE = "index.html"
CURVES_FILE = "training_curves.png"
SCORES_FILE = "score_distribution.png"
ROC_FILE = "roc_curve.png"
LATENT_FILE = "latent_space.png"


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
    validation = {k: finite_values(v) for k, v in validation_scores.items()}
    anomalies = {k: finite_values(v) for k, v in (anomaly_scores or {}).items()}
    has_anomalies = primary in anomalies and anomalies[primary].size > 0

    figures: list[tuple[str, str]] = []
    save(training_curves(history), directory / CURVES_FILE)
    figures.append((CURVES_FILE, _CAPTIONS[CURVES_FILE]))
    save(
        score_distribution(validation, anomalies, primary, alpha, threshold),
        directory / SCORES_FILE,
    )
    figures.append((SCORES_FILE, _CAPTIONS[SCORES_FILE]))
    aucs: dict[str, float] = {}
    if has_anomalies:
        figure, aucs = roc_curve(validation_scores, anomaly_scores or {}, primary, alpha)
        save(figure, directory / ROC_FILE)
        figures.append((ROC_FILE, _CAPTIONS[ROC_FILE]))
    else:
        (directory / ROC_FILE).unlink(missing_ok=True)  # a stale one from an earlier run
    save(latent_space(latent_validation, latent_anomalies), directory / LATENT_FILE)
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
        latent_dim=as_2d(latent_validation).shape[1],
    )
    index = directory / INDEX_FILE
    index.write_text(page_html(title, rows, figures), encoding="utf-8")
    return index


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


def page_html(title: str, rows: Sequence[tuple[str, str]], figures: Sequence[tuple[str, str]]) -> str:
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
    rows = [(str(k), format_value(v)) for k, v in summary.items()]
    known = {k for k, _ in rows}
    normal = validation[primary]
    computed: list[tuple[str, object]] = [
        ("primary score", primary),
        ("alpha (target false-positive rate)", alpha),
        ("threshold", threshold),
        ("validation rows", normal.size),
        ("validation rows above threshold", share_above(normal, threshold)),
        ("latent dimension", latent_dim),
    ]
    if history:
        last = history[-1]
        computed.extend(
            (name, last[key]) for name, key in (("epochs", "epoch"), ("gradient steps", "step")) if key in last
        )
        losses = [key for key in history_keys(history) if key.endswith("loss") and key in last]
        computed.extend((f"final {key}", last[key]) for key in losses)
    odd = anomalies.get(primary, np.empty(0))
    if odd.size:
        computed.append(("labelled anomalies", odd.size))
        computed.append(("anomalies above threshold (recall)", share_above(odd, threshold)))
    computed.extend((f"ROC AUC ({name})", value) for name, value in aucs.items())
    rows.extend((k, format_value(v)) for k, v in computed if k not in known)
    return rows


def format_value(value: object) -> str:
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

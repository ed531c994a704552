"""The detection report's tables: records -> rows -> per-dataset, summary and latentwatch tables.

Rows are one per (detector, dataset, seed); a latentwatch detector adds a row per single score
(``lw-vae[recon_error]``), shown but never ranked, as the variants (``lw-vae~NAME``) are not.
Metrics are averaged over seeds, then over datasets; ranks are taken per dataset (1 = best).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from detection_lw import ALPHAS, LW_DETECTORS, LW_SCORES
from detection_records import Record


def result_rows(records: Iterable[Record]) -> pd.DataFrame:
    """One row per (detector or detector[score], dataset, seed) with its metrics."""
    rows = []
    for r in records:
        base = {k: r[k] for k in ("dataset", "kind", "seed", "fit_seconds", "score_seconds")}
        fpr = {f"fpr_{a}": r.get("fpr", {}).get(str(a), np.nan) for a in ALPHAS}
        metrics = {"roc_auc": r["roc_auc"], "ap": r["ap"]}
        rows.append(base | fpr | metrics | {"detector": r["detector"]})
        if "~" in r["detector"]:
            continue  # an ablation: its primary score only
        for name, m in r.get("scores", {}).items():
            rows.append(base | {"detector": f"{r['detector']}[{name}]"} | m)
    return pd.DataFrame(rows)


def is_ranked(detector: str) -> bool:
    """Score variants (``lw-vae[recon_error]``) and ablations (``lw-vae~one-draw``) are shown, not ranked."""
    return "[" not in detector and "~" not in detector


def ordered_columns(detectors: Iterable[str], order: Sequence[str]) -> list[str]:
    """Requested detectors first, in order, each followed by its score variants."""
    present = set(detectors)
    out = []
    for d in order:
        out += [c for c in [d] + [f"{d}[{s}]" for s in LW_SCORES] if c in present]
    return out


def per_dataset(rows: pd.DataFrame, metric: str, order: Sequence[str]) -> pd.DataFrame:
    """Datasets x detectors table of ``metric``, mean over seeds."""
    table = rows.pivot_table(index="dataset", columns="detector", values=metric, aggfunc="mean")
    datasets = [d for d in dict.fromkeys(rows["dataset"]) if d in table.index]
    return table.loc[datasets, ordered_columns(table.columns, order)]


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    """Mean over datasets of each ranked detector's rank (1 = best, ties averaged)."""
    ranked = table[[c for c in table.columns if is_ranked(c)]]
    return ranked.rank(axis=1, ascending=False, method="average").mean(axis=0)


def fmt(value: float, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def metric_table(table: pd.DataFrame, with_summary: bool) -> list[str]:
    """Per-dataset table (best ranked detector in bold) plus mean and mean-rank rows."""
    ranked = [c for c in table.columns if is_ranked(c)]
    body = []
    for dataset, row in table.iterrows():
        best = row[ranked].max()
        cells = [f"**{fmt(v)}**" if c in ranked and v == best else fmt(v) for c, v in row.items()]
        body.append([str(dataset), *cells])
    if with_summary:
        ranks = mean_ranks(table)
        body.append(["**mean**", *(fmt(v) for v in table.mean(axis=0))])
        body.append(["**mean rank**", *(fmt(ranks.get(c, np.nan), 2) for c in table.columns)])
    return markdown_table(["dataset", *table.columns], body)


def summary_table(rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """Per detector: mean ROC-AUC, mean AP, mean rank, datasets covered, seconds."""
    roc = per_dataset(rows, "roc_auc", order)
    ap = per_dataset(rows, "ap", order)
    ranks = mean_ranks(roc)
    seconds = rows.groupby("detector")[["fit_seconds", "score_seconds"]].mean()
    body = []
    for d in sorted(roc.columns, key=lambda c: (not is_ranked(c), ranks.get(c, 0.0))):
        fit_s, score_s = seconds.loc[d] if is_ranked(d) else (np.nan, np.nan)
        body.append([
            d, fmt(roc[d].mean()), fmt(ap[d].mean()), fmt(ranks.get(d, np.nan), 2),
            str(int(roc[d].notna().sum())), fmt(fit_s, 2), fmt(score_s, 2),
        ])  # fmt: skip
    header = ["detector", "mean ROC-AUC", "mean AP", "mean rank", "datasets", "fit s", "score s"]
    return markdown_table(header, body)


def score_comparison(roc: pd.DataFrame, model: str) -> str:
    """Which of neg_elbo / recon_error ranks better for ``model``, and by how much."""
    a, b = (f"{model}[{s}]" for s in LW_SCORES)
    if a not in roc.columns or b not in roc.columns:
        return "–"
    diff = (roc[a] - roc[b]).dropna()
    if diff.empty:
        return "–"
    better, worse = LW_SCORES if diff.mean() >= 0 else LW_SCORES[::-1]
    wins = int((diff > 0).sum()) if better == LW_SCORES[0] else int((diff < 0).sum())
    return f"{better} by {abs(diff.mean()):.3f} (wins {wins}/{diff.size} datasets over {worse})"


def lw_table(rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """latentwatch detectors: seconds, FPR at each alpha, and the better of the two scores."""
    models = [d for d in LW_DETECTORS if d in set(rows["detector"])]
    if not models:
        return []
    roc = per_dataset(rows, "roc_auc", order)
    by_model = rows[rows["detector"].isin(models)]
    by_dataset = by_model.groupby(["detector", "dataset"]).mean(numeric_only=True)
    means = by_dataset.groupby("detector").mean()
    body = []
    for m in models:
        fpr = [fmt(means.loc[m, f"fpr_{a}"]) for a in ALPHAS]
        secs = [fmt(means.loc[m, "fit_seconds"], 1), fmt(means.loc[m, "score_seconds"], 2)]
        body.append([m, *secs, *fpr, score_comparison(roc, m)])
    header = ["detector", "mean fit s", "mean score s"]
    header += [f"FPR at alpha {a}" for a in ALPHAS] + ["better score (mean ROC-AUC difference)"]
    return markdown_table(header, body)

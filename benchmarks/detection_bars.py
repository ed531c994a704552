"""The bars the default must meet (docs/decisions.md), read from one run's rows.

Each line gives the figures and ``met`` or ``**NOT met**``: ROC-AUC over k-NN's by a margin
(on all ADBench tables and on each half), AP and mean rank against the best other ranked
detector, ROC-AUC on the mixed tables, the false-positive rate of ``p < alpha``, and the fit time.
"""

from __future__ import annotations

import pandas as pd
from adoption import compare, halves
from detection_data import ADBENCH, short_name
from detection_lw import ALPHAS, LW_DETECTORS
from detection_tables import is_ranked, mean_ranks, per_dataset

# The detection bars (docs/decisions.md), for the default against every other ranked detector in the run.
DEFAULT_DETECTOR = "lw-vae"
ROC_AUC_MARGIN = 0.01  # over k-NN's mean ROC-AUC on the ADBench tables, on all of them and on each half
FPR_SLACK = 1.5  # false-positive rate of p < alpha on test normals: at most 1.5 x alpha
FPR_TABLE_SHARE = 0.9  # ... on average, and on at least this share of the tables
# Mean fit seconds per dataset of the default, the model that ``latentwatch train`` fits with no options;
# the other model types are rivals in the ranking.
FIT_BAR_SECONDS = 30.0


def verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def table_halves() -> dict[str, str]:
    """ADBench short name -> "odd" or "even" by its file number (benchmarks/adoption.py)."""
    return halves({short_name(stem): stem for stem in ADBENCH})


def roc_margin_lines(roc_table: pd.DataFrame, default: str) -> list[str]:
    """The default's mean ROC-AUC against k-NN's + the margin, on all tables and on each half."""
    half_of = table_halves()
    lines = []
    for label, names in (("all", list(roc_table.index)), *(
        (half, [n for n in roc_table.index if half_of.get(n) == half]) for half in ("odd", "even")
    )):  # fmt: skip
        if not names:
            continue
        part = roc_table.loc[names]
        floor = part["knn"].mean() + ROC_AUC_MARGIN
        lines.append(
            f"- ROC-AUC (ADBench, {label}: {len(names)} tables): {default} {part[default].mean():.4f}; "
            f"knn + {ROC_AUC_MARGIN} = {floor:.4f}: {verdict(part[default].mean() >= floor)}"
        )
    versus = compare(roc_table[default], roc_table["knn"], half_of)
    if versus is not None:
        lines.append(f"- {default} minus knn, table by table: {versus.summary()}")
    return lines


def fpr_line(ranked: pd.DataFrame, default: str) -> str:
    """False-positive rate of p < alpha on test normals: on average and on the share of tables within the slack."""
    by_dataset = ranked[ranked["detector"] == default].groupby("dataset").mean(numeric_only=True)
    parts, met = [], True
    for alpha in ALPHAS:
        rates = by_dataset[f"fpr_{alpha}"].dropna()
        within = float((rates <= FPR_SLACK * alpha).mean()) if rates.size else 0.0
        met &= bool(rates.mean() <= FPR_SLACK * alpha and within >= FPR_TABLE_SHARE)
        parts.append(f"{rates.mean():.3f} at {alpha} (bar {FPR_SLACK * alpha:.3f}), within it on {within:.0%}")
    return (
        f"- false-positive rate of p < alpha on test normals ({default}, mean over {len(by_dataset)} datasets; "
        f"bar: on average and on {FPR_TABLE_SHARE:.0%} of them): " + "; ".join(parts) + f": {verdict(met)}"
    )


def bar_lines(rows: pd.DataFrame) -> list[str]:
    """The bars, each with its figures and whether this run meets it (empty without the default and k-NN)."""
    ranked = rows[rows["detector"].map(is_ranked)]
    adbench, mixed = (ranked[ranked["kind"] == kind] for kind in ("adbench", "mixed"))
    default = DEFAULT_DETECTOR
    if not {default, "knn"} <= set(adbench["detector"]):
        return []
    order = sorted(set(ranked["detector"]))
    roc_table = per_dataset(adbench, "roc_auc", order).dropna()  # the tables every ranked detector covers
    ap = per_dataset(adbench, "ap", order).loc[roc_table.index].mean()
    ranks = mean_ranks(roc_table)
    rival = {name: series.drop(default) for name, series in (("ap", ap), ("rank", ranks))}
    lines = [f"- ADBench tables that every ranked detector covers: {len(roc_table)}"]
    lines += roc_margin_lines(roc_table, default)
    lines += [
        f"- AP (ADBench): {default} {ap[default]:.3f}; best other {rival['ap'].idxmax()} {rival['ap'].max():.3f}: "
        f"{verdict(ap[default] > rival['ap'].max())}",
        f"- mean rank (ADBench): {default} {ranks[default]:.2f}; best other {rival['rank'].idxmin()} "
        f"{rival['rank'].min():.2f}: {verdict(ranks[default] < rival['rank'].min())}",
    ]
    if {default, "knn", "iforest"} <= set(mixed["detector"]):
        mixed_roc = per_dataset(mixed, "roc_auc", order).mean()
        beaten = mixed_roc[default] > max(mixed_roc["knn"], mixed_roc["iforest"])
        lines.append(
            f"- ROC-AUC (mixed tables): {default} {mixed_roc[default]:.4f}; knn {mixed_roc['knn']:.4f}, "
            f"iforest {mixed_roc['iforest']:.4f}: {verdict(beaten)}"
        )
    lines.append(fpr_line(ranked, default))
    fits = ranked[ranked["detector"].isin(LW_DETECTORS)].groupby(["detector", "dataset"])["fit_seconds"].mean()
    default_fit, every_lw_fit = fits[default].mean(), fits.groupby("detector").mean().mean()
    lines.append(
        f"- fit seconds per dataset ({default}, mean over {fits[default].size} datasets, bar {FIT_BAR_SECONDS:.0f}): "
        f"{default_fit:.1f}: {verdict(default_fit <= FIT_BAR_SECONDS)}. For information, not the bar: the "
        f"{fits.index.get_level_values('detector').nunique()} latentwatch detectors' fits average {every_lw_fit:.1f}"
    )
    return lines

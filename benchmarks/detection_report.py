"""The detection benchmark's section of RESULTS.md, rendered from a run's records.

``render_report`` writes the markdown between ``MARK_START`` and ``MARK_END``: the run's
description, the bars, then for each collection (ADBench, mixed) the summary, the
per-dataset tables and the variants of the default read by the adoption rule.
``render_records`` renders it again from the records file alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from adoption import compare
from detection_bars import bar_lines, table_halves
from detection_records import Record, read_records, run_tasks
from detection_tables import fmt, lw_table, markdown_table, metric_table, per_dataset, result_rows, summary_table
from detection_variants import ABLATED, ABLATIONS
from graph_speed import report_line

MARK_START = "<!-- detection:start -->"
MARK_END = "<!-- detection:end -->"


def collection_section(title: str, rows: pd.DataFrame, order: Sequence[str]) -> list[str]:
    """Summary, per-dataset ROC-AUC and AP, and the latentwatch table of one collection."""
    if rows.empty:
        return []
    out = [f"### {title}", "", *summary_table(rows, order), ""]
    for metric, label in (("roc_auc", "ROC-AUC"), ("ap", "Average precision")):
        out += [f"#### {label} per dataset (mean over seeds)", ""]
        out += [*metric_table(per_dataset(rows, metric, order), with_summary=True), ""]
    lw = lw_table(rows, order)
    if lw:
        out += ["#### latentwatch: fit time, false-positive rate of p < alpha on test normals "
                "(mean over datasets), and neg_elbo vs recon_error", "", *lw, ""]  # fmt: skip
    return out


def ablation_table(rows: pd.DataFrame, default: str = "lw-vae") -> list[str]:
    """Each variant of the default beside it, read by the adoption rule (benchmarks/adoption.py)."""
    roc = rows.pivot_table(index="dataset", columns="detector", values="roc_auc", aggfunc="mean")
    ap = rows.pivot_table(index="dataset", columns="detector", values="ap", aggfunc="mean")
    names = [d for d in ABLATED if d in roc.columns]
    if default not in roc.columns or not names:
        return []
    half_of = table_halves()
    body = [[f"{default} (the default)", "–", fmt(roc[default].mean()), fmt(ap[default].mean()), *["–"] * 6]]
    for d in names:
        versus = compare(roc[d], roc[default], half_of)
        cells = [fmt(roc[d].mean()), fmt(ap[d].mean())]
        if versus is None:
            cells += [f"{(roc[d] - roc[default]).mean():+.4f}", *["–"] * 5]
        else:
            cells += [
                f"{versus.mean:+.4f} ({versus.standard_error:.4f})",
                *(f"{versus.by_half.get(h, np.nan):+.4f}" for h in ("odd", "even")),
                f"{versus.better} / {versus.worse} of {versus.tables}",
                f"{versus.largest_mover} {versus.largest_move:+.3f}; {versus.without_largest:+.4f}",
                "yes" if versus.adopted else "no",
            ]
        body.append([d, ABLATIONS[d.partition("~")[2]][0], *cells])
    header = ["detector", "changed", "mean ROC-AUC", "mean AP", "minus the default (s.e.)", "odd half"]
    header += ["even half", "tables better / worse", "largest mover; the mean without it", "passes the rule"]
    return markdown_table(header, body)


def render_report(records: Sequence[Record], meta: dict[str, Any]) -> str:
    """The markdown section for RESULTS.md (markers included) from the run's ``records`` and ``meta``."""
    rows = result_rows(records)
    out = [MARK_START, "## Detection (novelty protocol, benchmarks/README.md)", ""]
    out += [
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; machine: {meta['machine']}; jobs: {meta['jobs']}",
        f"- packages: {meta['packages']}",
        f"- seeds: {meta['seeds']}; one thread per task; ROC-AUC/AP averaged over seeds, "
        "then over datasets; mean rank over the ranked detectors per dataset (1 = best); "
        "`detector[score]` rows are the lw models' single scores, not ranked",
        "",
    ]
    if meta.get("graph_speed"):
        out += [report_line(meta["graph_speed"]), ""]
    bars = bar_lines(rows) if not rows.empty else []
    if bars:
        out += ["The bars for the default (docs/decisions.md), from this run:", "", *bars, ""]
    if meta.get("missing"):
        out += [f"- **incomplete**: {meta['missing']} task(s) missing or failed", ""]
    if not rows.empty:
        order = meta["detectors"]
        ablations = rows["detector"].str.contains("~", regex=False)
        for kind, title in (("adbench", "ADBench"), ("mixed", "Mixed-type tables")):
            part = rows[(rows["kind"] == kind) & ~ablations]
            title = f"{title} ({part['dataset'].nunique()} datasets)"
            out += collection_section(title, part, order)
            table = ablation_table(rows[rows["kind"] == kind])
            if table:
                out += [f"#### Variants of the default ({kind}): one choice changed at a time", "", *table, ""]
    return "\n".join([*out, MARK_END]) + "\n"


def render_records(path: Path) -> str:
    """The report of the run stored in ``path``, rendered again without running anything."""
    meta, by_key = read_records(path)
    if not meta:
        msg = f"{path}: no run recorded"
        raise SystemExit(msg)
    tasks = run_tasks(meta)
    records = [by_key[t.key] for t in tasks if t.key in by_key]
    return render_report(records, meta | {"missing": len(tasks) - len(records)})

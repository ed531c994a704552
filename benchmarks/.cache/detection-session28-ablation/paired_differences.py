"""Each undone variant minus the default, paired by table (session 28).

Run from the repository root: .venv/bin/python benchmarks/.cache/detection-session28-ablation/paired_differences.py
Per-table means over the seeds, then: the mean difference, its standard error over the tables,
tables better / worse by more than 0.001, the median fit-time ratio and the tables that moved most.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(__file__).resolve().parents[1] / "detection"
DEFAULT = "lw-vae"
SMALL_TABLE_ROWS = 500


def records() -> pd.DataFrame:
    rows = []
    for path in CACHE.glob("*.json"):
        r = json.loads(path.read_text())
        if path.name.startswith("graph") or not (r["detector"] == DEFAULT or "~" in r["detector"]):
            continue
        rows.append({"det": r["detector"], "ds": r["dataset"], "kind": r["kind"], "roc": r["roc_auc"],
                     "ap": r["ap"], "fit": r["fit_seconds"], "n_train": r["n_train"]})  # fmt: skip
    return pd.DataFrame(rows)


def report(frame: pd.DataFrame, title: str) -> None:
    roc, ap, fit = (frame.pivot_table(index="ds", columns="det", values=v) for v in ("roc", "ap", "fit"))
    print(f"== {title}: default ROC-AUC {roc[DEFAULT].mean():.4f}, AP {ap[DEFAULT].mean():.4f}")
    for variant in (c for c in roc.columns if c != DEFAULT):
        d_roc, d_ap = (roc[variant] - roc[DEFAULT]).dropna(), (ap[variant] - ap[DEFAULT]).dropna()
        se = d_roc.std(ddof=1) / np.sqrt(len(d_roc))
        moved = d_roc.abs().sort_values(ascending=False).index[:3]
        print(
            f"{variant:26s} ROC-AUC {d_roc.mean():+.4f} (s.e. {se:.4f}) AP {d_ap.mean():+.4f} "
            f"better/worse {(d_roc > 0.001).sum()}/{(d_roc < -0.001).sum()} of {len(d_roc)} "
            f"fit x{(fit[variant] / fit[DEFAULT]).median():.2f} moved: "
            + ", ".join(f"{t} {d_roc[t]:+.3f}" for t in moved)
        )


def main() -> None:
    frame = records()
    for kind in ("adbench", "mixed"):
        report(frame[frame["kind"] == kind], kind)
    small = frame[(frame["kind"] == "adbench") & (frame["n_train"] < SMALL_TABLE_ROWS)]
    report(small, f"adbench tables under {SMALL_TABLE_ROWS} training rows ({small['ds'].nunique()})")


if __name__ == "__main__":
    main()

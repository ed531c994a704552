"""``latentwatch demo``: the quick start's main job on the embedded sample data.

Writes a training table and a fresh table from the same machines (both with labelled
anomalies), trains the default VAE on the first, evaluates it on the second and shows the
rows it finds most anomalous, with the column that made each one anomalous.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from service.bundle import load_bundle
from service.info import format_manifest
from service.sample_data import ID_COLUMN, LABEL_COLUMN, write_sample
from service.scorer import Scorer
from training.evaluate import evaluate_bundle, format_evaluation
from training.pipeline import train_bundle


def demo_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    train_path = write_sample(out / "telemetry-train.csv", n_rows=3000, seed=7)
    new_path = write_sample(out / "telemetry-new.csv", n_rows=2000, seed=8)
    print(f"1. sample data: {train_path} (training), {new_path} (new rows to score)")

    result = train_bundle(
        pd.read_csv(train_path),
        out / "bundle",
        label_column=LABEL_COLUMN,
        exclude=[ID_COLUMN],
        source=str(train_path),
        quiet=args.quiet,
    )
    print(f"2. trained in {result.seconds:.1f} s -> {result.bundle_dir}\n")
    print(format_manifest(load_bundle(result.bundle_dir).manifest))

    new_rows = pd.read_csv(new_path)
    print("\n3. evaluation on the new rows:")
    print(format_evaluation(evaluate_bundle(result.bundle_dir, new_rows, LABEL_COLUMN, source=str(new_path))))

    scorer = Scorer.open(result.bundle_dir, device="auto")
    scored = scorer.score_frame(new_rows, explain=True)
    primary = scorer.manifest.primary_score
    top = scored.sort_values(primary, ascending=False).head(5)
    feature_columns = [c for c in top.columns if c.startswith("feature_score_")]
    why = top[feature_columns].idxmax(axis=1).str.removeprefix("feature_score_")
    shown = new_rows.loc[top.index, [ID_COLUMN, LABEL_COLUMN]].assign(
        **{primary: top[primary], "p_value": top["p_value"], "is_anomaly": top["is_anomaly"], "top_feature": why}
    )
    print(f"\n4. the five most anomalous new rows (scored with onnxruntime, {scorer.provider}):")
    print(shown.to_string())
    print(f"\nreport: {result.bundle_dir / 'report' / 'index.html'}")
    return 0

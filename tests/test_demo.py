"""The quick start's main job, end to end: train, evaluate, serve, score through gRPC, batch, metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--out", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ROC-AUC" in result.stdout
    assert "the same scores as in-process" in result.stdout
    assert 'latentwatch_rows_scored_total{model="telemetry",version="1"} 2000.0' in result.stdout
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(scored) == 2000
    assert scored["is_anomaly"].sum() > 0
    assert (tmp_path / "bundle" / "report" / "index.html").is_file()

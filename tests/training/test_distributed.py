"""A fit on two processes with torch's own launcher (``torchrun``, gloo on loopback) matches one process.

The two fits see other batches (each process draws from its own shard), so their models differ as
two seeds do: the test allows 0.05 ROC-AUC between them on planted anomalies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from service.errors import ConfigError
from service.scorer import Scorer
from tests.training.tables import mixed_table
from training.config import make_settings
from training.distributed import check_settings

QUICK = ["--max-steps", "2500", "--warmup-steps", "100", "--quiet", "--config"]


def _planted(n_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Fresh rows of ``mixed_table``, half with ``power`` on the mirror of the line that ``load`` sets."""
    rows = mixed_table(n_rows, seed=seed).dropna().reset_index(drop=True)
    rows = rows[rows["load"].abs() > 0.5].reset_index(drop=True)
    label = np.arange(len(rows)) % 2 == 1
    rows.loc[label, "power"] = -rows.loc[label, "power"]
    return rows, label


def _roc_auc(bundle: Path, rows: pd.DataFrame, label: np.ndarray) -> float:
    scored = Scorer.open(bundle, device="cpu").score_frame(rows, source="planted rows")
    return roc_auc_score(label, scored["neg_elbo"])


def _train(tmp_path: Path, out: str, launcher: list[str]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "quick.toml"
    config.write_text("report = false\n")
    command = [*launcher, "train", "--data", str(tmp_path / "table.parquet"), "--out", str(tmp_path / out)]
    return subprocess.run([*command, *QUICK, str(config)], capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process(tmp_path: Path) -> None:
    mixed_table(6_000, seed=3).to_parquet(tmp_path / "table.parquet")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m"]
    two = _train(tmp_path, "two", [*torchrun, "training"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("trained vae") == 1  # process 0 reports; process 1 writes nothing
    one = _train(tmp_path, "one", [sys.executable, "-m", "service"])
    assert one.returncode == 0, one.stderr

    rows, label = _planted(2_000, seed=4)
    one_auc, two_auc = _roc_auc(tmp_path / "one", rows, label), _roc_auc(tmp_path / "two", rows, label)
    assert one_auc > 0.9
    assert abs(two_auc - one_auc) < 0.05, (one_auc, two_auc)  # the stated tolerance: other shards, same model
    calibration = Scorer.open(tmp_path / "two", device="cpu").manifest.calibration
    assert len(calibration.scores) == round(0.2 * 6_000)  # every process's held-out rows calibrate


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": "aae"}, "more than one optimizer"),
        ({"members": 2}, "'members': a multi-process fit trains one model"),
        ({"folds": 3}, "'folds': a multi-process fit trains one model"),
    ],
)
def test_what_a_multi_process_fit_does_not_do_is_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_settings(make_settings(values))

"""The human report: figures and index.html, for a normal run and a tiny one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from training.report import (
    CURVES_FILE,
    INDEX_FILE,
    LATENT_FILE,
    ROC_FILE,
    SCORES_FILE,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 2000, path


def _image_links(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.fixture
def normal_case() -> dict:
    rng = np.random.default_rng(0)
    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 5.0 / e,
            "val_loss": 5.5 / e + 0.01 * e,
            "beta": min(1.0, e / 5),
        }
        for e in range(1, 21)
    ]
    validation = {"neg_elbo": rng.gamma(2.0, 2.0, 400), "recon_error": rng.gamma(1.0, 0.5, 400)}
    anomalies = {
        "neg_elbo": rng.gamma(2.0, 2.0, 30) + 12.0,
        "recon_error": rng.gamma(1.0, 0.5, 30) + 2.0,
    }
    return {
        "history": history,
        "validation_scores": validation,
        "primary": "neg_elbo",
        "alpha": 0.01,
        "threshold": float(np.quantile(validation["neg_elbo"], 0.99)),
        "latent_validation": rng.normal(size=(400, 8)),
        "anomaly_scores": anomalies,
        "latent_anomalies": rng.normal(3.0, 1.0, size=(30, 8)),
        "summary": {"model": "vae", "features": 9, "note": "<b>escaped</b>"},
    }


@pytest.mark.slow
def test_normal_case_writes_every_figure_and_page(tmp_path: Path, normal_case: dict) -> None:
    out = tmp_path / "bundle" / "report"
    index = write_report(out, title="telemetry VAE", **normal_case)
    assert index == out / INDEX_FILE
    for name in (CURVES_FILE, SCORES_FILE, ROC_FILE, LATENT_FILE):
        _assert_png(out / name)
    page = index.read_text(encoding="utf-8")
    assert sorted(_image_links(page)) == sorted([CURVES_FILE, SCORES_FILE, ROC_FILE, LATENT_FILE])
    assert "<title>telemetry VAE</title>" in page
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page
    assert "<b>escaped</b>" not in page
    assert "vae" in page
    # The report's own rows: the AUC of well-separated anomalies, and the recall.
    auc = re.search(r"ROC AUC \(neg_elbo\)</th><td class=\"value\">([0-9.]+)<", page)
    assert auc is not None
    assert float(auc.group(1)) > 0.95
    assert "anomalies above threshold (recall)" in page
    assert "final val_loss" in page


@pytest.mark.slow
def test_no_anomalies_means_no_roc(tmp_path: Path, normal_case: dict) -> None:
    normal_case.pop("anomaly_scores")
    normal_case.pop("latent_anomalies")
    (tmp_path / ROC_FILE).write_bytes(b"stale")
    index = write_report(tmp_path, **normal_case)
    assert not (tmp_path / ROC_FILE).exists()
    for name in (CURVES_FILE, SCORES_FILE, LATENT_FILE):
        _assert_png(tmp_path / name)
    page = index.read_text(encoding="utf-8")
    assert ROC_FILE not in page
    assert sorted(_image_links(page)) == sorted([CURVES_FILE, SCORES_FILE, LATENT_FILE])
    assert "ROC AUC" not in page


@pytest.mark.filterwarnings("error")
def test_tiny_case(tmp_path: Path) -> None:
    """5 validation rows, latent dimension 1, one epoch without beta, no anomalies."""
    index = write_report(
        tmp_path / "r",
        history=[{"epoch": 1, "train_loss": 1.0}],
        validation_scores={"recon_error": np.array([0.1, 0.2, 0.2, 0.3, np.nan])},
        primary="recon_error",
        alpha=0.2,
        threshold=0.3,
        latent_validation=np.array([[0.0], [0.5], [-0.5], [1.0], [0.2]]),
    )
    for name in (CURVES_FILE, SCORES_FILE, LATENT_FILE):
        _assert_png(tmp_path / "r" / name)
    assert not (tmp_path / "r" / ROC_FILE).exists()
    page = index.read_text(encoding="utf-8")
    assert len(_image_links(page)) == 3
    assert 'latent dimension</th><td class="value">1<' in page


@pytest.mark.filterwarnings("error")
@pytest.mark.slow
def test_degenerate_inputs(tmp_path: Path) -> None:
    """Empty history, constant scores, one anomaly, 2-D latents, wide-range (log) scores."""
    index = write_report(
        tmp_path,
        history=[],
        validation_scores={"neg_elbo": np.full(5, 2.0), "kl": np.geomspace(1e-3, 1e3, 5)},
        primary="neg_elbo",
        alpha=0.05,
        threshold=2.0,
        latent_validation=np.zeros((5, 2)),
        anomaly_scores={"neg_elbo": np.array([50.0]), "kl": np.array([np.inf])},
        latent_anomalies=np.ones((1, 2)),
    )
    for name in (CURVES_FILE, SCORES_FILE, ROC_FILE, LATENT_FILE):
        _assert_png(tmp_path / name)
    assert "epochs" not in index.read_text(encoding="utf-8")


def test_unknown_primary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="primary"):
        write_report(
            tmp_path,
            history=[],
            validation_scores={"recon_error": np.ones(3)},
            primary="neg_elbo",
            alpha=0.1,
            threshold=1.0,
            latent_validation=np.zeros((3, 2)),
        )
    assert not (tmp_path / INDEX_FILE).exists()


def test_latent_dimensions_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        write_report(
            tmp_path,
            history=[],
            validation_scores={"recon_error": np.ones(3)},
            primary="recon_error",
            alpha=0.1,
            threshold=1.0,
            latent_validation=np.zeros((3, 4)),
            anomaly_scores={"recon_error": np.ones(2)},
            latent_anomalies=np.zeros((2, 3)),
        )

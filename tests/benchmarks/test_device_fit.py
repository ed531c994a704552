"""The CUDA training check's failure capture, table and refusal without a GPU (no datasets needed)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def device_fit(import_benchmark):
    return import_benchmark("device_fit")


def test_a_failed_case_keeps_its_error_and_the_next_cases_run(device_fit) -> None:
    def broken() -> dict:
        raise ValueError("column 'f3' is not numeric")

    failed = device_fit.attempt("vae glass cuda", broken)
    passed = device_fit.attempt("vae glass cpu", lambda: {"seconds": 1.0})
    assert failed["ok"] is False
    assert failed["error"] == "ValueError: column 'f3' is not numeric"
    assert "Traceback" in failed["traceback"]
    assert passed == {"case": "vae glass cpu", "ok": True, "seconds": 1.0}


def test_the_table_shows_each_case_its_failures_and_the_providers_difference(device_fit) -> None:
    trained = {"ok": True, "seconds": 26.17, "best_validation_loss": 9.1032, "roc_auc": 0.92276, "ap": 0.48151}
    records = [
        {"case": "vae glass cpu"} | trained,
        {"case": "vae glass cuda", "cuda_provider_max_abs_difference": {"primary": 2e-6, "p_value": 0.0}} | trained,
        {"case": "aae glass cuda", "ok": False, "error": "ModelNotReady: no GPU"},
    ]
    text = device_fit.table(records)
    assert "| vae glass cpu | 26.2 | 9.103 | 0.9228 | 0.4815 | not offered |" in text
    assert "| primary 2.00e-06, p_value 0.00e+00 |" in text
    assert "| aae glass cuda | failed: ModelNotReady: no GPU |" in text


def test_without_a_cuda_device_it_says_so_and_trains_nothing(device_fit, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_fit.main(["--datasets", "glass"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().out

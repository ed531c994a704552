"""How the default trains on CUDA beside the CPU, and whether onnxruntime's CUDA provider agrees.

For each dataset, the default (``latentwatch train`` with no options) is trained on the
detection protocol's training rows with ``device="cpu"`` and then ``device="cuda"``, same seed;
each bundle's test rows are scored by onnxruntime on the CPU. The table gives the whole
training's seconds (data, fit, calibration, export), member 0's best validation loss and the
test ROC-AUC / AP of each. Every bundle passed the trainer's export check (torch against
onnxruntime), or its row names the error. Where onnxruntime offers ``CUDAExecutionProvider``,
the CUDA-trained bundle is also scored on it and the largest score difference from the CPU
provider is reported.

``--models`` adds a short CUDA training of each other model type on the last dataset (a step
cap: it checks that each trains and exports on CUDA, not its quality).

    python benchmarks/device_fit.py                                   # glass, Cardiotocography, mnist
    python benchmarks/device_fit.py --datasets glass,cmc --models ae,aae,vaegan,hvae --json out.json

Needs a CUDA device that torch sees; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from detection_data import (
    dataset_list,
    default_data_root,
    detection_metrics,
    ensure_repo_importable,
    load_dataset,
    split_indices,
    torch_setup,
)
from detection_lw import lw_scores

DEFAULT_DATASETS = "glass,Cardiotocography,mnist"
MODEL_CHECK_STEPS = 600
SCORES_COMPARED = ("primary", "p_value")


def cuda_provider_offered() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def train_and_score(dataset: str, seed: int, root: Path, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one bundle, score its test rows on the CPU provider (and CUDA's, if offered)."""
    from training.pipeline import train_bundle

    ds = load_dataset(root, dataset)
    train, test = split_indices(ds.y, seed)
    torch_setup(seed)
    with tempfile.TemporaryDirectory(prefix="lw-device-") as tmp:
        start = time.perf_counter()
        result = train_bundle(
            ds.frame.iloc[train].reset_index(drop=True), Path(tmp) / "bundle",
            model=model, seed=seed, overrides={"report": False} | overrides, quiet=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        scores, _ = lw_scores(Path(result.bundle_dir), ds.frame.iloc[test])
        record = detection_metrics(ds.y[test], scores.primary)
        members = result.manifest.training["members"]
        record |= {
            "seconds": seconds,
            "best_validation_loss": members[0]["best_validation_loss"],
            "steps": [m["steps"] for m in members],
            "parity": result.manifest.training["onnx_parity_max_relative_error"],
        }
        if overrides.get("device") == "cuda" and cuda_provider_offered():
            on_cuda, _ = lw_scores(Path(result.bundle_dir), ds.frame.iloc[test], device="cuda")
            record["cuda_provider_max_abs_difference"] = {
                name: float(np.max(np.abs(np.asarray(getattr(on_cuda, name)) - np.asarray(getattr(scores, name)))))
                for name in SCORES_COMPARED
            }
    return record


def attempt(label: str, run: Any) -> dict[str, Any]:
    """``run()``'s record, or the error that stopped it (so one failure does not hide the rest)."""
    try:
        return {"case": label, "ok": True} | run()
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        return {"case": label, "ok": False, "error": error, "traceback": traceback.format_exc()}


def measure(datasets: list[str], devices: list[str], models: list[str], seed: int, root: Path) -> list[dict[str, Any]]:
    """The default on each dataset and device in turn, then each of ``models`` briefly on CUDA."""
    cases = [(f"vae {d} {dev}", d, "vae", {"device": dev}) for d in datasets for dev in devices]
    check = {"device": "cuda", "max_steps": MODEL_CHECK_STEPS}
    cases += [(f"{m} {datasets[-1]} cuda, {MODEL_CHECK_STEPS} steps", datasets[-1], m, check) for m in models]
    records = []
    for label, dataset, model, overrides in cases:
        records.append(attempt(label, lambda d=dataset, m=model, o=overrides: train_and_score(d, seed, root, m, o)))
        print(json.dumps({k: v for k, v in records[-1].items() if k != "traceback"}), flush=True)
    return records


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| case | training s | best validation loss (member 0) | ROC-AUC | AP "
        "| CUDA provider: max abs score difference |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in records:
        if not r["ok"]:
            lines.append(f"| {r['case']} | failed: {r['error'][:200]} | | | | |")
            continue
        provider = r.get("cuda_provider_max_abs_difference")
        provider_text = ", ".join(f"{k} {v:.2e}" for k, v in provider.items()) if provider else "not offered"
        lines.append(
            f"| {r['case']} | {r['seconds']:.1f} | {r['best_validation_loss']:.3f} | "
            f"{r['roc_auc']:.4f} | {r['ap']:.4f} | {provider_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", type=dataset_list, default=dataset_list(DEFAULT_DATASETS))
    p.add_argument("--devices", default="cpu,cuda", help="training devices, in turn, for each dataset")
    p.add_argument("--models", default="", help="comma list of other model types to check on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write every record, tracebacks included")
    args = p.parse_args(argv)
    ensure_repo_importable()
    import torch

    if not torch.cuda.is_available():
        print("torch sees no CUDA device: nothing to compare")
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}; onnxruntime CUDA provider offered: "
          f"{cuda_provider_offered()}", flush=True)  # fmt: skip
    root = (args.data_root or default_data_root()).resolve()
    models = [m for m in args.models.split(",") if m]
    records = measure(args.datasets, args.devices.split(","), models, args.seed, root)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))
    print(table(records))
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""How long the default's fit takes with AdamW's fused kernel against its foreach kernel.

``training/models/base.py`` builds every optimizer with ``fused=True``. This script trains the
default (``latentwatch train`` with no options: cross-fitted members, the defensive prior) on
the detection protocol's training rows of each dataset, one thread, with each kernel in turn,
alternating within each repeat so that both see the same machine load, and reports the median
seconds of each kernel's whole training (data, fit, calibration and export; the fit is nearly
all of it) and their ratio. Validation losses come along, to show that the two
kernels train the same models up to float rounding.

    python benchmarks/fit_speed.py                              # glass, Cardiotocography, mnist; 3 repeats
    python benchmarks/fit_speed.py --datasets letter --repeats 5

Prints a markdown table. Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detection_data import (
    dataset_list,
    default_data_root,
    ensure_repo_importable,
    limit_threads,
    load_dataset,
    split_indices,
    torch_setup,
)

KERNELS = ("foreach", "fused")
DEFAULT_DATASETS = "glass,Cardiotocography,mnist"


@contextmanager
def adamw_kernel(kernel: str) -> Iterator[None]:
    """Build the optimizers that go through ``training.models.base.adamw`` with ``kernel`` inside.

    That is every model whose optimizer ``Autoencoder.configure_optimizers`` builds, the default
    VAE among them; the AAE and VAE-GAN import ``adamw`` by name and keep the fused kernel.
    """
    import torch

    from training.models import base

    product = base.adamw

    def with_kernel(params: Any, **options: Any) -> torch.optim.AdamW:
        return torch.optim.AdamW(params, **{kernel: True}, **options)

    base.adamw = with_kernel
    try:
        yield
    finally:
        base.adamw = product


def train_on_split(dataset: str, seed: int, root: Path) -> Any:
    """Train the default on the protocol's normal training rows of ``dataset`` (one thread, seeded)."""
    limit_threads()
    ensure_repo_importable()
    from training.pipeline import train_bundle

    ds = load_dataset(root, dataset)
    train, _ = split_indices(ds.y, seed)
    frame = ds.frame.iloc[train].reset_index(drop=True)
    torch_setup(seed)
    with tempfile.TemporaryDirectory(prefix="lw-fit-speed-") as tmp:
        return train_bundle(frame, Path(tmp) / "bundle", seed=seed, overrides={"report": False}, quiet=True)


def timed_fit(dataset: str, seed: int, root: Path, kernel: str) -> dict[str, Any]:
    """Train the default on ``dataset``'s protocol split with ``kernel``; its seconds and losses."""
    ensure_repo_importable()
    with adamw_kernel(kernel):
        start = time.perf_counter()
        result = train_on_split(dataset, seed, root)
        seconds = time.perf_counter() - start
    members = result.manifest.training["members"]
    return {
        "seconds": seconds,
        "best_validation_losses": [m["best_validation_loss"] for m in members],
        "steps": [m["steps"] for m in members],
    }


def measure(datasets: list[str], seed: int, repeats: int, root: Path) -> list[dict[str, Any]]:
    """Per dataset: every repeat's seconds with each kernel, taken in turn, and their medians."""
    rows = []
    for dataset in datasets:
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KERNELS}
        for repeat in range(repeats):
            order = KERNELS if repeat % 2 == 0 else KERNELS[::-1]
            for kernel in order:
                runs[kernel].append(timed_fit(dataset, seed, root, kernel))
        medians = {k: statistics.median(r["seconds"] for r in runs[k]) for k in KERNELS}
        rows.append({"dataset": dataset, "runs": runs, "medians": medians})
    return rows


def table(rows: list[dict[str, Any]], repeats: int) -> str:
    """Markdown: median training seconds of each kernel, the ratio, and member 0's validation loss."""
    lines = [
        "| dataset | foreach: median training s | fused: median training s | foreach / fused | "
        "best validation loss of member 0, foreach / fused |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        foreach, fused = row["medians"]["foreach"], row["medians"]["fused"]
        loss_foreach = row["runs"]["foreach"][0]["best_validation_losses"][0]
        loss_fused = row["runs"]["fused"][0]["best_validation_losses"][0]
        lines.append(
            f"| {row['dataset']} | {foreach:.1f} | {fused:.1f} | {foreach / fused:.2f}x | "
            f"{loss_foreach:.3f} / {loss_fused:.3f} |"
        )
    lines.append(f"\nMedians of {repeats} repeats per kernel, taken in turn; one thread; the default's settings.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", type=dataset_list, default=dataset_list(DEFAULT_DATASETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", type=Path, default=None)
    args = p.parse_args(argv)
    root = (args.data_root or default_data_root()).resolve()
    print(table(measure(args.datasets, args.seed, args.repeats, root), args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Handlers of ``latentwatch train`` and ``latentwatch evaluate`` (torch side).

``service.cli`` parses the command line and imports this module only when one of these
commands runs, so that the serving side never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from service.fields import field_types
from service.tables import read_table
from training.config import TrainSettings, load_config_file, make_settings
from training.distributed import check_settings, close, launch, shard
from training.pipeline import TrainResult, train_bundle

log = logging.getLogger(__name__)


def _split_names(values: list[str] | None) -> list[str]:
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N``: what each launched process runs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _train(args: argparse.Namespace, settings: TrainSettings, frame: pd.DataFrame) -> TrainResult | None:
    return train_bundle(
        frame,
        args.out,
        settings=settings,
        label_column=args.label_column,
        features=_split_names(args.features) or None,
        exclude=_split_names(args.exclude),
        categorical=_split_names(args.categorical),
        source=str(args.data),
        quiet=args.quiet,
    )


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ``train`` flags that set a :class:`TrainSettings` field (same name), by field name.

    ``service.cli`` lists the flags; a flag named after a field sets it, so a new field needs
    only its flag there (``tests/training/test_cli.py`` checks types and choices against the fields).
    """
    return {name: getattr(args, name) for name in field_types(TrainSettings) if hasattr(args, name)}


def train_command(args: argparse.Namespace) -> int:
    file_values = load_config_file(Path(args.config)) if args.config else {}
    settings = make_settings(file_values, **setting_flags(args))
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        check_settings(settings)
        return launch(args.nproc, _without_nproc(sys.argv[1:]))
    frame = read_table(args.data, max_rows=settings.max_rows, seed=settings.seed, shard=shard())
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped fit cleans up as after Ctrl-C
    try:
        result = _train(args, settings, frame)
    finally:
        close()  # a multi-process fit's group, if this process joined one
    if result is None:  # a process other than 0 of a multi-process fit: process 0 reports
        return 0
    m, fit = result.manifest, result.fit
    print(
        f"trained {m.model_type} {m.name!r} version {m.version}: {m.n_features} features, "
        f"{fit.steps} steps ({'early stop' if fit.stopped_early else 'step cap'}), "
        f"best validation loss {fit.best_val:.4f}, {result.seconds:.1f} s on {m.training['trained_on']['device']}"
    )
    members = m.training.get("members", [])
    if len(members) > 1:
        losses = ", ".join(f"{member['best_validation_loss']:.4f}" for member in members)
        how = ", one per fold," if m.training["settings"]["folds"] > 1 else ""
        print(f"  {len(members)} members{how} scored as their mixture; validation losses {losses} (the first above)")
    restarts = m.training.get("restarts", {})
    if len(restarts.get("validation_losses", [])) > 1:
        losses = ", ".join(f"{v:.4f}" for v in restarts["validation_losses"])
        print(f"  restarts' validation losses: {losses}; kept restart {restarts['kept']}")
    for dropped in m.dropped_columns:
        print(f"  left out {dropped['column']!r}: {dropped['reason']}")
    print(f"bundle written to {result.bundle_dir} (report: {result.bundle_dir / 'report' / 'index.html'})")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_bundle, format_evaluation

    frame = read_table(args.data)
    result = evaluate_bundle(args.model, frame, args.label_column, source=str(args.data))
    print(format_evaluation(result))
    return 0

"""``latentwatch train`` flags against TrainSettings: one list of flags, checked against the fields."""

from __future__ import annotations

import argparse

import pytest

from service.cli import build_parser
from service.fields import field_types
from service.validation import DEVICES
from training.cli import setting_flags
from training.config import DECODERS, MODEL_TYPES, PRIORS, TrainSettings, make_settings

CHOICES = {"model": MODEL_TYPES, "device": DEVICES, "prior": PRIORS, "decoder": DECODERS}


def _train_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in commands.choices["train"]._actions if a.option_strings}


def test_each_setting_flag_has_its_fields_type_and_choices() -> None:
    fields = field_types(TrainSettings)
    flags = {dest: action for dest, action in _train_actions().items() if dest in fields}
    assert len(flags) >= 18
    for dest, action in flags.items():
        assert action.option_strings == [f"--{dest.replace('_', '-')}"], dest
        assert action.default is None, f"--{dest} must not override a config file by default"
        base = fields[dest].base
        assert (action.type or str) is base, dest
        if dest in CHOICES:
            assert tuple(action.choices) == CHOICES[dest], dest
        assert action.help, dest


def test_flags_reach_the_settings_and_unset_ones_leave_the_file_alone() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "d.csv",
            "--out",
            "o",
            "--model",
            "ae",
            "--denoise",
            "0.1",
            "--max-rows",
            "500",
            "--alpha",
            "0.05",
        ]
    )
    flags = setting_flags(args)
    assert set(flags) <= set(field_types(TrainSettings))
    settings = make_settings({"seed": 7, "alpha": 0.2}, **flags)
    assert (settings.model, settings.denoise, settings.max_rows, settings.alpha, settings.seed) == (
        "ae",
        0.1,
        500,
        0.05,
        7,
    )


@pytest.mark.parametrize("flag", ["--data", "--out", "--label-column", "--config", "--quiet", "--nproc"])
def test_flags_that_are_not_settings_are_not_passed_as_settings(flag: str) -> None:
    args = build_parser().parse_args(["train", "--data", "d.csv", "--out", "o"])
    assert flag.removeprefix("--").replace("-", "_") not in setting_flags(args)

"""The rules of settings that several commands take: device, alpha, onnxruntime threads.

``latentwatch serve`` (:class:`~service.config.ServiceConfig`), ``latentwatch score``
(:class:`~service.batch.rows.ScoreOptions`), :meth:`~service.scorer.Scorer.open`, a scoring
request's alpha and ``latentwatch train`` (``training.config``) all follow these. Each
``*_problem`` function returns what is wrong with a value (``"must be ..."``), or None when
it is good, so that each caller words the error in its own frame (a setting, a flag, a
request); :func:`check` raises it in the plain form ``"<name> must be ..., got <value>"``.
"""

from __future__ import annotations

import math
from typing import Any

from service.errors import ConfigError, InvalidInput

DEVICES = ("auto", "cpu", "cuda")


def device_problem(value: Any) -> str | None:
    """``auto`` (CUDA when it runs, else CPU), ``cpu`` or ``cuda``."""
    return None if value in DEVICES else f"must be one of {list(DEVICES)}"


def alpha_problem(value: Any) -> str | None:
    """A target false-positive rate: a number strictly between 0 and 1."""
    number = as_number(value)
    return None if 0.0 < number < 1.0 else "must be a number between 0 and 1 (exclusive)"


def onnx_threads_problem(value: Any) -> str | None:
    """onnxruntime threads: None or 0 (onnxruntime's default, one per physical core) or more."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return None
    return "must be a whole number, 0 (onnxruntime's default) or more"


def as_number(value: Any) -> float:
    """``value`` as a float; NaN for anything that is not a number (booleans included)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check(name: str, value: Any, problem: str | None, error: type[InvalidInput] = ConfigError) -> None:
    """Raise ``error`` naming ``name`` and ``value`` when ``problem`` is not None."""
    if problem is not None:
        msg = f"{name} {problem}, got {value!r}"
        raise error(msg)

"""A bundle's manifest as readable plain text, for ``latentwatch info DIR``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from service.bundle import Feature, Manifest
from service.calibration import score_threshold

QUANTILES = (0.5, 0.9, 0.95, 0.99)
MAX_CATEGORIES_SHOWN = 6
MAX_LIST_SHOWN = 4
# Training summary keys shown first, in this order, when present; the rest follow sorted.
TRAINING_KEYS_FIRST = (
    "epochs",
    "steps",
    "best_epoch",
    "best_val_loss",
    "best_validation_loss",
    "seconds",
    "train_seconds",
    "device",
    "trained_on.device",
    "trained_on.device_name",
    "seed",
    "n_train_rows",
    "n_val_rows",
    "n_calibration_rows",
)


def format_manifest(manifest: Manifest) -> str:
    """A multi-line, aligned description of ``manifest`` (plain text, no trailing newline)."""
    sections = [
        _header(manifest),
        _features_section(manifest.features),
        _columns_section(manifest),
        _scores_section(manifest),
        _training_section(manifest.training),
    ]
    return "\n\n".join(s for s in sections if s)


def _header(manifest: Manifest) -> str:
    made = manifest.created_at or "unknown"
    if manifest.latentwatch_version:
        made += f" by latentwatch {manifest.latentwatch_version}"
    pairs = [
        ("model", f"{manifest.name} (version {manifest.version})"),
        ("type", manifest.model_type),
        ("created", made),
        ("format", str(manifest.format_version)),
        ("inputs", f"{manifest.n_features} features, latent dimension {manifest.latent_dim}"),
        ("onnx sha256", manifest.onnx_sha256),
    ]
    return _pairs(pairs)


def _features_section(features: Sequence[Feature]) -> str:
    header = ("#", "name", "kind", "dtype", "missing", "encoding")
    rows = [
        (
            str(i),
            f.name,
            f.kind,
            f.dtype,
            f"{100 * f.missing_in_training:.1f}%",
            _encoding(f),
        )
        for i, f in enumerate(features)
    ]
    return "features\n" + _table(header, rows)


def _encoding(feature: Feature) -> str:
    if feature.is_categorical:
        shown = ", ".join(str(c) for c in feature.categories[:MAX_CATEGORIES_SHOWN])
        more = len(feature.categories) - MAX_CATEGORIES_SHOWN
        if more > 0:
            shown += f", ... (+{more})"
        unseen = "" if feature.unseen_nats is None else f"; an unseen one costs {_number(feature.unseen_nats)} nats"
        return f"{len(feature.categories)} categories: {shown}{unseen}"
    if feature.is_constant:
        return f"constant {_number(feature.center)}; another value costs {_number(feature.off_value_nats)} nats"
    parts = [
        f"{label} {_number(value)}"
        for label, value in (
            ("fill", feature.fill),
            ("center", feature.center),
            ("scale", feature.scale),
        )
        if value is not None
    ]
    return ", ".join(parts) or "raw"


def _columns_section(manifest: Manifest) -> str:
    lines = []
    if manifest.dropped_columns:
        lines.append("dropped columns")
        rows = [_dropped_row(d) for d in manifest.dropped_columns]
        lines.append(_table(("name", "reason"), rows))
    if manifest.passthrough_columns:
        lines.append("passthrough columns: " + ", ".join(manifest.passthrough_columns))
    if manifest.label_column:
        lines.append(f"label column: {manifest.label_column}")
    return "\n".join(lines)


def _dropped_row(dropped: Mapping[str, Any]) -> tuple[str, str]:
    name = str(dropped.get("name", dropped.get("column", "?")))
    rest = {k: v for k, v in dropped.items() if k not in ("name", "column")}
    reason = rest.pop("reason", "")
    extra = ", ".join(f"{k} {v}" for k, v in rest.items())
    return name, "; ".join(s for s in (str(reason), extra) if s)


def _scores_section(manifest: Manifest) -> str:
    cal = manifest.calibration
    scores = np.sort(np.asarray(cal.scores, dtype=float))
    quantiles = ", ".join(f"{100 * q:g}% {_number(np.quantile(scores, q))}" for q in QUANTILES)
    threshold = score_threshold(scores, cal.alpha)
    if math.isinf(threshold) and threshold > 0:
        flags = f"nothing: {cal.n} calibration rows cannot reach p < {cal.alpha:g}"
    else:
        flags = f"{cal.score} > {_number(threshold)}"
    pairs = [
        ("primary score", cal.score),
        ("alpha", f"{cal.alpha:g} (target false-positive rate)"),
        ("calibration", f"{cal.n} held-out normal rows"),
        ("  range", f"{_number(scores[0])} to {_number(scores[-1])}"),
        ("  quantiles", quantiles),
        ("flags", flags),
    ]
    return "scores\n" + _indent(_pairs(pairs))


def _training_section(training: Mapping[str, Any]) -> str:
    if not training:
        return ""
    synthetic = training.get("synthetic_vs_training")
    training = {k: v for k, v in training.items() if k != "synthetic_vs_training"}
    if isinstance(synthetic, Mapping) and synthetic.get("columns"):
        training["synthetic_vs_training"] = _synthetic_summary(synthetic)
    flat = dict(_flatten(training))
    first = [k for k in TRAINING_KEYS_FIRST if k in flat]
    rest = sorted(k for k in flat if k not in first)
    pairs = [(k, _value(flat[k])) for k in (*first, *rest)]
    return "training\n" + _indent(_pairs(pairs))


def _synthetic_summary(synthetic: Mapping[str, Any]) -> str:
    """One line: mean and worst per-column distance between sampled and training rows."""
    columns = synthetic["columns"]
    worst = max(columns, key=lambda name: columns[name].get("distance", 0.0))
    return (
        f"mean distance {_number(synthetic.get('mean_distance'))}, worst {worst!r} "
        f"{_number(columns[worst].get('distance'))} ({columns[worst].get('metric', '')}); see report/"
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_SHOWN:
            tail = ", ".join(_value(v) for v in value[-2:])
            return f"[{len(value)} values, last: {tail}]"
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{float(value):.6g}"


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *rows)]
    return _indent("\n".join(line.rstrip() for line in lines))


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())

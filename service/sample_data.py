"""The embedded demo dataset: synthetic machine telemetry with labelled anomalies.

The README quick start trains on it (``write_sample("telemetry.csv")``), and tests use it as a
realistic, deterministic table. numpy and pandas only: the serving install has it too.

Columns (one row = one reading from one machine):

===================  ==========  ===================================================================
column               kind        meaning
===================  ==========  ===================================================================
``machine_id``       string id   ``"m-00042"``: which machine sent the reading. An identifier, **not
                                 a feature**: exclude it when training (it has one label per
                                 machine, ~``n_rows / 15`` of them, and each machine sits at one
                                 site).
``site``             categorical ``north`` (45 %), ``south`` (30 %), ``east`` (17 %), ``west``
                                 (8 %); about 1 % missing.
``shift``            categorical ``day``, ``evening``, ``night``; the night shift runs lighter
                                 loads.
``temperature_c``    numeric     casing temperature, °C: the site's ambient plus load and wear.
``humidity_pct``     numeric     relative humidity, %: set by the site, lower when it is warm; about
                                 4 % missing.
``rpm``              numeric     spindle speed, rev/min: follows the load.
``power_kw``         numeric     electrical power, kW: follows speed, plus wear.
``flow_l_min``       numeric     coolant flow, L/min: follows the load; about 2 % missing.
``pressure_kpa``     numeric     coolant pressure, kPa: follows the flow, with a per-site offset.
``vibration_mm_s``   numeric     RMS vibration velocity, mm/s: positive, right-skewed, grows with
                                 wear and speed.
``label``            int         0 normal, 1 anomaly. Not a feature: the column to evaluate with.
===================  ==========  ===================================================================

The numeric columns come from three latent factors (load, ambient temperature, wear) plus
independent noise, so they are correlated, on very different scales, with site-dependent
offsets. Anomalies (``round(n_rows * anomaly_share)`` rows, spread evenly over the kinds in
:data:`ANOMALY_KINDS`) are:

- ``vibration_spike``: vibration 4-9 times its normal value (one column far off; easy);
- ``overheat``: temperature 12-25 °C above what the load and the site explain (one column off);
- ``speed_power_mismatch``: a high speed with the power of an idling machine (each value is
  plausible alone; only the broken correlation gives it away);
- ``wrong_site``: temperature and humidity of another climate than the row's site (plausible
  values, wrong combination with ``site``);
- ``pressure_drop``: pressure 12-25 % below what the flow explains (a leak; subtle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from service.tables import write_table

SITES = ("north", "south", "east", "west")
SITE_SHARES = (0.45, 0.30, 0.17, 0.08)
SHIFTS = ("day", "evening", "night")
SHIFT_SHARES = (0.45, 0.35, 0.20)

# Per-site climate and plumbing: ambient temperature (°C), humidity (%), pressure offset (kPa).
_AMBIENT_C = {"north": 10.0, "south": 27.0, "east": 18.0, "west": 6.0}
_HUMIDITY_PCT = {"north": 62.0, "south": 78.0, "east": 38.0, "west": 55.0}
_PRESSURE_OFFSET_KPA = {"north": 0.0, "south": 25.0, "east": -15.0, "west": 40.0}
_SHIFT_LOAD = {"day": 0.15, "evening": 0.0, "night": -0.35}

ANOMALY_KINDS = (
    "vibration_spike",
    "overheat",
    "speed_power_mismatch",
    "wrong_site",
    "pressure_drop",
)
NUMERIC_COLUMNS = (
    "temperature_c",
    "humidity_pct",
    "rpm",
    "power_kw",
    "flow_l_min",
    "pressure_kpa",
    "vibration_mm_s",
)
ID_COLUMN = "machine_id"
LABEL_COLUMN = "label"
KIND_COLUMN = "anomaly_kind"

_MISSING_SHARE = {"humidity_pct": 0.04, "flow_l_min": 0.02, "site": 0.01}
_ROWS_PER_MACHINE = 15


def make_sample(
    n_rows: int = 3000,
    anomaly_share: float = 0.03,
    seed: int = 7,
    *,
    include_kind: bool = False,
) -> pd.DataFrame:
    """Machine telemetry with ``label`` (see the module docstring for columns and anomalies).

    The same arguments always give the identical frame. Rows are in random order, so the
    anomalies are spread through the table. ``include_kind`` adds an ``anomaly_kind`` column
    (``""`` for a normal row, else a name from :data:`ANOMALY_KINDS`), for per-kind evaluation;
    it changes no other value.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    if not 0.0 <= anomaly_share < 1.0:
        raise ValueError(f"anomaly_share must be in [0, 1), got {anomaly_share}")
    rng = np.random.default_rng(seed)

    n_machines = max(1, n_rows // _ROWS_PER_MACHINE)
    machine_site = rng.choice(SITES, size=n_machines, p=SITE_SHARES)
    machine_wear = rng.gamma(2.0, 0.5, size=n_machines)  # long-lived per-machine wear level
    machine = rng.integers(0, n_machines, size=n_rows)
    site = machine_site[machine]
    shift = rng.choice(SHIFTS, size=n_rows, p=SHIFT_SHARES)

    frame = _normal_rows(rng, site, shift, machine_wear[machine])
    label = np.zeros(n_rows, dtype=np.int64)
    kind_column = np.full(n_rows, "", dtype=object)
    n_anomalies = round(n_rows * anomaly_share)
    if n_anomalies:
        rows = rng.choice(n_rows, size=n_anomalies, replace=False)
        label[rows] = 1
        kinds = np.resize(np.arange(len(ANOMALY_KINDS)), n_anomalies)
        for kind_index, kind in enumerate(ANOMALY_KINDS):
            _inject(rng, frame, site, rows[kinds == kind_index], kind)
            kind_column[rows[kinds == kind_index]] = kind

    for column in ("humidity_pct", "flow_l_min"):
        frame[column] = np.where(rng.random(n_rows) < _MISSING_SHARE[column], np.nan, frame[column])
    site_column = site.astype(object)
    site_column[rng.random(n_rows) < _MISSING_SHARE["site"]] = np.nan

    out = pd.DataFrame(
        {
            ID_COLUMN: [f"m-{m:05d}" for m in machine],
            "site": site_column,
            "shift": shift.astype(object),
            **{c: np.round(frame[c], 2) for c in NUMERIC_COLUMNS},
            LABEL_COLUMN: label,
        }
    )
    if include_kind:
        out[KIND_COLUMN] = kind_column
    return out


def write_sample(path: Path, **kwargs: object) -> Path:
    """Write :func:`make_sample` (``kwargs`` passed on) to ``path``, CSV or Parquet by its name
    (:func:`service.tables.write_table`)."""
    return write_table(make_sample(**kwargs), path)  # type: ignore[arg-type]


def _normal_rows(
    rng: np.random.Generator, site: np.ndarray, shift: np.ndarray, wear: np.ndarray
) -> dict[str, np.ndarray]:
    """Numeric columns of normal rows from the latent factors load, ambient and wear."""
    n = len(site)
    load = np.clip(0.55 + np.vectorize(_SHIFT_LOAD.get)(shift) + rng.normal(0.0, 0.18, n), 0.05, 1.2)
    ambient = np.vectorize(_AMBIENT_C.get)(site) + rng.normal(0.0, 2.5, n)
    humidity = (
        np.vectorize(_HUMIDITY_PCT.get)(site)
        - 1.2 * (ambient - np.vectorize(_AMBIENT_C.get)(site))
        + rng.normal(0.0, 4.0, n)
    )
    rpm = 600.0 + 1800.0 * load + rng.normal(0.0, 40.0, n)
    power = 2.0 + 0.011 * rpm + 1.5 * wear + rng.normal(0.0, 0.8, n)
    flow = 40.0 + 70.0 * load + rng.normal(0.0, 3.0, n)
    pressure = 180.0 + 2.2 * flow + np.vectorize(_PRESSURE_OFFSET_KPA.get)(site) + rng.normal(0.0, 6.0, n)
    temperature = ambient + 22.0 * load + 3.0 * wear + rng.normal(0.0, 1.2, n)
    vibration = (0.8 + 0.6 * wear + 0.0006 * rpm) * rng.lognormal(0.0, 0.15, n)
    return {
        "temperature_c": temperature,
        "humidity_pct": np.clip(humidity, 3.0, 99.0),
        "rpm": rpm,
        "power_kw": power,
        "flow_l_min": flow,
        "pressure_kpa": pressure,
        "vibration_mm_s": vibration,
    }


def _inject(
    rng: np.random.Generator,
    frame: dict[str, np.ndarray],
    site: np.ndarray,
    rows: np.ndarray,
    kind: str,
) -> None:
    """Turn ``rows`` of ``frame`` into anomalies of ``kind`` (in place)."""
    k = len(rows)
    if k == 0:
        return
    if kind == "vibration_spike":
        frame["vibration_mm_s"][rows] *= rng.uniform(4.0, 9.0, k)
    elif kind == "overheat":
        frame["temperature_c"][rows] += rng.uniform(12.0, 25.0, k)
    elif kind == "speed_power_mismatch":
        # A loaded machine's speed, an idling machine's power (both values seen in normal rows).
        frame["rpm"][rows] = rng.uniform(1900.0, 2300.0, k)
        frame["power_kw"][rows] = 2.0 + 0.011 * rng.uniform(750.0, 950.0, k) + rng.normal(0.0, 0.8, k)
    elif kind == "wrong_site":
        # The climate of the site furthest from the row's own.
        for row in rows:
            own = str(site[row])
            other = max(SITES, key=lambda s, own=own: abs(_AMBIENT_C[s] - _AMBIENT_C[own]))
            shift_c = _AMBIENT_C[other] - _AMBIENT_C[own]
            frame["temperature_c"][row] += shift_c
            frame["humidity_pct"][row] = np.clip(
                frame["humidity_pct"][row] + _HUMIDITY_PCT[other] - _HUMIDITY_PCT[own],
                3.0,
                99.0,
            )
    elif kind == "pressure_drop":
        frame["pressure_kpa"][rows] *= rng.uniform(0.75, 0.88, k)
    else:  # pragma: no cover - ANOMALY_KINDS is closed
        raise ValueError(f"unknown anomaly kind {kind!r}")

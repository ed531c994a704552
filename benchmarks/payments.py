"""A synthetic card-payments table for the scale benchmark: ten mixed columns, missing values.

Rows come from a fixed seed in chunks, so that a table of any size can be written without
holding it in memory (``write_parquet``). The structure is known, so planted anomalies can be
scored:

==================  ===========  ================================================================
column              kind         how a normal row gets it
==================  ===========  ================================================================
``merchant``        categorical  one of 12 merchant categories (skewed shares)
``country``         categorical  one of 8 countries; ``currency`` follows it
``currency``        categorical  the country's currency (5 currencies)
``card_present``    boolean      mostly true for shops, false for online merchants
``amount``          numeric      lognormal, its median set by the merchant category; positive
``hour``            numeric      hour of day, 0-23, around the merchant's busy hour
``account_days``    numeric      account age in days, positive; about 3% missing
``tx_24h``          numeric      transactions in the last 24 hours (Poisson)
``distance_km``     numeric      distance from home, lognormal; larger when the card is absent;
                                 about 2% missing
``balance``         numeric      account balance, grows with account age; about 1% missing
==================  ===========  ================================================================

Planted anomalies (``ANOMALY_KINDS``), each changing one or two columns of a normal row:
a large amount for the merchant, a country with another country's currency, a burst of
transactions, an hour the merchant is closed, a present card far from home.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MERCHANTS = (
    "grocery",
    "fuel",
    "restaurant",
    "online_retail",
    "travel",
    "electronics",
    "pharmacy",
    "utilities",
    "clothing",
    "entertainment",
    "subscriptions",
    "jewelry",
)
MERCHANT_SHARES = np.array([20, 12, 14, 15, 4, 5, 6, 6, 8, 5, 4, 1], dtype=float)
MEDIAN_AMOUNT = np.array([45, 60, 35, 70, 600, 300, 25, 120, 80, 40, 15, 900], dtype=float)
BUSY_HOUR = np.array([17, 8, 20, 21, 11, 15, 12, 10, 16, 21, 3, 14], dtype=float)
ONLINE = np.array([0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0], dtype=bool)
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "CA", "IT", "CH")
COUNTRY_SHARES = np.array([40, 15, 10, 12, 6, 8, 6, 3], dtype=float)
CURRENCY_OF = {"US": "USD", "DE": "EUR", "FR": "EUR", "GB": "GBP", "JP": "JPY", "CA": "USD", "IT": "EUR", "CH": "CHF"}
ANOMALY_KINDS = ("large_amount", "wrong_currency", "burst", "closed_hour", "present_far_away")


def normal_rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` normal payments."""
    merchant = rng.choice(len(MERCHANTS), n, p=MERCHANT_SHARES / MERCHANT_SHARES.sum())
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARES / COUNTRY_SHARES.sum())
    countries = np.array(COUNTRIES, dtype=object)[country]
    online = ONLINE[merchant]
    card_present = np.where(online, rng.random(n) < 0.02, rng.random(n) < 0.93)
    account_days = np.round(rng.gamma(2.0, 400.0, n)) + 1
    frame = pd.DataFrame(
        {
            "merchant": np.array(MERCHANTS, dtype=object)[merchant],
            "country": countries,
            "currency": np.array([CURRENCY_OF[c] for c in COUNTRIES], dtype=object)[country],
            "card_present": card_present,
            "amount": np.round(MEDIAN_AMOUNT[merchant] * rng.lognormal(0.0, 0.6, n), 2),
            "hour": np.round(BUSY_HOUR[merchant] + rng.normal(0, 2.5, n)) % 24,
            "account_days": account_days,
            "tx_24h": rng.poisson(2.0, n).astype(float),
            "distance_km": np.round(rng.lognormal(np.where(card_present, 1.5, 3.0), 0.8, n), 1),
            "balance": np.round(200 + 3.0 * account_days * rng.lognormal(0, 0.5, n), 2),
        }
    )
    for column, share in (("account_days", 0.03), ("distance_km", 0.02), ("balance", 0.01)):
        frame.loc[rng.random(n) < share, column] = np.nan
    return frame


def plant_anomalies(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A copy of ``frame`` with each row changed by one kind of ``ANOMALY_KINDS`` in turn."""
    out = frame.copy()
    kind = np.arange(len(out)) % len(ANOMALY_KINDS)
    merchant = out["merchant"].map({m: i for i, m in enumerate(MERCHANTS)}).to_numpy()
    rows = kind == 0
    out.loc[rows, "amount"] = np.round(MEDIAN_AMOUNT[merchant[rows]] * rng.uniform(12, 30, rows.sum()), 2)
    rows = kind == 1
    shifted = out.loc[rows, "country"].map(lambda c: COUNTRIES[(COUNTRIES.index(c) + 3) % len(COUNTRIES)])
    wrong = shifted.map(CURRENCY_OF).to_numpy()
    same = wrong == out.loc[rows, "currency"].to_numpy()
    out.loc[rows, "currency"] = np.where(same, "CHF", wrong)
    rows = kind == 2
    out.loc[rows, "tx_24h"] = rng.integers(15, 40, rows.sum()).astype(float)
    rows = kind == 3
    out.loc[rows, "hour"] = (BUSY_HOUR[merchant[rows]] + 12) % 24
    rows = kind == 4
    out.loc[rows, "card_present"] = True
    out.loc[rows, "distance_km"] = np.round(rng.uniform(3000, 9000, rows.sum()), 1)
    out["kind"] = np.array(ANOMALY_KINDS, dtype=object)[kind]
    return out


def labelled_rows(n_normal: int, n_anomalies: int, seed: int) -> pd.DataFrame:
    """Fresh normal rows and planted anomalies, shuffled, with a ``label`` column (1 = anomaly)."""
    rng = np.random.default_rng(seed)
    normal = normal_rows(n_normal, rng).assign(label=0, kind="normal")
    planted = plant_anomalies(normal_rows(n_anomalies, rng), rng).assign(label=1)
    frame = pd.concat([normal, planted], ignore_index=True)
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def write_parquet(path: Path, rows: int, seed: int, *, files: int = 1, chunk: int = 500_000) -> Path:
    """Write ``rows`` normal payments to ``path`` (one file) or to ``files`` files in folder ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    per_file = -(-rows // files)
    if files > 1:
        path.mkdir(parents=True, exist_ok=True)
    written = 0
    for f in range(files):
        target = path / f"part-{f:04d}.parquet" if files > 1 else path
        count = min(per_file, rows - written)
        writer = None
        for start in range(0, count, chunk):
            table = pa.Table.from_pandas(normal_rows(min(chunk, count - start), rng), preserve_index=False)
            writer = writer or pq.ParquetWriter(target, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
        written += count
    return path

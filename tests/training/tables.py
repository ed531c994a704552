"""Small tables and quick settings shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

# One model, not the default's 3 or 5 cross-fitted members: the default's extra cost shows in the
# benchmark, not in the tests; tests of folds ask for them.
QUICK = {"max_steps": 300, "warmup_steps": 100, "folds": 1, "report": False}


def mixed_table(n_rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two correlated numeric columns, an integer column, a string category and a boolean,
    with missing values in one numeric column and in the category."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=n_rows)
    site = rng.choice(["north", "south", "east"], size=n_rows, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "load": load,
            "power": 2.0 * load + 0.1 * rng.normal(size=n_rows) + (site == "south"),
            "count": rng.integers(0, 100, size=n_rows),
            "site": site,
            "flag": rng.random(n_rows) < 0.3,
        }
    )
    frame.loc[rng.random(n_rows) < 0.05, "power"] = np.nan
    frame.loc[rng.random(n_rows) < 0.05, "site"] = None
    return frame

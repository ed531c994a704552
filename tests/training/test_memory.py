"""A fit that cannot fit in memory is refused before training, naming the setting that lowers it."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from training.memory import check_memory, fit_bytes


def test_the_estimate_grows_with_rows_inputs_and_members() -> None:
    base = fit_bytes(100_000, 40, 10, 1)
    assert fit_bytes(200_000, 40, 10, 1) > base
    assert fit_bytes(100_000, 400, 10, 1) > base
    assert fit_bytes(100_000, 40, 10, 3) > base


def test_a_fit_that_fits_passes_and_one_that_does_not_names_max_rows() -> None:
    check_memory(1_000_000, 40, 10, 1, available=8 * 2**30)
    with pytest.raises(ConfigError, match=r"needs about [0-9.]+ GiB, and 2\.0 GiB .* \(--max-rows [0-9,]+ would fit"):
        check_memory(1_000_000, 2_000, 10, 1, available=2 * 2**30)


def test_the_suggested_max_rows_does_fit() -> None:
    with pytest.raises(ConfigError) as err:
        check_memory(1_000_000, 2_000, 10, 1, available=2 * 2**30)
    rows = int(err.value.message.split("--max-rows ")[1].split(" ")[0].replace(",", ""))
    check_memory(rows, 2_000, 10, 1, available=2 * 2**30)

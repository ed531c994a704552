"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from tests.training.tables import QUICK


@pytest.fixture
def quick() -> dict[str, object]:
    """Settings that train in about a second: for tests of behaviour, not of quality."""
    return dict(QUICK)

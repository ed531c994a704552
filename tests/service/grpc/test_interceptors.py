"""The interceptor's pure rules (service/grpc/interceptors.py); its behaviour on a real server is
tested in test_lifecycle.py, test_malformed.py and test_drain.py."""

from __future__ import annotations

import pytest

from service.grpc.interceptors import DEADLINE_SLACK_S, cancellation_code


@pytest.mark.parametrize(
    ("remaining", "code"),
    [
        (None, "CANCELLED"),  # a call without a deadline was cancelled by its client
        (5.0, "CANCELLED"),
        (DEADLINE_SLACK_S * 2, "CANCELLED"),
        (DEADLINE_SLACK_S / 2, "DEADLINE_EXCEEDED"),  # the client's timer fired a little before the server's
        (0.0, "DEADLINE_EXCEEDED"),
        (-0.3, "DEADLINE_EXCEEDED"),
    ],
)
def test_a_cancellation_at_the_deadline_counts_as_the_deadline(remaining: float | None, code: str) -> None:
    assert cancellation_code(remaining) == code

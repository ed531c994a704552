"""The hostile-request benchmark's figures and report (no server needed)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def hostile(import_benchmark):
    return import_benchmark("hostile")


def test_p99_is_the_nearest_rank(hostile) -> None:
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert hostile.nearest_rank(values, 0.99) == 99.0
    assert hostile.nearest_rank(values, 0.5) == 50.0
    assert hostile.nearest_rank([3.0], 0.99) == 3.0
    summary = hostile.summarize([5.0, 1.0, 3.0])
    assert (summary.n, summary.median, summary.p99, summary.max) == (3, 3.0, 5.0, 5.0)


def test_a_good_request_counts_as_beside_when_it_began_in_flight(hostile) -> None:
    intervals = [(10.0, 11.0), (12.0, 12.5)]
    calls = [(9.9, 10.2), (10.5, 10.501), (11.0, 11.1), (12.4, 12.9), (13.0, 13.1)]
    # Began before the first hostile call, at the moment one ended, or after the last: not beside.
    assert hostile.started_during(calls, intervals) == pytest.approx([1.0, 500.0])


def run(hostile, name: str, p99: float):
    kind = next(h for h in hostile.HOSTILE if h.name == name)
    beside = hostile.Summary(n=300, median=2.5, p99=p99, max=p99 + 1)
    answer = "INVALID_ARGUMENT: model 'sensors': input 'x': shape [3000000, 5] holds 3000000 rows"
    return hostile.HostileRun(kind, sent=12, in_flight_ms=210.0, answer=answer, beside=beside)


def context() -> dict[str, str]:
    keys = ("command", "date", "machine", "load", "versions", "bundle")
    return {key: f"<{key}>" for key in keys}


def test_the_report_shows_each_case_and_the_target(hostile) -> None:
    alone = hostile.Summary(n=300, median=0.71, p99=1.2, max=2.31)
    runs = [run(hostile, "40 MB of BYTES", 40.0), run(hostile, "60 MB raw FP32 tensor", 85.5)]
    text = hostile.render(alone, runs, context())
    assert text.startswith(hostile.MARK_START)
    assert text.rstrip().endswith(hostile.MARK_END)
    assert "- command: `<command>`" in text
    assert "| alone | 300 | 0.71 | 1.20 | 2.31 |" in text
    assert "| beside 40 MB of BYTES | 300 | 2.50 | 40.00 | 41.00 |" in text
    assert "| beside 60 MB raw FP32 tensor | 300 | 2.50 | 85.50 | 86.50 |" in text
    assert "input `x` FP32 [3000000, 5] | 12 | 210 | INVALID_ARGUMENT: model 'sensors'" in text
    assert "p99 under 100 ms beside each hostile request: **met** (worst 85.50 ms)" in text


def test_the_report_says_when_the_target_is_missed(hostile) -> None:
    alone = hostile.Summary(n=300, median=0.71, p99=1.2, max=2.31)
    text = hostile.render(
        alone, [run(hostile, "40 MB of BYTES", 40.0), run(hostile, "60 MB raw FP32 tensor", 323.0)], context()
    )
    assert "**NOT met** (worst 323 ms)" in text


def test_the_hostile_requests_are_the_sizes_the_tests_use(hostile) -> None:
    sizes = {h.name: (h.datatype, h.data_bytes) for h in hostile.HOSTILE}
    assert sizes == {"40 MB of BYTES": ("BYTES", 40_000_000), "60 MB raw FP32 tensor": ("FP32", 60_000_000)}
    x = next(h for h in hostile.HOSTILE if h.input == "x")
    assert 4 * x.shape[0] * x.shape[1] == x.data_bytes

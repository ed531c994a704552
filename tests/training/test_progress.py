"""The training run's one progress display: stage, steps per second, time left; plain lines off a terminal."""

from __future__ import annotations

import io

from training.progress import FitProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fitting_member_one_of_three() -> tuple[io.StringIO, FakeClock, FitProgress]:
    """A display off a terminal (plain lines every 10 s), at the start of the first of 3,000 steps."""
    stream, clock = io.StringIO(), FakeClock()
    progress = FitProgress(stream=stream, clock=clock, interval=10.0)
    progress.plan(3_000)
    progress.start_fit("member 1 of 3")
    return stream, clock, progress


def test_plain_lines_off_a_terminal_give_stage_rate_and_time_left() -> None:
    stream, clock, progress = _fitting_member_one_of_three()
    clock.now = 10.0
    progress.step(1_000, val=9.5)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("fitting member 1 of 3:")
    assert "step 1,000 of at most 3,000, 100 steps/s, fitting ends in at most 20s, val 9.500" in lines[-1]


def test_a_member_that_stops_early_leaves_the_total_and_lines_are_rate_limited() -> None:
    stream, clock, progress = _fitting_member_one_of_three()
    clock.now = 10.0
    progress.step(500)
    progress.end_fit(500, 1_000)  # early stopping: 500 of its 1,000 steps unused
    assert progress.total == 2_500
    before = len(stream.getvalue().splitlines())
    clock.now = 12.0
    progress.step(25)  # within the interval: no line
    assert len(stream.getvalue().splitlines()) == before
    progress.stage("calibrating")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[-2].startswith("calibrating:")
    assert lines[-1] == "done in 12s"


def test_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    progress = FitProgress(quiet=True, stream=stream, clock=FakeClock())
    progress.plan(100)
    progress.start_fit("the model")
    progress.step(100)
    progress.stage("exporting")
    progress.close()
    assert stream.getvalue() == ""

"""MicroBatcher driven directly: coalescing, splitting, bounds, failures, cancellation, and
(with a real onnxruntime scorer) the same scores alone as coalesced under concurrency.

Waits for company run on a :class:`FakeClock` that moves only when a test advances it, and
``run`` functions that must be caught mid-call block on a :class:`Gate`, so that no test
depends on how fast this machine is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batching import MicroBatcher
from service.errors import ResourceExhausted
from service.scorer import Scorer
from tests.service.conftest import normal_rows


class FakeClock:
    """A batcher clock frozen at 0 s, moved on only by :meth:`advance`; records every wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []  # the timeout of every wait, seconds
        self._timers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self.now

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        self.waits.append(timeout)
        timer = (self.now + timeout, asyncio.get_running_loop().create_future())
        self._timers.append(timer)
        setter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([setter, timer[1]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            setter.cancel()
            self._timers.remove(timer)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Move time on, ending the waits whose timeout has passed."""
        self.now += seconds
        for when, future in self._timers:
            if when <= self.now and not future.done():
                future.set_result(None)

    async def until_waiting(self) -> None:
        """Yield to the event loop until the batcher waits on this clock."""
        for _ in range(1000):
            if self._timers:
                return
            await asyncio.sleep(0)
        msg = "the batcher never waited"
        raise AssertionError(msg)


class Gate:
    """A ``run`` wrapper that blocks each call until :meth:`release`; counts calls entered."""

    def __init__(self, run: Callable[[np.ndarray], dict[str, np.ndarray]]) -> None:
        self.run = run
        self.opened = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.entered.release()
        assert self.opened.wait(30), "the gate was never opened"
        return self.run(x)

    async def until_entered(self) -> None:
        """Wait until one more call is inside ``run``."""
        assert await asyncio.to_thread(self.entered.acquire, timeout=30), "no call reached run"

    def release(self) -> None:
        self.opened.set()


class Recorder:
    """A row-wise ``run``: returns each row's sum and the rows; records batch sizes."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self.lock:
            self.batches.append(x.shape[0])
        if self.fail_on is not None and (x == self.fail_on).any():
            msg = "poisoned batch"
            raise RuntimeError(msg)
        return {"sum": x.sum(axis=1), "rows": x.copy()}


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def rows(n: int, start: float) -> np.ndarray:
    """``(n, 2)`` float32 rows whose first column counts from ``start``."""
    first = np.arange(start, start + n, dtype=np.float32)
    return np.stack([first, -first], axis=1)


def test_concurrent_callers_are_coalesced_and_each_gets_its_rows(executor) -> None:
    run = Recorder()
    clock = FakeClock()
    batcher = MicroBatcher(run, executor=executor, max_batch_rows=1000, max_batch_delay_s=0.05, clock=clock)

    async def main() -> list[dict[str, np.ndarray]]:
        callers = asyncio.gather(*(batcher.submit(rows(i + 1, 100 * i)) for i in range(10)))
        await clock.until_waiting()  # for company, up to the batching delay
        clock.advance(0.05)
        return await callers

    results = asyncio.run(main())
    assert run.batches == [sum(range(1, 11))]  # one onnxruntime call for all ten callers
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["rows"], rows(i + 1, 100 * i))
        np.testing.assert_array_equal(result["sum"], np.zeros(i + 1, dtype=np.float32))


class Together(Recorder):
    """A ``run`` whose calls only return once ``parties`` of them are running at the same time."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.barrier.wait()  # BrokenBarrierError unless the other calls run meanwhile
        return super().__call__(x)


def test_a_lone_large_request_is_shared_out_over_the_idle_inference_threads(executor) -> None:
    run = Together(parties=2)
    clock = FakeClock()
    batcher = MicroBatcher(
        run, executor=executor, max_batch_rows=1024, max_batch_delay_s=0.5, max_concurrent_batches=2, clock=clock
    )
    result = asyncio.run(batcher.submit(rows(1000, 0)))
    assert sorted(run.batches) == [500, 500]  # both halves ran at the same time (the barrier)
    assert clock.waits == []  # and neither waited for company
    np.testing.assert_array_equal(result["rows"], rows(1000, 0))


def test_under_load_a_large_request_is_not_shared_out(executor) -> None:
    run = Recorder()
    gate = Gate(run)
    batcher = MicroBatcher(
        gate, executor=executor, max_batch_rows=1024, max_batch_delay_s=0.001, max_concurrent_batches=2
    )

    async def main() -> list[dict[str, np.ndarray]]:
        busy = asyncio.ensure_future(batcher.submit(rows(1024, 0)))
        await gate.until_entered()
        await gate.until_entered()  # that request's two halves now hold both inference threads
        second = asyncio.ensure_future(batcher.submit(rows(1024, 10_000)))
        await asyncio.sleep(0)
        gate.release()
        return await asyncio.gather(busy, second)

    first, second = asyncio.run(main())
    assert sorted(run.batches) == [512, 512, 1024]  # the second request waited for a thread, whole
    np.testing.assert_array_equal(second["rows"], rows(1024, 10_000))
    np.testing.assert_array_equal(first["rows"], rows(1024, 0))


def test_a_request_too_small_to_share_runs_whole(executor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor=executor, max_batch_rows=1024, max_concurrent_batches=2)
    asyncio.run(batcher.submit(rows(500, 0)))
    assert run.batches == [500]


def test_batches_never_exceed_max_rows_and_large_requests_are_split(executor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor=executor, max_batch_rows=250, max_batch_delay_s=0.0)

    async def main() -> list[dict[str, np.ndarray]]:
        small = [batcher.submit(rows(100, 1000 * i)) for i in range(5)]
        return await asyncio.gather(batcher.submit(rows(1100, 10**6)), *small)

    results = asyncio.run(main())
    assert max(run.batches) <= 250
    assert sum(run.batches) == 1600
    np.testing.assert_array_equal(results[0]["rows"], rows(1100, 10**6))  # reassembled, in order
    for i, result in enumerate(results[1:]):
        np.testing.assert_array_equal(result["rows"], rows(100, 1000 * i))


def test_a_caller_alone_does_not_wait_for_company(executor) -> None:
    run = Recorder()
    clock = FakeClock()
    batcher = MicroBatcher(run, executor=executor, max_batch_delay_s=0.5, clock=clock)

    async def main() -> None:
        for i in range(3):  # one after the other: never any company
            await batcher.submit(rows(1, i))

    asyncio.run(main())
    assert clock.waits == []
    assert run.batches == [1, 1, 1]


def test_once_callers_share_batches_the_delay_applies(executor) -> None:
    run = Recorder()
    clock = FakeClock()
    batcher = MicroBatcher(run, executor=executor, max_batch_delay_s=0.5, clock=clock)

    async def main() -> None:
        shared = asyncio.gather(batcher.submit(rows(1, 0)), batcher.submit(rows(1, 1)))
        await clock.until_waiting()
        clock.advance(0.5)
        await shared
        start = clock.time()
        third = asyncio.ensure_future(batcher.submit(rows(1, 2)))
        await clock.until_waiting()  # alone, but a batch was shared a moment ago
        clock.advance(0.25)
        fourth = asyncio.ensure_future(batcher.submit(rows(1, 3)))  # joins within the delay
        await asyncio.sleep(0)
        assert not third.done()
        clock.advance(0.25)
        await asyncio.gather(third, fourth)
        assert clock.time() - start == 0.5  # served when the delay ran out

    asyncio.run(main())
    assert run.batches == [2, 2]
    assert clock.waits == [0.5, 0.5]


def test_full_queue_is_refused_at_once(executor) -> None:
    # One slot, held by a first request until the gate opens: later rows wait in the queue. A
    # request is admitted while fewer than max_queue_rows rows wait, whatever its size.
    gate = Gate(Recorder())
    batcher = MicroBatcher(
        gate,
        executor=executor,
        max_batch_rows=1000,
        max_queue_rows=100,
        max_concurrent_batches=1,
    )

    async def main() -> None:
        busy = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        await gate.until_entered()
        assert batcher.queued_rows == 0  # running, not queued
        first = asyncio.ensure_future(batcher.submit(rows(80, 0)))
        await asyncio.sleep(0)
        assert batcher.queued_rows == 80
        last = asyncio.ensure_future(batcher.submit(rows(30, 0)))  # 80 < 100 wait: admitted whole
        await asyncio.sleep(0)
        assert batcher.queued_rows == 110
        with pytest.raises(ResourceExhausted, match=r"queue is full \(110 rows waiting, limit 100"):
            await batcher.submit(rows(1, 0))
        gate.release()
        await asyncio.gather(busy, first, last)

    asyncio.run(main())
    assert batcher.queued_rows == 0


def test_a_failed_batch_fails_its_callers_only(executor) -> None:
    run = Recorder(fail_on=-7.0)
    batcher = MicroBatcher(run, executor=executor, max_batch_rows=4, max_batch_delay_s=0.0)
    poisoned = np.full((4, 2), -7.0, dtype=np.float32)

    async def main() -> list:
        return await asyncio.gather(batcher.submit(poisoned), batcher.submit(rows(4, 0)), return_exceptions=True)

    bad, good = asyncio.run(main())
    assert isinstance(bad, RuntimeError)
    np.testing.assert_array_equal(good["rows"], rows(4, 0))


def test_abandoned_rows_are_skipped(executor) -> None:
    run = Recorder()
    batcher = MicroBatcher(run, executor=executor, max_batch_rows=1000, max_batch_delay_s=0.05)

    async def main() -> dict[str, np.ndarray]:
        gone = asyncio.ensure_future(batcher.submit(rows(7, 0)))
        await asyncio.sleep(0)
        gone.cancel()
        return await batcher.submit(rows(3, 50))

    result = asyncio.run(main())
    assert run.batches == [3]
    np.testing.assert_array_equal(result["rows"], rows(3, 50))
    assert batcher.queued_rows == 0


def test_busy_slots_let_the_next_batch_grow(executor) -> None:
    """While the only slot is busy, later callers pile up into one batch (no extra delay)."""
    run = Recorder()
    gate = Gate(run)
    batcher = MicroBatcher(
        gate,
        executor=executor,
        max_batch_rows=1000,
        max_batch_delay_s=0.0,
        max_concurrent_batches=1,
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(rows(1, 0)))
        await gate.until_entered()  # the first batch is running now
        later = [asyncio.ensure_future(batcher.submit(rows(1, i))) for i in range(1, 9)]
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    assert run.batches == [1, 8]


def test_disabled_batcher_runs_each_request_alone(executor) -> None:
    run = Recorder()
    seen: list[tuple[int, float]] = []
    batcher = MicroBatcher(run, executor=executor, enabled=False, on_batch=lambda n, s: seen.append((n, s)))

    async def main() -> None:
        await asyncio.gather(*(batcher.submit(rows(2, i)) for i in range(5)))

    asyncio.run(main())
    assert run.batches == [2] * 5
    assert [n for n, _ in seen] == [2] * 5
    assert all(s >= 0 for _, s in seen)


def test_real_scorer_rows_score_the_same_alone_and_coalesced(bundle_dir) -> None:
    scorer = Scorer.open(bundle_dir, device="cpu", intra_op_threads=1)
    sizes: list[int] = []
    rng = np.random.default_rng(0)
    requests = [normal_rows(int(rng.integers(1, 40)), seed=i) for i in range(60)]
    alone = [scorer.run(x) for x in requests]

    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(
            scorer.run,
            executor=pool,
            max_batch_rows=128,
            max_batch_delay_s=0.005,
            max_concurrent_batches=2,
            on_batch=lambda n, s: sizes.append(n),
        )

        async def caller(x: np.ndarray, delay: float) -> dict[str, np.ndarray]:
            await asyncio.sleep(delay)
            return await batcher.submit(x)

        async def main() -> list[dict[str, np.ndarray]]:
            delays = rng.uniform(0, 0.02, len(requests))
            return await asyncio.gather(*(caller(x, d) for x, d in zip(requests, delays, strict=True)))

        coalesced = asyncio.run(main())

    assert len(sizes) < len(requests)  # rows of different callers did share calls
    assert max(sizes) > max(len(x) for x in requests)
    assert sum(sizes) == sum(len(x) for x in requests)
    for x, one, together in zip(requests, alone, coalesced, strict=True):
        assert set(together) == set(one)
        for name in one:
            assert together[name].shape[0] == len(x)
            np.testing.assert_allclose(together[name], one[name], rtol=1e-6, atol=1e-7)

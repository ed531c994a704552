"""Micro-batching: coalesce concurrent requests for one model into one onnxruntime call.

:class:`MicroBatcher` wraps a function ``run(x) -> {name: array}`` written for one batch
(``Scorer.run``). Callers :meth:`~MicroBatcher.submit` float32 rows ``(n_rows, n_features)``
and await exactly their rows of every output. Inside, a bounded queue holds
``(rows, future)`` parts; a collector task takes parts until ``max_batch_rows`` rows are
queued or the oldest part has waited ``max_batch_delay_s``, concatenates them, runs ``run``
once in a thread executor, and splits the outputs back by row counts. It waits only when
other callers are about (more than one part queued, a batch running, or a batch shared in
the last second): a caller alone is served at once. A request larger than
``max_batch_rows`` is split into parts first. While every batch slot is busy, new parts keep
queueing, so under load batches grow without any extra delay.

A large request that arrives while inference threads are idle and nothing is queued is shared
out over those threads instead (parts of at least ``SPLIT_MIN_ROWS`` rows, each run alone), so
a lone 1024-row request uses two cores. Under load it is not: splitting then only adds thread
hand-offs.

The queue is bounded in rows: while ``max_queue_rows`` or more rows wait, a new request
fails at once with :class:`~service.errors.ResourceExhausted`. A request is admitted while
fewer wait, whatever its size, so a legal request is never refused for the room it needs
itself (two concurrent requests of 40,000 rows both fit a 65,536-row queue), and at most
``max_queue_rows`` plus one request's rows wait. A failed batch fails its callers only. A caller
that goes away (cancelled, deadline) has its queued rows skipped. The collector task lives
only while there is work, so a batcher nobody references is garbage-collected.

Scores are row-wise (each output row depends on its input row only), which is what makes
coalescing invisible to callers: a row scores the same alone or batched.

A batch of at most ``inline_max_rows`` rows runs on the event loop's own thread: for small
tabular models, handing it to a thread costs more than the onnxruntime call itself. Larger
batches run in the executor, so the loop keeps serving while they compute.

Every wait is measured on, and waited out with, a :class:`LoopClock` (the event loop's own
time); tests pass a clock of their own to drive the waits without real time passing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service.errors import ResourceExhausted

logger = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], dict[str, np.ndarray]]
# After a batch shared by several callers, wait for company this long (seconds).
COMPANY_MEMORY_S = 1.0
# A share of a large request smaller than this is not worth a thread hand-off.
SPLIT_MIN_ROWS = 256
Outputs = dict[str, np.ndarray]


class LoopClock:
    """The running event loop's time, and waits measured on it (what a batcher uses by default)."""

    def time(self) -> float:
        """Now, in seconds (``loop.time()``)."""
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds have passed; whether it was set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()


@dataclass
class _Part:
    """Rows of one request (or one slice of a large one) and where their outputs go."""

    x: np.ndarray  # (rows, n_features) float32
    future: asyncio.Future[Outputs]
    enqueued: float  # clock time when queued, seconds
    alone: bool = False  # a share of a large request spread over idle threads: never merged

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


class MicroBatcher:
    """Coalesces concurrent ``submit`` calls into batched ``run`` calls.

    Args:
        run: scores a batch: float32 ``(n_rows, n_features)`` -> output name -> array whose
            first dimension is ``n_rows``; called in ``executor``.
        executor: where ``run`` runs (a thread pool shared by the models).
        max_batch_rows: most rows per ``run`` call; larger requests are split.
        max_batch_delay_s: longest time the oldest queued rows wait for company, seconds.
        max_queue_rows: rows waiting at which new requests are refused with ResourceExhausted
            (a request finding fewer waiting is admitted whole).
        max_concurrent_batches: batches running at once (at most the executor's threads).
        enabled: False runs each request alone (no queue, no delay), for comparison.
        inline_max_rows: batches up to this many rows run on the event loop thread
            (0: every batch goes to the executor).
        name: the model's name, for messages and logs.
        on_batch: called after each ``run`` with ``(rows, seconds)``.
        clock: what waits are measured on and waited out with (default: the event loop's time).
    """

    def __init__(
        self,
        run: RunFn,
        *,
        executor: Executor,
        max_batch_rows: int = 1024,
        max_batch_delay_s: float = 0.001,
        max_queue_rows: int = 65536,
        max_concurrent_batches: int = 1,
        enabled: bool = True,
        inline_max_rows: int = 0,
        name: str = "",
        on_batch: Callable[[int, float], None] | None = None,
        clock: LoopClock | None = None,
    ) -> None:
        self._run_fn = run
        self._executor = executor
        self._max_rows = max_batch_rows
        self._delay = max_batch_delay_s
        self._max_queue_rows = max_queue_rows
        self._max_concurrent = max_concurrent_batches
        self.enabled = enabled
        self._inline_max_rows = inline_max_rows
        self.name = name
        self._on_batch = on_batch
        self._clock = clock or LoopClock()
        self._queue: collections.deque[_Part] = collections.deque()
        self._queued_rows = 0
        # Created inside the running loop, on first use.
        self._slots: asyncio.Semaphore | None = None
        self._full: asyncio.Event | None = None
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._last_shared = -math.inf  # clock time of the last batch holding several parts

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch (not those running)."""
        return self._queued_rows

    async def submit(self, x: np.ndarray) -> Outputs:
        """Score ``x`` (float32 ``(n_rows, n_features)``, C-contiguous) with ``run``.

        Returns:
            Every output of ``run`` for exactly these rows, in order.

        Raises:
            ResourceExhausted: ``max_queue_rows`` rows or more are already waiting.
            Exception: whatever ``run`` raised for the batch holding these rows.
        """
        if not self.enabled:
            return await self._run_alone(x)
        n = int(x.shape[0])
        if self._queued_rows >= self._max_queue_rows:
            msg = (
                f"model {self.name!r}: the scoring queue is full ({self._queued_rows} rows "
                f"waiting, limit {self._max_queue_rows}: requests are admitted while fewer rows "
                "wait, whatever their size); retry later"
            )
            raise ResourceExhausted(msg)
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrent)
            self._full = asyncio.Event()
        now = self._clock.time()
        size = self._part_rows(n)
        parts = [
            _Part(x[start : start + size], loop.create_future(), now, alone=size < self._max_rows)
            for start in range(0, max(n, 1), size)
        ]
        self._queue.extend(parts)
        self._queued_rows += n
        if self._queued_rows >= self._max_rows:
            self._full.set()
        if self._collector is None or self._collector.done():
            self._collector = loop.create_task(self._collect(), name=f"batcher-{self.name}")
        if len(parts) == 1:
            return await parts[0].future
        results = await asyncio.gather(*(p.future for p in parts))
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _part_rows(self, n: int) -> int:
        """Rows per part of an ``n``-row request: ``max_batch_rows``, or fewer to share a lone
        large request out over the idle inference threads."""
        idle = self._max_concurrent - len(self._running)
        if idle > 1 and not self._queue and n >= 2 * SPLIT_MIN_ROWS:
            return min(self._max_rows, max(SPLIT_MIN_ROWS, -(-n // idle)))
        return self._max_rows

    async def _run_alone(self, x: np.ndarray) -> Outputs:
        start = time.perf_counter()
        outputs = await self._call(x)
        self._notify_batch(int(x.shape[0]), time.perf_counter() - start)
        return outputs

    async def _call(self, x: np.ndarray) -> Outputs:
        """``run(x)``: inline for a small batch, else in the executor."""
        if x.shape[0] <= self._inline_max_rows:
            return self._run_fn(x)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_fn, x)

    async def _collect(self) -> None:
        """Form batches while parts are queued; return when the queue is empty."""
        assert self._slots is not None
        assert self._full is not None
        loop = asyncio.get_running_loop()
        while self._queue:
            deadline = self._queue[0].enqueued + self._delay
            while self._queued_rows < self._max_rows and not self._queue[0].alone and self._company_likely():
                remaining = deadline - self._clock.time()
                if remaining <= 0:
                    break
                self._full.clear()
                if not await self._clock.wait(self._full, remaining):
                    break
            await self._slots.acquire()
            # Parts that arrived while we waited for a slot join this batch.
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            if len(batch) > 1:
                self._last_shared = self._clock.time()
            if sum(p.rows for p in batch) <= self._inline_max_rows:
                await self._run_batch(batch)  # runs to the end without yielding
                continue
            task = loop.create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _company_likely(self) -> bool:
        """Whether waiting for more rows may pay: other callers are about.

        They are when more than one part is queued, a batch is running, or a batch was
        shared within the last ``COMPANY_MEMORY_S``. A caller alone is served at once rather
        than after ``max_batch_delay_s``.
        """
        if len(self._queue) > 1 or self._running:
            return True
        return self._clock.time() - self._last_shared < COMPANY_MEMORY_S

    def _take(self) -> list[_Part]:
        """Pop parts (skipping abandoned ones) up to ``max_batch_rows`` rows, at least one."""
        batch: list[_Part] = []
        rows = 0
        while self._queue:
            part = self._queue[0]
            if part.future.done():  # the caller went away
                self._queue.popleft()
                self._queued_rows -= part.rows
                continue
            if batch and (part.alone or batch[0].alone or rows + part.rows > self._max_rows):
                break
            self._queue.popleft()
            self._queued_rows -= part.rows
            batch.append(part)
            rows += part.rows
        return batch

    async def _run_batch(self, batch: list[_Part]) -> None:
        """Run one batch in the executor and hand each part its rows of every output."""
        assert self._slots is not None
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
            start = time.perf_counter()
            outputs = await self._call(x)
            self._notify_batch(int(x.shape[0]), time.perf_counter() - start)
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_result(outputs)
                return
            offset = 0
            for part in batch:
                stop = offset + part.rows
                if not part.future.done():
                    part.future.set_result({k: v[offset:stop] for k, v in outputs.items()})
                offset = stop
        except Exception as err:  # a failed batch fails its callers, not the batcher
            for part in batch:
                if not part.future.done():
                    part.future.set_exception(err)
        finally:
            self._slots.release()

    def _notify_batch(self, rows: int, seconds: float) -> None:
        if self._on_batch is not None:
            self._on_batch(rows, seconds)

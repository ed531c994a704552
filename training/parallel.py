"""Fitting a run's members side by side, one process each, on the machine's cores.

Members are independent fits (their own rows, seeds and early stopping), so up to ``threads``
of them run at once in forked processes (``training.config.cpu_plan``). The run's result is the
one a single process gets, bit for bit with the same torch threads: each member starts from its
own seed wherever it runs. The processes report their steps to the parent's progress display
through a queue, and are ended with the run when it is stopped.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections.abc import Callable
from typing import Any

import torch

from training.progress import FitProgress

Task = Callable[[FitProgress], Any]
_TASKS: list[Task] = []  # set before the pool forks: the children inherit them, nothing is pickled
_EVENTS: Any = None  # the queue the children's progress goes through


class _ProgressToParent(FitProgress):
    """A child's progress: every call is sent to the parent's display."""

    def __init__(self) -> None:  # no display of its own
        pass

    def step(self, count: int = 1, **postfix: float) -> None:
        _EVENTS.put(("step", (count,), postfix))

    def start_fit(self, label: str) -> None:
        _EVENTS.put(("start_fit", (label,), {}))

    def end_fit(self, steps: int, max_steps: int) -> None:
        _EVENTS.put(("end_fit", (steps, max_steps), {}))


def _run(index: int, torch_threads: int) -> Any:
    torch.set_num_threads(torch_threads)
    return _TASKS[index](_ProgressToParent())


def run_in_processes(tasks: list[Task], processes: int, torch_threads: int, progress: FitProgress) -> list[Any]:
    """``task(progress)`` for each of ``tasks``, ``processes`` at a time; their results in order.

    Raises:
        whatever a task raised, after the other processes are ended.
    """
    global _EVENTS
    _TASKS[:] = tasks
    context = multiprocessing.get_context("fork")
    _EVENTS = context.Queue()
    pool = context.Pool(processes, initializer=_leave_signals_to_the_parent)
    try:
        pending = [pool.apply_async(_run, (i, torch_threads)) for i in range(len(tasks))]
        while not all(p.ready() for p in pending):
            _relay(progress, timeout=0.2)
        _relay(progress, timeout=0)
        results = [p.get() for p in pending]
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM, which ends a child at once (``_leave_signals_to_the_parent``)
        raise
    finally:
        pool.join()
        _TASKS.clear()
        _EVENTS = None
    return results


def _leave_signals_to_the_parent() -> None:
    """A child ignores Ctrl-C (the parent stops the run) and dies on SIGTERM, whatever the parent set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _relay(progress: FitProgress, timeout: float) -> None:
    """Pass the children's progress events on to ``progress``, waiting at most ``timeout`` for the first."""
    try:
        name, args, kwargs = _EVENTS.get(timeout=timeout) if timeout else _EVENTS.get_nowait()
        while True:
            getattr(progress, name)(*args, **kwargs)
            name, args, kwargs = _EVENTS.get_nowait()
    except queue.Empty:
        return

"""A real service on loopback: model repository, ``Service`` in a thread, channels and stubs.

The server runs its own event loop in a background thread (as in production: ``grpc.aio``
with onnxruntime in a thread pool); tests talk to it with ordinary synchronous gRPC stubs
over 127.0.0.1 on the port the server bound (port 0 asks the OS for a free one). Tests of
signals run ``python -m service.serve`` itself (:class:`ServeProcess`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.config import ServiceConfig
from service.grpc import convert
from service.serve import Service
from tests.service.conftest import write_bundle

T = TypeVar("T")
MODEL = "sensors"


ROOT = Path(__file__).resolve().parents[3]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (a guard against hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout} s"
            raise AssertionError(msg)
        time.sleep(step)


class ServeProcess:
    """``python -m service.serve`` in a subprocess; its port read from its log."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.serve", *args],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_for_port()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.log.append(line)
            if "gRPC listening on" in line:
                return int(line.split("gRPC listening on ")[1].split()[0].rsplit(":", 1)[1])
        msg = f"serve did not start: {''.join(self.log)}"
        raise AssertionError(msg)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def serve_process(repo: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Factory: ``serve_process(*serve_flags)`` -> a :class:`ServeProcess` on ``repo``."""
    started: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        process = ServeProcess("--models", str(repo), *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class ServerThread:
    """``Service`` running on an event loop in a daemon thread."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.service = Service(config, registry=self.registry)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(60):
            msg = "the test server did not start within 60 s"
            raise TimeoutError(msg)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace_s: float = 0) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.call(self.service.stop(grace_s))
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.service.start()
        except BaseException as err:
            self._error = err
            self._started.set()
            await self.service.stop(0)
            return
        self._started.set()
        await self._stop.wait()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A model repository holding ``sensors`` version 1 (the fixture bundle)."""
    root = tmp_path / "models"
    write_bundle(root / MODEL / "1")
    return root


def loopback_config(models: Path, **overrides: Any) -> ServiceConfig:
    """Settings for a test server of the repository ``models`` on loopback; keyword arguments override."""
    values: dict[str, Any] = {
        "models": models,
        "host": "127.0.0.1",
        "port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "reload_interval_s": 0,
        "intra_op_threads": 1,
        "inter_op_threads": 1,
        "inference_threads": 2,
        "max_batch_delay_s": 0.002,
        "grace_s": 2.0,
    }
    values.update(overrides)
    return ServiceConfig(**values).validate()


@pytest.fixture
def make_config(repo: Path) -> Callable[..., ServiceConfig]:
    """Settings for a loopback test server of ``repo``; keyword arguments override."""

    def make(**overrides: Any) -> ServiceConfig:
        return loopback_config(**{"models": repo, **overrides})

    return make


@pytest.fixture
def start_server(make_config: Callable[..., ServiceConfig]) -> Iterator[Callable[..., ServerThread]]:
    """Factory: ``start_server(**config_overrides)`` -> a running :class:`ServerThread`."""
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        server = ServerThread(make_config(**overrides)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerThread]) -> ServerThread:
    """A running server with default test settings."""
    return start_server()


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> scoring_pb2_grpc.ScoringServiceStub:
    return scoring_pb2_grpc.ScoringServiceStub(channel)


def hold_rows_in_queue(server: ServerThread, model: str = MODEL) -> None:
    """Make ``model``'s batcher always wait ``max_batch_delay_s`` for company, so that rows
    sit in its queue for that long (it normally serves a caller alone at once)."""
    server.service.models.get(model).batcher._company_likely = lambda: True


def x_request(x: np.ndarray, **fields: Any) -> pb.ScoreRequest:
    """A ScoreRequest for ``sensors`` carrying ``x`` packed."""
    fields.setdefault("model", MODEL)
    return pb.ScoreRequest(x=convert.array_to_tensor(x), **fields)


def columns_request(columns: dict[str, tuple[list, bool]], **fields: Any) -> pb.ScoreRequest:
    """A ScoreRequest from ``{name: (values, numeric)}``."""
    fields.setdefault("model", MODEL)
    message = pb.Columns(columns=[convert.column_message(n, v, numeric) for n, (v, numeric) in columns.items()])
    return pb.ScoreRequest(columns=message, **fields)


def sample_value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    """A sample's value (0 when absent)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value

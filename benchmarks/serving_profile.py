"""Where the latentwatch server's time goes: py-spy samples, thread CPU, rows per onnxruntime call.

While a driver in this process sends v2 requests (latentwatch's own, wire-compatible stubs),
``py-spy record`` samples every thread of the server; each sample is put in the first category
of ``PROFILE_RULES`` whose pattern one of its frames holds (innermost first). The CPU time of the
server's threads comes from /proc, and the rows per onnxruntime call from the server's
``latentwatch_batch_rows`` histogram.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from serving_bundle import MODEL, OUTPUTS, synthetic_rows
from serving_servers import GRPC_OPTIONS, RPC_TIMEOUT_S, Server, process_tree_cpu


def oip_request(x: np.ndarray) -> Any:
    """A v2 ModelInfer request built with latentwatch's own (wire-compatible) stubs."""
    from service._proto.inference import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "x", "FP32"
    tensor.shape.extend(x.shape)
    for name in OUTPUTS:
        request.outputs.add().name = name
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
    return request


async def _drive(target: str, request: Any, callers: int, duration: float) -> int:
    import grpc

    from service._proto.inference import grpc_predict_v2_pb2_grpc

    async with grpc.aio.insecure_channel(target, options=GRPC_OPTIONS) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
        deadline = time.perf_counter() + duration
        done = [0]

        async def caller() -> None:
            while time.perf_counter() < deadline:
                await stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
                done[0] += 1

        await asyncio.gather(*(caller() for _ in range(callers)))
    return done[0]


def scrape_batches(port: int | None) -> tuple[float, float]:
    """(rows, onnxruntime calls) so far, from ``latentwatch_batch_rows`` on /metrics."""
    if port is None:
        return 0.0, 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for kind in ("sum", "count"):
        found = re.search(rf'^latentwatch_batch_rows_{kind}\{{model="{MODEL}"\}} (\S+)$', text, re.M)
        values[kind] = float(found.group(1)) if found else 0.0
    return values["sum"], values["count"]


GRPC_REST = "gRPC Cython/C core + asyncio (calls, HTTP/2, (de)serialisation, callbacks)"
SELECT = "event loop waiting in select()"
WAKE = "executor threads waiting (for work, or for the GIL after waking the loop)"
WAITING = (SELECT, WAKE)
THREAD_LOOP = "main thread (asyncio loop: servicers, batcher, gRPC aio callbacks; small batches' session.run)"
THREAD_PYTHON = "other Python threads (inference executor, gRPC aio poller)"
THREAD_CORE = "gRPC C-core threads (event_engine, timers)"
NOT_OWN = ("service/serve.py", "service/cli.py", "service/__main__.py")
# Where a sample falls: the first rule (innermost frame first) whose pattern its frame holds.
PROFILE_RULES: tuple[tuple[str, str], ...] = (
    ("onnxruntime Session.run", "(onnxruntime/"),
    ("p-values, metrics (calibration, prometheus_client)", "service/calibration.py"),
    ("p-values, metrics (calibration, prometheus_client)", "service/metrics.py"),
    ("p-values, metrics (calibration, prometheus_client)", "prometheus_client/"),
    ("micro-batcher (service/batching.py)", "service/batching.py"),
    ("request decode, checks, response (oip, convert, dataplane)", "service/grpc/oip.py"),
    ("request decode, checks, response (oip, convert, dataplane)", "service/grpc/convert.py"),
    ("request decode, checks, response (oip, convert, dataplane)", "service/dataplane.py"),
    ("request decode, checks, response (oip, convert, dataplane)", "service/registry.py"),
    ("interceptor (ids, status, request metrics)", "service/grpc/interceptors.py"),
    (WAKE, "_write_to_self (asyncio/"),
    ("thread hand-off (executor)", "concurrent/futures/"),
    (SELECT, "EpollSelector.select"),
)


def classify(frames: list[str]) -> str:
    if frames[-1].startswith("_worker (concurrent/futures/thread.py"):
        return WAKE  # innermost Python frame of an idle executor thread: blocked in its queue's get()
    for frame in reversed(frames):
        for name, pattern in PROFILE_RULES:
            if pattern in frame:
                return name
    return GRPC_REST


def read_profile(path: Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """py-spy raw output -> (samples per category, samples per innermost service/ frame)."""
    groups: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        groups[classify(frames)] += int(count)
        inner = next((f for f in reversed(frames) if "service/" in f and not any(n in f for n in NOT_OWN)), None)
        if inner is not None:
            own[re.sub(r":\d+\)$", ")", inner)] += int(count)
    return groups, own


@dataclass
class Profiled:
    case: str
    requests: int
    seconds: float
    server_cpu_s: float
    groups: collections.Counter[str]
    own: collections.Counter[str]
    threads: dict[str, float]  # CPU seconds per kind of server thread over the sampled window
    window_s: float
    batch_rows: float | None = None
    samples: int = field(init=False, default=0)
    working: int = field(init=False, default=0)  # samples not in WAITING

    def __post_init__(self) -> None:
        self.samples = sum(self.groups.values())
        self.working = self.samples - sum(self.groups[w] for w in WAITING)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each thread of ``pid``, with its name."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


ThreadTimes = dict[int, tuple[str, float]]


def thread_kinds(pid: int, before: ThreadTimes, after: ThreadTimes) -> dict[str, float]:
    kinds: collections.Counter[str] = collections.Counter()
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if tid == pid:
            kinds[THREAD_LOOP] += spent
        elif name.startswith("python"):
            kinds[THREAD_PYTHON] += spent
        else:
            kinds[THREAD_CORE] += spent
    return dict(kinds)


def profile_case(
    py_spy: str, server: Server, case: str, x: np.ndarray, callers: int, seconds: float, out: Path
) -> Profiled:
    """Drive ``server`` (v2) for ``seconds`` + margins while py-spy samples it for ``seconds``."""
    request = oip_request(x)
    result: dict[str, int] = {}
    rows0, calls0 = scrape_batches(server.metrics_port)
    cpu0 = process_tree_cpu(server.pid)
    started = time.perf_counter()

    def drive() -> None:
        result["n"] = asyncio.run(_drive(server.target, request, callers, seconds + 1.5))

    driver = threading.Thread(target=drive)
    driver.start()
    time.sleep(0.5)
    threads0 = thread_cpu(server.pid)
    window = time.perf_counter()
    command = [py_spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "200",
               "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
    spy = subprocess.run(command, capture_output=True, text=True, check=False)
    threads = thread_kinds(server.pid, threads0, thread_cpu(server.pid))
    window = time.perf_counter() - window
    driver.join()
    elapsed = time.perf_counter() - started
    cpu1 = process_tree_cpu(server.pid)
    rows1, calls1 = scrape_batches(server.metrics_port)
    if spy.returncode or not out.exists():
        msg = f"py-spy failed: {spy.stderr.strip()}"
        raise RuntimeError(msg)
    groups, own = read_profile(out)
    batch = (rows1 - rows0) / (calls1 - calls0) if calls1 > calls0 else None
    return Profiled(case, result.get("n", 0), elapsed, cpu1 - cpu0, groups, own, threads, window, batch)


def run_profiles(py_spy: str | None, server: Server, seconds: float, concurrency: int, workdir: Path) -> list[Profiled]:
    if not py_spy:
        print("py-spy not found: skipping the profile (pip install py-spy; --py-spy PATH)", flush=True)
        return []
    cases: list[tuple[str, np.ndarray, int]] = [
        ("1 caller, 1 row", synthetic_rows(1, 1).astype(np.float32), 1),
        (f"{concurrency} callers x 1 row", synthetic_rows(1, 11).astype(np.float32), concurrency),
        ("1 caller, 1024 rows", synthetic_rows(1024, 1024).astype(np.float32), 1),
    ]
    profiles = []
    for case, x, callers in cases:
        print(f"profiling latentwatch: {case} ...", flush=True)
        out = workdir / f"profile-{case.replace(' ', '').replace(',', '-')}.txt"
        profiles.append(profile_case(py_spy, server, case, x, callers, seconds, out))
    return profiles

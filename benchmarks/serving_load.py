"""The serving benchmark's load: the peers' ``load.py`` over the v2 protocol, and ``StreamScore``.

``load.py`` runs in its own process, in a Python that has tritonclient but not mlserver (their
protobufs clash): unary requests of each size from one caller, concurrent single-row callers,
in-process onnxruntime on the same matrices (the limit), and a check of the scores. latentwatch's
own bidirectional ``StreamScore`` RPC has no peer and is driven from here.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from serving_bundle import MODEL, OUTPUTS
from serving_servers import FLOOR, GRPC_OPTIONS, RPC_TIMEOUT_S, Server, process_tree_cpu

SIZES = (1, 64, 1024)
STREAM_SIZES = (64, 1024)
STREAM_WINDOW = 8  # messages in flight on one stream (the server's own window)


def check_client_python(python: str) -> str | None:
    """Why ``python`` cannot run load.py (None when it can)."""
    code = (
        "import importlib.util, sys\n"
        "import grpc, numpy, onnxruntime\n"
        "from tritonclient.grpc import service_pb2\n"
        "import tritonclient.grpc\n"
        "sys.exit(3 if importlib.util.find_spec('mlserver') else 0)\n"
    )
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except OSError as err:
        return str(err)
    if result.returncode == 3:
        return "it has mlserver installed (its protobufs clash with tritonclient's)"
    if result.returncode:
        return (result.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


def pick_client_python(asked: str | None, mlserver_venv: Path) -> str:
    candidates = [asked] if asked else [sys.executable, str(mlserver_venv / "bin" / "python")]
    reasons = []
    for python in candidates:
        if python is None:
            continue
        reason = check_client_python(python)
        if reason is None:
            return python
        reasons.append(f"{python}: {reason}")
    msg = "no Python can run load.py (needs grpcio, numpy, onnxruntime, tritonclient[grpc], no mlserver): " + "; ".join(
        reasons
    )
    raise SystemExit(msg)


@dataclass(frozen=True)
class Load:
    """How load.py is run."""

    python: str
    script: Path
    onnx: Path
    threads: int
    duration: float
    conc_duration: float
    warmup: float
    concurrency: int

    def base(self, server: Server, threads: int | None = None) -> list[str]:
        """load.py's common arguments; ``threads`` (default ``self.threads``) for its in-process runs."""
        return [self.python, str(self.script), "--target", server.target, "--model", MODEL,
                "--model-file", str(self.onnx), "--outputs", ",".join(OUTPUTS),
                "--intra-op-threads", str(threads or self.threads), "--server-pid", str(server.pid)]  # fmt: skip

    def wait_ready(self, server: Server, timeout: float) -> None:
        command = [*self.base(server), "--ready-only", "--wait-ready", str(timeout)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            log = server.log.read_text(errors="replace")[-3000:]
            msg = f"{server.label} did not get ready: {result.stdout}{result.stderr}\n--- its log:\n{log}"
            raise RuntimeError(msg)

    def run(self, server: Server, sizes: tuple[int, ...], out: Path, threads: int | None = None) -> dict[str, Any]:
        command = [
            *self.base(server, threads), "--label", server.label, "--json", str(out),
            "--sizes", ",".join(str(n) for n in sizes), "--duration", str(self.duration),
            "--conc-duration", str(self.conc_duration), "--warmup", str(self.warmup),
            "--concurrency", str(self.concurrency),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        # The floor answers zeros: load.py's score check fails there by design (exit 1).
        failed = result.returncode not in ((0, 1) if server.label == FLOOR else (0,))
        if failed or not out.exists():
            msg = f"load.py against {server.label} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            raise RuntimeError(msg)
        return json.loads(out.read_text())


def score_request(x: np.ndarray, request_id: str = "") -> Any:
    from service._proto.latentwatch.v1 import scoring_pb2 as pb

    tensor = pb.Tensor(rows=x.shape[0], cols=x.shape[1], data=np.ascontiguousarray(x, dtype="<f4").tobytes())
    return pb.ScoreRequest(model=MODEL, x=tensor, request_id=request_id)


def _stream(stub: Any, request: Any, rows: int, duration: float, window: int) -> tuple[list[float], float, Any]:
    """One ``StreamScore`` call: send ``request`` again and again, ``window`` in flight, for ``duration``.

    Returns the per-message latencies (send to answer) until the deadline, the seconds
    they cover, and the first response.
    """
    slots = threading.Semaphore(window)
    stop = threading.Event()
    sent: collections.deque[float] = collections.deque()

    def requests() -> Iterator[Any]:
        while True:
            slots.acquire()
            if stop.is_set():
                return
            sent.append(time.perf_counter())
            yield request

    latencies: list[float] = []
    first = None
    started = time.perf_counter()
    deadline = started + duration
    elapsed = 0.0
    replies = stub.StreamScore(requests(), timeout=duration + RPC_TIMEOUT_S)
    for reply in replies:
        now = time.perf_counter()
        if reply.WhichOneof("outcome") != "result" or reply.result.rows != rows:
            stop.set()
            slots.release()
            replies.cancel()
            msg = f"stream answered {reply}"
            raise RuntimeError(msg)
        if first is None:
            first = reply.result
        sent_at = sent.popleft()
        if not stop.is_set():
            latencies.append(now - sent_at)
            elapsed = now - started
            if now >= deadline:
                stop.set()
        slots.release()  # after stop: wakes the generator so that it returns, the rest drain
    return latencies, elapsed, first


def stream_phase(server: Server, x: np.ndarray, duration: float, warmup: float, window: int) -> dict[str, Any]:
    """rows/s and per-message p50/p99 of one ``StreamScore`` call, with the server's CPU."""
    import grpc

    from service._proto.latentwatch.v1 import scoring_pb2_grpc

    request = score_request(x)
    rows = x.shape[0]
    with grpc.insecure_channel(server.target, options=GRPC_OPTIONS) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        _stream(stub, request, rows, warmup, window)
        cpu0, load0 = process_tree_cpu(server.pid), os.getloadavg()[0]
        latencies, elapsed, first = _stream(stub, request, rows, duration, window)
        cpu1 = process_tree_cpu(server.pid)
    lat_ms = np.asarray(latencies) * 1e3
    n = len(latencies)
    return {
        "phase": "stream", "rows_per_request": rows, "requests": n, "elapsed_s": elapsed, "window": window,
        "rows_per_s": n * rows / elapsed, "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)), "server_cpu_s": cpu1 - cpu0,
        "server_cores_busy": (cpu1 - cpu0) / elapsed, "loadavg_start": load0,
        "neg_elbo": list(first.neg_elbo)[:rows],
    }  # fmt: skip

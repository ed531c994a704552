"""Serving benchmark (issue 3): ``latentwatch serve`` beside MLServer and in-process onnxruntime.

One run, one bundle: the project's default VAE (``training.pipeline.train_bundle`` with no
overrides) trained on 20,000 synthetic rows of 32 correlated numeric features (4 latent
factors plus noise) is put in a model repository, and on the same ``model.onnx`` three
servers run side by side on loopback:

- ``latentwatch serve`` with micro-batching on (the default) and, as a second process,
  with ``--no-batching``;
- MLServer (``../shared/peers/mlserver/serve.sh``: its best configuration on 2 cores,
  ``parallel_workers`` 0, batching off) in its own virtual environment;
- for reference, a ``grpc.aio`` v2 server that answers zeros and does nothing else
  (``--serve-floor``): what Python gRPC itself costs per request on this machine.

Every server gets the same onnxruntime thread count (``--threads``, default 1) and the
same Open Inference Protocol v2 load from the peers' generator ``../shared/peers/load.py``
(one client process per run, in a Python that has tritonclient but not mlserver): unary
requests of 1, 64 and 1024 rows from one caller and 64 concurrent single-row callers, with
the server process tree's CPU time; the generator also times in-process onnxruntime on the
same matrices with the same thread count (the limit) before and after each run. Each
server's run is repeated ``--repeats`` times, the servers in turns, and every figure is
the median over the repeats. latentwatch's own bidirectional ``StreamScore`` RPC is driven
from here (packed float32 tensors, 64 and 1024 rows per message, up to 8 messages in
flight). Every output of the graph is computed by both servers; the clients ask for the
three row scores (``recon_error``, ``neg_elbo``, ``kl``).

Then ``py-spy`` (when found, ``--py-spy``) samples the latentwatch server while this
script drives it with a lone 1-row caller, 64 concurrent 1-row callers and a 1024-row
caller; the samples are grouped by where they fall (onnxruntime, the micro-batcher, the
servicers, gRPC/asyncio machinery, ...). The rows per onnxruntime call under the 64
callers come from the server's own ``latentwatch_batch_rows`` histogram.

Bars (issue 3): at 1024-row requests >= 2x MLServer's rows/s; 64 concurrent single-row
callers >= 3x MLServer's rows/s with a lower p99; micro-batching on gives those callers
more throughput than off and costs a lone caller no more than its delay setting. The
report is printed and written between ``<!-- serving:start -->`` and
``<!-- serving:end -->`` in ``--results`` (the rest of the file is left alone)::

    ../shared/peers/mlserver/setup.sh          # once: MLServer's own venv
    pip install py-spy                         # optional, any venv; or --py-spy PATH
    python benchmarks/serving.py
    python benchmarks/serving.py --repeats 1 --no-write     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from results_file import machine, publish, versions

REPO = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

N_FEATURES = 32
N_FACTORS = 4
TRAIN_ROWS = 20_000
MODEL = "vae"
OUTPUTS = ("recon_error", "neg_elbo", "kl")
SIZES = (1, 64, 1024)
STREAM_SIZES = (64, 1024)
STREAM_WINDOW = 8  # messages in flight on one stream (the server's own window)
RPC_TIMEOUT_S = 30.0
MARK_START = "<!-- serving:start -->"
MARK_END = "<!-- serving:end -->"
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
LW_ON, LW_OFF, MLS = "latentwatch", "latentwatch --no-batching", "MLServer"
# MLServer with one onnxruntime intra-op thread per core: latentwatch splits a 1024-row request
# over its inference threads, so MLServer gets every core for that case too.
MLS_CORES = "MLServer, all cores"
FLOOR = "grpc.aio floor"  # a v2 server that does no work: what Python gRPC itself costs here
TAGS = {LW_ON: "latentwatch", LW_OFF: "latentwatch-off", MLS: "mlserver", MLS_CORES: "mlserver-cores", FLOOR: "floor"}


# ---------------------------------------------------------------- data and bundle


def feature_names() -> list[str]:
    return [f"f{i:02d}" for i in range(N_FEATURES)]


def synthetic_rows(n_rows: int, seed: int) -> np.ndarray:
    """``(n_rows, 32)`` float64: 4 latent factors mixed linearly, plus noise (as batch.py)."""
    mixing = np.random.default_rng(42).standard_normal((N_FACTORS, N_FEATURES))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_rows, N_FACTORS)) @ mixing + 0.3 * rng.standard_normal((n_rows, N_FEATURES))


def train_default_bundle(out: Path) -> float:
    """The project's default bundle (no overrides) on the synthetic rows; returns seconds."""
    from training.pipeline import train_bundle

    frame = pd.DataFrame(synthetic_rows(TRAIN_ROWS, 0), columns=feature_names())
    started = time.perf_counter()
    train_bundle(frame, out, quiet=True)
    return time.perf_counter() - started


def describe_bundle(bundle: Path) -> str:
    from service.bundle import load_bundle

    manifest = load_bundle(bundle).manifest
    resolved = manifest.training.get("resolved", {})
    steps = manifest.training.get("steps", "?")
    return (
        f"{manifest.model_type}, {manifest.n_features} numeric features, hidden {resolved.get('hidden', '?')}, "
        f"latent {manifest.latent_dim}, default settings ({steps} steps), trained on {TRAIN_ROWS:,} synthetic rows; "
        "graph outputs: recon_error, neg_elbo, kl, feature_scores, expected, latent"
    )


# ---------------------------------------------------------------- processes


def free_port(span: int = 1) -> int:
    """A loopback port free now, with the ``span - 1`` ports after it free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + span - 1 > 65535:
            continue
        ok = True
        for extra in range(1, span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + extra))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    msg = "no free loopback ports"
    raise RuntimeError(msg)


@dataclass
class Server:
    """One server process started by this script (stopped by its PID, with SIGTERM)."""

    label: str
    command: list[str]
    port: int
    log: Path
    metrics_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def latentwatch_server(label: str, repo: Path, threads: int, batching: bool, workdir: Path) -> Server:
    port = free_port()
    metrics_port = free_port() if batching else None
    command = [
        sys.executable, "-m", "service", "serve", "--models", str(repo), "--host", "127.0.0.1",
        "--port", str(port), "--metrics-host", "127.0.0.1",
        "--metrics-port", str(metrics_port if metrics_port is not None else -1),
        "--device", "cpu", "--intra-op-threads", str(threads), "--inter-op-threads", "1",
        "--reload-interval", "0", "--grace", "1", "--log-level", "WARNING",
        "--batching" if batching else "--no-batching",
    ]  # fmt: skip
    log = workdir / f"server-{'on' if batching else 'off'}.log"
    return Server(label, command, port, log, metrics_port)


def mlserver_server(peers: Path, onnx: Path, threads: int, workdir: Path, label: str = MLS) -> Server:
    port = free_port(span=3)  # gRPC, HTTP, metrics
    command = ["bash", str(peers / "mlserver" / "serve.sh"), str(onnx), "--name", MODEL, "--port", str(port),
               "--threads", str(threads)]  # fmt: skip
    return Server(label, command, port, workdir / f"server-{TAGS[label]}.log")


def floor_server(workdir: Path) -> Server:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-floor", str(port)]
    return Server(FLOOR, command, port, workdir / "server-floor.log")


def serve_floor(port: int) -> None:
    """A grpc.aio v2 server that answers ModelInfer with zeros of the right size and does nothing else.

    It uses latentwatch's generated v2 stubs, no interceptor, no checks, no model: the cost
    per request of Python gRPC alone on this machine, the floor under any Python server.
    """
    import grpc

    from service._proto.inference import grpc_predict_v2_pb2 as pb
    from service._proto.inference import grpc_predict_v2_pb2_grpc as pb_grpc

    answers: dict[int, Any] = {}

    def answer(rows: int) -> Any:
        response = answers.get(rows)
        if response is None:
            response = answers[rows] = pb.ModelInferResponse(model_name=MODEL, model_version="1")
            for name in OUTPUTS:
                tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype="FP32", shape=[rows])
                response.outputs.append(tensor)
                response.raw_output_contents.append(bytes(4 * rows))
        return response

    class Floor(pb_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request: Any, context: Any) -> Any:
            return pb.ServerReadyResponse(ready=True)

        async def ModelReady(self, request: Any, context: Any) -> Any:
            return pb.ModelReadyResponse(ready=True)

        async def ModelInfer(self, request: Any, context: Any) -> Any:
            return answer(int(request.inputs[0].shape[0]))

    async def run() -> None:
        server = grpc.aio.server(options=GRPC_OPTIONS)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    asyncio.run(run())


def process_tree_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, seconds (as load.py counts it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, total = [pid], 0
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(p, []))
    return total / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the v2 load (load.py)


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


# ---------------------------------------------------------------- latentwatch's own streaming RPC


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


# ---------------------------------------------------------------- profile (py-spy) and batch sizes


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


# ---------------------------------------------------------------- aggregation


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Cell:
    rows_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_request: float | None = None
    cores_busy: float | None = None
    repeats: int = 0


def phase_cell(phases: list[dict[str, Any]]) -> Cell:
    def cpu(p: dict[str, Any]) -> float | None:
        if p.get("server_cpu_s") is None or not p.get("requests"):
            return None
        return 1e3 * p["server_cpu_s"] / p["requests"]

    return Cell(
        rows_per_s=median([p["rows_per_s"] for p in phases]),
        p50_ms=median([p.get("p50_ms") for p in phases]),
        p99_ms=median([p.get("p99_ms") for p in phases]),
        cpu_ms_per_request=median([cpu(p) for p in phases]),
        cores_busy=median([p.get("server_cores_busy") for p in phases]),
        repeats=len(phases),
    )


def select(runs: list[dict[str, Any]], phase: str, rows: int | None = None) -> list[dict[str, Any]]:
    return [
        p
        for run in runs
        for p in run["phases"]
        if p["phase"] == phase and (rows is None or p.get("rows_per_request") == rows)
    ]


@dataclass
class Figures:
    """Medians per server and case."""

    runs: dict[str, list[dict[str, Any]]]
    streams: list[dict[str, Any]]

    def unary(self, label: str, rows: int) -> Cell:
        return phase_cell(select(self.runs[label], "unary", rows))

    def conc(self, label: str) -> Cell:
        return phase_cell(select(self.runs[label], "conc"))

    def stream(self, rows: int) -> Cell:
        return phase_cell([s for s in self.streams if s["rows_per_request"] == rows])

    def concurrency(self) -> int:
        return next((p["concurrency"] for runs in self.runs.values() for p in select(runs, "conc")), 0)

    def inproc(self, rows: int) -> float | None:
        """In-process onnxruntime rows/s at ``rows`` rows per call and the servers' thread count."""
        runs = [r for label, rs in self.runs.items() if label != MLS_CORES for r in rs]
        return median([p["rows_per_s"] for p in select(runs, "inproc", rows)])

    def inproc_all_cores(self, rows: int) -> float | None:
        """The same with one intra-op thread per core (measured beside MLS_CORES)."""
        return median([p["rows_per_s"] for p in select(self.runs.get(MLS_CORES, []), "inproc", rows)])

    def checks(self) -> dict[str, str]:
        out = {}
        for label, runs in self.runs.items():
            if label in (FLOOR, MLS_CORES):
                continue
            found = select(runs, "check")
            diffs = [max(p["max_abs_diff"].values()) for p in found]
            ok = all(p["ok"] for p in found)
            out[label] = f"{'ok' if ok else 'MISMATCH'} (max abs diff {max(diffs):.1e})" if diffs else "-"
        return out

    def loads(self) -> list[float]:
        return [
            v
            for runs in self.runs.values()
            for run in runs
            for v in (run["meta"]["loadavg_start"][0], run["meta"].get("loadavg_end", [None])[0])
            if v is not None
        ]

    def other_cores(self) -> list[float]:
        return [
            p["other_cores_busy"]
            for runs in self.runs.values()
            for run in runs
            for p in run["phases"]
            if p["phase"] in ("unary", "conc") and "other_cores_busy" in p
        ]


# ---------------------------------------------------------------- report


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_ms(cell: Cell) -> str:
    if cell.p50_ms is None:
        return "-"
    return f"{cell.p50_ms:.2f} / {cell.p99_ms:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def cpu_pair(a: Cell, b: Cell | None) -> str:
    def one(c: Cell | None) -> str:
        return "-" if c is None or c.cpu_ms_per_request is None else f"{c.cpu_ms_per_request:.2f}"

    return f"{one(a)} / {one(b)}"


def figures_table(f: Figures, lw_batch_rows: float | None, threads: int) -> list[str]:
    lines = [
        f"| case | latentwatch rows/s | latentwatch p50 / p99 ms | MLServer rows/s | MLServer p50 / p99 ms "
        f"| latentwatch / MLServer | in-process onnxruntime rows/s ({threads} thread) | latentwatch / in-process "
        "| MLServer / in-process | server CPU ms per request, latentwatch / MLServer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(case: str, lw: Cell, mls: Cell | None, inproc_rows: int) -> None:
        limit = f.inproc(inproc_rows)
        m_rate = mls.rows_per_s if mls else None
        lines.append(
            f"| {case} | {fmt_rate(lw.rows_per_s)} | {fmt_ms(lw)} | {fmt_rate(m_rate)} | "
            f"{fmt_ms(mls) if mls else '-'} | {ratio(lw.rows_per_s, m_rate)} | {fmt_rate(limit)} "
            f"({inproc_rows} row{'s' if inproc_rows > 1 else ''}) | {ratio(lw.rows_per_s, limit)} | "
            f"{ratio(m_rate, limit)} | {cpu_pair(lw, mls)} |"
        )

    for n in SIZES:
        row(f"unary, 1 caller, {n} row{'s' if n > 1 else ''}", f.unary(LW_ON, n), f.unary(MLS, n), n)
    batch = f", {lw_batch_rows:.1f} rows per onnxruntime call" if lw_batch_rows else ""
    callers = f.concurrency()
    row(f"{callers} callers x 1 row, micro-batching on{batch}", f.conc(LW_ON), f.conc(MLS), 1)
    row(f"{callers} callers x 1 row, micro-batching off", f.conc(LW_OFF), f.conc(MLS), 1)
    row("unary, 1 caller, 1 row, micro-batching off", f.unary(LW_OFF, 1), f.unary(MLS, 1), 1)
    for n in STREAM_SIZES:
        row(f"latentwatch StreamScore, {n} rows/message, {STREAM_WINDOW} in flight", f.stream(n), None, n)
    return lines


def floor_table(f: Figures) -> list[str]:
    """The same load against a grpc.aio v2 server that does no work (fixed zeros, no checks)."""
    if not f.runs.get(FLOOR):
        return []
    lines = [
        "Reference, same load, same time: a `grpc.aio` v2 server in the same Python that answers zeros and does "
        "nothing else (no model, no checks, no interceptor; `serving.py --serve-floor`), the floor under any "
        "Python gRPC server here:",
        "",
        "| case | rows/s | p50 / p99 ms | server CPU ms per request | latentwatch / floor | MLServer / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, floor, lw, mls in (
        ("unary, 1 caller, 1 row", f.unary(FLOOR, 1), f.unary(LW_ON, 1), f.unary(MLS, 1)),
        (f"{f.concurrency()} callers x 1 row", f.conc(FLOOR), f.conc(LW_ON), f.conc(MLS)),
    ):
        cpu = "-" if floor.cpu_ms_per_request is None else f"{floor.cpu_ms_per_request:.2f}"
        lines.append(
            f"| {case} | {fmt_rate(floor.rows_per_s)} | {fmt_ms(floor)} | {cpu} | "
            f"{ratio(lw.rows_per_s, floor.rows_per_s)} | {ratio(mls.rows_per_s, floor.rows_per_s)} |"
        )
    return lines


def bars(f: Figures, delay_ms: float) -> list[str]:
    lw1024, m1024 = f.unary(LW_ON, 1024), f.unary(MLS, 1024)
    on, off, mls = f.conc(LW_ON), f.conc(LW_OFF), f.conc(MLS)
    lone_on, lone_off = f.unary(LW_ON, 1), f.unary(LW_OFF, 1)
    limit = f.inproc(1024)

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    cores = f.unary(MLS_CORES, 1024) if f.runs.get(MLS_CORES) else None
    best = max([m1024] + ([cores] if cores else []), key=lambda c: c.rows_per_s)
    r1024 = lw1024.rows_per_s / best.rows_per_s
    ceiling = limit / m1024.rows_per_s if limit else float("nan")
    cores_note = ""
    if cores:
        cores_note = (
            f" MLServer with {CORES} intra-op threads (every core, as latentwatch uses for a lone large request "
            f"shared out over its inference threads) does {fmt_rate(cores.rows_per_s)} rows/s, "
            f"p50 {cores.p50_ms:.2f} ms, "
            f"with {fmt_rate(f.inproc_all_cores(1024))} rows/s in-process at {CORES} threads; the ratio is against "
            "MLServer's better configuration."
        )
    rconc = on.rows_per_s / mls.rows_per_s
    conc_ok = rconc >= 3 and on.p99_ms < mls.p99_ms
    client = median([1e3 * p["client_cpu_s"] / p["requests"] for p in select(f.runs[LW_ON] + f.runs[MLS], "conc")])
    floor_note = ""
    if f.runs.get(FLOOR):
        floor = f.conc(FLOOR)
        floor_note = (
            f" The grpc.aio server that does no work reached {fmt_rate(floor.rows_per_s)} rows/s under the same "
            f"load ({floor.rows_per_s / mls.rows_per_s:.2f}x MLServer) at {floor.cpu_ms_per_request:.2f} ms of CPU "
            "per request."
        )
    batch_gain = on.rows_per_s / off.rows_per_s
    extra_p50 = lone_on.p50_ms - lone_off.p50_ms
    extra_p99 = lone_on.p99_ms - lone_off.p99_ms
    lone_ok = batch_gain > 1 and extra_p50 <= delay_ms
    return [
        f"- 1024-row requests >= 2x MLServer's rows/s: {r1024:.2f}x ({fmt_rate(lw1024.rows_per_s)} vs "
        f"{fmt_rate(best.rows_per_s)}), {verdict(r1024 >= 2)}. In-process onnxruntime on the same matrix in one "
        f"call with one thread does {fmt_rate(limit)} rows/s, {ceiling:.2f}x MLServer with one thread.{cores_note}",
        f"- 64 concurrent single-row callers >= 3x MLServer's rows/s with a lower p99: {rconc:.2f}x "
        f"({fmt_rate(on.rows_per_s)} vs {fmt_rate(mls.rows_per_s)} rows/s), p99 {on.p99_ms:.1f} vs "
        f"{mls.p99_ms:.1f} ms, {verdict(conc_ok)}. Per request the latentwatch server spent "
        f"{on.cpu_ms_per_request:.2f} ms of CPU, MLServer {mls.cpu_ms_per_request:.2f} ms "
        f"({mls.cpu_ms_per_request / on.cpu_ms_per_request:.1f}x more), and the load generator, on the same 2 "
        f"cores, {client:.2f} ms.{floor_note}",
        f"- micro-batching on gives those callers more than off and costs a lone caller no more than its delay "
        f"({delay_ms:g} ms): {batch_gain:.2f}x the rows/s of off ({fmt_rate(on.rows_per_s)} vs "
        f"{fmt_rate(off.rows_per_s)}; p99 {on.p99_ms:.1f} vs {off.p99_ms:.1f} ms); lone 1-row caller p50 "
        f"{lone_on.p50_ms:.3f} ms on vs {lone_off.p50_ms:.3f} ms off ({extra_p50:+.3f} ms; p99 {extra_p99:+.3f} ms), "
        f"{verdict(lone_ok)}.",
    ]


def profile_lines(profiles: list[Profiled]) -> list[str]:
    if not profiles:
        return ["- not profiled (py-spy not found: `pip install py-spy` in any venv, then `--py-spy PATH`)"]
    names = [g for g, _ in sum((p.groups for p in profiles), collections.Counter()).most_common() if g not in WAITING]
    lines = [
        "| | " + " | ".join(p.case for p in profiles) + " |",
        "| --- |" + " ---: |" * len(profiles),
        "| server CPU per request (process time / requests) | "
        + " | ".join(f"{1e3 * p.server_cpu_s / max(p.requests, 1):.3f} ms" for p in profiles)
        + " |",
        "| requests/s while sampled | " + " | ".join(f"{p.requests / p.seconds:,.0f}" for p in profiles) + " |",
    ]
    for kind in (THREAD_LOOP, THREAD_PYTHON, THREAD_CORE):
        cells = " | ".join(f"{p.threads.get(kind, 0.0) / p.window_s:.2f}" for p in profiles)
        lines.append(f"| cores busy: {kind} | {cells} |")
    for name in names:
        cells = " | ".join(f"{100 * p.groups[name] / max(p.working, 1):.0f}%" for p in profiles)
        lines.append(f"| samples: {name} | {cells} |")
    for name in WAITING:
        cells = " | ".join(f"{100 * p.groups[name] / max(p.samples, 1):.0f}%" for p in profiles)
        lines.append(f"| not in the shares above, share of all samples: {name} | {cells} |")
    return lines


def top_own(profiles: list[Profiled], k: int = 6) -> list[str]:
    lines = []
    for p in profiles:
        top = ", ".join(f"{frame} {100 * n / max(p.working, 1):.1f}%" for frame, n in p.own.most_common(k))
        lines.append(f"  - {p.case}: {top}")
    return lines


def peer_versions(python: Path) -> str:
    code = "import mlserver, onnxruntime, grpc; print(mlserver.__version__, onnxruntime.__version__, grpc.__version__)"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if result.returncode:
        return "?"
    mls, ort, grpc = result.stdout.split()
    return f"mlserver {mls}, onnxruntime {ort}, grpcio {grpc}"


@dataclass
class Context:
    command: str
    bundle_info: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    threads: int
    delay_ms: float
    batch_rows: int
    inference_threads: int
    repeats: int
    load: Load
    peer: str
    client_python: str
    stream_check: str
    gpu_note: str


STREAM_NOTE = (
    "StreamScore keeps up to 8 messages in flight, so the server runs two onnxruntime calls at once "
    "(`--inference-threads`, default 2, each call with the 1 intra-op thread): at 1024 rows per message it can pass "
    "the single-call in-process figure. So can a lone unary 1024-row request: it finds both inference threads "
    "idle and is shared out over them."
)


def render(f: Figures, ctx: Context, profiles: list[Profiled]) -> str:
    conc = next((p for p in profiles if "callers" in p.case), None)
    batch_rows = conc.batch_rows if conc else None
    checks = f.checks()
    loads = f.loads()
    other = f.other_cores()
    lines = [
        MARK_START,
        "## Serving (issue 3)",
        "",
        f"- command: `{ctx.command}`",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}, shared with other jobs; load average (1, 5, "
        f"15 min) {', '.join(f'{v:.2f}' for v in ctx.load_start)} at the start, "
        f"{', '.join(f'{v:.2f}' for v in ctx.load_end)} at the end (1-min range over the runs "
        f"{min(loads):.2f}-{max(loads):.2f}); cores busy with other processes during the gRPC phases "
        f"{min(other):.2f}-{max(other):.2f}",
        f"- bundle: {ctx.bundle_info}",
        f"- servers, all on loopback at once, {ctx.threads} onnxruntime intra-op thread each: `latentwatch serve` "
        f"(micro-batching on: at most {ctx.batch_rows} rows per onnxruntime call, a lone large request shared out "
        f"over its {ctx.inference_threads} inference threads; delay {ctx.delay_ms:g} ms) and "
        "`latentwatch serve --no-batching` "
        f"({versions(('grpcio', 'protobuf', 'onnxruntime-gpu', 'onnxruntime', 'numpy'))}); MLServer via "
        f"`../shared/peers/mlserver/serve.sh` (parallel_workers 0, batching off; {ctx.peer}), and for the 1024-row "
        f"case also with {CORES} intra-op threads",
        f"- load: `../shared/peers/load.py` (v2 gRPC, raw_input_contents, outputs {', '.join(OUTPUTS)}) run by "
        f"`{ctx.client_python}`, {ctx.load.duration:g} s per unary case, {ctx.load.conc_duration:g} s for the "
        f"{ctx.load.concurrency} callers, {ctx.load.warmup:g} s warm-up each; {ctx.repeats} repeats per server, "
        "the servers in turns; every figure is the median over the repeats; the in-process figures are the median "
        "of every in-process measurement load.py made (before and after each run). Server CPU is the server "
        "process tree's user+system time over the phase. The client shares the 2 cores with the server.",
        f"- scores: load.py's check (64 rows, tritonclient) against in-process onnxruntime: latentwatch "
        f"{checks.get(LW_ON, '-')}, MLServer {checks.get(MLS, '-')}; StreamScore {ctx.stream_check}",
        f"- GPU: {ctx.gpu_note}",
        "",
        *figures_table(f, batch_rows, ctx.threads),
        "",
        STREAM_NOTE,
        "",
        *floor_table(f),
        "",
        "Bars (issue 3):",
        "",
        *bars(f, ctx.delay_ms),
        "",
        "Where the latentwatch server's time goes: CPU of its threads from /proc, and py-spy sampling it (every "
        "thread, 200 Hz, non-blocking) while this script drove it over v2 with latentwatch's own stubs; the "
        "shares are of the samples py-spy saw as active, less two kinds of waiting it counts as active (last rows):",
        "",
        *profile_lines(profiles),
        "",
    ]
    if profiles:
        lines += ["- innermost latentwatch frame, share of the same samples:", *top_own(profiles)]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_peers = Path(os.environ.get("LATENTWATCH_PEERS", REPO.parent / "shared" / "peers"))
    default_venv = Path(os.environ.get("VENV", Path.home() / ".cache" / "latentwatch-peers" / "mlserver"))
    add = parser.add_argument
    add("--peers", type=Path, default=default_peers, help="the peers folder (load.py, mlserver/)")
    add("--mlserver-venv", type=Path, default=default_venv, help="MLServer's venv (built by mlserver/setup.sh)")
    add("--client-python", help="Python that runs load.py (default: this one if it can, else MLServer's venv)")
    add("--threads", type=int, default=1, help="onnxruntime intra-op threads of every server and in-process")
    add("--repeats", type=int, default=3, help="runs per server, medians reported (default 3)")
    add("--duration", type=float, default=2.0, help="seconds per unary, in-process and stream case")
    add("--conc-duration", type=float, default=3.0, help="seconds of the concurrent callers case")
    add("--warmup", type=float, default=0.5, help="uncounted seconds before each case")
    add("--concurrency", type=int, default=64)
    add("--py-spy", default=shutil.which("py-spy"), help="py-spy executable for the profile (default: on PATH)")
    add("--profile-seconds", type=float, default=4.0)
    add("--workdir", type=Path, help="keep the bundle, logs, load.py JSON and profiles here")
    add("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    add("--no-write", action="store_true", help="print the report only")
    add("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the floor server, in its own process
    return parser.parse_args(argv)


def measure(servers: dict[str, Server], load: Load, args: argparse.Namespace, workdir: Path) -> Figures:
    """Every server's load.py runs (in turns) and the streams, ``repeats`` times."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    streams: list[dict[str, Any]] = []
    order = list(servers)
    for r in range(args.repeats):
        turn = order[r % len(order) :] + order[: r % len(order)]
        for label in turn:
            sizes = (1,) if label in (LW_OFF, FLOOR) else (1024,) if label == MLS_CORES else SIZES
            threads = args.threads * CORES if label == MLS_CORES else None
            out = workdir / f"load-{TAGS[label]}-{r}.json"
            print(f"[{r + 1}/{args.repeats}] load.py against {label} ...", flush=True)
            runs[label].append(load.run(servers[label], sizes, out, threads))
            summary = [p for p in runs[label][-1]["phases"] if p["phase"] in ("unary", "conc")]
            print("   " + "; ".join(f"{p['phase']} {p['rows_per_request']}: {p['rows_per_s']:,.0f}/s" for p in summary))
            if label == LW_ON:
                for n in STREAM_SIZES:
                    x = synthetic_rows(n, 100 + n).astype(np.float32)
                    streams.append(stream_phase(servers[LW_ON], x, args.duration, args.warmup, STREAM_WINDOW))
                    print(f"   stream {n}: {streams[-1]['rows_per_s']:,.0f}/s", flush=True)
    return Figures(runs, streams)


def stream_check(streams: list[dict[str, Any]], onnx: Path, threads: int) -> str:
    """Compare the streamed neg_elbo with in-process onnxruntime on the same rows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for s in streams:
        n = s["rows_per_request"]
        x = synthetic_rows(n, 100 + n).astype(np.float32)
        (ref,) = session.run(["neg_elbo"], {"x": x})
        got = np.asarray(s["neg_elbo"], dtype=np.float32)
        worst = max(worst, float(np.max(np.abs(got - ref) / (1 + np.abs(ref)))))
    return f"{'ok' if worst <= 1e-4 else 'MISMATCH'} (neg_elbo max relative diff {worst:.1e})"


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


def gpu_note() -> str:
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists():
        return "a GPU is present, but this benchmark measures the CPU provider only (`--device cpu`)"
    return "none on this machine: the CUDA provider's throughput and its CPU agreement are not measured here"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return 0
    command = shlex.join(["python", "benchmarks/serving.py", *(argv if argv is not None else sys.argv[1:])])
    load_start = os.getloadavg()
    serve_sh = args.peers / "mlserver" / "serve.sh"
    if not (args.mlserver_venv / "bin" / "mlserver").exists():
        print(f"no MLServer in {args.mlserver_venv}: run {args.peers / 'mlserver' / 'setup.sh'} first", file=sys.stderr)
        return 2
    if not serve_sh.exists() or not (args.peers / "load.py").exists():
        print(f"{args.peers} lacks load.py or mlserver/serve.sh (--peers)", file=sys.stderr)
        return 2
    client_python = pick_client_python(args.client_python, args.mlserver_venv)

    with tempfile.TemporaryDirectory(prefix="lw-serving-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        repo = workdir / "models"
        bundle = repo / MODEL / "1"
        if bundle.exists():
            shutil.rmtree(bundle)
        print("training the default bundle ...", flush=True)
        seconds = train_default_bundle(bundle)
        bundle_info = describe_bundle(bundle) + f"; {seconds:.0f} s to train"
        onnx = bundle / "model.onnx"
        load = Load(client_python, args.peers / "load.py", onnx, args.threads, args.duration,
                    args.conc_duration, args.warmup, args.concurrency)  # fmt: skip
        servers = {
            MLS: mlserver_server(args.peers, onnx, args.threads, workdir),
            MLS_CORES: mlserver_server(args.peers, onnx, args.threads * CORES, workdir, MLS_CORES),
            LW_ON: latentwatch_server(LW_ON, repo, args.threads, True, workdir),
            LW_OFF: latentwatch_server(LW_OFF, repo, args.threads, False, workdir),
            FLOOR: floor_server(workdir),
        }
        os.environ["VENV"] = str(args.mlserver_venv)  # serve.sh reads it
        try:
            for server in servers.values():
                server.start()
            for server in servers.values():
                load.wait_ready(server, 180)
            print("servers ready: " + ", ".join(f"{s.label} on {s.target}" for s in servers.values()), flush=True)
            figures = measure(servers, load, args, workdir)
            profiles = run_profiles(args.py_spy, servers[LW_ON], args.profile_seconds, args.concurrency, workdir)
        finally:
            for server in servers.values():
                server.stop()
        from service.config import ServiceConfig

        ctx = Context(
            command=command,
            bundle_info=bundle_info,
            load_start=load_start,
            load_end=os.getloadavg(),
            threads=args.threads,
            delay_ms=1e3 * ServiceConfig().max_batch_delay_s,
            batch_rows=ServiceConfig().max_batch_rows,
            inference_threads=ServiceConfig().inference_threads,
            repeats=args.repeats,
            load=load,
            peer=peer_versions(args.mlserver_venv / "bin" / "python"),
            client_python=Path(client_python).parent.parent.name + "/bin/python",
            stream_check=stream_check(figures.streams, onnx, args.threads),
            gpu_note=gpu_note(),
        )
        (workdir / "streams.json").write_text(json.dumps(figures.streams, indent=1))
        section = render(figures, ctx, profiles)
    publish(section, args.results, MARK_START, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

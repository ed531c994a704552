"""The serving benchmark's server processes, all on loopback at once, and their CPU time.

- ``latentwatch serve``, micro-batching on (with its /metrics) and off;
- MLServer through the peers' ``mlserver/serve.sh``, with the servers' thread count and with
  one intra-op thread per core;
- the floor: a ``grpc.aio`` v2 server that answers zeros and does nothing else
  (``serving.py --serve-floor PORT`` runs ``serve_floor`` in its own process).

Each is a :class:`Server`, started by this benchmark and stopped by its PID with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving_bundle import MODEL, OUTPUTS, REPO

CORES = os.cpu_count() or 1
RPC_TIMEOUT_S = 30.0
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
    command = [sys.executable, str(Path(__file__).resolve().with_name("serving.py")), "--serve-floor", str(port)]
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

"""deploy/docker/healthcheck.py against a real gRPC health service on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.support import DEPLOY, load_script

SCRIPT = DEPLOY / "docker" / "healthcheck.py"
healthcheck = load_script(SCRIPT)


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env)


def test_serving_exits_0(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    result = _run(target)
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout


def test_not_serving_exits_1(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = _run(target)
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stderr


@pytest.mark.slow
def test_asks_about_one_model(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("sensors", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _run(target).returncode == 0
    assert _run(target, "--service", "sensors").returncode == 1
    unknown = _run(target, "--service", "nope")
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr


def test_draining_server_is_unhealthy(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.enter_graceful_shutdown()
    assert _run(target).returncode == 1


def test_no_server_is_unhealthy_within_the_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serving, seen = healthcheck.check(f"127.0.0.1:{port}", timeout_s=1.0)
    assert not serving
    assert "UNAVAILABLE" in seen or "DEADLINE_EXCEEDED" in seen


def test_default_target_comes_from_latentwatch_port(health_server) -> None:
    target, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = target.rsplit(":", 1)[1]
    result = _run(env={"LATENTWATCH_PORT": port, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{port}" in result.stdout

"""Lifecycle: SIGTERM drain and SIGHUP reload of a real ``serve`` process, reload under load,
deadlines, bearer tokens, TLS and mutual TLS, the device setting."""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.bundle import ONNX_FILE
from service.client import Client
from service.errors import ConfigError, ModelNotReady
from tests.service.conftest import normal_rows, write_bundle
from tests.service.grpc.conftest import MODEL, ROOT, hold_rows_in_queue, sample_value, wait_until, x_request


def write_broken_bundle(directory: Path) -> None:
    write_bundle(directory)
    with (directory / ONNX_FILE).open("ab") as stream:
        stream.write(b"tampered")


@pytest.mark.slow
def test_sighup_reloads_and_sigterm_drains_calls_in_flight(repo: Path, serve_process) -> None:
    serve = serve_process(
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", "--reload-interval", "0",
        "--grace", "600", "--intra-op-threads", "1",
    )  # fmt: skip
    target = f"127.0.0.1:{serve.port}"
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        # SIGHUP: a new version appears without a restart.
        write_bundle(repo / MODEL / "2")
        serve.process.send_signal(signal.SIGHUP)
        wait_until(lambda: stub.ListModels(pb.ListModelsRequest(), timeout=5).models[0].version == "2")

        statuses: list[int] = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=600)

        def follow() -> None:
            try:
                for reply in watch:
                    statuses.append(reply.status)
            except grpc.RpcError:
                pass

        watcher = threading.Thread(target=follow)
        watcher.start()
        wait_until(lambda: statuses == [health_pb2.HealthCheckResponse.SERVING])

        # A scoring stream is the call in flight when SIGTERM lands.
        outbox: queue.Queue = queue.Queue()
        stream = stub.StreamScore(iter(outbox.get, None), timeout=30)
        x = normal_rows(4, seed=2)
        outbox.put(x_request(x, request_id="before"))
        assert next(stream).result.version == "2"
        serve.process.send_signal(signal.SIGTERM)
        wait_until(lambda: health_pb2.HealthCheckResponse.NOT_SERVING in statuses)
        wait_until(lambda: refused(stub) == grpc.StatusCode.UNAVAILABLE)  # no new calls
        # ...but the stream in flight still scores, until it ends.
        outbox.put(x_request(x, request_id="during"))
        reply = next(stream)
        assert (reply.request_id, reply.result.rows) == ("during", 4)
        outbox.put(None)
        assert list(stream) == []
        # Once it is done, the process ends (long before the end of the 600 s grace): the
        # health Watch stream, open for as long, does not hold it up.
        assert serve.process.wait(60) == 0
        watcher.join(10)
        assert not watcher.is_alive()


def refused(stub: scoring_pb2_grpc.ScoringServiceStub) -> grpc.StatusCode | None:
    """The status of a quick call, None when it succeeds."""
    try:
        stub.ListModels(pb.ListModelsRequest(), timeout=5)
    except grpc.RpcError as err:
        return err.code()
    return None


@pytest.mark.slow
def test_reload_under_load_fails_no_request(repo: Path, start_server) -> None:
    server = start_server(reload_interval_s=0.1, reload_settle_s=0.5)
    failures: list[BaseException] = []
    seen: list[list[str]] = [[] for _ in range(3)]
    stop = threading.Event()
    x = normal_rows(8, seed=5)

    def caller(versions: list[str]) -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            while not stop.is_set():
                try:
                    versions.append(stub.Score(x_request(x), timeout=10).version)
                except BaseException as err:
                    failures.append(err)
                    return

    threads = [threading.Thread(target=caller, args=(v,)) for v in seen]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(seen))
        write_bundle(repo / MODEL / "2")
        wait_until(lambda: all(v and v[-1] == "2" for v in seen))
        write_broken_bundle(repo / MODEL / "4")
        write_bundle(repo / MODEL / "3")
        wait_until(lambda: all(v and v[-1] == "3" for v in seen))
        # The broken version is refused (and counted) once its files have settled...
        labels = {"model": MODEL}
        wait_until(lambda: sample_value(server.registry, "latentwatch_model_load_failures_total", labels) == 1)
        time.sleep(0.3)  # ...then a few more polls: it must not be retried
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    for versions in seen:
        assert versions == sorted(versions, key=int)  # never back to an older version
    failures_total = sample_value(server.registry, "latentwatch_model_load_failures_total", {"model": MODEL})
    assert failures_total == 1
    assert server.service.models.versions(MODEL) == ["1", "2", "3"]


@pytest.mark.slow
def test_deadline_is_honoured_and_abandoned_rows_are_not_scored(start_server) -> None:
    server = start_server(max_batch_delay_s=1.0, max_batch_rows=100000)
    hold_rows_in_queue(server)
    with grpc.insecure_channel(server.target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Score(x_request(normal_rows(3, seed=1)), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    labels = {"model": MODEL, "method": "Score", "code": "DEADLINE_EXCEEDED"}
    wait_until(lambda: sample_value(server.registry, "latentwatch_requests_total", labels) == 1)
    batcher = server.service.models.get(MODEL).batcher
    wait_until(lambda: batcher.queued_rows == 0, timeout=5)
    assert sample_value(server.registry, "latentwatch_batch_rows_count", {"model": MODEL}) == 0


@pytest.mark.slow
def test_bearer_tokens(tmp_path: Path, start_server) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# one per line\nsecret-one\n\nsecret-two\n")
    server = start_server(auth_tokens_file=tokens)
    x = normal_rows(1, seed=0)
    with grpc.insecure_channel(server.target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer nope"),), (("authorization", "secret-two"),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.Score(x_request(x), metadata=metadata, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in info.value.details()
        reply = stub.Score(x_request(x), metadata=(("authorization", "Bearer secret-two"),), timeout=5)
        assert reply.rows == 1
        # Health stays open for probes.
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
    with Client(server.target, token="secret-one") as client:
        assert client.score_x(x, MODEL).rows == 1
    labels = {"model": MODEL, "method": "Score", "code": "UNAUTHENTICATED"}
    assert sample_value(server.registry, "latentwatch_requests_total", labels) == 3


@pytest.mark.slow
def test_serve_refuses_bearer_tokens_over_plaintext_unless_the_network_is_trusted(
    repo: Path, tmp_path: Path, start_server, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("secret\n")
    command = [sys.executable, "-m", "service.serve", "--models", str(repo), "--auth-tokens", str(tokens)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "sends bearer tokens in plaintext on host '0.0.0.0'" in result.stderr
    assert "--trusted-network" in result.stderr

    # Said to be trusted: it serves, and says at start that tokens travel in plaintext.
    with caplog.at_level(logging.WARNING, logger="service.grpc.server"):
        server = start_server(host="0.0.0.0", auth_tokens_file=tokens, trusted_network=True)
    assert any("bearer tokens travel in plaintext" in r.getMessage() for r in caplog.records)
    with Client(f"127.0.0.1:{server.port}", token="secret") as client:
        assert client.score_x(normal_rows(1, seed=0), MODEL).rows == 1


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    return d


@pytest.mark.slow
def test_tls_and_mutual_tls(certificates: Path, start_server) -> None:
    pki = certificates
    server = start_server(tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem")
    x = normal_rows(2, seed=0)
    with Client(
        server.target,
        tls_ca=pki / "ca.pem",
        tls_cert=pki / "client.pem",
        tls_key=pki / "client.key",
        timeout_s=10,
    ) as client:
        assert client.score_x(x, MODEL).rows == 2
    # Without a client certificate the handshake fails.
    with Client(server.target, tls_ca=pki / "ca.pem", timeout_s=5) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.score_x(x, MODEL)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # Plaintext is refused too.
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError):
            scoring_pb2_grpc.ScoringServiceStub(channel).Score(x_request(x), timeout=5)


def test_device_cuda_runs_on_cuda_or_fails_at_start(start_server) -> None:
    try:
        server = start_server(device="cuda")
    except ModelNotReady as err:
        failure = err.message
    else:
        failure = None
        assert server.service.models.get(MODEL).provider == "CUDAExecutionProvider"
    if failure is not None:
        assert "device 'cuda'" in failure


def test_missing_repository_fails_at_start(tmp_path: Path, start_server) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        start_server(models=tmp_path / "nowhere")


@pytest.mark.slow
def test_empty_repository_starts_not_ready_then_serves(tmp_path: Path, start_server) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    server = start_server(models=root, reload_interval_s=0.1)
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")
        assert health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
        write_bundle(root / MODEL / "1")
        wait_until(lambda: health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING)
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        assert stub.Score(x_request(np.zeros((1, 3), np.float32)), timeout=5).rows == 1

"""SIGTERM on a real ``serve`` process: health keeps answering NOT_SERVING while calls drain,
and every call that reached the server before the signal finishes or is told the server is
shutting down."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.inference import grpc_predict_v2_pb2_grpc
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import ServeProcess, wait_until, x_request

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVE_FLAGS = ("--host", "127.0.0.1", "--port", "0", "--metrics-port", "-1", "--reload-interval", "0")


def shutting_down(err: grpc.RpcError) -> bool:
    """The status a call gets once the server drains."""
    return err.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (err.details() or "")


@pytest.mark.slow
def test_health_answers_not_serving_for_the_whole_drain(serve_process: Callable[..., ServeProcess]) -> None:
    serve = serve_process(*SERVE_FLAGS, "--grace", "60")
    with grpc.insecure_channel(f"127.0.0.1:{serve.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        watched: list[int] = []
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        watcher = threading.Thread(target=lambda: watched.extend(reply.status for reply in watch), daemon=True)
        watcher.start()

        # A stream in flight holds the drain open while we look.
        outbox: queue.Queue = queue.Queue()
        stream = stub.StreamScore(iter(outbox.get, None), timeout=60)
        x = normal_rows(3, seed=1)
        outbox.put(x_request(x))
        assert next(stream).result.rows == 3
        serve.process.send_signal(signal.SIGTERM)
        wait_until(lambda: NOT_SERVING in watched)

        # The port still answers: health says NOT_SERVING, for the server and for the model...
        for service in ("", "sensors", "latentwatch.v1.ScoringService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == NOT_SERVING, service
        # ...the V2 probes answer "not ready"...
        oip = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert oip.ServerLive(v2.ServerLiveRequest(), timeout=5).live
        assert not oip.ServerReady(v2.ServerReadyRequest(), timeout=5).ready
        # ...and a new call is told the server is shutting down.
        with pytest.raises(grpc.RpcError) as info:
            stub.Score(x_request(x), timeout=5)
        assert shutting_down(info.value), info.value

        outbox.put(x_request(x))
        assert next(stream).result.rows == 3  # the call in flight goes on
        outbox.put(None)
        assert list(stream) == []
        assert serve.process.wait(30) == 0  # then the server stops, well within its grace
        watcher.join(10)


@pytest.mark.slow
def test_calls_sent_just_before_sigterm_finish_or_hear_the_server_is_shutting_down(
    serve_process: Callable[..., ServeProcess],
) -> None:
    serve = serve_process(*SERVE_FLAGS, "--grace", "30", "--intra-op-threads", "1")
    x = normal_rows(2, seed=3)
    outcomes: list[str] = []
    with grpc.insecure_channel(f"127.0.0.1:{serve.port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        stub.ListModels(pb.ListModelsRequest(), timeout=10)  # connected
        # A burst of small calls, then SIGTERM at once: many have reached the server but not
        # yet been taken up by its event loop when the signal lands.
        calls = [stub.Score.future(x_request(x), timeout=30) for _ in range(400)]
        serve.process.send_signal(signal.SIGTERM)
        for call in calls:
            try:
                outcomes.append("OK" if call.result().rows == 2 else "wrong rows")
            except grpc.RpcError as err:
                outcomes.append("shutting down" if shutting_down(err) else f"{err.code().name}: {err.details()}")
    assert serve.process.wait(30) == 0
    assert set(outcomes) <= {"OK", "shutting down"}, sorted(set(outcomes))

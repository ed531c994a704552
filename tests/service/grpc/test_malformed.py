"""Malformed requests over both APIs, table-driven (the tables are in ``malformed``,
``malformed_v1`` and ``malformed_v2``): each gets its exact status code and a message that names the problem;
none gets UNKNOWN or INTERNAL, a Python exception's name, or a client string echoed whole;
and the server answers good requests while it refuses them all, and after.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

import grpc
import pytest

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.inference import grpc_predict_v2_pb2_grpc
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from tests.service.conftest import normal_rows, write_bundle
from tests.service.grpc.conftest import MODEL, ServerThread, loopback_config, sample_value, x_request
from tests.service.grpc.malformed import (
    INFER,
    INVALID,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_ROWS,
    SCORE,
    STREAM,
    WIRE_CASES,
    Case,
)
from tests.service.grpc.malformed_v1 import V1_CASES
from tests.service.grpc.malformed_v2 import V2_CASES, X, infer

CASES = [*V1_CASES, *V2_CASES, *WIRE_CASES]
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")
BOUND = 2000  # characters: far above any honest message, far below an echoed 1 MiB string
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def case_id(case: Case) -> str:
    return f"{case.method.rsplit('/', 1)[1]}: {case.name}"


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server for the module, with small row and message limits (the tables' limits)."""
    models = tmp_path_factory.mktemp("malformed") / "models"
    write_bundle(models / MODEL / "1")
    limits = {
        "max_request_rows": MAX_REQUEST_ROWS,
        "max_queue_rows": MAX_REQUEST_ROWS,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    }
    server = ServerThread(loopback_config(models, **limits)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict_channel(strict_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(strict_server.target, options=UNLIMITED) as channel:
        yield channel


def answer(channel: grpc.Channel, case: Case) -> tuple[str, str]:
    """The status code's name and the message that ``case`` gets ("OK" when it is served)."""
    try:
        if case.method == STREAM:
            call = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
            (reply,) = (pb.StreamScoreResponse.FromString(r) for r in call(iter([case.body]), timeout=10))
            if reply.WhichOneof("outcome") == "error":
                return reply.error.code, reply.error.message
            return "OK", ""
        channel.unary_unary(case.method, request_serializer=None, response_deserializer=None)(case.body, timeout=10)
    except grpc.RpcError as err:
        return err.code().name, err.details() or ""
    return "OK", ""


def test_the_tables_hold_over_100_distinct_malformed_requests_over_both_apis() -> None:
    assert len(CASES) >= 100
    assert len({(c.method, c.body) for c in CASES}) == len(CASES)
    assert len({case_id(c) for c in CASES}) == len(CASES)
    services = {c.method.split("/")[1] for c in CASES}
    assert services == {"latentwatch.v1.ScoringService", "inference.GRPCInferenceService"}
    for case in CASES:
        assert case.says, case.name
        assert case.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), case.name


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
@pytest.mark.slow
def test_a_malformed_request_gets_its_code_and_a_message_naming_the_problem(
    strict_channel: grpc.Channel, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        code, details = answer(strict_channel, case)
    assert code == case.code.name, details[:BOUND]
    for text in case.says:
        assert text in details, details[:BOUND]
    assert not EXCEPTION_NAME.search(details), details[:BOUND]
    assert len(details) < BOUND, len(details)
    assert all(len(r.getMessage()) < BOUND for r in caplog.records)


@pytest.mark.slow
def test_the_server_serves_while_and_after_refusing_every_case(
    strict_server: ServerThread, strict_channel: grpc.Channel
) -> None:
    good = normal_rows(5, seed=9)
    failures: list[BaseException] = []
    done = threading.Event()

    def steady_caller() -> None:
        with grpc.insecure_channel(strict_server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            while not done.is_set():
                try:
                    assert stub.Score(x_request(good), timeout=10).rows == 5
                except BaseException as err:
                    failures.append(err)
                    return

    thread = threading.Thread(target=steady_caller)
    thread.start()
    try:
        codes = [answer(strict_channel, case)[0] for case in CASES]
    finally:
        done.set()
        thread.join(30)
    assert failures == []
    assert codes == [c.code.name for c in CASES]

    # Afterwards, every kind of good request is answered.
    stub = scoring_pb2_grpc.ScoringServiceStub(strict_channel)
    assert stub.Score(x_request(good), timeout=10).rows == 5
    (streamed,) = stub.StreamScore(iter([x_request(good)]), timeout=10)
    assert streamed.result.rows == 5
    v2_stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(strict_channel)
    reply = v2_stub.ModelInfer(infer(X), timeout=10)
    assert [o.name for o in reply.outputs][:2] == ["recon_error", "neg_elbo"]
    assert v2_stub.ModelMetadata(v2.ModelMetadataRequest(name=MODEL), timeout=10).name == MODEL
    assert v2_stub.ModelReady(v2.ModelReadyRequest(name=MODEL), timeout=10).ready

    # The refusals were counted as the client's mistakes, none as the server's.
    registry = strict_server.registry
    refused = sum(
        sample_value(
            registry, "latentwatch_requests_total", {"model": model, "method": "Score", "code": "INVALID_ARGUMENT"}
        )
        for model in (MODEL, "")
    )
    assert refused >= sum(c.method == SCORE and c.code == INVALID for c in CASES)
    server_faults = [
        s
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "latentwatch_requests_total" and s.labels["code"] in ("INTERNAL", "UNKNOWN") and s.value
    ]
    assert server_faults == []
    assert INFER in {c.method for c in CASES}

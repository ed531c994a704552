"""Hostile requests: a huge one is refused from its shape and byte counts, and while it is in
flight a small request from someone else is still answered (a generous bound, not a timing).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.inference import grpc_predict_v2_pb2_grpc
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.config import ServiceConfig
from service.dataplane import OFF_LOOP_ELEMENTS, off_loop
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import MODEL, x_request

STALL_BOUND_S = 2.0
MAX_REQUEST_ROWS = ServiceConfig.max_request_rows
MAX_MESSAGE_BYTES = ServiceConfig.max_message_bytes
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
Tensor = v2.ModelInferRequest.InferInputTensor


@dataclass(frozen=True)
class Hostile:
    name: str
    shape: list[int]
    datatype: str
    input: str
    data_bytes: int
    code: grpc.StatusCode
    says: tuple[str, ...]

    def request(self) -> v2.ModelInferRequest:
        return v2.ModelInferRequest(
            model_name=MODEL,
            inputs=[Tensor(name=self.input, datatype=self.datatype, shape=self.shape)],
            raw_input_contents=[bytes(self.data_bytes)],
        )


HOSTILE = [
    # 10 million empty strings: a 4-byte zero length each.
    Hostile(
        "40 MB of BYTES",
        [10_000_000],
        "BYTES",
        "site",
        40_000_000,
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'site'", "10000000 rows", f"limit of {MAX_REQUEST_ROWS}"),
    ),
    Hostile(
        "60 MB raw tensor",
        [5_000_000, 3],
        "FP32",
        "x",
        60_000_000,
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'x'", "5000000 rows", f"limit of {MAX_REQUEST_ROWS}"),
    ),
    Hostile(
        "a message over the size limit",
        [6_000_000, 3],
        "FP32",
        "x",
        72_000_000,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        (str(MAX_MESSAGE_BYTES),),
    ),
]


def timed_good_request(stub: scoring_pb2_grpc.ScoringServiceStub, x: np.ndarray) -> float:
    start = time.perf_counter()
    reply = stub.Score(x_request(x), timeout=30)
    elapsed = time.perf_counter() - start
    assert reply.rows == 1
    return elapsed


def good_requests_beside(server, good: np.ndarray, method, request) -> tuple[list[float], grpc.RpcError]:
    """Seconds of each good one-row request sent while ``method(channel)`` handles ``request``, and its error."""
    with (
        grpc.insecure_channel(server.target, options=UNLIMITED) as bad_channel,
        grpc.insecure_channel(server.target) as good_channel,
    ):
        good_stub = scoring_pb2_grpc.ScoringServiceStub(good_channel)
        timed_good_request(good_stub, good)  # connected and warm
        call = method(bad_channel).future(request, timeout=60)
        latencies = [timed_good_request(good_stub, good)]
        while not call.done():
            latencies.append(timed_good_request(good_stub, good))
        with pytest.raises(grpc.RpcError) as info:
            call.result()
    return latencies, info.value


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
@pytest.mark.slow
def test_a_hostile_request_is_refused_without_stalling_others(server, hostile: Hostile) -> None:
    good = normal_rows(1, seed=3)
    request = hostile.request()
    latencies, error = good_requests_beside(
        server, good, lambda channel: grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request
    )
    assert max(latencies) < STALL_BOUND_S, latencies
    assert error.code() == hostile.code, error.details()
    for text in hostile.says:
        assert text in error.details(), error.details()


@pytest.mark.slow
def test_a_huge_text_column_is_refused_without_stalling_others(server) -> None:
    good = normal_rows(1, seed=3)
    site = pb.Column(name="site", strings=pb.StringValues(values=[""] * 5_000_000))
    request = pb.ScoreRequest(model=MODEL, columns=pb.Columns(columns=[site]))
    latencies, error = good_requests_beside(
        server, good, lambda channel: scoring_pb2_grpc.ScoringServiceStub(channel).Score, request
    )
    assert max(latencies) < STALL_BOUND_S, latencies
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "column 'site' holds 5000000 rows" in error.details()
    assert f"limit of {MAX_REQUEST_ROWS}" in error.details()


def test_big_work_runs_off_the_event_loop() -> None:
    async def main() -> tuple[int, int]:
        small = await off_loop(threading.get_ident, elements=10)
        big = await off_loop(threading.get_ident, elements=OFF_LOOP_ELEMENTS + 1)
        return small, big

    small, big = asyncio.run(main())
    assert small == threading.get_ident()
    assert big != threading.get_ident()

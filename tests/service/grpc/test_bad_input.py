"""Refusals beyond a malformed request (those are the tables of ``test_malformed.py``): a
full queue, the row limits, an unexpected error, and the error classes' status codes.
"""

from __future__ import annotations

import logging
import threading

import grpc
import numpy as np
import pytest

from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.errors import (
    BundleError,
    ConfigError,
    DataError,
    InvalidInput,
    LatentwatchError,
    MissingExtra,
    ModelNotFound,
    ModelNotReady,
    ResourceExhausted,
)
from service.grpc.interceptors import status_code
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import (
    MODEL,
    hold_rows_in_queue,
    sample_value,
    wait_until,
    x_request,
)


@pytest.mark.slow
def test_full_queue_answers_resource_exhausted(start_server) -> None:
    # Rows wait 2 s for company, so the first request fills the queue.
    server = start_server(max_request_rows=60, max_queue_rows=60, max_batch_rows=1000, max_batch_delay_s=2.0)
    hold_rows_in_queue(server)
    with grpc.insecure_channel(server.target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        first = stub.Score.future(x_request(normal_rows(60, seed=1)), timeout=20)
        deadline = threading.Event()
        while server.service.models.get(MODEL).batcher.queued_rows < 60:
            deadline.wait(0.01)
        assert sample_value(server.registry, "latentwatch_queue_rows", {"model": MODEL}) == 60
        with pytest.raises(grpc.RpcError) as info:
            stub.Score(x_request(normal_rows(60, seed=2)), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full (60 rows waiting, limit 60" in info.value.details()
        assert first.result().rows == 60  # the queued request still completes


@pytest.mark.slow
def test_two_requests_within_the_row_limit_are_both_queued(start_server) -> None:
    # The default limits: a request may carry 65,536 rows, and 65,536 may wait. One inference
    # thread, held busy, so that both requests' rows wait in the queue at the same time.
    server = start_server(inference_threads=1)
    assert server.config.max_request_rows == server.config.max_queue_rows == 65536
    release = threading.Event()
    server.service._executor.submit(release.wait, 60)
    batcher = server.service.models.get(MODEL).batcher
    x = normal_rows(40_000, seed=4)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            first = stub.Score.future(x_request(x), timeout=60)
            wait_until(lambda: batcher.queued_rows >= 40_000 - server.config.max_batch_rows, timeout=30)
            second = stub.Score.future(x_request(x), timeout=60)
            wait_until(lambda: batcher.queued_rows > 65_536 or second.done(), timeout=30)
            release.set()
            replies = [first.result(), second.result()]
    finally:
        release.set()
    assert [reply.rows for reply in replies] == [40_000, 40_000]
    np.testing.assert_array_equal(replies[0].neg_elbo, replies[1].neg_elbo)


@pytest.mark.slow
def test_unexpected_error_is_internal_with_a_generic_message(server, stub, caplog) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("secret detail of the failure")

    server.service.dataplane.infer = broken
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as info:
        stub.Score(x_request(normal_rows(1, 0)), timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()
    assert "request id" in info.value.details()
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (DataError, grpc.StatusCode.INVALID_ARGUMENT),
        (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound, grpc.StatusCode.NOT_FOUND),
        (ModelNotReady, grpc.StatusCode.UNAVAILABLE),
        (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (BundleError, grpc.StatusCode.FAILED_PRECONDITION),
        (MissingExtra, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_error_classes_map_to_status_codes(error: type[LatentwatchError], code) -> None:
    assert status_code(error("x").code) == code


def test_every_error_class_names_a_real_status_code() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(LatentwatchError):
        assert hasattr(grpc.StatusCode, cls.code), cls

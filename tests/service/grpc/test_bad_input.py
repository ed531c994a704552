"""Bad input, table-driven: each case's status code and a message naming the problem.

A client's mistake is never UNKNOWN or INTERNAL, and the server keeps serving other callers
while it refuses them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from service._proto.latentwatch.v1 import scoring_pb2 as pb
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
    columns_request,
    hold_rows_in_queue,
    sample_value,
    wait_until,
    x_request,
)

MAX_REQUEST_ROWS = 100
MAX_MESSAGE_BYTES = 64 * 1024
GOOD_COLUMNS = {
    "temperature": ([1.0, 2.0], True),
    "load": ([0.5, 0.5], True),
    "site": (["north", "east"], False),
}


def with_column(name: str, values: list, numeric: bool) -> dict:
    return {**GOOD_COLUMNS, name: (values, numeric)}


def without_column(name: str) -> dict:
    return {k: v for k, v in GOOD_COLUMNS.items() if k != name}


def x_with(row: int, col: int, value: float) -> np.ndarray:
    x = normal_rows(3, seed=0)
    x[row, col] = value
    return x


@dataclass(frozen=True)
class Case:
    name: str
    request: pb.ScoreRequest
    code: grpc.StatusCode
    says: tuple[str, ...]


INVALID = grpc.StatusCode.INVALID_ARGUMENT
CASES = [
    Case("unknown model", x_request(normal_rows(1, 0), model="nope"), grpc.StatusCode.NOT_FOUND, ("'nope'", MODEL)),
    Case(
        "unknown version",
        x_request(normal_rows(1, 0), version="9"),
        grpc.StatusCode.NOT_FOUND,
        ("version '9'", "['1']"),
    ),
    Case("no rows at all", pb.ScoreRequest(model=MODEL), INVALID, ("no rows", "columns")),
    Case("missing column", columns_request(without_column("load")), INVALID, ("missing feature column(s) ['load']",)),
    Case(
        "extra column",
        columns_request(with_column("humidity", [1.0, 2.0], True)),
        INVALID,
        ("unknown column 'humidity'",),
    ),
    Case(
        "misspelled column",
        columns_request({**without_column("temperature"), "temprature": ([1.0, 2.0], True)}),
        INVALID,
        ("unknown column 'temprature'", "did you mean 'temperature'"),
    ),
    Case(
        "duplicate column",
        pb.ScoreRequest(
            model=MODEL,
            columns=pb.Columns(
                columns=[
                    *columns_request(GOOD_COLUMNS).columns.columns,
                    pb.Column(name="load", numbers=pb.NumberValues(values=[1.0, 2.0])),
                ]
            ),
        ),
        INVALID,
        ("'load'", "more than once"),
    ),
    Case("column lengths differ", columns_request(with_column("load", [1.0], True)), INVALID, ("different lengths",)),
    Case(
        "text in a numeric column",
        columns_request(with_column("load", ["1.5", "abc"], False)),
        INVALID,
        ("row 1", "'load'", "'abc' is not a number"),
    ),
    Case(
        "missing flags of the wrong length",
        pb.ScoreRequest(
            model=MODEL,
            columns=pb.Columns(
                columns=[
                    *columns_request(without_column("site")).columns.columns,
                    pb.Column(name="site", strings=pb.StringValues(values=["a", "b"], missing=[True])),
                ]
            ),
        ),
        INVALID,
        ("'site'", "missing flags"),
    ),
    Case(
        "column without values",
        pb.ScoreRequest(model=MODEL, columns=pb.Columns(columns=[pb.Column(name="load")])),
        INVALID,
        ("'load'", "neither numbers nor strings"),
    ),
    Case(
        "wrong feature count", x_request(np.zeros((2, 5), dtype=np.float32)), INVALID, ("shape (n_rows, 3)", "(2, 5)")
    ),
    Case(
        "tensor byte length",
        pb.ScoreRequest(model=MODEL, x=pb.Tensor(rows=2, cols=3, data=b"\0" * 20)),
        INVALID,
        ("24 bytes", "got 20"),
    ),
    Case("NaN category code", x_request(x_with(1, 2, np.nan)), INVALID, ("row 1", "'site'", "categorical")),
    Case("category code out of range", x_request(x_with(2, 2, 3.0)), INVALID, ("row 2", "'site'", "from -1", "to 2")),
    Case("fractional category code", x_request(x_with(0, 2, 0.5)), INVALID, ("row 0", "'site'")),
    Case("infinite number", x_request(x_with(2, 0, np.inf)), INVALID, ("row 2", "'temperature'", "infinite")),
    Case("empty batch", x_request(np.zeros((0, 3), dtype=np.float32)), INVALID, ("no rows",)),
    Case(
        "too many rows",
        x_request(normal_rows(MAX_REQUEST_ROWS + 1, 0)),
        INVALID,
        (f"{MAX_REQUEST_ROWS + 1} rows", f"limit of {MAX_REQUEST_ROWS}"),
    ),
    Case("alpha out of range", x_request(normal_rows(1, 0), alpha=1.5), INVALID, ("alpha", "1.5")),
    Case(
        "oversized message",
        x_request(np.zeros((MAX_MESSAGE_BYTES // 12 + 10, 3), dtype=np.float32)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        (),
    ),
]


@pytest.fixture
def strict_server(start_server):
    return start_server(
        max_request_rows=MAX_REQUEST_ROWS,
        max_queue_rows=MAX_REQUEST_ROWS,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )


@pytest.fixture
def strict_stub(strict_server):
    with grpc.insecure_channel(strict_server.target) as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_gets_its_code_and_a_message_naming_the_problem(strict_stub, case) -> None:
    with pytest.raises(grpc.RpcError) as info:
        strict_stub.Score(case.request, timeout=10)
    error = info.value
    assert error.code() == case.code, error.details()
    for text in case.says:
        assert text in error.details()
    assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def test_server_keeps_serving_others_while_refusing_bad_calls(strict_server, strict_stub) -> None:
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
        for _ in range(3):
            for case in CASES:
                with pytest.raises(grpc.RpcError):
                    strict_stub.Score(case.request, timeout=10)
    finally:
        done.set()
        thread.join(30)
    assert failures == []
    registry = strict_server.registry
    ok = sample_value(registry, "latentwatch_requests_total", {"model": MODEL, "method": "Score", "code": "OK"})
    bad = sample_value(
        registry,
        "latentwatch_requests_total",
        {"model": MODEL, "method": "Score", "code": "INVALID_ARGUMENT"},
    )
    assert ok >= 1
    assert bad >= 3 * sum(c.code == INVALID for c in CASES if c.request.model == MODEL) - 3


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

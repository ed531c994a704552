"""Client strings in errors and logs are quoted cut short: a 1 MiB model name, thousands of
unknown names or a huge value never come back whole (nor overflow gRPC's metadata limit).
"""

from __future__ import annotations

import logging

import grpc
import pytest

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.inference import grpc_predict_v2_pb2_grpc
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service.errors import QUOTE_CHARS, quote, quote_list
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import MODEL, columns_request, x_request

HUGE = "m" * (1 << 20)
BOUND = 2000  # characters: far above any honest message, far below the echoed input
Tensor = v2.ModelInferRequest.InferInputTensor


def test_quote_cuts_long_strings_and_says_how_long() -> None:
    assert quote("north") == "'north'"
    assert quote("a\nb") == "'a\\nb'"
    cut = quote("z" * 1000)
    assert cut == repr("z" * QUOTE_CHARS) + "… (1000 characters)"
    assert quote_list(["a", "b"]) == "['a', 'b']"
    many = quote_list(str(i) for i in range(3000))
    assert many.endswith("… (2992 more, 3000 in all)]")
    assert len(many) < 200


def v2_stub(channel: grpc.Channel) -> grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub:
    return grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)


def refused(call, request, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    assert info.value.code() == code, info.value.details()
    details = info.value.details()
    assert len(details) < BOUND, len(details)
    return details


@pytest.fixture
def big_channel(server):
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(server.target, options=options) as channel:
        yield channel


def test_a_huge_model_name_is_not_found_and_quoted_short(big_channel, caplog) -> None:
    stub = v2_stub(big_channel)
    with caplog.at_level(logging.INFO):
        for call, request in [
            (stub.ModelInfer, v2.ModelInferRequest(model_name=HUGE)),
            (stub.ModelMetadata, v2.ModelMetadataRequest(name=HUGE)),
            (pb_stub(big_channel).Score, x_request(normal_rows(1, 0), model=HUGE)),
            (pb_stub(big_channel).DescribeModel, pb.DescribeModelRequest(model=HUGE)),
            (pb_stub(big_channel).Score, x_request(normal_rows(1, 0), version=HUGE)),
        ]:
            details = refused(call, request, grpc.StatusCode.NOT_FOUND)
            assert f"({len(HUGE)} characters)" in details
    assert all(len(r.getMessage()) < BOUND for r in caplog.records)


def pb_stub(channel: grpc.Channel):
    from service._proto.latentwatch.v1 import scoring_pb2_grpc

    return scoring_pb2_grpc.ScoringServiceStub(channel)


def test_thousands_of_unknown_v2_inputs_are_listed_short(big_channel, caplog) -> None:
    inputs = [Tensor(name=f"column_{i}_" + "q" * 100, datatype="FP32", shape=[1]) for i in range(3000)]
    request = v2.ModelInferRequest(model_name=MODEL, inputs=inputs, raw_input_contents=[b"\0" * 4] * 3000)
    with caplog.at_level(logging.INFO):
        details = refused(v2_stub(big_channel).ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT)
    assert "3000 inputs" in details
    assert "3000 in all" in details
    assert all(len(r.getMessage()) < BOUND for r in caplog.records)


def test_a_few_unknown_v2_inputs_are_each_named(big_channel) -> None:
    names = [f"extra_{i}" for i in range(10)] + ["temperature", "load", "site"]
    inputs = [Tensor(name=n, datatype="FP32", shape=[1]) for n in names]
    request = v2.ModelInferRequest(model_name=MODEL, inputs=inputs, raw_input_contents=[b"\0" * 4] * len(names))
    details = refused(v2_stub(big_channel).ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT)
    assert "unknown column 'extra_0'" in details
    assert "2 more unknown columns" in details


@pytest.mark.parametrize(
    ("name", "request_of"),
    [
        (
            "unknown output",
            lambda: v2.ModelInferRequest(
                model_name=MODEL,
                inputs=[Tensor(name="x", datatype="FP32", shape=[1, 3])],
                raw_input_contents=[b"\0" * 12],
                outputs=[{"name": HUGE}],
            ),
        ),
        (
            "unknown outputs by the thousand",
            lambda: v2.ModelInferRequest(
                model_name=MODEL,
                inputs=[Tensor(name="x", datatype="FP32", shape=[1, 3])],
                raw_input_contents=[b"\0" * 12],
                outputs=[{"name": f"out_{i}" + "o" * 300} for i in range(3000)],
            ),
        ),
        (
            "string alpha",
            lambda: v2.ModelInferRequest(
                model_name=MODEL,
                inputs=[Tensor(name="x", datatype="FP32", shape=[1, 3])],
                raw_input_contents=[b"\0" * 12],
                parameters={"alpha": v2.InferParameter(string_param=HUGE)},
            ),
        ),
        (
            "input name",
            lambda: v2.ModelInferRequest(
                model_name=MODEL,
                inputs=[Tensor(name=HUGE, datatype="FP32", shape=[1])],
                raw_input_contents=[b"\0" * 4],
            ),
        ),
        (
            "datatype",
            lambda: v2.ModelInferRequest(
                model_name=MODEL,
                inputs=[Tensor(name="x", datatype=HUGE, shape=[1, 3])],
                raw_input_contents=[b"\0" * 12],
            ),
        ),
    ],
)
def test_huge_v2_strings_are_quoted_short(big_channel, name: str, request_of) -> None:
    refused(v2_stub(big_channel).ModelInfer, request_of(), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    "columns",
    [
        {"temperature": ([HUGE, "1"], False), "load": ([1.0, 2.0], True), "site": (["north", "east"], False)},
        {HUGE: ([1.0, 2.0], True), "load": ([1.0, 2.0], True), "site": (["north", "east"], False)},
        {
            **{f"c{i}" + "w" * 200: ([1.0], True) for i in range(9)},
            "temperature": ([1.0], True),
            "load": ([1.0], True),
            "site": (["north"], False),
        },
    ],
    ids=["huge value", "huge column name", "many unknown columns"],
)
def test_huge_column_strings_are_quoted_short(big_channel, columns) -> None:
    refused(pb_stub(big_channel).Score, columns_request(columns), grpc.StatusCode.INVALID_ARGUMENT)

"""Malformed requests at the wire and shape level: INVALID_ARGUMENT with a message that says
what is wrong, never UNKNOWN or INTERNAL, never a Python exception's class name.

Bodies that do not parse are sent with a raw generic call (no serializer), as a client built
from another ``.proto`` or a broken proxy would.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.message import DecodeError

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import MODEL, x_request

SCORE = "/latentwatch.v1.ScoringService/Score"
STREAM = "/latentwatch.v1.ScoringService/StreamScore"
INFER = "/inference.GRPCInferenceService/ModelInfer"
METADATA = "/inference.GRPCInferenceService/ModelMetadata"
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")
Tensor = v2.ModelInferRequest.InferInputTensor


def garbage(seed: int, size: int = 256) -> bytes:
    """Random bytes that parse as none of the request messages."""
    data = random.Random(seed).randbytes(size)
    for message in (pb.ScoreRequest, v2.ModelInferRequest, v2.ModelMetadataRequest):
        with pytest.raises(DecodeError):
            message.FromString(data)
    return data


def bad_utf8(message: object, marker: str) -> bytes:
    """``message`` serialized, with the string ``marker`` replaced by invalid UTF-8."""
    data = message.SerializeToString()
    assert data.count(marker.encode()) == 1
    return data.replace(marker.encode(), b"\xff\xfe" + b"\x80" * (len(marker) - 2))


@dataclass(frozen=True)
class WireCase:
    name: str
    method: str
    body: bytes
    says: tuple[str, ...]


def v2_request(shape: list[int], name: str = "x", datatype: str = "FP32") -> bytes:
    request = v2.ModelInferRequest(
        model_name=MODEL,
        inputs=[Tensor(name=name, datatype=datatype, shape=shape)],
        raw_input_contents=[b""],
    )
    return request.SerializeToString()


WIRE_CASES = [
    WireCase("random bytes to Score", SCORE, garbage(1), ("not a valid latentwatch.v1.ScoreRequest",)),
    WireCase("random bytes to ModelInfer", INFER, garbage(2), ("not a valid inference.ModelInferRequest",)),
    WireCase("random bytes to ModelMetadata", METADATA, garbage(3), ("not a valid inference.ModelMetadataRequest",)),
    WireCase("one byte to Score", SCORE, b"\x0a", ("not a valid latentwatch.v1.ScoreRequest",)),
    WireCase(
        "invalid UTF-8 in Score's model",
        SCORE,
        bad_utf8(x_request(normal_rows(1, 0), model="zzzzzz"), "zzzzzz"),
        ("not a valid latentwatch.v1.ScoreRequest", "UTF-8"),
    ),
    WireCase(
        "invalid UTF-8 in a column name",
        SCORE,
        bad_utf8(
            pb.ScoreRequest(
                model=MODEL, columns=pb.Columns(columns=[pb.Column(name="qqqqqq", numbers=pb.NumberValues())])
            ),
            "qqqqqq",
        ),
        ("not a valid latentwatch.v1.ScoreRequest", "UTF-8"),
    ),
    WireCase(
        "invalid UTF-8 in ModelInfer's model_name",
        INFER,
        bad_utf8(v2.ModelInferRequest(model_name="zzzzzz"), "zzzzzz"),
        ("not a valid inference.ModelInferRequest", "UTF-8"),
    ),
    WireCase("v2 shape [0, 2^62]", INFER, v2_request([0, 2**62]), ("[0, 4611686018427387904]", "columns")),
    WireCase("v2 shape [2^62, 0]", INFER, v2_request([2**62, 0]), ("4611686018427387904 rows", "limit")),
    WireCase("v2 shape of 70 dimensions", INFER, v2_request([1] * 70), ("70 dimensions",)),
    WireCase("v2 shape of no dimensions", INFER, v2_request([]), ("0 dimensions",)),
    WireCase(
        "v2 BYTES shape [0, 2^62] per column",
        INFER,
        v2_request([0, 2**62], name="site", datatype="BYTES"),
        ("'site'", "columns"),
    ),
]


@pytest.mark.parametrize("case", WIRE_CASES, ids=[c.name for c in WIRE_CASES])
def test_malformed_body_or_shape_is_invalid_argument(channel, case: WireCase) -> None:
    call = channel.unary_unary(case.method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        call(case.body, timeout=10)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    for text in case.says:
        assert text in error.details(), error.details()
    assert not EXCEPTION_NAME.search(error.details()), error.details()


def test_a_garbage_message_in_a_stream_is_invalid_argument(channel) -> None:
    call = channel.stream_stream(STREAM, request_serializer=None, response_deserializer=None)
    good = x_request(normal_rows(1, 0)).SerializeToString()
    replies = call(iter([good, garbage(4)]), timeout=10)
    first = pb.StreamScoreResponse.FromString(next(replies))
    assert first.result.rows == 1
    with pytest.raises(grpc.RpcError) as info:
        next(replies)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "not a valid latentwatch.v1.ScoreRequest" in info.value.details()


def test_the_server_serves_after_garbage(channel) -> None:
    call = channel.unary_unary(SCORE, request_serializer=None, response_deserializer=None)
    for seed in range(5):
        with pytest.raises(grpc.RpcError):
            call(garbage(seed), timeout=10)
    reply = pb.ScoreResponse.FromString(call(x_request(normal_rows(2, 0)).SerializeToString(), timeout=10))
    assert reply.rows == 2


def test_garbage_from_an_unauthenticated_caller_is_unauthenticated(tmp_path, start_server) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("secret\n")
    server = start_server(auth_tokens_file=tokens)
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(SCORE, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(garbage(5), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            call(garbage(5), metadata=(("authorization", "Bearer secret"),), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

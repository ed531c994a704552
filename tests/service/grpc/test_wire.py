"""Bodies that do not parse, beyond the table of ``malformed.py``: one in the middle of a
stream, one from a caller without a token, and how the field of invalid UTF-8 is found.
"""

from __future__ import annotations

import grpc
import pytest

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service.grpc import wire
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import x_request
from tests.service.grpc.malformed import SCORE, STREAM, bad_utf8, garbage

Tensor = v2.ModelInferRequest.InferInputTensor
ScoreRequest = pb.ScoreRequest.DESCRIPTOR
InferRequest = v2.ModelInferRequest.DESCRIPTOR


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_the_field_of_invalid_utf8_is_named_by_its_path() -> None:
    inputs = [Tensor(name="x", datatype="FP32", shape=[2, 3]), Tensor(name="load", datatype="DDDDDD")]
    request = v2.ModelInferRequest(model_name="sensors", inputs=inputs, raw_input_contents=[bytes(24), b"\xff"])
    assert wire.bad_utf8_field(InferRequest, bad_utf8(request, "DDDDDD")) == "inputs[1].datatype"
    value = v2.ModelInferRequest(parameters={"alpha": v2.InferParameter(string_param="ssssss")})
    assert wire.bad_utf8_field(InferRequest, bad_utf8(value, "ssssss")) == "parameters.value.string_param"
    # Bytes fields may hold anything; a message with no bad string has no such field.
    assert wire.bad_utf8_field(InferRequest, request.SerializeToString()) is None


def test_the_search_gives_up_on_corrupt_or_endless_bodies() -> None:
    assert wire.bad_utf8_field(ScoreRequest, b"\x0a\xff\xff") is None  # a length past the end
    assert wire.bad_utf8_field(ScoreRequest, b"\x0b") is None  # a group: not this message

    def labels(before: int) -> bytes:
        values = pb.StringValues(values=["a"] * before + ["zzzzzz"])
        request = pb.ScoreRequest(columns=pb.Columns(columns=[pb.Column(name="site", strings=values)]))
        return bad_utf8(request, "zzzzzz")

    assert wire.bad_utf8_field(ScoreRequest, labels(10)) == "columns.columns[0].strings.values[10]"
    assert wire.bad_utf8_field(ScoreRequest, labels(wire.MAX_FIELDS)) is None

"""Malformed requests, table-driven: what the tables share, and the table of bodies that do
not parse, over every method of both APIs.

Every case is a request body in bytes sent to one method with a raw generic call (no
serializer), as a client built from another ``.proto`` or a broken proxy would send it, so
bodies that do not parse sit beside well-formed messages with bad content. Each names the
status code it must get and substrings of the message that name the problem (field, column,
input, row). A ``StreamScore`` case sends its body as the only message of a stream: the
stream answers a bad batch with a ``StreamError`` in its place (code and message), and a
body that does not parse with the stream's status. ``malformed_v1`` and ``malformed_v2``
hold the tables of bad content in well-formed messages of each API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError, Message

from service._proto.inference import grpc_predict_v2_pb2 as v2
from service._proto.latentwatch.v1 import scoring_pb2 as pb

_OWN = "/latentwatch.v1.ScoringService/"
_OIP = "/inference.GRPCInferenceService/"
SCORE, STREAM, LIST_MODELS, DESCRIBE = (_OWN + m for m in ("Score", "StreamScore", "ListModels", "DescribeModel"))
INFER, METADATA, MODEL_READY = (_OIP + m for m in ("ModelInfer", "ModelMetadata", "ModelReady"))
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
# The strict test server's limits (test_malformed.py starts it with these).
MAX_REQUEST_ROWS = 100
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
HUGE = "m" * (1 << 20)  # a 1 MiB client string: it must come back quoted short, never whole
CUT = f"({len(HUGE)} characters)"  # how a quoted HUGE ends
REQUEST_TYPES = {
    SCORE: pb.ScoreRequest,
    LIST_MODELS: pb.ListModelsRequest,
    DESCRIBE: pb.DescribeModelRequest,
    INFER: v2.ModelInferRequest,
    METADATA: v2.ModelMetadataRequest,
    MODEL_READY: v2.ModelReadyRequest,
    **{_OIP + m: getattr(v2, f"{m}Request") for m in ("ServerLive", "ServerReady", "ServerMetadata")},
}
Tensor = v2.ModelInferRequest.InferInputTensor


@dataclass(frozen=True)
class Case:
    """One malformed request: ``body`` sent to ``method``, answered ``code`` with every ``says``."""

    name: str
    method: str
    body: bytes
    code: grpc.StatusCode
    says: tuple[str, ...]


def case(name: str, method: str, request: Message | bytes, code: grpc.StatusCode, *says: str) -> Case:
    body = request if isinstance(request, bytes) else request.SerializeToString()
    return Case(name, method, body, code, says)


def garbage(seed: int, size: int = 256) -> bytes:
    """Random bytes that parse as none of the request messages."""
    data = random.Random(seed).randbytes(size)
    for message in REQUEST_TYPES.values():
        try:
            message.FromString(data)
        except DecodeError:
            continue
        msg = f"garbage({seed}) parses as {message.__name__}; pick another seed"
        raise AssertionError(msg)
    return data


def bad_utf8(message: Message, marker: str) -> bytes:
    """``message`` serialized, with the string ``marker`` replaced by invalid UTF-8."""
    data = message.SerializeToString()
    assert data.count(marker.encode()) == 1, marker
    return data.replace(marker.encode(), b"\xff\xfe" + b"\x80" * (len(marker) - 2))


def truncated(message: Message, cut: int = 3) -> bytes:
    """``message`` serialized, without its last ``cut`` bytes (a body cut off in transit)."""
    data = message.SerializeToString()
    message.FromString(data)
    return data[:-cut]


def not_parsed(name: str, method: str, body: bytes, *says: str) -> Case:
    """A body that does not parse as ``method``'s request: INVALID_ARGUMENT naming the type."""
    type_name = REQUEST_TYPES[method.replace("StreamScore", "Score")].DESCRIPTOR.full_name
    return Case(name, method, body, INVALID, (f"is not a valid {type_name} message", *says))


def not_utf8(name: str, method: str, message: Message, marker: str, field: str) -> Case:
    """``message`` with the string ``marker`` (in ``field``) made invalid UTF-8."""
    return not_parsed(name, method, bad_utf8(message, marker), f"the string field `{field}`", "not valid UTF-8")


_ROW = pb.ScoreRequest(model="sensors", x=pb.Tensor(rows=1, cols=3, data=bytes(12)))
_LABELS = pb.Column(name="site", strings=pb.StringValues(values=["north", "llllll"]))

WIRE_CASES = [
    *(
        not_parsed(f"random bytes to {method.rsplit('/', 1)[1]}", method, garbage(seed), "256 bytes", "wire format")
        for seed, method in enumerate([*REQUEST_TYPES, STREAM], start=1)
    ),
    not_parsed("one byte", SCORE, b"\x0a", "(1 bytes)"),
    not_parsed("a Score body cut short", SCORE, truncated(_ROW)),
    not_parsed("a ModelInfer body cut short", INFER, truncated(v2.ModelInferRequest(model_name="sensors", id="r1"))),
    not_parsed("a ModelMetadata body cut short", METADATA, truncated(v2.ModelMetadataRequest(name="sensors"))),
    not_utf8("invalid UTF-8 in Score's model", SCORE, pb.ScoreRequest(model="zzzzzz"), "zzzzzz", "model"),
    not_utf8("invalid UTF-8 in a streamed model", STREAM, pb.ScoreRequest(model="zzzzzz"), "zzzzzz", "model"),
    not_utf8("invalid UTF-8 in Score's version", SCORE, pb.ScoreRequest(version="vvvvvv"), "vvvvvv", "version"),
    not_utf8("invalid UTF-8 in a request id", SCORE, pb.ScoreRequest(request_id="iiiiii"), "iiiiii", "request_id"),
    not_utf8(
        "invalid UTF-8 in a column name",
        SCORE,
        pb.ScoreRequest(columns=pb.Columns(columns=[_LABELS, pb.Column(name="qqqqqq")])),
        "qqqqqq",
        "columns.columns[1].name",
    ),
    not_utf8(
        "invalid UTF-8 in a label",
        SCORE,
        pb.ScoreRequest(columns=pb.Columns(columns=[_LABELS])),
        "llllll",
        "columns.columns[0].strings.values[1]",
    ),
    not_utf8("invalid UTF-8 to DescribeModel", DESCRIBE, pb.DescribeModelRequest(model="zzzzzz"), "zzzzzz", "model"),
    not_utf8(
        "invalid UTF-8 in ModelInfer's model",
        INFER,
        v2.ModelInferRequest(model_name="zzzzzz"),
        "zzzzzz",
        "model_name",
    ),
    not_utf8(
        "invalid UTF-8 in an input name",
        INFER,
        v2.ModelInferRequest(inputs=[Tensor(name="nnnnnn", datatype="FP32", shape=[1])]),
        "nnnnnn",
        "inputs[0].name",
    ),
    not_utf8(
        "invalid UTF-8 in a datatype",
        INFER,
        v2.ModelInferRequest(inputs=[Tensor(name="x", datatype="FP32"), Tensor(name="load", datatype="DDDDDD")]),
        "DDDDDD",
        "inputs[1].datatype",
    ),
    not_utf8(
        "invalid UTF-8 in an output name",
        INFER,
        v2.ModelInferRequest(outputs=[{"name": "kl"}, {"name": "oooooo"}]),
        "oooooo",
        "outputs[1].name",
    ),
    not_utf8(
        "invalid UTF-8 in a parameter name",
        INFER,
        v2.ModelInferRequest(parameters={"pppppp": v2.InferParameter(bool_param=True)}),
        "pppppp",
        "parameters.key",
    ),
    not_utf8(
        "invalid UTF-8 in a text parameter",
        INFER,
        v2.ModelInferRequest(parameters={"alpha": v2.InferParameter(string_param="ssssss")}),
        "ssssss",
        "parameters.value.string_param",
    ),
    not_utf8("invalid UTF-8 to ModelMetadata", METADATA, v2.ModelMetadataRequest(name="zzzzzz"), "zzzzzz", "name"),
    not_utf8("invalid UTF-8 in ModelReady's name", MODEL_READY, v2.ModelReadyRequest(name="zzzzzz"), "zzzzzz", "name"),
    not_utf8(
        "invalid UTF-8 in ModelReady's version",
        MODEL_READY,
        v2.ModelReadyRequest(name="sensors", version="vvvvvv"),
        "vvvvvv",
        "version",
    ),
]

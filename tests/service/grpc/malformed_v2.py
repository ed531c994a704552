"""Malformed requests to the Open Inference Protocol v2 (``inference.GRPCInferenceService``),
bad content in well-formed messages, as tables of :class:`~tests.service.grpc.malformed.Case`
(see there).

The model takes input ``x`` (FP32 ``[n_rows, 3]``) or one input per feature: ``temperature``
and ``load`` (numbers) and ``site`` (labels as BYTES, or numbers).
"""

from __future__ import annotations

import numpy as np

from service._proto.inference import grpc_predict_v2_pb2 as v2
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import MODEL
from tests.service.grpc.malformed import (
    CUT,
    EXHAUSTED,
    HUGE,
    INFER,
    INVALID,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_ROWS,
    METADATA,
    NOT_FOUND,
    Case,
    Tensor,
    case,
)

Input = tuple[Tensor, bytes]


def f32(*values: float) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def strings(*values: bytes) -> bytes:
    """Raw BYTES: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


def raw(name: str, datatype: str, shape: list[int], data: bytes) -> Input:
    return Tensor(name=name, datatype=datatype, shape=shape), data


def x_input(x: np.ndarray, datatype: str = "FP32") -> Input:
    return raw("x", datatype, list(x.shape), np.ascontiguousarray(x, dtype="<f4").tobytes())


def infer(*inputs: Input, **fields: object) -> v2.ModelInferRequest:
    """A ModelInferRequest for ``sensors`` carrying ``inputs`` in raw_input_contents."""
    fields.setdefault("model_name", MODEL)
    extra = fields.pop("raw_input_contents", [])  # raw entries that belong to no input
    return v2.ModelInferRequest(
        inputs=[t for t, _ in inputs],
        raw_input_contents=[*(d for _, d in inputs), *extra],  # type: ignore[misc]
        **fields,  # type: ignore[arg-type]
    )


def in_contents(*tensors: Tensor, **fields: object) -> v2.ModelInferRequest:
    """A ModelInferRequest for ``sensors`` whose inputs carry their values in ``contents``."""
    return v2.ModelInferRequest(model_name=MODEL, inputs=list(tensors), **fields)  # type: ignore[arg-type]


GOOD_X = normal_rows(2, seed=1)
X = x_input(GOOD_X)
COLUMNS: dict[str, Input] = {
    "temperature": raw("temperature", "FP32", [2], f32(1.0, 2.0)),
    "load": raw("load", "FP32", [2], f32(0.5, 0.5)),
    "site": raw("site", "BYTES", [2], strings(b"north", b"east")),
}


def columns(**changes: Input | None) -> v2.ModelInferRequest:
    """One input per feature, some replaced (``None`` drops one)."""
    merged = {**COLUMNS, **changes}
    return infer(*(v for v in merged.values() if v is not None))


def renamed(old: str, new: str) -> v2.ModelInferRequest:
    """One input per feature, ``old`` sent under the name ``new``."""
    tensor, data = COLUMNS[old]
    return columns(**{old: None, new: (Tensor(name=new, datatype=tensor.datatype, shape=tensor.shape), data)})


def x_with(row: int, col: int, value: float) -> Input:
    x = normal_rows(3, seed=0)
    x[row, col] = value
    return x_input(x)


def site(data: bytes, count: int = 2) -> Input:
    return raw("site", "BYTES", [count], data)


def alpha(**parameter: object) -> v2.ModelInferRequest:
    return infer(X, parameters={"alpha": v2.InferParameter(**parameter)})  # type: ignore[arg-type]


def unknown_inputs(names: list[str]) -> v2.ModelInferRequest:
    return infer(*(raw(n, "FP32", [1], bytes(4)) for n in names))


def shaped(shape: list[int], name: str = "x", datatype: str = "FP32") -> v2.ModelInferRequest:
    """An input whose shape alone is wrong (its raw bytes are empty)."""
    return infer(raw(name, datatype, shape, b""))


def refused(name: str, request: v2.ModelInferRequest, *says: str) -> Case:
    """A ModelInfer case answered INVALID_ARGUMENT."""
    return case(name, INFER, request, INVALID, *says)


ROWS_OVER = MAX_REQUEST_ROWS + 1
INFER_CASES = [
    # Model, version and request level.
    case("unknown model", INFER, infer(X, model_name="nope"), NOT_FOUND, "'nope'", f"['{MODEL}']"),
    case("unknown version", INFER, infer(X, model_version="9"), NOT_FOUND, "version '9'", "['1']"),
    case("empty model name", INFER, infer(X, model_name=""), NOT_FOUND, "model ''", f"['{MODEL}']"),
    case("empty body", INFER, b"", NOT_FOUND, "model ''"),
    case("huge model name", INFER, v2.ModelInferRequest(model_name=HUGE), NOT_FOUND, CUT),
    refused("no inputs", infer(), "no inputs", "`x` or one per feature"),
    refused("raw bytes without inputs", infer(raw_input_contents=[bytes(24)]), "no inputs"),
    refused("unknown output", infer(X, outputs=[{"name": "anomaly_score"}]), "'anomaly_score'"),
    refused("huge output name", infer(X, outputs=[{"name": HUGE}]), "unknown output", CUT),
    refused(
        "thousands of unknown outputs",
        infer(X, outputs=[{"name": f"out_{i}" + "o" * 300} for i in range(3000)]),
        "unknown output",
        "3000 in all",
    ),
    # The alpha parameter.
    refused("text alpha", alpha(string_param="high"), "parameter alpha", "'high'"),
    refused("alpha of infinity as text", alpha(string_param="inf"), "alpha", "got inf"),
    refused("alpha with trailing text", alpha(string_param="0.5abc"), "parameter alpha", "'0.5abc'"),
    refused("huge text alpha", alpha(string_param=HUGE), "parameter alpha", CUT),
    refused("alpha above 1", alpha(double_param=1.5), "alpha", "got 1.5"),
    refused("integer alpha", alpha(int64_param=2), "alpha", "got 2"),
    refused("boolean alpha", alpha(bool_param=True), "parameter alpha", "got True"),
    refused("NaN alpha", alpha(double_param=float("nan")), "alpha", "nan"),
    refused("alpha without a value", alpha(), "parameter alpha", "got None"),
    # Names, datatypes and raw byte counts.
    refused(
        "more raw entries than inputs", infer(X, raw_input_contents=[bytes(24)]), "1 inputs but 2 raw_input_contents"
    ),
    refused("input sent twice", infer(X, X), "input 'x' appears more than once"),
    refused("unknown datatype", infer(x_input(GOOD_X, "FLOAT32")), "'x'", "unknown datatype 'FLOAT32'"),
    refused("huge datatype", infer(x_input(GOOD_X, HUGE)), "unknown datatype", CUT),
    refused("x as FP64", infer(raw("x", "FP64", [2, 3], bytes(48))), "'x' must be FP32, got FP64"),
    refused("x as INT32", infer(raw("x", "INT32", [2, 3], bytes(24))), "'x' must be FP32, got INT32"),
    refused("x as BYTES", infer(raw("x", "BYTES", [2, 3], bytes(24))), "'x' must be FP32, got BYTES"),
    refused("x short of bytes", infer(raw("x", "FP32", [2, 3], bytes(20))), "'x'", "need 24 bytes", "has 20"),
    refused("x with extra bytes", infer(raw("x", "FP32", [2, 3], bytes(28))), "'x'", "has 28"),
    refused("x and per-feature inputs together", infer(X, COLUMNS["temperature"]), "not both", "['temperature']"),
    refused(
        "per-feature input sent twice", infer(*COLUMNS.values(), COLUMNS["load"]), "input 'load' appears more than once"
    ),
    refused(
        "x among per-feature inputs",
        columns(x=raw("x", "FP32", [2], f32(1, 2))),
        "not both",
        "['load', 'site', 'temperature']",
    ),
    refused("misspelled input", renamed("temperature", "temprature"), "did you mean 'temperature'"),
    refused("empty input name", renamed("load", ""), "unknown column ''", "missing feature column(s) ['load']"),
    refused("missing feature input", columns(site=None), "missing feature column(s) ['site']"),
    refused("huge input name", unknown_inputs([HUGE]), "unknown column", CUT),
    refused(
        "a few unknown inputs",
        unknown_inputs([f"extra_{i}" for i in range(10)] + ["temperature", "load", "site"]),
        "unknown column 'extra_0'",
        "2 more unknown columns",
    ),
    refused(
        "thousands of unknown inputs",
        unknown_inputs([f"column_{i}_" + "q" * 100 for i in range(3000)]),
        "3000 inputs",
        "3000 in all",
    ),
    # Shapes.
    refused("shape [0, 2^62]", shaped([0, 2**62]), "[0, 4611686018427387904]", "columns"),
    refused("shape [2^62, 0]", shaped([2**62, 0]), "4611686018427387904 rows", "limit"),
    refused("BYTES shape [0, 2^62]", shaped([0, 2**62], "site", "BYTES"), "'site'", "columns"),
    refused("shape of 70 dimensions", shaped([1] * 70), "'x'", "70 dimensions"),
    refused("shape of no dimensions", shaped([]), "'x'", "0 dimensions"),
    refused("negative dimension", shaped([-1, 3]), "'x'", "[-1, 3]", "negative"),
    refused("x of 5 features", infer(x_input(np.zeros((2, 5)))), "[2, 5] has 5 columns", "3 features"),
    refused("x of 2 features", infer(x_input(np.zeros((2, 2)))), "'x' must have shape [n_rows, 3]"),
    refused("x of one dimension", infer(raw("x", "FP32", [6], bytes(24))), "'x' must have shape [n_rows, 3]"),
    refused(
        "a column of two columns",
        columns(load=raw("load", "FP32", [2, 2], bytes(16))),
        "'load' must have shape [n_rows] or [n_rows, 1]",
        "[2, 2]",
    ),
    refused(
        "columns of different lengths",
        columns(temperature=raw("temperature", "FP32", [3], f32(1, 2, 3))),
        "different numbers of rows",
        "'temperature': 3",
    ),
    refused(
        "too many rows in x",
        infer(x_input(normal_rows(ROWS_OVER, 0))),
        "'x'",
        f"{ROWS_OVER} rows",
        f"limit of {MAX_REQUEST_ROWS}",
    ),
    refused(
        "too many rows in a column",
        columns(load=raw("load", "FP32", [ROWS_OVER], bytes(4 * ROWS_OVER))),
        "'load'",
        f"{ROWS_OVER} rows",
    ),
    refused("x of no rows", infer(raw("x", "FP32", [0, 3], b"")), "no rows"),
    refused("columns of no rows", infer(*(raw(n, "FP32", [0], b"") for n in COLUMNS)), "no rows"),
    refused(
        "INT16 column of an odd byte count",
        columns(load=raw("load", "INT16", [2], bytes(3))),
        "'load'",
        "2 INT16 elements need 4 bytes",
        "has 3",
    ),
    # Contents instead of raw bytes.
    refused(
        "contents beside raw bytes",
        infer((Tensor(name="x", datatype="FP32", shape=[2, 3], contents={"fp32_contents": [0] * 6}), bytes(24))),
        "'x'",
        "uses contents while the request uses raw_input_contents",
    ),
    refused(
        "contents of the wrong count",
        in_contents(Tensor(name="x", datatype="FP32", shape=[2, 3], contents={"fp32_contents": [0] * 5})),
        "'x'",
        "holds 6 elements, contents.fp32_contents has 5",
    ),
    refused(
        "contents in another datatype's field",
        in_contents(Tensor(name="x", datatype="FP32", shape=[2, 3], contents={"int_contents": [0] * 6})),
        "'x'",
        "contents.fp32_contents has 0",
    ),
    refused(
        "FP16 in contents",
        in_contents(Tensor(name="x", datatype="FP16", shape=[2, 3])),
        "'x'",
        "FP16 data can only be sent in raw_input_contents",
    ),
    # Raw BYTES.
    refused("BYTES short of lengths", columns(site=site(bytes(4))), "'site'", "at least 8 bytes"),
    refused(
        "BYTES ending inside a length",
        columns(site=site(strings(b"a") + b"\x05\0\0")),
        "'site'",
        "end inside an element's 4-byte length",
    ),
    refused(
        "BYTES element past the end", columns(site=site(b"\x10\0\0\0abcd")), "'site'", "element 0 runs past the end"
    ),
    refused(
        "BYTES element of 2^32-1 bytes",
        columns(site=site(b"\xff\xff\xff\xff" + bytes(4))),
        "'site'",
        "element 0 runs past the end",
    ),
    refused("more BYTES than the shape", columns(site=site(strings(b"", b"", b""))), "'site'", "hold more"),
    refused("fewer BYTES than the shape", columns(site=site(strings(b"abcd"))), "'site'", "hold 1"),
    refused(
        "label not valid UTF-8", columns(site=site(strings(b"north", b"\xff\xfe"))), "'site', row 1", "not valid UTF-8"
    ),
    # Values.
    refused("infinite number in x", infer(x_with(0, 0, np.inf)), "row 0", "'temperature'", "infinite"),
    refused("NaN category code in x", infer(x_with(1, 2, np.nan)), "row 1", "'site'", "categorical"),
    refused("category code 5 in x", infer(x_with(2, 2, 5.0)), "row 2", "'site'", "to 2"),
    refused(
        "infinite number in a column", columns(load=raw("load", "FP32", [2], f32(0.5, -np.inf))), "row 1", "'load'"
    ),
    refused(
        "FP16 infinity in a column",
        columns(load=raw("load", "FP16", [2], np.asarray([1, np.inf], "<f2").tobytes())),
        "row 1",
        "'load'",
        "infinite",
    ),
    refused(
        "number beyond float32 in an FP64 column",
        columns(temperature=raw("temperature", "FP64", [2], np.asarray([1.0, 1e300], "<f8").tobytes())),
        "row 1",
        "'temperature'",
        "beyond float32",
    ),
    refused(
        "text in a numeric column",
        columns(temperature=raw("temperature", "BYTES", [2], strings(b"1", b"abc"))),
        "row 1",
        "'temperature'",
        "'abc' is not a number",
    ),
    refused(
        "huge text in a numeric column",
        columns(temperature=raw("temperature", "BYTES", [2], strings(HUGE.encode(), b"1"))),
        "'temperature'",
        CUT,
    ),
    case(
        "message over the size limit",
        INFER,
        infer(x_input(np.zeros((MAX_MESSAGE_BYTES // 12 + 10, 3)))),
        EXHAUSTED,
        "larger than max",
        str(MAX_MESSAGE_BYTES),
    ),
]

METADATA_CASES = [
    case("metadata of an unknown model", METADATA, v2.ModelMetadataRequest(name="nope"), NOT_FOUND, "'nope'"),
    case(
        "metadata of an unknown version",
        METADATA,
        v2.ModelMetadataRequest(name=MODEL, version="3"),
        NOT_FOUND,
        "version '3'",
    ),
    case("metadata of no model", METADATA, b"", NOT_FOUND, "model ''", f"['{MODEL}']"),
    case("metadata of a huge model name", METADATA, v2.ModelMetadataRequest(name=HUGE), NOT_FOUND, CUT),
]

V2_CASES = [*INFER_CASES, *METADATA_CASES]

"""Malformed requests to latentwatch's own API (``latentwatch.v1``): bad content in
well-formed messages, as tables of :class:`~tests.service.grpc.malformed.Case` (see there).

The model ``sensors`` takes named columns ``temperature`` and ``load`` (numbers) and ``site``
(labels ``north``, ``south``, ``east``), or a packed float32 tensor ``x`` of 3 columns whose
last holds the label's code.
"""

from __future__ import annotations

import numpy as np

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from tests.service.conftest import normal_rows
from tests.service.grpc.conftest import MODEL, columns_request, x_request
from tests.service.grpc.malformed import (
    CUT,
    DESCRIBE,
    EXHAUSTED,
    HUGE,
    INVALID,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_ROWS,
    NOT_FOUND,
    SCORE,
    STREAM,
    Case,
    case,
)

GOOD_COLUMNS = {
    "temperature": ([1.0, 2.0], True),
    "load": ([0.5, 0.5], True),
    "site": (["north", "east"], False),
}


def columns(**changes: tuple[list, bool] | None) -> pb.ScoreRequest:
    """The good columns with some replaced (``None`` drops one), as a ScoreRequest."""
    merged = {**GOOD_COLUMNS, **changes}
    return columns_request({k: v for k, v in merged.items() if v is not None})


def renamed(old: str, new: str) -> pb.ScoreRequest:
    """The good columns with ``old`` sent under the name ``new``."""
    return columns(**{old: None, new: GOOD_COLUMNS[old]})


def x_with(row: int, col: int, value: float) -> np.ndarray:
    x = normal_rows(3, seed=0)
    x[row, col] = value
    return x


def packed(rows: int, cols: int, data: bytes, **fields: object) -> pb.ScoreRequest:
    """A ScoreRequest whose tensor's header and bytes are set as given."""
    return pb.ScoreRequest(model=MODEL, x=pb.Tensor(rows=rows, cols=cols, data=data), **fields)


def with_extra_column(column: pb.Column) -> pb.ScoreRequest:
    """The good columns and ``column`` after them."""
    request = columns()
    request.columns.columns.append(column)
    return request


def replaced(column: pb.Column) -> pb.ScoreRequest:
    """The good columns with the one of the same name replaced by ``column`` (sent last)."""
    request = columns(**{column.name: None})
    request.columns.columns.append(column)
    return request


GOOD_X = normal_rows(2, seed=1)
SITE = "column 'site'"


def own_cases(method: str) -> list[Case]:
    """Bad content in a well-formed ScoreRequest, for ``Score`` or ``StreamScore``."""
    return [
        case("unknown model", method, x_request(GOOD_X, model="nope"), NOT_FOUND, "'nope'", f"['{MODEL}']"),
        case("unknown version", method, x_request(GOOD_X, version="9"), NOT_FOUND, "version '9'", "['1']"),
        case("empty model name", method, x_request(GOOD_X, model=""), NOT_FOUND, "model ''", f"['{MODEL}']"),
        case("no rows at all", method, pb.ScoreRequest(model=MODEL), INVALID, "no rows", "`columns` or `x`"),
        case("wrong feature count", method, x_request(np.zeros((2, 5), np.float32)), INVALID, "(n_rows, 3)", "(2, 5)"),
        case("tensor short of bytes", method, packed(2, 3, bytes(20)), INVALID, "tensor x", "24 bytes", "got 20"),
        case("misspelled column", method, renamed("temperature", "temprature"), INVALID, "did you mean 'temperature'"),
        case("infinite number", method, x_request(x_with(2, 0, np.inf)), INVALID, "row 2", "'temperature'", "infinite"),
        case(
            "too many rows",
            method,
            x_request(normal_rows(MAX_REQUEST_ROWS + 1, 0)),
            INVALID,
            f"{MAX_REQUEST_ROWS + 1} rows",
            f"limit of {MAX_REQUEST_ROWS}",
        ),
        case("alpha above 1", method, x_request(GOOD_X, alpha=1.5), INVALID, "alpha", "1.5"),
    ]


SCORE_CASES = [
    *own_cases(SCORE),
    case("empty body", SCORE, b"", NOT_FOUND, "model ''", f"['{MODEL}']"),
    case("missing column", SCORE, columns(load=None), INVALID, "missing feature column(s) ['load']"),
    case("unknown column", SCORE, columns(humidity=([1.0, 2.0], True)), INVALID, "unknown column 'humidity'"),
    case("column name in the wrong case", SCORE, renamed("load", "Load"), INVALID, "'Load'", "did you mean 'load'"),
    case("empty column name", SCORE, renamed("load", ""), INVALID, "unknown column ''", "['load']"),
    case(
        "only unknown columns",
        SCORE,
        columns_request({"a": ([1.0], True), "b": ([1.0], True), "c": ([1.0], True)}),
        INVALID,
        "missing feature column(s) ['temperature', 'load', 'site']",
        "unknown column 'a'",
    ),
    case(
        "duplicate column",
        SCORE,
        with_extra_column(pb.Column(name="load", numbers=pb.NumberValues(values=[1.0, 2.0]))),
        INVALID,
        "'load'",
        "more than once",
    ),
    case("column lengths differ", SCORE, columns(load=([1.0], True)), INVALID, "different lengths", "'load': 1"),
    case(
        "text in a numeric column",
        SCORE,
        columns(load=(["1.5", "abc"], False)),
        INVALID,
        "row 1",
        "'load'",
        "'abc' is not a number",
    ),
    case(
        "number beyond float32 as text",
        SCORE,
        columns(temperature=(["1", "1e39"], False)),
        INVALID,
        "row 1",
        "'temperature'",
        "beyond float32",
    ),
    case("infinity as text", SCORE, columns(temperature=(["inf", "1"], False)), INVALID, "row 0", "infinite"),
    case("infinite number in a column", SCORE, columns(load=([1.0, -np.inf], True)), INVALID, "row 1", "'load'"),
    case(
        "missing flags of the wrong length",
        SCORE,
        replaced(pb.Column(name="site", strings=pb.StringValues(values=["a", "b"], missing=[True]))),
        INVALID,
        SITE,
        "2 values but 1 missing flags",
    ),
    case(
        "column without values",
        SCORE,
        pb.ScoreRequest(model=MODEL, columns=pb.Columns(columns=[pb.Column(name="load")])),
        INVALID,
        "'load'",
        "neither numbers nor strings",
    ),
    case(
        "empty columns",
        SCORE,
        pb.ScoreRequest(model=MODEL, columns=pb.Columns()),
        INVALID,
        "columns are empty",
    ),
    case(
        "too many rows in a column",
        SCORE,
        columns(load=([0.5] * (MAX_REQUEST_ROWS + 1), True)),
        INVALID,
        "column 'load' holds 101 rows",
        f"limit of {MAX_REQUEST_ROWS}",
    ),
    case(
        "too many columns",
        SCORE,
        columns_request({f"c{i}": ([1.0], True) for i in range(23)}),
        INVALID,
        "23 columns",
        "'c0'",
    ),
    case("huge value in a column", SCORE, columns(temperature=([HUGE, "1"], False)), INVALID, CUT),
    case("huge column name", SCORE, renamed("temperature", HUGE), INVALID, CUT),
    case(
        "many unknown long column names",
        SCORE,
        columns(**{f"c{i}" + "w" * 200: ([1.0, 2.0], True) for i in range(9)}),
        INVALID,
        "1 more unknown columns",
    ),
    case("huge model name", SCORE, x_request(GOOD_X, model=HUGE), NOT_FOUND, CUT),
    case("huge version", SCORE, x_request(GOOD_X, version=HUGE), NOT_FOUND, CUT),
    case("tensor with extra bytes", SCORE, packed(2, 3, bytes(28)), INVALID, "2 rows x 3 columns", "got 28"),
    case("tensor of no columns", SCORE, packed(2, 0, b""), INVALID, "(n_rows, 3)", "(2, 0)"),
    case("tensor header of 2^32-1 rows", SCORE, packed(2**32 - 1, 3, bytes(12)), INVALID, "4294967295 rows"),
    case("tensor of 0 rows with data", SCORE, packed(0, 3, bytes(12)), INVALID, "0 rows x 3 columns", "got 12"),
    case("empty tensor", SCORE, x_request(np.zeros((0, 3), np.float32)), INVALID, "no rows"),
    case("NaN category code", SCORE, x_request(x_with(1, 2, np.nan)), INVALID, "row 1", SITE, "categorical"),
    case("category code too high", SCORE, x_request(x_with(2, 2, 3.0)), INVALID, "row 2", SITE, "to 2"),
    case("category code below -1", SCORE, x_request(x_with(0, 2, -2.0)), INVALID, "row 0", SITE, "from -1"),
    case("fractional category code", SCORE, x_request(x_with(0, 2, 0.5)), INVALID, "row 0", SITE, "0.5"),
    case("minus infinity", SCORE, x_request(x_with(1, 1, -np.inf)), INVALID, "row 1", "'load'", "infinite"),
    case("alpha of 0", SCORE, x_request(GOOD_X, alpha=0.0), INVALID, "alpha", "got 0.0"),
    case("negative alpha", SCORE, x_request(GOOD_X, alpha=-0.1), INVALID, "alpha", "-0.1"),
    case("NaN alpha", SCORE, x_request(GOOD_X, alpha=float("nan")), INVALID, "alpha", "nan"),
    case(
        "message over the size limit",
        SCORE,
        x_request(np.zeros((MAX_MESSAGE_BYTES // 12 + 10, 3), np.float32)),
        EXHAUSTED,
        str(MAX_MESSAGE_BYTES),
    ),
]

STREAM_CASES = [
    *own_cases(STREAM),
]

MODEL_CASES = [
    case("describe an unknown model", DESCRIBE, pb.DescribeModelRequest(model="nope"), NOT_FOUND, "'nope'"),
    case(
        "describe an unknown version",
        DESCRIBE,
        pb.DescribeModelRequest(model=MODEL, version="7"),
        NOT_FOUND,
        "version '7'",
        "['1']",
    ),
    case("describe no model", DESCRIBE, b"", NOT_FOUND, "model ''", f"['{MODEL}']"),
    case("describe a huge model name", DESCRIBE, pb.DescribeModelRequest(model=HUGE), NOT_FOUND, CUT),
]

V1_CASES = [*SCORE_CASES, *STREAM_CASES, *MODEL_CASES]

"""Protobuf messages <-> numpy, for both APIs; no logic beyond decoding and encoding.

Own API (``latentwatch.v1``): a packed :class:`Tensor` is float32 little-endian rows in the
bundle's ``x`` layout; :class:`Columns` are named numeric or text columns; scores go out as
repeated fields and row-major :class:`Matrix` messages.

Open Inference Protocol v2: input tensors arrive either in ``contents`` (typed repeated
fields) or in ``raw_input_contents`` (little-endian bytes, one entry per input, BYTES as a
4-byte little-endian length before each element); ``service.grpc.oip_inputs`` checks and
decodes them. Outputs mirror the request: raw bytes in ``raw_output_contents`` when the
request used raw inputs, ``contents`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service._proto.inference import grpc_predict_v2_pb2 as oip_pb2
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service.bundle import ROW_SCORES
from service.dataplane import InferResult
from service.errors import InvalidInput, quote, quote_list
from service.registry import LoadedModel

# -- own API -------------------------------------------------------------------------------


def tensor_to_array(tensor: pb.Tensor, model: str) -> np.ndarray:
    """A packed :class:`Tensor` as float32 ``(rows, cols)`` (a read-only view, no copy).

    Raises:
        InvalidInput: the byte length is not ``rows * cols * 4``.
    """
    rows, cols = int(tensor.rows), int(tensor.cols)
    expected = rows * cols * 4
    if len(tensor.data) != expected:
        msg = (
            f"model {quote(model)}: tensor x of {rows} rows x {cols} columns needs {expected} bytes "
            f"of float32, got {len(tensor.data)} bytes"
        )
        raise InvalidInput(msg)
    return np.frombuffer(tensor.data, dtype="<f4").reshape(rows, cols)


def array_to_tensor(x: np.ndarray) -> pb.Tensor:
    """float32 ``(rows, cols)`` -> a packed :class:`Tensor`."""
    x = np.ascontiguousarray(x, dtype="<f4")
    return pb.Tensor(rows=x.shape[0], cols=x.shape[1], data=x.tobytes())


def columns_to_dict(
    columns: pb.Columns, model: str, *, max_rows: int = 1 << 31, max_count: int = 1 << 31
) -> dict[str, np.ndarray | list]:
    """Named columns as numpy float64 arrays (numbers) or lists of str/None (text).

    Raises:
        InvalidInput: more than ``max_count`` columns or ``max_rows`` values in one, a column
            without values, or a ``missing`` mask of the wrong length.
    """
    check_column_counts(columns, model, max_rows=max_rows, max_count=max_count)
    out: dict[str, np.ndarray | list] = {}
    for column in columns.columns:
        which = column.WhichOneof("values")
        if which == "numbers":
            values: np.ndarray | list = np.asarray(column.numbers.values, dtype=np.float64)
        else:
            strings = column.strings
            values = list(strings.values)
            if strings.missing:
                values = [None if m else v for v, m in zip(values, strings.missing, strict=True)]
        out[column.name] = values
    return out


def check_column_counts(columns: pb.Columns, model: str, *, max_rows: int, max_count: int) -> int:
    """Check the columns' names and value counts (no value is read); return the values in all.

    Raises:
        InvalidInput: as :func:`columns_to_dict`, or a column that appears twice.
    """
    where = f"model {quote(model)}"
    if len(columns.columns) > max_count:
        names = quote_list(c.name for c in columns.columns)
        msg = f"{where}: the request has {len(columns.columns)} columns {names}, more than the model's features"
        raise InvalidInput(msg)
    seen: set[str] = set()
    total = 0
    for column in columns.columns:
        name = quote(column.name)
        which = column.WhichOneof("values")
        if which is None:
            msg = f"{where}: column {name} has neither numbers nor strings"
            raise InvalidInput(msg)
        count = len(column.numbers.values) if which == "numbers" else len(column.strings.values)
        if count > max_rows:
            msg = f"{where}: column {name} holds {count} rows, more than the limit of {max_rows}; split the request"
            raise InvalidInput(msg)
        mask = len(column.strings.missing) if which == "strings" else 0
        if mask not in (0, count):
            msg = f"{where}: column {name} has {count} values but {mask} missing flags"
            raise InvalidInput(msg)
        if column.name in seen:
            msg = f"{where}: column {name} appears more than once"
            raise InvalidInput(msg)
        seen.add(column.name)
        total += count
    return total


def column_message(name: str, values: Sequence | np.ndarray, numeric: bool) -> pb.Column:
    """One column for a request: numbers (NaN = missing) or text with a missing mask."""
    if numeric:
        array = np.asarray(values, dtype=np.float64)
        return pb.Column(name=name, numbers=pb.NumberValues(values=array.tolist()))
    texts, missing = [], []
    for value in values:
        absent = value is None or (isinstance(value, float) and np.isnan(value))
        missing.append(absent)
        texts.append("" if absent else str(value))
    if not any(missing):
        missing = []
    return pb.Column(name=name, strings=pb.StringValues(values=texts, missing=missing))


def matrix(array: np.ndarray) -> pb.Matrix:
    """float ``(rows, cols)`` -> a row-major :class:`Matrix`."""
    rows, cols = array.shape
    return pb.Matrix(rows=rows, cols=cols, values=np.ravel(array).tolist())


def matrix_to_array(message: pb.Matrix) -> np.ndarray:
    """A :class:`Matrix` -> float32 ``(rows, cols)``."""
    values = np.asarray(message.values, dtype=np.float32)
    return values.reshape(int(message.rows), int(message.cols))


def score_response(result: InferResult, *, explain: bool, latent: bool, request_id: str) -> pb.ScoreResponse:
    """Scores of one request -> :class:`ScoreResponse` (arrays only when asked for)."""
    scores = result.scores
    response = pb.ScoreResponse(
        model=result.model.name,
        version=result.model.version,
        rows=len(scores),
        recon_error=scores.recon_error.tolist(),
        neg_elbo=scores.neg_elbo.tolist(),
        kl=scores.kl.tolist(),
        p_value=scores.p_value.tolist(),
        is_anomaly=scores.is_anomaly.tolist(),
        alpha=scores.alpha,
        primary_score=scores.primary_score,
        request_id=request_id,
    )
    if explain:
        response.feature_scores.CopyFrom(matrix(scores.feature_scores))
        response.expected.CopyFrom(matrix(scores.expected))
    if latent:
        response.latent.CopyFrom(matrix(scores.latent))
    return response


def model_description(model: LoadedModel, versions: list[str]) -> pb.ModelDescription:
    """Everything a client needs to build requests and read scores for one version."""
    manifest = model.manifest
    return pb.ModelDescription(
        name=model.name,
        version=model.version,
        versions=versions,
        model_type=manifest.model_type,
        provider=model.provider,
        features=[
            pb.FeatureDescription(
                name=f.name,
                kind=f.kind,
                dtype=f.dtype,
                categories=[str(c) for c in f.categories],
            )
            for f in manifest.features
        ],
        latent_dim=manifest.latent_dim,
        scores=[pb.ScoreDescription(name=name, description=text) for name, text in manifest.scores.items()],
        primary_score=manifest.primary_score,
        alpha=manifest.calibration.alpha,
        calibration_rows=manifest.calibration.n,
        onnx_sha256=manifest.onnx_sha256,
        created_at=manifest.created_at,
        ready=True,
    )


# -- Open Inference Protocol v2 ------------------------------------------------------------

NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Output name -> V2 datatype; every score of the contract plus p_value and is_anomaly.
OUTPUT_DATATYPES = {
    **dict.fromkeys(ROW_SCORES, "FP32"),
    "p_value": "FP64",
    "is_anomaly": "BOOL",
    "feature_scores": "FP32",
    "expected": "FP32",
    "latent": "FP32",
}


def parameter_value(parameter: oip_pb2.InferParameter) -> bool | int | float | str | None:
    """The value an :class:`InferParameter` holds, whichever field it uses."""
    which = parameter.WhichOneof("parameter_choice")
    return None if which is None else getattr(parameter, which)


def oip_output(
    name: str, array: np.ndarray, raw: bool
) -> tuple[oip_pb2.ModelInferResponse.InferOutputTensor, bytes | None]:
    """One output tensor: its metadata, and its raw bytes when ``raw`` (else in contents)."""
    datatype = OUTPUT_DATATYPES[name]
    array = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype])
    tensor = oip_pb2.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=list(array.shape))
    if raw:
        return tensor, array.tobytes()
    getattr(tensor.contents, CONTENTS_FIELDS[datatype]).extend(array.ravel().tolist())
    return tensor, None


def tensor_metadata(name: str, datatype: str, shape: Sequence[int]) -> oip_pb2.ModelMetadataResponse.TensorMetadata:
    return oip_pb2.ModelMetadataResponse.TensorMetadata(name=name, datatype=datatype, shape=list(shape))

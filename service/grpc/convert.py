"""Protobuf messages <-> numpy, for both APIs; no logic beyond decoding and encoding.

Own API (``latentwatch.v1``): a packed :class:`Tensor` is float32 little-endian rows in the
bundle's ``x`` layout; :class:`Columns` are named numeric or text columns; scores go out as
repeated fields and row-major :class:`Matrix` messages.

Open Inference Protocol v2: input tensors arrive either in ``contents`` (typed repeated
fields) or in ``raw_input_contents`` (little-endian bytes, one entry per input, BYTES as a
4-byte little-endian length before each element). Outputs mirror the request: raw bytes
in ``raw_output_contents`` when the request used raw inputs, ``contents`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service._proto.inference import grpc_predict_v2_pb2 as oip_pb2
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service.bundle import ROW_SCORES
from service.dataplane import InferResult
from service.errors import InvalidInput
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
            f"model {model!r}: tensor x of {rows} rows x {cols} columns needs {expected} bytes "
            f"of float32, got {len(tensor.data)} bytes"
        )
        raise InvalidInput(msg)
    return np.frombuffer(tensor.data, dtype="<f4").reshape(rows, cols)


def array_to_tensor(x: np.ndarray) -> pb.Tensor:
    """float32 ``(rows, cols)`` -> a packed :class:`Tensor`."""
    x = np.ascontiguousarray(x, dtype="<f4")
    return pb.Tensor(rows=x.shape[0], cols=x.shape[1], data=x.tobytes())


def columns_to_dict(columns: pb.Columns, model: str) -> dict[str, np.ndarray | list]:
    """Named columns as numpy float64 arrays (numbers) or lists of str/None (text).

    Raises:
        InvalidInput: a column without values, or a ``missing`` mask of the wrong length.
    """
    out: dict[str, np.ndarray | list] = {}
    for column in columns.columns:
        which = column.WhichOneof("values")
        if which == "numbers":
            values: np.ndarray | list = np.asarray(column.numbers.values, dtype=np.float64)
        elif which == "strings":
            strings = column.strings
            mask = strings.missing
            if len(mask) not in (0, len(strings.values)):
                msg = (
                    f"model {model!r}: column {column.name!r} has {len(strings.values)} values "
                    f"but {len(mask)} missing flags"
                )
                raise InvalidInput(msg)
            values = list(strings.values)
            if mask:
                values = [None if m else v for v, m in zip(values, mask, strict=True)]
        else:
            msg = f"model {model!r}: column {column.name!r} has neither numbers nor strings"
            raise InvalidInput(msg)
        if column.name in out:
            msg = f"model {model!r}: column {column.name!r} appears more than once"
            raise InvalidInput(msg)
        out[column.name] = values
    return out


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


def oip_inputs(request: oip_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    """Every input tensor of a V2 request, decoded to numpy in its shape.

    BYTES elements come back as an object array of ``bytes``.

    Raises:
        InvalidInput: naming the model and input: a bad shape or datatype, a byte or element
            count that disagrees with the shape, contents mixed with raw contents, a
            repeated name.
    """
    model = request.model_name
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        msg = (
            f"model {model!r}: the request has {len(request.inputs)} inputs but "
            f"{len(raw)} raw_input_contents entries; they must match one to one"
        )
        raise InvalidInput(msg)
    out: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        where = f"model {model!r}: input {tensor.name!r}"
        if tensor.name in out:
            msg = f"{where} appears more than once"
            raise InvalidInput(msg)
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            msg = f"{where}: shape {list(shape)} has a negative dimension"
            raise InvalidInput(msg)
        count = math.prod(shape)
        datatype = tensor.datatype
        if datatype != "BYTES" and datatype not in NUMPY_DTYPES:
            msg = f"{where}: unknown datatype {datatype!r}; V2 datatypes are " + str([*NUMPY_DTYPES, "BYTES"])
            raise InvalidInput(msg)
        if raw:
            if tensor.HasField("contents"):
                msg = f"{where}: uses contents while the request uses raw_input_contents"
                raise InvalidInput(msg)
            array = _from_raw(raw[i], datatype, count, where)
        else:
            array = _from_contents(tensor.contents, datatype, count, where)
        out[tensor.name] = array.reshape(shape)
    return out


def _from_raw(data: bytes, datatype: str, count: int, where: str) -> np.ndarray:
    if datatype == "BYTES":
        return _split_bytes(data, count, where)
    dtype = NUMPY_DTYPES[datatype]
    if len(data) != count * dtype.itemsize:
        msg = (
            f"{where}: {count} {datatype} elements need {count * dtype.itemsize} bytes, "
            f"raw_input_contents has {len(data)}"
        )
        raise InvalidInput(msg)
    return np.frombuffer(data, dtype=dtype)


def _split_bytes(data: bytes, count: int, where: str) -> np.ndarray:
    """Raw BYTES: a 4-byte little-endian length, then the bytes, per element."""
    items: list[bytes] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            msg = f"{where}: raw BYTES end inside an element's 4-byte length"
            raise InvalidInput(msg)
        size = int.from_bytes(view[pos : pos + 4], "little")
        pos += 4
        if pos + size > len(data):
            msg = f"{where}: raw BYTES element {len(items)} runs past the end of the data"
            raise InvalidInput(msg)
        items.append(bytes(view[pos : pos + size]))
        pos += size
    if len(items) != count:
        msg = f"{where}: the shape holds {count} elements, raw BYTES hold {len(items)}"
        raise InvalidInput(msg)
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _from_contents(contents: oip_pb2.InferTensorContents, datatype: str, count: int, where: str) -> np.ndarray:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        msg = f"{where}: {datatype} data can only be sent in raw_input_contents"
        raise InvalidInput(msg)
    values = getattr(contents, field)
    if len(values) != count:
        msg = f"{where}: the shape holds {count} elements, contents.{field} has {len(values)}"
        raise InvalidInput(msg)
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype])


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

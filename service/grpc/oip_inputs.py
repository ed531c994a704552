"""Open Inference Protocol v2 input tensors -> numpy, in two steps.

:func:`oip_specs` checks every input from its metadata alone (shape, datatype, byte and
element counts), so that a request of any size is refused before one element is decoded;
:func:`oip_decode` then decodes what passed. Inputs arrive either in ``contents`` (typed
repeated fields) or in ``raw_input_contents`` (little-endian bytes, one entry per input, BYTES
as a 4-byte little-endian length before each element).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service._proto.inference import grpc_predict_v2_pb2 as oip_pb2
from service.errors import InvalidInput, quote
from service.grpc.convert import CONTENTS_FIELDS, NUMPY_DTYPES


@dataclass(frozen=True)
class InputSpec:
    """One V2 input tensor as its metadata says: checked before any element is decoded."""

    index: int
    name: str
    datatype: str
    shape: tuple[int, ...]
    count: int

    @property
    def rows(self) -> int:
        return self.shape[0]


def oip_specs(request: oip_pb2.ModelInferRequest, *, max_rows: int, max_columns: int) -> list[InputSpec]:
    """Check every input of a V2 request from its shape, datatype and byte counts alone.

    Nothing here looks at an element, so a request of any size is refused in time
    proportional to its number of inputs; :func:`oip_decode` then decodes what passed.

    Raises:
        InvalidInput: naming the model and input: a bad shape (more than 2 dimensions,
            negative, more than ``max_rows`` rows or ``max_columns`` columns) or datatype, a
            byte or element count that disagrees with the shape, contents mixed with raw
            contents, a repeated name.
    """
    model = quote(request.model_name)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        msg = (
            f"model {model}: the request has {len(request.inputs)} inputs but "
            f"{len(raw)} raw_input_contents entries; they must match one to one"
        )
        raise InvalidInput(msg)
    specs: list[InputSpec] = []
    seen: set[str] = set()
    for i, tensor in enumerate(request.inputs):
        where = f"model {model}: input {quote(tensor.name)}"
        if tensor.name in seen:
            msg = f"{where} appears more than once"
            raise InvalidInput(msg)
        seen.add(tensor.name)
        datatype = tensor.datatype
        if datatype != "BYTES" and datatype not in NUMPY_DTYPES:
            msg = f"{where}: unknown datatype {quote(datatype)}; V2 datatypes are " + str([*NUMPY_DTYPES, "BYTES"])
            raise InvalidInput(msg)
        shape = _check_shape(tuple(tensor.shape), where, max_rows, max_columns)
        spec = InputSpec(i, tensor.name, datatype, shape, math.prod(shape))
        if raw:
            if tensor.HasField("contents"):
                msg = f"{where}: uses contents while the request uses raw_input_contents"
                raise InvalidInput(msg)
            _check_raw_size(len(raw[i]), spec, where)
        else:
            _check_contents_size(tensor.contents, spec, where)
        specs.append(spec)
    return specs


def _check_shape(shape: tuple[int, ...], where: str, max_rows: int, max_columns: int) -> tuple[int, ...]:
    if len(shape) not in (1, 2):
        shown = list(shape) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ...]"
        msg = f"{where}: shape {shown} has {len(shape)} dimensions; inputs have 1 ([n_rows]) or 2 ([n_rows, n_columns])"
        raise InvalidInput(msg)
    if any(d < 0 for d in shape):
        msg = f"{where}: shape {list(shape)} has a negative dimension"
        raise InvalidInput(msg)
    if shape[0] > max_rows:
        msg = (
            f"{where}: shape {list(shape)} holds {shape[0]} rows, more than the limit of {max_rows}; split the request"
        )
        raise InvalidInput(msg)
    if len(shape) == 2 and shape[1] > max_columns:
        msg = f"{where}: shape {list(shape)} has {shape[1]} columns, more than the model's {max_columns} features"
        raise InvalidInput(msg)
    return shape


def _check_raw_size(size: int, spec: InputSpec, where: str) -> None:
    if spec.datatype == "BYTES":
        if size < 4 * spec.count:
            msg = (
                f"{where}: {spec.count} BYTES elements need at least {4 * spec.count} bytes (a 4-byte "
                f"length each), raw_input_contents has {size}"
            )
            raise InvalidInput(msg)
        return
    need = spec.count * NUMPY_DTYPES[spec.datatype].itemsize
    if size != need:
        msg = f"{where}: {spec.count} {spec.datatype} elements need {need} bytes, raw_input_contents has {size}"
        raise InvalidInput(msg)


def _check_contents_size(contents: oip_pb2.InferTensorContents, spec: InputSpec, where: str) -> None:
    field = CONTENTS_FIELDS.get(spec.datatype)
    if field is None:
        msg = f"{where}: {spec.datatype} data can only be sent in raw_input_contents"
        raise InvalidInput(msg)
    have = len(getattr(contents, field))
    if have != spec.count:
        msg = f"{where}: the shape holds {spec.count} elements, contents.{field} has {have}"
        raise InvalidInput(msg)


def oip_decode(request: oip_pb2.ModelInferRequest, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """The inputs that :func:`oip_specs` checked, decoded to numpy in their shapes.

    BYTES elements come back as an object array of ``bytes``.

    Raises:
        InvalidInput: raw BYTES whose element lengths disagree with the data or the shape.
    """
    model = quote(request.model_name)
    raw = request.raw_input_contents
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        tensor = request.inputs[spec.index]
        if raw:
            array = _from_raw(raw[spec.index], spec.datatype, spec.count, f"model {model}: input {quote(spec.name)}")
        else:
            array = _from_contents(tensor.contents, spec.datatype)
        out[spec.name] = array.reshape(spec.shape)
    return out


def _from_raw(data: bytes, datatype: str, count: int, where: str) -> np.ndarray:
    if datatype == "BYTES":
        return _split_bytes(data, count, where)
    return np.frombuffer(data, dtype=NUMPY_DTYPES[datatype])


def _split_bytes(data: bytes, count: int, where: str) -> np.ndarray:
    """Raw BYTES: a 4-byte little-endian length, then the bytes, per element."""
    items: list[bytes] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        if len(items) == count:
            msg = f"{where}: the shape holds {count} elements, raw BYTES hold more"
            raise InvalidInput(msg)
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


def _from_contents(contents: oip_pb2.InferTensorContents, datatype: str) -> np.ndarray:
    values = getattr(contents, CONTENTS_FIELDS[datatype])
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype])

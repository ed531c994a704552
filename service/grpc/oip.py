"""The Open Inference Protocol v2 servicer (``inference.GRPCInferenceService``), thin.

A model takes either one input ``x`` (FP32, shape ``[n_rows, n_features]``, the bundle's
layout) or one input per feature, named as the feature, shape ``[n_rows]`` or
``[n_rows, 1]``: numbers for numeric features, BYTES (UTF-8 labels) or numbers for
categorical ones. It returns ``recon_error``, ``neg_elbo``, ``kl`` (FP32), ``p_value``
(FP64), ``is_anomaly`` (BOOL), ``feature_scores``, ``expected`` and ``latent`` (FP32,
2-D), or only the outputs the request names. The request parameter ``alpha`` (double,
int or string) sets the target false-positive rate in place of the bundle's.
"""

from __future__ import annotations

import grpc
import numpy as np

from service._proto.inference import grpc_predict_v2_pb2 as pb
from service._proto.inference import grpc_predict_v2_pb2_grpc
from service.bundle import INPUT_NAME
from service.dataplane import SERVER_NAME, DataPlane, check_column_names, max_columns, off_loop, server_version
from service.errors import InvalidInput, quote, quote_list
from service.grpc import convert
from service.grpc.oip_inputs import InputSpec, oip_decode, oip_specs
from service.registry import LoadedModel

PLATFORM = "onnxruntime_onnx"
OUTPUT_ORDER = tuple(convert.OUTPUT_DATATYPES)
INT64_MAX = np.iinfo(np.int64).max


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dp = dataplane

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dp.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dp.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._dp.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self._dp.model(request.name, request.version)
        n_features = model.manifest.n_features
        widths = {"feature_scores": n_features, "expected": n_features, "latent": model.manifest.latent_dim}
        outputs = [
            convert.tensor_metadata(name, datatype, [-1, widths[name]] if name in widths else [-1])
            for name, datatype in convert.OUTPUT_DATATYPES.items()
        ]
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=self._dp.registry.versions(model.name),
            platform=PLATFORM,
            inputs=[convert.tensor_metadata(INPUT_NAME, "FP32", [-1, n_features])],
            outputs=outputs,
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        model = self._dp.model(request.model_name, request.model_version)
        wanted = self._requested_outputs(request)
        alpha = self._alpha(request)
        specs = self._check_inputs(model, request)
        # Raw numbers are a view of the request's bytes; anything else is decoded element by element.
        work = sum(s.count for s in specs if s.datatype == "BYTES" or not request.raw_input_contents)
        x = await off_loop(self._rows, model, request, specs, elements=work)
        result = await self._dp.infer(model, x, alpha)
        raw = bool(request.raw_input_contents)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name in wanted:
            tensor, data = convert.oip_output(name, getattr(result.scores, name), raw)
            response.outputs.append(tensor)
            if data is not None:
                response.raw_output_contents.append(data)
        return response

    def _check_inputs(self, model: LoadedModel, request: pb.ModelInferRequest) -> list[InputSpec]:
        """Every input's name, shape, datatype and size against the model, before decoding any."""
        name = quote(model.name)
        manifest = model.manifest
        n_inputs = len(request.inputs)
        if n_inputs == 0:
            msg = f"model {name}: the request has no inputs; send `x` or one per feature"
            raise InvalidInput(msg)
        if n_inputs > max_columns(manifest.n_features):
            names = quote_list(t.name for t in request.inputs)
            msg = (
                f"model {name}: the request has {n_inputs} inputs {names}; the model takes input 'x' or one "
                f"input per feature, {manifest.n_features} features {quote_list(manifest.feature_names)}"
            )
            raise InvalidInput(msg)
        specs = oip_specs(request, max_rows=self._dp.max_request_rows, max_columns=manifest.n_features)
        names = [s.name for s in specs]
        if INPUT_NAME in names:
            if len(specs) > 1:
                others = quote_list(sorted(set(names) - {INPUT_NAME}))
                msg = f"model {name}: send either input 'x' or one input per feature, not both (got 'x' and {others})"
                raise InvalidInput(msg)
            self._check_packed(model, specs[0])
            return specs
        check_column_names(model.name, names, manifest)
        for spec in specs:
            if len(spec.shape) == 2 and spec.shape[1] != 1:
                msg = (
                    f"model {name}: input {quote(spec.name)} must have shape [n_rows] or [n_rows, 1], "
                    f"got {list(spec.shape)}"
                )
                raise InvalidInput(msg)
        rows = {s.name: s.rows for s in specs}
        if len(set(rows.values())) > 1:
            msg = f"model {name}: inputs have different numbers of rows {rows}"
            raise InvalidInput(msg)
        self._dp.check_row_count(model.name, specs[0].rows)
        return specs

    def _check_packed(self, model: LoadedModel, spec: InputSpec) -> None:
        if spec.datatype != "FP32":
            msg = f"model {quote(model.name)}: input 'x' must be FP32, got {spec.datatype}"
            raise InvalidInput(msg)
        n_features = model.manifest.n_features
        if len(spec.shape) != 2 or spec.shape[1] != n_features:
            msg = (
                f"model {quote(model.name)}: input 'x' must have shape [n_rows, {n_features}], one column per "
                f"feature {model.manifest.feature_names}; got shape {spec.shape}"
            )
            raise InvalidInput(msg)
        self._dp.check_row_count(model.name, spec.rows)

    def _rows(self, model: LoadedModel, request: pb.ModelInferRequest, specs: list[InputSpec]) -> np.ndarray:
        """Checked inputs -> ``x``: the packed input, or one column per feature."""
        inputs = oip_decode(request, specs)
        if INPUT_NAME in inputs:
            return inputs[INPUT_NAME]
        columns = {}
        for column, array in inputs.items():
            if array.ndim == 2:
                array = array[:, 0]
            if array.dtype == object:
                array = _decode_utf8(array, model.name, column)
            elif array.dtype == np.uint64 and array.size and array.max() > INT64_MAX:
                # As Python ints: the shared encoder casts whole numbers to int64 to read them as labels.
                array = array.astype(object)
            columns[column] = array
        return self._dp.encode_columns(model, columns)

    @staticmethod
    def _requested_outputs(request: pb.ModelInferRequest) -> list[str]:
        if not request.outputs:
            return list(OUTPUT_ORDER)
        names = [o.name for o in request.outputs]
        unknown = [n for n in names if n not in convert.OUTPUT_DATATYPES]
        if unknown:
            msg = (
                f"model {quote(request.model_name)}: unknown output(s) {quote_list(unknown)}; "
                f"outputs are {list(OUTPUT_ORDER)}"
            )
            raise InvalidInput(msg)
        return names

    @staticmethod
    def _alpha(request: pb.ModelInferRequest) -> float | None:
        if "alpha" not in request.parameters:
            return None
        value = convert.parameter_value(request.parameters["alpha"])
        shown = quote(value) if isinstance(value, str) else repr(value)
        msg = f"parameter alpha must be a number between 0 and 1, got {shown}"
        if isinstance(value, bool) or value is None:
            raise InvalidInput(msg)
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(msg) from None


def _decode_utf8(array: np.ndarray, model: str, column: str) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    for i, value in enumerate(array):
        try:
            out[i] = value.decode("utf-8")
        except UnicodeDecodeError:
            msg = f"model {quote(model)}: input {quote(column)}, row {i}: not valid UTF-8 text"
            raise InvalidInput(msg) from None
    return out

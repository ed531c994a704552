"""The ``latentwatch.v1.ScoringService`` servicer: thin, over :class:`~service.dataplane.DataPlane`.

Errors are raised as :class:`~service.errors.LatentwatchError`; the interceptor turns them
into status codes. ``StreamScore`` is the exception: a bad batch answers with a
``StreamError`` in its place and the stream goes on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import numpy as np

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.dataplane import DataPlane, max_columns, off_loop
from service.errors import InvalidInput, LatentwatchError, quote
from service.grpc import convert
from service.registry import LoadedModel

# Batches of one stream scored at once (their responses still go out in order).
STREAM_WINDOW = 8


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    """Score, StreamScore, ListModels and DescribeModel."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dp = dataplane

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        return await self._score(request)

    async def StreamScore(
        self,
        request_iterator: AsyncIterator[pb.ScoreRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.StreamScoreResponse]:
        """Read requests while earlier ones score (up to ``STREAM_WINDOW``); answer in order."""
        queue: asyncio.Queue[asyncio.Task[pb.StreamScoreResponse] | None] = asyncio.Queue(STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await queue.put(asyncio.create_task(self._stream_one(request)))
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await queue.get()) is not None:
                yield await task
            await reader  # re-raise a broken request stream
        finally:
            reader.cancel()
            while not queue.empty():
                task = queue.get_nowait()
                if task is not None:
                    task.cancel()

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        registry = self._dp.registry
        models = []
        for name in registry.names():
            newest = registry.get(name)
            models.append(
                pb.ModelSummary(
                    name=name,
                    version=newest.version,
                    versions=registry.versions(name),
                    model_type=newest.manifest.model_type,
                    ready=self._dp.model_ready(name),
                )
            )
        return pb.ListModelsResponse(models=models)

    async def DescribeModel(
        self, request: pb.DescribeModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelDescription:
        model = self._dp.model(request.model, request.version)
        return convert.model_description(model, self._dp.registry.versions(model.name))

    async def _score(self, request: pb.ScoreRequest) -> pb.ScoreResponse:
        model = self._dp.model(request.model, request.version)
        x = await self._rows(model, request)
        alpha = request.alpha if request.HasField("alpha") else None
        result = await self._dp.infer(model, x, alpha)
        request_id = request.request_id or uuid.uuid4().hex[:16]
        return convert.score_response(result, explain=request.explain, latent=request.latent, request_id=request_id)

    async def _stream_one(self, request: pb.ScoreRequest) -> pb.StreamScoreResponse:
        try:
            response = await self._score(request)
        except LatentwatchError as err:
            error = pb.StreamError(code=err.code, message=err.message)
            return pb.StreamScoreResponse(error=error, request_id=request.request_id)
        return pb.StreamScoreResponse(result=response, request_id=response.request_id)

    async def _rows(self, model: LoadedModel, request: pb.ScoreRequest) -> np.ndarray:
        which = request.WhichOneof("rows")
        name = quote(model.name)
        if which == "x":
            return convert.tensor_to_array(request.x, model.name)
        if which == "columns":
            if not request.columns.columns:
                msg = f"model {name}: the request's columns are empty"
                raise InvalidInput(msg)
            limits = {"max_rows": self._dp.max_request_rows, "max_count": max_columns(model.manifest.n_features)}
            values = convert.check_column_counts(request.columns, model.name, **limits)
            return await off_loop(self._encode, model, request.columns, limits, elements=values)
        msg = f"model {name}: the request holds no rows; set `columns` or `x`"
        raise InvalidInput(msg)

    def _encode(self, model: LoadedModel, columns: pb.Columns, limits: dict[str, int]) -> np.ndarray:
        return self._dp.encode_columns(model, convert.columns_to_dict(columns, model.name, **limits))

"""The one place where errors become gRPC status codes, calls are counted and callers checked.

:class:`ServiceInterceptor` wraps every method handler of the server:

- a request body that does not parse (corrupt bytes, invalid UTF-8 in a string field) is
  INVALID_ARGUMENT saying so, naming the string field whose bytes are not UTF-8: requests
  reach the wrapper as bytes and are parsed there;
- a :class:`~service.errors.LatentwatchError` aborts the call with the status code named by
  its ``code`` and its message (it is the caller's mistake or a known condition);
- any other exception aborts with INTERNAL and a generic message carrying the request id,
  and its traceback goes to the log;
- every call of the scoring APIs is counted in ``latentwatch_requests_total`` and timed in
  ``latentwatch_request_duration_seconds`` (health and reflection are not);
- with bearer tokens configured, every call but health checks needs the metadata
  ``authorization: Bearer <token>`` and gets UNAUTHENTICATED otherwise;
- once :attr:`ServiceInterceptor.draining` is set (the server is stopping), a new call gets
  UNAVAILABLE saying the server is shutting down (:class:`~service.errors.ShuttingDown`),
  but for health, reflection and the V2 probes (``ServerLive``, ``ServerReady``,
  ``ModelReady``), which keep answering (not ready); calls already begun go on;
- each call gets a request id (the caller's ``x-request-id`` metadata, echoed back in the
  trailing metadata, or a new one), set in :data:`request_id` for the logs and named in
  INTERNAL errors.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import inspect
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from service._proto.inference import grpc_predict_v2_pb2
from service.errors import InvalidInput, LatentwatchError, ShuttingDown
from service.grpc.wire import bad_utf8_field
from service.metrics import Metrics

logger = logging.getLogger(__name__)

#: The id of the call being handled ("-" outside calls), for log records.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
# Request fields that name the model, by API: own (model), V2 infer (model_name), V2 ready
# and metadata (name).
MODEL_FIELDS = ("model", "model_name", "name")
# A call cancelled with at most this many seconds left before its deadline is counted as
# DEADLINE_EXCEEDED (``cancellation_code``).
DEADLINE_SLACK_S = 0.05
# V2 probes, answered while draining (they then say "not ready").
_OIP = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PROBE_METHODS = frozenset(f"/{_OIP}/{name}" for name in ("ServerLive", "ServerReady", "ModelReady"))


def status_code(code_name: str) -> grpc.StatusCode:
    """``LatentwatchError.code`` (a ``grpc.StatusCode`` member name) -> the status code."""
    return getattr(grpc.StatusCode, code_name, grpc.StatusCode.INTERNAL)


def read_tokens(path: Path) -> frozenset[str]:
    """Bearer tokens from a file, one per line (blank lines and ``#`` comments skipped)."""
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_COUNTER = itertools.count(1)


def cancellation_code(remaining: float | None) -> str:
    """The status a cancelled call is counted under, from the seconds its deadline had left.

    A client's own deadline timer can cancel the call a little before the server's fires, so a
    cancellation within ``DEADLINE_SLACK_S`` of the deadline is the deadline's.
    """
    expired = remaining is not None and remaining <= DEADLINE_SLACK_S
    return "DEADLINE_EXCEEDED" if expired else "CANCELLED"


def _new_request_id() -> str:
    """A request id unique to this process run: a random prefix and a counter."""
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Error mapping, metrics, auth and request ids for every call; see the module docstring.

    Args:
        metrics: where calls are counted (None: not counted).
        known_model: whether a name is a model being served; other names are counted under
            the model label ``""`` so that clients cannot grow the label set.
        tokens: accepted bearer tokens; None turns auth off.
    """

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        known_model: Callable[[str], bool],
        tokens: frozenset[str] | None = None,
    ) -> None:
        self._metrics = metrics
        self._known_model = known_model
        self._tokens = tuple(t.encode() for t in tokens) if tokens is not None else None
        self._cache: dict[str, grpc.RpcMethodHandler] = {}
        #: Calls of the scoring APIs in progress (health and reflection are not counted).
        self.active = 0
        #: Calls begun so far that a drain refuses (those refused included; not the probes).
        self.begun = 0
        #: Set when the server stops: new calls are refused (see the module docstring).
        self.draining = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = self._wrap(method, handler)
        self._cache[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        is_health = method.startswith(HEALTH_PREFIX)
        counted = not (is_health or method.startswith(REFLECTION_PREFIX))
        needs_auth = self._tokens is not None and not is_health
        short = method.rsplit("/", 1)[-1]
        parse = RequestParser(handler.request_deserializer)
        drains = counted and method not in PROBE_METHODS
        call = _Call(self, short, parse, counted=counted, needs_auth=needs_auth, drains=drains)
        # Requests arrive as bytes and are parsed inside the call, where a body that does not
        # parse becomes INVALID_ARGUMENT (grpc's own deserialization would answer UNKNOWN).
        serializers = {"request_deserializer": None, "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(call.unary(handler.unary_unary), **serializers)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(call.streaming(handler.unary_stream), **serializers)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(call.unary(handler.stream_unary), **serializers)
        return grpc.stream_stream_rpc_method_handler(call.streaming(handler.stream_stream), **serializers)

    def model_label(self, request: Any) -> str:
        for field in MODEL_FIELDS:
            name = getattr(request, field, None)
            if isinstance(name, str):
                return name if name and self._known_model(name) else ""
        return ""

    def authorized(self, context: grpc.aio.ServicerContext) -> bool:
        assert self._tokens is not None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer":
                    given = token.strip().encode()
                    return any(hmac.compare_digest(given, t) for t in self._tokens)
        return False

    def observe(self, model: str, method: str, code: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_request(model, method, code, seconds)


class RequestParser:
    """A method's request deserializer, failing with :class:`InvalidInput` that says what is wrong."""

    def __init__(self, deserializer: Callable[[bytes], Any] | None) -> None:
        self._deserializer = deserializer
        message_class = getattr(deserializer, "__self__", None)
        self.descriptor = getattr(message_class, "DESCRIPTOR", None)
        self.type_name = getattr(self.descriptor, "full_name", "request")

    def __call__(self, data: Any) -> Any:
        if self._deserializer is None or not isinstance(data, bytes):
            return data
        try:
            return self._deserializer(data)
        except Exception as err:  # DecodeError, or whatever a custom deserializer raises
            raise InvalidInput(self._message(data, err)) from None

    def _message(self, data: bytes, err: Exception) -> str:
        detail = str(err).rpartition(": ")[2]
        if "UTF-8" in detail:
            field = bad_utf8_field(self.descriptor, data) if self.descriptor is not None else None
            where = f"the string field `{field}`" if field is not None else "a string field"
            reason = f"{where} holds bytes that are not valid UTF-8"
        else:
            reason = (
                "the bytes are not this message in protobuf wire format "
                "(a corrupt body, or a client built from another .proto)"
            )
        return f"the request is not a valid {self.type_name} message ({len(data)} bytes): {reason}"

    async def stream(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for data in requests:
            yield self(data)


class _Call:
    """The per-method wrapper: one instance per method, shared by its calls."""

    def __init__(
        self,
        owner: ServiceInterceptor,
        method: str,
        parse: RequestParser,
        *,
        counted: bool,
        needs_auth: bool,
        drains: bool,
    ) -> None:
        self.owner = owner
        self.method = method
        self.parse = parse
        self.counted = counted
        self.needs_auth = needs_auth
        self.drains = drains  # refused once the server drains

    def unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            outcome = _Outcome(self, context)
            request = await outcome.begin(request)
            try:
                outcome.check_open()
                outcome.check_parsed()
                return await behavior(request, context)
            except BaseException as err:  # re-raised or mapped in fail()
                await outcome.fail(err)
            finally:
                outcome.end()

        return handle

    def streaming(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A coroutine that writes its responses with context.write (the health Watch).
            return self.unary(behavior)

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            outcome = _Outcome(self, context)
            request = await outcome.begin(request)
            try:
                outcome.check_open()
                outcome.check_parsed()
                async for response in behavior(request, context):
                    yield response
            except BaseException as err:
                await outcome.fail(err)
            finally:
                outcome.end()

        return handle


class _Outcome:
    """One call's bookkeeping: request id, auth, status code, duration."""

    def __init__(self, call: _Call, context: grpc.aio.ServicerContext) -> None:
        self.call = call
        self.context = context
        self.code = "OK"
        self.start = time.perf_counter()
        self.model = ""
        self.token: contextvars.Token[str] | None = None
        self.parse_error: Exception | None = None

    def _parsed(self, request: Any) -> Any:
        """The call's request parsed (or its stream of requests, parsed one by one); the model
        label is taken from it (from the first message of a stream)."""
        if hasattr(request, "__aiter__"):
            return self.label_from_first(self.call.parse.stream(request))
        try:
            request = self.call.parse(request)
        except Exception as err:  # InvalidInput, or a fault of the parser's (then INTERNAL)
            self.parse_error = err  # raised once the caller is known to be authorized
            return request
        if self.call.counted:
            self.model = self.call.owner.model_label(request)
        return request

    def check_open(self) -> None:
        if self.call.drains and self.call.owner.draining:
            msg = "the server is shutting down and takes no new calls; retry on another replica"
            raise ShuttingDown(msg)

    def check_parsed(self) -> None:
        if self.parse_error is not None:
            raise self.parse_error

    async def begin(self, request: Any) -> Any:
        """Request id, count, the request parsed and the caller's token checked; returns the
        parsed request (a body that did not parse fails in :meth:`check_parsed`)."""
        rid = ""
        for key, value in self.context.invocation_metadata() or ():
            if key == "x-request-id" and isinstance(value, str):
                rid = value[:64]
                # Echoed back, so the caller can match its logs to the server's.
                self.context.set_trailing_metadata((("x-request-id", rid),))
                break
        self.token = request_id.set(rid or _new_request_id())
        if self.call.counted:
            self.call.owner.active += 1
        if self.call.drains:
            self.call.owner.begun += 1
        request = self._parsed(request)
        if self.call.needs_auth and not self.call.owner.authorized(self.context):
            self.code = "UNAUTHENTICATED"
            self.end()
            await self.context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown bearer token (metadata 'authorization: Bearer <token>')",
            )
        return request

    async def label_from_first(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass a client stream through, taking the model label from its first message."""
        async for message in requests:
            if self.call.counted and not self.model:
                self.model = self.call.owner.model_label(message)
            yield message

    async def fail(self, err: BaseException) -> None:
        """Map ``err`` to a status and abort; re-raise cancellations and aborts."""
        if isinstance(err, asyncio.CancelledError):
            self.code = cancellation_code(self.context.time_remaining())
            raise err
        if isinstance(err, grpc.aio.AbortError):
            code = self.context.code()
            self.code = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            raise err
        if isinstance(err, LatentwatchError):
            self.code = err.code
            logger.info("%s failed with %s: %s", self.call.method, err.code, err.message)
            await self.context.abort(status_code(err.code), err.message)
        if not isinstance(err, Exception):
            raise err
        self.code = "INTERNAL"
        rid = request_id.get()
        logger.error("%s failed (request id %s)", self.call.method, rid, exc_info=err)
        await self.context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error (request id {rid}); the server's log has the details",
        )

    def end(self) -> None:
        if self.token is None:
            return
        if self.call.counted:
            self.call.owner.active -= 1
            seconds = time.perf_counter() - self.start
            self.call.owner.observe(self.model, self.call.method, self.code, seconds)
        try:
            request_id.reset(self.token)
        except ValueError:  # ended in another context than it began (stream teardown)
            pass
        self.token = None

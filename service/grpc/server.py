"""The ``grpc.aio`` server: both APIs, ``grpc.health.v1``, reflection, and a graceful stop.

Health answers for the whole server (``""``), for each API's service name, and for each
model by its name: SERVING while it is loaded. :meth:`GrpcServer.stop` drains before it
stops: health turns NOT_SERVING and keeps answering, new scoring calls get UNAVAILABLE
saying the server is shutting down, calls in flight get ``grace`` seconds to finish; only
then does the port close.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service._proto.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from service._proto.latentwatch.v1 import scoring_pb2, scoring_pb2_grpc
from service.config import ServiceConfig
from service.dataplane import DataPlane
from service.errors import ConfigError
from service.grpc.interceptors import ServiceInterceptor, read_tokens
from service.grpc.oip import InferenceServicer
from service.grpc.scoring import ScoringServicer
from service.metrics import Metrics
from service.registry import ModelRegistry

logger = logging.getLogger(__name__)

SCORING_SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
OIP_SERVICE = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The drain ends once no scoring call has been in flight or begun for DRAIN_QUIET_TICKS
# checks in a row, DRAIN_TICK_S seconds apart (or when the grace period ends). The quiet
# spell is there for calls the transport had accepted but not yet handed to the server's
# loop (it takes them one at a time): they reach the interceptor and get an answer, where
# closing the port would cancel them.
DRAIN_TICK_S = 0.01
DRAIN_QUIET_TICKS = 10


class GrpcServer:
    """Builds, starts and stops the gRPC server over one :class:`DataPlane`.

    Args:
        dataplane: the core the servicers call.
        config: address, message size, TLS and auth settings.
        metrics: where calls are counted (None: not counted).
    """

    def __init__(self, dataplane: DataPlane, config: ServiceConfig, metrics: Metrics | None = None) -> None:
        self.dataplane = dataplane
        self.config = config
        self.metrics = metrics
        self.health = DrainingHealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._models_in_health: set[str] = set()
        self._interceptor: ServiceInterceptor | None = None

    async def start(self) -> int:
        """Bind, start serving, and return the port bound (useful with port 0).

        Raises:
            ConfigError: the address cannot be bound, or TLS files cannot be read.
        """
        config = self.config
        tokens = read_tokens(config.auth_tokens_file) if config.auth_tokens_file else None
        interceptor = ServiceInterceptor(self.metrics, known_model=self.dataplane.registry.has, tokens=tokens)
        self._interceptor = interceptor

        server = grpc.aio.server(
            interceptors=[interceptor],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        scoring_pb2_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(self.dataplane), server)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.dataplane), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SCORING_SERVICE, OIP_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{config.host}:{config.port}"
        try:
            if config.tls:
                port = server.add_secure_port(address, _credentials(config))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as err:
            port, reason = 0, str(err)
        else:
            reason = "the address is in use or not local"
        if port == 0:
            msg = f"cannot listen on {address}: {reason}"
            raise ConfigError(msg)
        await server.start()
        self._server = server
        self.port = port
        self.dataplane.registry.add_listener(self._schedule_health_update)
        await self.update_health()
        logger.info("gRPC listening on %s:%d (%s)", config.host, port, "TLS" if config.tls else "plaintext")
        if config.plaintext_tokens:  # validate() allows it only with trusted_network
            logger.warning(
                "bearer tokens travel in plaintext to %s:%d (--trusted-network): anyone who can read "
                "that network can replay them; prefer TLS (--tls-cert, --tls-key)",
                config.host,
                port,
            )
        return port

    async def update_health(self) -> None:
        """Match health statuses to what is loaded: overall, per API, per model."""
        ready = self.dataplane.ready()
        status = SERVING if ready else NOT_SERVING
        for service in (health.OVERALL_HEALTH, SCORING_SERVICE, OIP_SERVICE):
            await self.health.set(service, status)
        names = set(self.dataplane.registry.names())
        for name in sorted(names):
            await self.health.set(name, SERVING)
        for name in sorted(self._models_in_health - names):
            await self.health.set(name, NOT_SERVING)
        self._models_in_health |= names

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain for up to ``grace_s`` seconds, then close the port; see the module docstring.

        The port stays open while draining, so that a health check gets NOT_SERVING rather
        than a refused connection (what a Kubernetes probe expects), and every call that
        reached the server before the drain finishes or is told the server is shutting down.
        Once the scoring calls are done, health ``Watch`` streams (which never end by
        themselves) are ended too, so the stop does not wait out the grace period.
        """
        grace = self.config.grace_s if grace_s is None else grace_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.dataplane.shutting_down = True
        await self.health.enter_graceful_shutdown()
        server, self._server = self._server, None
        if server is None:
            return
        if self._interceptor is not None:
            self._interceptor.draining = True
        logger.info(
            "stopping: health NOT_SERVING, new calls refused, %d call(s) in flight get up to %.1f s",
            self._active(),
            grace,
        )
        await self._drain(deadline)
        await self.health.close_watches()
        if self._active() > 0:
            logger.warning("grace period over: cancelling %d call(s) still in flight", self._active())
        # One stop call only: two overlapping ones crash grpcio 1.85 (a segmentation fault).
        await server.stop(max(0.0, deadline - loop.time()))

    async def _drain(self, deadline: float) -> None:
        """Wait until no scoring call is in flight or arriving (see ``DRAIN_QUIET_TICKS``), or ``deadline``."""
        interceptor = self._interceptor
        if interceptor is None:
            return
        loop = asyncio.get_running_loop()
        seen, quiet = interceptor.begun, 0
        while quiet < DRAIN_QUIET_TICKS and loop.time() < deadline:
            await asyncio.sleep(DRAIN_TICK_S)
            if interceptor.active == 0 and interceptor.begun == seen:
                quiet += 1
            else:
                seen, quiet = interceptor.begun, 0

    def _active(self) -> int:
        return self._interceptor.active if self._interceptor is not None else 0

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def _schedule_health_update(self, registry: ModelRegistry) -> None:
        self._health_task = asyncio.get_running_loop().create_task(self.update_health())


class DrainingHealthServicer(health.aio.HealthServicer):
    """The standard health service, whose ``Watch`` streams end when the server stops.

    A ``Watch`` stream never ends by itself, so the server's graceful stop would wait for
    it the whole grace period; :meth:`close_watches` ends them (with OK, after they sent
    NOT_SERVING) once the scoring calls have drained.
    """

    def __init__(self) -> None:
        super().__init__()
        self._closing: asyncio.Event | None = None

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        closing = asyncio.ensure_future(self._closing_event().wait())
        try:
            await asyncio.wait({watch, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, closing):
                task.cancel()
            await asyncio.gather(watch, closing, return_exceptions=True)

    async def close_watches(self) -> None:
        """End every ``Watch`` stream now (and any opened later)."""
        self._closing_event().set()


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials:
    assert config.tls_cert is not None
    assert config.tls_key is not None
    try:
        chain = config.tls_cert.read_bytes()
        key = config.tls_key.read_bytes()
        ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    except OSError as err:
        msg = f"cannot read a TLS file: {err}"
        raise ConfigError(msg) from None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)

"""``latentwatch serve``: the scoring service, assembled and run until SIGTERM.

:class:`Service` puts the parts together (metrics, inference threads, model registry, data
plane, gRPC server, ``/metrics`` endpoint, repository polling) and takes them apart in
order. :func:`serve_command` runs it from parsed arguments: SIGTERM or SIGINT drain and
stop it (health answers NOT_SERVING, new calls get UNAVAILABLE, calls in flight get
``grace_s``, then the port closes; see ``service.grpc.server``), SIGHUP reloads the model
repository.

The command line wires it with :func:`add_serve_arguments` and :func:`serve_command`;
``python -m service.serve`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import LOG_FORMATS, LOG_LEVELS, ServiceConfig
from service.errors import ConfigError, LatentwatchError, ModelNotReady
from service.logs import configure_logging
from service.validation import DEVICES

# The parts (numpy, pandas, onnxruntime, grpc) load when a Service is built, not with this
# module: building the command line's parser (add_serve_arguments) stays fast.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from service.batching import MicroBatcher
    from service.dataplane import DataPlane
    from service.grpc.server import GrpcServer
    from service.metrics import MetricsServer
    from service.registry import ModelRegistry
    from service.scorer import Scorer

logger = logging.getLogger(__name__)


class Service:
    """The running service; ``async with Service(config) as service: ...``.

    Args:
        config: validated settings.
        registry: the Prometheus registry for the metrics (a fresh one when None).
    """

    def __init__(self, config: ServiceConfig, *, registry: CollectorRegistry | None = None) -> None:
        from service.metrics import Metrics

        self.config = config
        self.metrics = Metrics(registry, drift_window=config.drift_window)
        self.models: ModelRegistry | None = None
        self.dataplane: DataPlane | None = None
        self.server: GrpcServer | None = None
        self.metrics_server: MetricsServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The gRPC port bound."""
        assert self.server is not None
        assert self.server.port is not None
        return self.server.port

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_server is None else self.metrics_server.port

    async def start(self) -> None:
        """Load the repository, then listen; fail fast on settings that cannot work.

        Raises:
            ConfigError: the repository is missing or an address cannot be bound.
            ModelNotReady: ``device="cuda"`` where CUDA cannot run.
        """
        from service.dataplane import DataPlane
        from service.grpc.server import GrpcServer
        from service.registry import ModelRegistry

        config = self.config
        assert config.models is not None
        if not config.models.is_dir():
            msg = f"--models {config.models}: no such directory (the model repository)"
            raise ConfigError(msg)
        self._executor = ThreadPoolExecutor(config.inference_threads, "latentwatch-infer")
        self.models = ModelRegistry(
            config.models,
            open_scorer=self._open_scorer,
            make_batcher=self._make_batcher,
            metrics=self.metrics,
            settle_s=config.reload_settle_s,
        )
        self.metrics.set_queue_source(self.models.queued_rows)
        report = await self.models.reload()
        if config.device == "cuda":
            for err in report.errors:
                if isinstance(err, ModelNotReady):
                    raise err
        if not self.models.ready:
            logger.warning(
                "no model loaded from %s yet; ServerReady stays false until one loads "
                "(layout: DIR/<model>/<version>/ with manifest.json and model.onnx)",
                config.models,
            )
        self.dataplane = DataPlane(self.models, self.metrics, max_request_rows=config.max_request_rows)
        self.server = GrpcServer(self.dataplane, config, self.metrics)
        await self.server.start()
        if config.metrics_port >= 0:
            self.metrics_server = self.metrics.serve_http(config.metrics_host, config.metrics_port)
            logger.info("metrics on http://%s:%d/metrics", config.metrics_host, self.metrics_server.port)
        # Runs with polling off too: it retries versions still being copied until they settle.
        self._poller = asyncio.get_running_loop().create_task(self.models.poll(config.reload_interval_s))

    async def reload(self) -> None:
        """Reload the model repository now (what SIGHUP does)."""
        assert self.models is not None
        try:
            report = await self.models.reload()
        except Exception:
            logger.exception("reloading the model repository failed")
            return
        logger.info(
            "reload: %d loaded, %d refused, %d removed, %d still being written",
            len(report.loaded),
            len(report.failed),
            len(report.removed),
            len(report.pending),
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain and stop; safe to call twice."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> Service:
        try:
            await self.start()
        except BaseException:
            await self.stop(0)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(0)

    def _open_scorer(self, path: Path) -> Scorer:
        from service.scorer import Scorer

        config = self.config
        return Scorer.open(
            path,
            device=config.device,
            intra_op_threads=config.intra_op_threads,
            inter_op_threads=config.inter_op_threads,
        )

    def _make_batcher(self, name: str, scorer: Scorer) -> MicroBatcher:
        from service.batching import MicroBatcher
        from service.dataplane import scoring_function

        config = self.config
        assert self._executor is not None
        metrics = self.metrics
        return MicroBatcher(
            scoring_function(name, scorer, metrics),
            executor=self._executor,
            max_batch_rows=config.max_batch_rows,
            max_batch_delay_s=config.max_batch_delay_s,
            max_queue_rows=config.max_queue_rows,
            max_concurrent_batches=config.inference_threads,
            enabled=config.batching,
            inline_max_rows=config.inline_max_rows,
            name=name,
            on_batch=lambda rows, seconds: metrics.observe_batch(name, rows, seconds),
        )


async def run_service(config: ServiceConfig) -> int:
    """Run until SIGTERM/SIGINT (drain, then stop); SIGHUP reloads the repository.

    The handlers are in place before anything starts, so a signal is never lost (nor
    kills the process) while the models load.
    """
    loop = asyncio.get_running_loop()
    service = Service(config)
    stop_requested = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    def on_stop(signum: int) -> None:
        logger.info("%s received", signal.Signals(signum).name)
        stop_requested.set()

    def on_hup() -> None:
        if service.models is None:
            return  # still starting: the first load reads the repository anyway
        task = loop.create_task(service.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await service.start()
        await stop_requested.wait()
        await service.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await service.stop(0)
    logger.info("stopped")
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options; unset ones fall back to the environment, file, defaults."""
    d = ServiceConfig()
    add = parser.add_argument
    add(
        "--models",
        type=Path,
        metavar="DIR",
        help="model repository: DIR/<model>/<version>/ bundles (env LATENTWATCH_MODELS)",
    )
    add(
        "--config",
        dest="config_file",
        type=Path,
        metavar="FILE",
        help="TOML file of settings, keyed by ServiceConfig field (port, max_batch_delay_s, "
        "grace_s, ...), at the top level or under [serve] (env LATENTWATCH_CONFIG)",
    )
    add("--host", help=f"gRPC address to bind (default {d.host})")
    add("--port", type=int, help=f"gRPC port, 0 = any free one (default {d.port})")
    add("--metrics-host", help=f"/metrics address (default {d.metrics_host})")
    add("--metrics-port", type=int, help=f"/metrics port, -1 = off (default {d.metrics_port})")
    add("--device", choices=DEVICES, help=f"onnxruntime execution provider (default {d.device})")
    add(
        "--intra-op-threads",
        type=int,
        metavar="N",
        help="onnxruntime threads inside an operator (default: onnxruntime's)",
    )
    add(
        "--inter-op-threads",
        type=int,
        metavar="N",
        help="onnxruntime threads across operators (default: onnxruntime's)",
    )
    add(
        "--inference-threads",
        type=int,
        metavar="N",
        help=f"onnxruntime calls running at once (default {d.inference_threads})",
    )
    add(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="coalesce concurrent requests into one onnxruntime call (default on)",
    )
    add("--max-batch-rows", type=int, metavar="N", help=f"most rows per onnxruntime call (default {d.max_batch_rows})")
    add(
        "--max-batch-delay",
        dest="max_batch_delay_s",
        type=float,
        metavar="SECONDS",
        help=f"longest wait for a batch to fill (default {d.max_batch_delay_s})",
    )
    add(
        "--max-queue-rows",
        type=int,
        metavar="N",
        help=f"rows queued per model before RESOURCE_EXHAUSTED (default {d.max_queue_rows})",
    )
    add(
        "--inline-max-rows",
        type=int,
        metavar="N",
        help="batches up to N rows run on the event loop thread, larger ones in the "
        f"inference threads; 0 = always threads (default {d.inline_max_rows})",
    )
    add("--max-request-rows", type=int, metavar="N", help=f"most rows in one request (default {d.max_request_rows})")
    add("--max-message-bytes", type=int, metavar="N", help=f"largest gRPC message (default {d.max_message_bytes})")
    add(
        "--grace",
        dest="grace_s",
        type=float,
        metavar="SECONDS",
        help=f"on SIGTERM, time for calls in flight to finish (default {d.grace_s})",
    )
    add(
        "--reload-interval",
        dest="reload_interval_s",
        type=float,
        metavar="SECONDS",
        help=f"poll the repository this often, 0 = only on SIGHUP (default {d.reload_interval_s})",
    )
    add(
        "--reload-settle",
        dest="reload_settle_s",
        type=float,
        metavar="SECONDS",
        help="a version failing to load while its files changed less than this long ago is being "
        f"copied: retried, not counted as a failure (default {d.reload_settle_s})",
    )
    add(
        "--drift-window",
        type=int,
        metavar="N",
        help=f"p-values behind latentwatch_p_value_drift (default {d.drift_window})",
    )
    add("--tls-cert", type=Path, metavar="PEM", help="server certificate chain (enables TLS)")
    add("--tls-key", type=Path, metavar="PEM", help="server private key")
    add("--tls-client-ca", type=Path, metavar="PEM", help="CA for client certificates (enables mutual TLS)")
    add(
        "--auth-tokens",
        dest="auth_tokens_file",
        type=Path,
        metavar="FILE",
        help="bearer tokens, one per line; calls without one get UNAUTHENTICATED (needs TLS, a "
        "loopback --host, or --trusted-network)",
    )
    add(
        "--trusted-network",
        action="store_true",
        default=None,
        help="allow bearer tokens over plaintext: the network is encrypted or private (a warning at start)",
    )
    add("--log-format", choices=LOG_FORMATS, help=f"log lines as text or JSON (default {d.log_format})")
    add("--log-level", choices=LOG_LEVELS, type=str.upper, help=f"(default {d.log_level})")


def serve_command(args: argparse.Namespace) -> int:
    """Run the service from parsed ``serve`` arguments; return the exit status.

    Raises:
        LatentwatchError: bad settings (ConfigError) or an unusable device, with a message
            naming the setting; the command line prints it.
    """
    flags = {k: v for k, v in vars(args).items() if k != "config_file"}
    config = ServiceConfig.load(flags, config_file=getattr(args, "config_file", None))
    configure_logging(config.log_format, config.log_level)
    return asyncio.run(run_service(config))


def main(argv: list[str] | None = None) -> int:
    """``python -m service.serve``: the same as ``latentwatch serve``."""
    parser = argparse.ArgumentParser(prog="latentwatch serve", description=__doc__.split("\n")[0])
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve_command(args)
    except LatentwatchError as err:
        print(f"latentwatch serve: error: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())

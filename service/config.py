"""``ServiceConfig``: every setting of ``latentwatch serve``, validated into one object at start.

Settings come from, highest precedence first: command-line flags, environment variables
(``LATENTWATCH_`` + the field name in capitals, e.g. ``LATENTWATCH_MAX_BATCH_ROWS=512``), a
TOML file (``--config FILE``; keys at the top level or under ``[serve]``), then the defaults
below. :meth:`ServiceConfig.load` merges them and :meth:`ServiceConfig.validate` rejects a
bad value with a :class:`~service.errors.ConfigError` that names the setting, where it came
from, and the value it got.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ConfigError
from service.fields import FieldType, FieldTypeError, coerce, field_types
from service.validation import device_problem, onnx_threads_problem

ENV_PREFIX = "LATENTWATCH_"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the scoring service; build it with :meth:`load` or call :meth:`validate`.

    Times are in seconds, sizes in rows or bytes as their names say.
    """

    # The model repository: DIR/<model>/<version>/ bundle directories.
    models: Path | None = None
    # gRPC address; port 0 picks a free port (the server reports the one it bound).
    host: str = "0.0.0.0"
    port: int = 50051
    # Prometheus /metrics address; port -1 turns the HTTP endpoint off.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    # onnxruntime execution provider: auto (CUDA if it runs, else CPU), cpu or cuda.
    device: str = "auto"
    # onnxruntime threads per session; None = onnxruntime's default (one per core).
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    # Threads running onnxruntime calls; batches of different requests overlap up to this.
    inference_threads: int = 2
    # Micro-batching: coalesce concurrent requests of one model into one onnxruntime call.
    batching: bool = True
    # Most rows per onnxruntime call; larger requests are split into parts of this size. A
    # large request arriving while inference threads are idle is shared out over them, so a
    # lone 1024-row request uses two cores (service/batching.py).
    max_batch_rows: int = 1024
    # How long the first queued request waits for others, once other callers are about (a
    # caller alone is served at once). Under load batches also grow while earlier ones run.
    max_batch_delay_s: float = 0.001
    # Batches up to this many rows run on the event loop thread (a thread hand-off costs
    # more than a small tabular model); larger ones in the inference threads. 0 = never.
    inline_max_rows: int = 64
    # Rows waiting per model at which new requests get RESOURCE_EXHAUSTED. A request is
    # admitted while fewer rows wait, whatever its size (up to max_request_rows), so up to
    # max_queue_rows + max_request_rows - 1 rows can wait: a legal request is refused only
    # when the queue is already full, never for the room it needs itself.
    max_queue_rows: int = 65536
    # Most rows in one request (INVALID_ARGUMENT beyond).
    max_request_rows: int = 65536
    # Largest gRPC message, both directions (RESOURCE_EXHAUSTED beyond).
    max_message_bytes: int = 64 * 1024 * 1024
    # On SIGTERM: health turns NOT_SERVING (still answered), new calls get UNAVAILABLE, and
    # calls in flight get this long to finish.
    grace_s: float = 10.0
    # Poll the model repository for new versions this often; 0 turns polling off (SIGHUP
    # still reloads).
    reload_interval_s: float = 10.0
    # A version that fails to load while any of its files changed less than this long ago is
    # taken for a copy in progress: retried (every this many seconds), not counted as a
    # failure. Once its files have stayed unchanged this long, a failure is a refusal.
    reload_settle_s: float = 5.0
    # p-values in the sliding window behind latentwatch_p_value_drift.
    drift_window: int = 1000
    # TLS: server certificate and key (PEM); with a client CA, clients must present a
    # certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Bearer tokens, one per line; when set, every call but health needs
    # "authorization: Bearer <token>" (UNAUTHENTICATED otherwise). Tokens need TLS, a
    # loopback host (a proxy beside the server ends TLS), or trusted_network: over plaintext
    # anyone on the path can read and replay them.
    auth_tokens_file: Path | None = None
    # The network between clients and this server is trusted (a mesh that encrypts it, a
    # private link): bearer tokens are allowed over plaintext, with a warning at start.
    trusted_network: bool = False
    log_format: str = "text"
    log_level: str = "INFO"

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> ServiceConfig:
        """Merge defaults < TOML file < environment < flags, then validate.

        Args:
            flags: field name -> value from the command line; ``None`` values are ignored.
            env: the environment (``os.environ`` when None); only ``LATENTWATCH_*`` keys
                that name a field are read (``LATENTWATCH_CONFIG`` names the TOML file).
            config_file: a TOML file; ``LATENTWATCH_CONFIG`` when None.

        Raises:
            ConfigError: an unknown key in the file, or a bad value anywhere.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        file = config_file if config_file is not None else env.get(f"{ENV_PREFIX}CONFIG")
        if file:
            values.update(_read_toml(Path(file)))
        for name in _field_types():
            key = f"{ENV_PREFIX}{name.upper()}"
            if key in env:
                values[name] = _parse(name, env[key], f"environment variable {key}")
        for name, value in (flags or {}).items():
            if value is None or name not in _field_types():
                continue
            values[name] = _parse(name, value, f"--{name.replace('_', '-')}")
        return cls(**values).validate()

    def validate(self) -> ServiceConfig:
        """Check every value and the relations between them; return ``self``.

        Raises:
            ConfigError: naming the setting and the value it got.
        """
        if self.models is None:
            _fail("models", None, "is required: the model repository DIR/<model>/<version>/")
        _port("port", self.port, allow_off=False)
        _port("metrics_port", self.metrics_port, allow_off=True)
        _problem("device", self.device, device_problem(self.device))
        _choice("log_format", self.log_format, LOG_FORMATS)
        _choice("log_level", self.log_level.upper(), LOG_LEVELS)
        if self.inline_max_rows < 0:
            _fail("inline_max_rows", self.inline_max_rows, "must be 0 (never inline) or more")
        for name in ("intra_op_threads", "inter_op_threads"):
            _problem(name, getattr(self, name), onnx_threads_problem(getattr(self, name)))
        for name in ("inference_threads", "max_batch_rows", "max_queue_rows", "max_request_rows", "drift_window"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "must be at least 1")
        if self.max_message_bytes < 1024:
            _fail("max_message_bytes", self.max_message_bytes, "must be at least 1024")
        for name in ("max_batch_delay_s", "grace_s", "reload_interval_s", "reload_settle_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                _fail(name, value, "must be a finite number of seconds, 0 or more")
        if (self.tls_cert is None) != (self.tls_key is None):
            _fail("tls_cert", self.tls_cert, "and tls_key must be given together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            _fail("tls_client_ca", self.tls_client_ca, "needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_tokens_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                _fail(name, str(path), "is not a readable file")
        if self.plaintext_tokens and not self.trusted_network:
            _fail(
                "auth_tokens_file",
                str(self.auth_tokens_file),
                f"sends bearer tokens in plaintext on host {self.host!r}, where anyone on the network "
                "can read and replay them: add TLS (tls_cert and tls_key), listen on a loopback "
                "host behind a proxy that ends TLS, or set trusted_network (--trusted-network) "
                "if the network is encrypted or private",
            )
        return self

    def replace(self, **changes: Any) -> ServiceConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes).validate()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def plaintext_tokens(self) -> bool:
        """Bearer tokens are on, without TLS, on an address other machines can reach."""
        return self.auth_tokens_file is not None and not self.tls and not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ``::1``).

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _field_types() -> dict[str, FieldType]:
    """Field name -> its type (:func:`service.fields.field_types`)."""
    return field_types(ServiceConfig)


def _parse(name: str, value: Any, source: str) -> Any:
    """Coerce ``value`` (a string from the environment, or a flag/TOML value) to the field's type."""
    try:
        return coerce(_field_types()[name], value, from_text=True)
    except FieldTypeError as err:
        msg = f"{source}: {name} must be {err.expected}, got {value!r}"
        raise ConfigError(msg) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        msg = f"config file {path}: cannot read it: {err.strerror}"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as err:
        msg = f"config file {path}: not valid TOML: {err}"
        raise ConfigError(msg) from None
    if isinstance(data.get("serve"), dict):
        data = {**{k: v for k, v in data.items() if k != "serve"}, **data["serve"]}
    fields = _field_types()
    unknown = sorted(set(data) - set(fields))
    if unknown:
        msg = f"config file {path}: unknown setting(s) {unknown}; known: {sorted(fields)}"
        raise ConfigError(msg)
    return {name: _parse(name, value, f"config file {path}") for name, value in data.items()}


def _fail(name: str, value: Any, problem: str) -> None:
    msg = f"setting {name} {problem}, got {value!r}"
    raise ConfigError(msg)


def _problem(name: str, value: Any, problem: str | None) -> None:
    if problem is not None:
        _fail(name, value, problem)


def _port(name: str, value: int, *, allow_off: bool) -> None:
    low = -1 if allow_off else 0
    if not low <= value <= 65535:
        extra = " (-1 = off)" if allow_off else ""
        _fail(name, value, f"must be a TCP port from {low} to 65535{extra}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"must be one of {list(choices)}")

"""The one error hierarchy of latentwatch.

Every error a user can cause is a :class:`LatentwatchError`: it carries a message that names
the culprit (file, column, row, value) and a gRPC status code name. The command line prints
the message without a traceback; the gRPC interceptor maps ``code`` to the status code.
"""

from __future__ import annotations


class LatentwatchError(Exception):
    """Base of every expected error; ``code`` is a ``grpc.StatusCode`` member name."""

    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LatentwatchError):
    """Input rows, files or arguments that cannot be used as they are."""

    code = "INVALID_ARGUMENT"


class DataError(InvalidInput):
    """A data file that cannot be read or has no usable content."""


class ConfigError(InvalidInput):
    """A setting or config file with a bad key or value."""


class BundleError(LatentwatchError):
    """A bundle whose manifest, ONNX graph or digest is missing or inconsistent."""

    code = "FAILED_PRECONDITION"


class ModelNotFound(LatentwatchError):
    """An unknown model name or version."""

    code = "NOT_FOUND"


class ModelNotReady(LatentwatchError):
    """A model that exists but cannot take requests yet."""

    code = "UNAVAILABLE"


class ResourceExhausted(LatentwatchError):
    """A queue or size limit was reached."""

    code = "RESOURCE_EXHAUSTED"


class MissingExtra(LatentwatchError):
    """An optional dependency group is not installed."""

    code = "FAILED_PRECONDITION"

"""The one error hierarchy of latentwatch.

Every error a user can cause is a :class:`LatentwatchError`: it carries a message that names
the culprit (file, column, row, value) and a gRPC status code name. The command line prints
the message without a traceback; the gRPC interceptor maps ``code`` to the status code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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


class ShuttingDown(ModelNotReady):
    """A call that arrived after the server began to drain: retry it on another replica."""


class ResourceExhausted(LatentwatchError):
    """A queue or size limit was reached."""

    code = "RESOURCE_EXHAUSTED"


class MissingExtra(LatentwatchError):
    """An optional dependency group is not installed."""

    code = "FAILED_PRECONDITION"


# Client strings (model names, column and input names, values) can be of any length; a
# message or log line quotes them through these, so an error's size stays bounded.
QUOTE_CHARS = 64
QUOTE_ITEMS = 8


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a client string (or value), cut to ``limit`` characters with an ellipsis
    and its length; control characters come out escaped, so a log line stays one line.

    >>> quote("north")
    "'north'"
    >>> quote("x" * 100, limit=4)
    "'xxxx'… (100 characters)"
    """
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def quote_list(values: object, limit: int = QUOTE_ITEMS) -> str:
    """A list of client strings for a message: the first ``limit``, each quoted, then a count."""
    items = list(values) if not isinstance(values, list) else values
    shown = ", ".join(quote(v) for v in items[:limit])
    if len(items) > limit:
        shown += f", … ({len(items) - limit} more, {len(items)} in all)"
    return f"[{shown}]"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with the candidate closest to ``name``, or ``""`` when none is close.

    A candidate equal to ``name`` but for case wins; otherwise difflib's closest match (a
    ratio of at least 0.6). A name longer than a quoted one is not compared (bounded work).

    >>> did_you_mean("temprature", ["temperature", "load"])
    " (did you mean 'temperature'?)"
    >>> did_you_mean("Load", ["load", "power"])
    " (did you mean 'load'?)"
    """
    choices = [c for c in candidates if c != name]
    if len(name) > 4 * QUOTE_CHARS or not choices:
        return ""
    same = [c for c in choices if c.casefold() == name.casefold()]
    close = same or difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

"""Values for a settings dataclass's fields, checked against the fields' real types.

Both settings objects (``service.config.ServiceConfig`` and ``training.config.TrainSettings``)
take values from files, the environment and flags; :func:`coerce` turns one value into its
field's type or says what the field takes. The types come from :func:`typing.get_type_hints`,
so ``int | None`` is the union, not its spelling.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``pathlib.Path``, each
optionally ``| None``. A boolean is never taken for a number; an integer is a float's value.
With ``from_text``, text is parsed too (``"12"``, ``"1.5"``, ``"yes"``/``"off"``, a path; blank
text is None for an optional field), as environment variables need.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}


class FieldTypeError(ValueError):
    """A value that its field's type does not take; ``expected`` says what it takes."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclasses.dataclass(frozen=True)
class FieldType:
    """A field's type: its base type and whether it may be None."""

    base: type
    optional: bool

    @property
    def description(self) -> str:
        """What the field takes, in words: ``an integer``, ``a number``, ``true or false``, ..."""
        return _DESCRIPTIONS[self.base]


@functools.cache
def field_types(cls: type) -> dict[str, FieldType]:
    """Field name -> :class:`FieldType` of a dataclass, in field order.

    Raises:
        TypeError: a field of a type this module does not handle.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else hint
        if hint not in _DESCRIPTIONS:
            msg = f"{cls.__name__}.{field.name}: unsupported field type {hint!r}"
            raise TypeError(msg)
        out[field.name] = FieldType(hint, optional)
    return out


def coerce(kind: FieldType, value: Any, *, from_text: bool = False) -> Any:
    """``value`` as a value of ``kind``.

    Raises:
        FieldTypeError: ``kind`` does not take ``value``.
    """
    if kind.optional and (value is None or (from_text and isinstance(value, str) and not value.strip())):
        return None
    base = kind.base
    if base is bool:
        return _bool(value, from_text=from_text)
    if base in (int, float) and not isinstance(value, bool):
        if from_text and isinstance(value, str):
            try:
                value = float(value) if base is float else int(value)
            except ValueError:
                raise FieldTypeError(kind.description) from None
        if isinstance(value, int) or (base is int and isinstance(value, float) and from_text and value.is_integer()):
            return base(value)
        if base is float and isinstance(value, float):
            return value
    if base is str and isinstance(value, str):
        return value
    if base is Path and (isinstance(value, Path) or (isinstance(value, str) and from_text)):
        return Path(value).expanduser()
    raise FieldTypeError(kind.description)


def _bool(value: Any, *, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str | int):
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise FieldTypeError(_DESCRIPTIONS[bool])

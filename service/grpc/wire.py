"""Which string field of a protobuf body holds bytes that are not valid UTF-8.

The protobuf runtime refuses such a body saying only that *a* string field had bad UTF-8;
:func:`bad_utf8_field` walks the body's wire format against the message's descriptor to
name the field (``inputs[1].name``), so the refusal can say where the problem is. It runs
only on a body that already failed to parse, and gives up (None) after a bounded number
of fields, so a hostile body costs little.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

# Fields looked at before giving up: a few milliseconds of Python at most.
MAX_FIELDS = 10_000
MAX_DEPTH = 32
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _GiveUp(Exception):
    """The body is corrupt, too deep or too long to walk."""


def bad_utf8_field(descriptor: Descriptor, data: bytes) -> str | None:
    """The path of the first string field in ``data`` (a ``descriptor`` message in wire
    format) whose bytes are not valid UTF-8, e.g. ``columns.columns[2].name``; None when
    there is none, or the walk gives up (corrupt wire format, over ``MAX_FIELDS`` fields).

    A repeated field's path carries the element's index; a map entry's does not (the
    ``key`` or ``value`` follows the map's name: ``parameters.key``).
    """
    budget = [MAX_FIELDS]
    try:
        return _walk(descriptor, memoryview(data), "", budget, 0)
    except _GiveUp:
        return None


def _walk(descriptor: Descriptor, data: memoryview, prefix: str, budget: list[int], depth: int) -> str | None:
    if depth > MAX_DEPTH:
        raise _GiveUp
    seen: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        budget[0] -= 1
        if budget[0] < 0:
            raise _GiveUp
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            _, pos = _varint(data, pos)
            continue
        if wire_type in (_FIXED64, _FIXED32):
            pos += 8 if wire_type == _FIXED64 else 4
            continue
        if wire_type != _LENGTH:
            raise _GiveUp  # groups, or not protobuf at all
        size, pos = _varint(data, pos)
        if pos + size > len(data):
            raise _GiveUp
        chunk, pos = data[pos : pos + size], pos + size
        field = descriptor.fields_by_number.get(number)
        if field is None or field.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            continue  # unknown fields, bytes, packed numbers
        path = prefix + field.name
        is_map = field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        if field.is_repeated and not is_map:
            index = seen.get(number, 0)
            seen[number] = index + 1
            path += f"[{index}]"
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                str(chunk, "utf-8")
            except UnicodeDecodeError:
                return path
            continue
        found = _walk(field.message_type, chunk, path + ".", budget, depth + 1)
        if found is not None:
            return found
    return None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _GiveUp
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7

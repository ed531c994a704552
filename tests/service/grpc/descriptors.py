"""Protobuf descriptors as plain data, to compare two .proto files' wire formats."""

from __future__ import annotations

from typing import Any


def describe_messages(file: Any) -> dict[str, Any]:
    """Message full name -> field name -> (number, type, repeated, message type); and methods."""
    out: dict[str, Any] = {}

    def visit(message: Any) -> None:
        out[message.full_name] = {
            f.name: [f.number, f.type, _repeated(f), f.message_type.full_name if f.message_type else ""]
            for f in message.fields
        }
        for nested in message.nested_types:
            visit(nested)

    for message in file.message_types_by_name.values():
        visit(message)
    for service in file.services_by_name.values():
        for method in service.methods:
            out[method.full_name] = [method.input_type.full_name, method.output_type.full_name]
    return out


def _repeated(field: Any) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED

"""Settings values against their fields' real types (service/fields.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from service.config import ServiceConfig
from service.fields import FieldType, FieldTypeError, coerce, field_types


@dataclass(frozen=True)
class Example:
    flag: bool = False
    count: int = 1
    rate: float = 0.5
    name: str = "x"
    folder: Path | None = None
    limit: int | None = None


def test_types_are_read_from_the_annotations_not_their_spelling() -> None:
    assert field_types(Example) == {
        "flag": FieldType(bool, False),
        "count": FieldType(int, False),
        "rate": FieldType(float, False),
        "name": FieldType(str, False),
        "folder": FieldType(Path, True),
        "limit": FieldType(int, True),
    }
    assert field_types(ServiceConfig)["intra_op_threads"] == FieldType(int, True)
    assert field_types(ServiceConfig)["tls_cert"] == FieldType(Path, True)


def test_an_unsupported_type_is_refused() -> None:
    @dataclass
    class Odd:
        items: list[int]

    with pytest.raises(TypeError, match=r"Odd\.items: unsupported field type"):
        field_types(Odd)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("flag", True, True),
        ("count", 3, 3),
        ("rate", 2, 2.0),
        ("rate", 0.25, 0.25),
        ("name", "a", "a"),
        ("limit", None, None),
        ("folder", Path("/tmp"), Path("/tmp")),
    ],
)
def test_typed_values(field: str, value: object, expected: object) -> None:
    result = coerce(field_types(Example)[field], value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("flag", "yes", "true or false"),
        ("flag", 1, "true or false"),
        ("count", True, "an integer"),
        ("count", 2.0, "an integer"),
        ("count", "2", "an integer"),
        ("rate", False, "a number"),
        ("rate", "0.5", "a number"),
        ("name", 3, "a string"),
        ("count", None, "an integer"),
        ("folder", "/tmp", "a path"),
    ],
)
def test_strict_values_must_have_the_type(field: str, value: object, says: str) -> None:
    with pytest.raises(FieldTypeError) as err:
        coerce(field_types(Example)[field], value)
    assert err.value.expected == says


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("flag", "Yes", True),
        ("flag", "off", False),
        ("count", "12", 12),
        ("count", 4.0, 4),
        ("rate", "1e-3", 0.001),
        ("limit", " ", None),
        ("folder", "~/models", Path("~/models").expanduser()),
    ],
)
def test_text_is_parsed_when_asked(field: str, text: object, expected: object) -> None:
    assert coerce(field_types(Example)[field], text, from_text=True) == expected


@pytest.mark.parametrize(("field", "text"), [("flag", "maybe"), ("count", "1.5"), ("count", "http"), ("rate", "x")])
def test_bad_text_is_refused(field: str, text: str) -> None:
    with pytest.raises(FieldTypeError):
        coerce(field_types(Example)[field], text, from_text=True)

"""Client strings in errors and logs are quoted cut short, so that a 1 MiB model name,
thousands of unknown names or a huge value never come back whole (nor overflow gRPC's metadata
limit): the rule here; the requests that carry such strings are cases of ``test_malformed.py``.
"""

from __future__ import annotations

from service.errors import QUOTE_CHARS, quote, quote_list


def test_quote_cuts_long_strings_and_says_how_long() -> None:
    assert quote("north") == "'north'"
    assert quote("a\nb") == "'a\\nb'"
    cut = quote("z" * 1000)
    assert cut == repr("z" * QUOTE_CHARS) + "… (1000 characters)"
    assert quote_list(["a", "b"]) == "['a', 'b']"
    many = quote_list(str(i) for i in range(3000))
    assert many.endswith("… (2992 more, 3000 in all)]")
    assert len(many) < 200

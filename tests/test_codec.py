"""Unit tests for mockserver.store.codec: its results and errors are the standard library's, for every input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mockserver.store import codec

# Text with lone surrogates too (the default alphabet leaves them out).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e-3, 1e-3) | TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(TEXT, inner, max_size=4)
                      | st.dictionaries(st.integers(-3, 3) | st.booleans() | st.floats(-2, 2), inner, max_size=2),
                      max_leaves=12)


def _outcome(func: Any, arg: Any) -> tuple[Any, ...]:
    """("ok", repr of the result) or ("error", type, message): repr tells 1 from 1.0 and keeps key order."""
    try:
        return "ok", repr(func(arg))
    except Exception as exc:  # noqa: BLE001  (any error is part of the behaviour compared)
        return "error", type(exc), str(exc)


def _stdlib_dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: UTF-8 cannot carry it, so it is written as json's \uXXXX escape
        return json.dumps(value, separators=(",", ":")).encode()


@settings(max_examples=1000)
@given(VALUES)
@example(1e-05)
@example([1.5e-7, -2e-9, 1e-10, 1e16, float("nan"), float("-inf")])
@example({"deep": [[[[[[[[[[]]]]]]]]]]})
@example(2**64)
@example({1: "a", 2.5: "b", None: "c"})
@example({True: "b"})
@example("\ud800")
def test_dumps_writes_what_json_writes(value: Any) -> None:
    """Writes the same bytes as json.dumps, or fails with the same error."""
    assert _outcome(codec.dumps, value) == _outcome(_stdlib_dumps, value)


@settings(max_examples=1000)
@given(VALUES)
def test_loads_reads_what_json_writes(value: Any) -> None:
    """Reads any document json writes (NaN, huge integers, surrogates included) to the value json reads."""
    try:
        document = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return
    assert _outcome(codec.loads, document) == _outcome(json.loads, document)


@settings(max_examples=1000)
@given(st.binary(max_size=40) | st.lists(st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b'"a"', b'"\\ud800"', b"0", b"-0", b"1.5e-7", b"12345678901234567890", b"1e400",
     b"NaN", b"-Infinity", b"null", b"true", b" ", b"\xef\xbb\xbf", b"\xff", b"\x00", b"01", b"1.", b'"\xc3\xa9"']),
    max_size=12).map(b"".join))
@example(b'{"n": 99999999999999999999}')
@example(b'[1234567890123456789, -9223372036854775809]')
@example('{"a": 1}'.encode("utf-16"))
@example(b"\xef\xbb\xbf{}")
@example(b"[" * 2000 + b"]" * 2000)
def test_loads_reads_any_bytes_as_json_does(raw: bytes) -> None:
    """Reads arbitrary bytes to the value json.loads reads, or fails with json's own error."""
    assert _outcome(codec.loads, raw) == _outcome(json.loads, raw)


@pytest.mark.parametrize("value", [{"code": 200, "data": {"id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5", "s": 2.5}},
                                   ["é", "\u2028", "\x7f", "\x1f", 0.0001, -0.0, 1e22]])
def test_dumps_answers_the_usual_bodies_from_orjson(value: Any) -> None:
    """Writes ordinary bodies identically whichever library wrote them."""
    assert codec.dumps(value) == _stdlib_dumps(value)

"""JSON in and out, exactly as the standard library does it, done by orjson wherever its result is the same.

`dumps(value)` is `json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()` and `loads(raw)` is
`json.loads(raw)`, results and errors alike. orjson is several times faster but differs on a few inputs, which
are recognised cheaply and handed to `json`:

- reading: orjson turns integers beyond 64 bits into floats, so a body with a run of 19 digits goes to `json`,
  as does anything orjson refuses (NaN, Infinity, a BOM, UTF-16, lone surrogates, deep nesting).
- writing: orjson writes NaN and infinities as `null`, and floats from 1e-10 to 1e-4 its own way (`0.00001`,
  `1e-6` where `json` writes `1e-05`, `1e-06`), so an output that may hold one (it contains `null`, `0.0000`
  or a one-digit negative exponent) is written again by `json`, as is anything orjson refuses (integers beyond
  64 bits, keys that are not strings, dataclasses, dates, ...). Bodies are plain JSON values; orjson would
  also write uuid.UUID and Enum members, which the mock never puts in one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"))
_REFUSE_AS_JSON_DOES = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_SHORT_NEGATIVE_EXPONENT = re.compile(rb"[0-9]e-[1-9](?:[,}\]]|$)")  # a number ends at , } ] or the end
DIGITS_AS_NINES = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))  # a digit -> 9, the rest -> space
LONG_DIGIT_RUN = b"9" * 19  # the shortest integer literal that may not fit in 64 bits


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (no ASCII escaping), byte for byte what `json.dumps` writes."""
    try:
        out = orjson.dumps(value, option=_REFUSE_AS_JSON_DOES)
    except TypeError:  # orjson.JSONEncodeError: json may still write it, or raises its own error
        return _json(value)
    if (b"null" in out and _has_nonfinite(value)) or b"0.0000" in out or \
            (b"e-" in out and _SHORT_NEGATIVE_EXPONENT.search(out)):
        return _json(value)  # it holds a float orjson writes differently
    return out


def _json(value: Any) -> bytes:
    """What `json.dumps` writes; a text holding a lone UTF-16 surrogate (which UTF-8 cannot carry) is written
    with `\\uXXXX` escapes instead, as `json.dumps` does by default, so that writing a value never fails on it."""
    text = _ENCODER.encode(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(value).encode()


def _has_nonfinite(value: Any) -> bool:
    """Whether a NaN or an infinity (which orjson writes as null, json as NaN/Infinity) is inside `value`."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    return False


def exact_size(raw: bytes) -> bytes:
    """`raw` copied to its exact size, for bytes that are kept.

    orjson's own bytes keep the whole output buffer it grew (8 KiB for a 700-byte record), which a store
    holding a million records, or a journal holding a thousand answers, cannot afford.
    """
    return memoryview(raw).tobytes()


def pack(value: Any) -> bytes:
    """Compact JSON for the mock's own storage, where only the round trip through `loads` matters.

    orjson as it is (no byte-for-byte guard); what it refuses (integers beyond 64 bits) goes through json.
    A NaN or infinity is stored as null. The result is copied to its exact size (`exact_size`).
    """
    try:
        return exact_size(orjson.dumps(value))
    except TypeError:
        return _json(value)


def loads(raw: bytes) -> Any:
    """The value of a JSON document, as `json.loads` reads it (and its errors when it cannot)."""
    if LONG_DIGIT_RUN not in raw.translate(DIGITS_AS_NINES):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json decides: it reads some documents orjson refuses, and words its own errors
    return json.loads(raw)

"""JSON Schema -> Hypothesis: values valid against a resolved schema, or, with `adversarial=True`, valid values
that are easy to mishandle (absent optionals, nulls, unknown keys, boundary lengths and numbers, odd characters,
upper-case uuids, URLs with ports and queries, non-UTC offsets).

The generator covers the JSON Schema 2020-12 subset the specs use: type (and type lists), enum,
const, properties/required/additionalProperties, dependentRequired, if/then/else (in allOf), items,
min/maxItems, min/maxLength, minimum/maximum and their exclusive forms, pattern, format (uuid, uri,
date-time), oneOf/anyOf/allOf and not. The compiled validator checks every value it hands out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from mockserver.spec import compile_schema

__all__ = ["Schema", "from_schema"]

Schema = dict[str, Any]
TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
_BIG = 2**53  # unbounded integers stay where every JSON client (JavaScript included) reads them exactly
SPAN = 1e12  # unbounded numbers likewise stay printable without exponent surprises
# No lone surrogates anywhere: they cannot travel as JSON text. Ordinary text leaves out control, private-use
# and unassigned characters; adversarial text keeps them (NUL, bidi marks and friends are valid JSON strings).
CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Co", "Cn"))
_ODD_CHARS = st.characters(codec="utf-8")
NAMES = st.from_regex(r"[a-z][A-Za-z0-9_]{0,11}", fullmatch=True)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(CHARS, max_size=8))
_ANY_JSON = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(CHARS, max_size=6), inner, max_size=3), max_leaves=6)


@cache
def _compiled(key: str) -> Any:
    return compile_schema(json.loads(key))


def is_valid_for(schema: Any) -> Callable[[Any], bool]:
    """The compiled validator's `is_valid` (cached per schema: the same subschemas recur across operations)."""
    return _compiled(json.dumps(schema, sort_keys=True, default=str)).is_valid  # type: ignore[no-any-return]


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _fits(kind: str, kinds: list[Any]) -> bool:
    """Is `kind` allowed by `kinds`? Every integer is a number, not the other way round."""
    return kind in kinds or (kind == "integer" and "number" in kinds)


def merge(a: Schema, b: Schema) -> Schema:
    """Both schemas at once (allOf, or a oneOf branch under its parent's keywords)."""
    out = dict(a)
    for key, value in b.items():
        if key == "properties":
            mine = a.get("properties") or {}
            out[key] = {**mine, **{n: merge(mine.get(n) or {}, s) for n, s in value.items()}}
        elif key == "required":
            out[key] = list(dict.fromkeys([*(a.get(key) or ()), *value]))
        elif key == "allOf":
            out[key] = [*(a.get(key) or ()), *value]
        elif key == "type" and "type" in a:
            mine, theirs = as_list(a[key]), as_list(value)
            out[key] = list(dict.fromkeys([t for t in mine if _fits(t, theirs)] + [t for t in theirs if _fits(t, mine)]))
        else:
            out[key] = value
    return out


def flatten(schema: Schema) -> Schema:
    """Fold `allOf` into one schema; if/then pairs stay in `allOf` for the object generator to apply."""
    if "allOf" not in schema:
        return schema
    out: Schema = {k: v for k, v in schema.items() if k != "allOf"}
    conditions = []
    for part in schema["allOf"]:
        part = flatten(part)
        conditions += [{k: part[k] for k in ("if", "then", "else") if k in part}] if "if" in part else []
        out = merge(out, {k: v for k, v in part.items() if k not in ("if", "then", "else")})
    if conditions:
        out["allOf"] = [*(out.get("allOf") or ()), *conditions]
    return out


def if_then_else(schema: Schema) -> list[Schema]:
    """The if/then/else pairs that apply to a flattened schema: its own and those its allOf carried."""
    return [c for c in [schema, *(schema.get("allOf") or ())] if "if" in c]


def types_of(schema: Schema) -> list[str]:
    if "type" in schema:
        return [str(t) for t in as_list(schema["type"])]
    if {"properties", "required", "additionalProperties", "dependentRequired"} & set(schema):
        return ["object"]
    if "items" in schema:
        return ["array"]
    if {"minLength", "maxLength", "pattern", "format"} & set(schema):
        return ["string"]
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & set(schema):
        return ["number"]
    return []  # no type at all: any JSON value


def _prefer(likely: SearchStrategy[Any], other: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """`likely` three times in four; shrinks toward `other`, the ordinary case."""
    return st.integers(0, 3).flatmap(lambda i: other if i == 0 else likely)


def generate(schema: Schema, adv: bool) -> SearchStrategy[Any]:
    schema = flatten(schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])  # every value is reachable, and shrinks to the first
    for key in ("oneOf", "anyOf"):
        if key in schema:
            base = {k: v for k, v in schema.items() if k != key}
            return st.one_of([generate(merge(base, branch), adv) for branch in schema[key]])
    if "not" in schema:
        excluded = is_valid_for(schema["not"])
        return generate({k: v for k, v in schema.items() if k != "not"}, adv).filter(lambda v: not excluded(v))
    types = types_of(schema)
    if not types:
        return _ANY_JSON
    typed = [_typed(t, schema, adv) for t in types if t != "null"]
    if "null" not in types:
        return st.one_of(typed)
    if not typed:
        return st.none()
    return _prefer(st.none(), st.one_of(typed)) if adv else st.one_of(st.none(), *typed)


def _typed(kind: str, schema: Schema, adv: bool) -> SearchStrategy[Any]:
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        return _number(schema, adv, kind == "integer")
    if kind == "string":
        return _string(schema, adv)
    if kind == "array":
        low = int(schema.get("minItems", 0))
        return st.lists(generate(schema.get("items") or {}, adv), min_size=low,
                        max_size=min(int(schema.get("maxItems", low + 3)), low + 3))
    if kind == "object":
        return _object(schema, adv)
    return st.nothing()


def _number(schema: Schema, adv: bool, integer: bool) -> SearchStrategy[Any]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if integer:
        low = max([-_BIG, *([math.ceil(lo)] if lo is not None else []), *([math.floor(xlo) + 1] if xlo is not None else [])])
        high = min([_BIG, *([math.floor(hi)] if hi is not None else []), *([math.ceil(xhi) - 1] if xhi is not None else [])])
        values: SearchStrategy[Any] = st.integers(low, high)
        edges = [low, high, *([0] if low <= 0 <= high else [])]
        return _prefer(st.sampled_from(edges), values) if adv else values
    floor = max([-SPAN, *(v for v in (lo, xlo) if v is not None)])
    ceil = min([SPAN, *(v for v in (hi, xhi) if v is not None)])
    floats = st.floats(floor, ceil, exclude_min=xlo is not None and floor == xlo,
                       exclude_max=xhi is not None and ceil == xhi, allow_nan=False, allow_infinity=False)
    # JSON numbers are often written as integers (`30`, not `30.0`); clients must read both.
    whole = st.integers(math.ceil(floor), math.floor(ceil)).filter(
        lambda i: (xlo is None or i > xlo) and (xhi is None or i < xhi)) if math.ceil(floor) <= math.floor(ceil) \
        else st.nothing()
    edges = [v for v in (lo, hi) if v is not None] + ([0] if floor <= 0 <= ceil else [])
    return _prefer(st.sampled_from(edges), floats | whole) if adv and edges else floats | whole


def _string(schema: Schema, adv: bool) -> SearchStrategy[str]:
    lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
    fmt, pattern = schema.get("format"), schema.get("pattern")
    if fmt in _FORMATS or pattern:
        base = _FORMATS[fmt](adv) if fmt in _FORMATS else st.from_regex(str(pattern), fullmatch=True)
        if adv and hi is not None and fmt == "uri":  # the longest URL the spec allows, to catch short DB columns
            base = base | base.map(lambda u: u + "a" * (int(hi) - len(u)))
        return base.filter(lambda s: lo <= len(s) <= (hi if hi is not None else len(s)))
    top, chars = int(hi) if hi is not None else lo + 40, _ODD_CHARS if adv else CHARS
    text = st.text(chars, min_size=lo, max_size=top)
    if not adv:
        return text
    edges = st.sampled_from(sorted({lo, top} if hi is not None else {lo}))
    return _prefer(edges.flatmap(lambda n: st.text(chars, min_size=n, max_size=n)), text)


def _uri(adv: bool) -> SearchStrategy[str]:
    host = st.from_regex(r"[a-z][a-z0-9-]{0,14}\.example\.(com|org)", fullmatch=True)
    path = st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,12}", fullmatch=True), max_size=4).map("/".join)
    if not adv:
        return st.builds(lambda h, p: f"https://{h}/{p}", host, path)
    query = st.none() | st.text(CHARS, max_size=10).map(lambda t: "q=" + quote(t, safe=""))
    return st.builds(lambda s, h, port, p, q: f"{s}://{h}{'' if port is None else f':{port}'}/{p}"
                     f"{'' if q is None else '?' + q}", st.sampled_from(["https", "http"]),
                     host | st.sampled_from(["localhost", "127.0.0.1", "[::1]"]), st.none() | st.integers(1, 65535),
                     path, query)


def _date_time(adv: bool) -> SearchStrategy[str]:
    # Offsets other than Z, and any sub-second precision, are valid RFC 3339 that naive parsers choke on.
    zones = st.integers(-14 * 60 + 1, 14 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m))) if adv \
        else st.just(UTC)
    moments = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=zones)
    if adv:
        return moments.map(lambda d: d.isoformat().replace("+00:00", "Z"))
    return moments.map(lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


_FORMATS: dict[str, Callable[[bool], SearchStrategy[str]]] = {
    # Providers hand out version-4 ids; any version, and upper case, are valid uuids clients rarely see.
    "uuid": lambda adv: st.uuids().map(lambda u: str(u).upper()) | st.uuids().map(str) if adv
    else st.uuids(version=4).map(str),
    "uri": _uri,
    "date-time": _date_time,
}


def _object(schema: Schema, adv: bool) -> SearchStrategy[dict[str, Any]]:
    props: dict[str, Schema] = schema.get("properties") or {}
    required = list(dict.fromkeys(schema.get("required") or ()))
    extra = schema.get("additionalProperties", True)
    extra_values = generate(extra if isinstance(extra, dict) else {}, adv) if extra is not False else None
    values = {name: generate(sub, adv) for name, sub in props.items()}
    dependent: dict[str, list[str]] = schema.get("dependentRequired") or {}
    conditions = [(is_valid_for(c["if"]), c.get("then") or {}, c.get("else") or {}) for c in if_then_else(schema)]
    # Adversarial: an optional property is usually absent, which is what clients forget to handle.
    present = st.integers(0, 2).map(lambda i: i == 0) if adv else st.booleans()

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        wanted = required + [name for name in props if name not in required and draw(present)]
        for _ in range(len(props) + 1):  # dependentRequired and if/then can pull in more properties, in rounds
            for name in wanted:
                if name not in out:
                    out[name] = draw(values.get(name, _ANY_JSON))
            more = [d for key, deps in dependent.items() if key in out for d in deps]
            for holds, then, other in conditions:
                more += (then if holds(out) else other).get("required") or []
            wanted = [name for name in more if name not in out]
            if not wanted:
                break
        if adv and extra_values is not None:
            for key in draw(st.lists(NAMES.filter(lambda k: k not in props), max_size=3, unique=True)):
                out[key] = draw(extra_values)
        return out

    return build()


def from_schema(schema: Schema, *, adversarial: bool = False) -> SearchStrategy[Any]:
    """Values valid against a resolved JSON Schema (2020-12 subset the specs use)."""
    return generate(schema, adversarial).filter(is_valid_for(schema))  # the compiled validator has the last word

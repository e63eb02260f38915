"""Where a real answer or callback differs from the spec: each drift with its kind, JSON pointer and both values.

Pure functions over an `Operation` and what the provider sent. The schema walk is our own rather than a
validator's error list because a drift report needs one finding per difference, named by kind (an undocumented
key, an enum value the spec lacks, a number sent as a string), and a `oneOf` judged by its closest branch.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from contracts.referee import ContractViolation, Referee
from mockserver.request import NO_BODY, MockRequest
from mockserver.spec import CallbackDoc, Operation, compile_schema
from mockserver.validation import did_you_mean, iter_violations

# The kinds of drift, as the report names them.
KINDS = ("undocumented_status", "undocumented_code", "envelope", "missing_required", "undocumented_key",
         "type_mismatch", "enum_value", "id_shape", "content_type", "signature")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between the spec and what the provider sent."""

    kind: str
    operation: str  # `POST /api/v1/sonic/vox`
    pointer: str  # JSON pointer into the answer (or `/header/Content-Type`)
    documented: str
    received: Any
    where: str = "response"  # response | callback <name>

    @property
    def message(self) -> str:
        received = "nothing" if self.kind in ("missing_required", "envelope") and self.received is None else \
            _short(self.received)
        return f"{self.kind} at {self.pointer}: documented {self.documented}; received {received}."

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "operation": self.operation, "where": self.where, "pointer": self.pointer,
                "documented": self.documented, "received": self.received, "message": self.message}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def id_shape(value: str) -> str:
    """The shape of an id: uuid, hex32, digits or other."""
    if _UUID.match(value):
        return "uuid"
    if _HEX32.match(value):
        return "hex32"
    return "digits" if value.isdigit() else "other"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _type_fits(value: Any, types: list[str]) -> bool:
    kind = _json_type(value)
    return kind in types or (kind == "integer" and "number" in types) or (
        kind == "number" and "integer" in types and float(value).is_integer())


@functools.cache  # a handful of (format, pattern) pairs, checked on every string of every answer
def _string_validator(fmt: str | None, pattern: str | None) -> Any:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    if pattern:
        schema["pattern"] = pattern
    return compile_schema(schema)


def _merged(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `allOf` members folded in (properties and required united)."""
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = _merged(part) if isinstance(part, dict) else {}
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


class _Walk:
    """One walk of a value against a schema, collecting drifts."""

    def __init__(self, op: Operation, where: str, id_shapes: dict[str, set[str]], root_keys: tuple[str, ...]) -> None:
        self.op = op
        self.where = where
        self.id_shapes = id_shapes
        self.root_keys = root_keys  # envelope keys: their absence at the root is an envelope drift

    def drift(self, kind: str, pointer: str, documented: str, received: Any) -> Drift:
        return Drift(kind, self.op.key, pointer, documented, received, self.where)

    def walk(self, schema: Any, value: Any, pointer: str, key: str = "") -> list[Drift]:
        if not isinstance(schema, dict) or not schema:
            return []
        schema = _merged(schema)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches:
            base = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
            results = [self.walk({**base, **_merged(b)} if isinstance(b, dict) else b, value, pointer, key)
                       for b in branches]
            return min(results, key=len)  # the closest branch; the first among equals
        types = schema.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if schema.get("nullable") and "null" not in types:
            types.append("null")
        if types and not _type_fits(value, types):
            return [self.drift("type_mismatch", pointer, " or ".join(types), value)]
        if "const" in schema and value != schema["const"]:
            return [self.drift("enum_value", pointer, _short(schema["const"]), value)]
        if "enum" in schema and value not in schema["enum"]:
            return [self.drift("enum_value", pointer, "one of " + ", ".join(_short(v) for v in schema["enum"]), value)]
        if isinstance(value, str):
            return self._string(schema, value, pointer, key)
        if isinstance(value, dict):
            return self._object(schema, value, pointer)
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            found: list[Drift] = []
            for index, item in enumerate(value):
                found += self.walk(schema["items"], item, f"{pointer}/{index}", key)
            return found
        return []

    def _string(self, schema: dict[str, Any], value: str, pointer: str, key: str) -> list[Drift]:
        fmt, pattern = schema.get("format"), schema.get("pattern")
        is_id = key.lower().endswith("id")
        if (fmt or pattern) and not _string_validator(fmt, pattern).is_valid(value):
            shape = f"format {fmt}" if fmt else f"pattern {pattern}"
            return [self.drift("id_shape" if is_id else "type_mismatch", pointer, f"a string of {shape}", value)]
        if is_id and not fmt and not pattern and key in self.id_shapes and value:
            shapes = self.id_shapes[key]
            if id_shape(value) not in shapes:
                return [self.drift("id_shape", pointer, f"an id of shape {' or '.join(sorted(shapes))} "
                                   "(as the spec's examples)", value)]
        return []

    def _object(self, schema: dict[str, Any], value: dict[str, Any], pointer: str) -> list[Drift]:
        found: list[Drift] = []
        declared = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                kind = "envelope" if pointer == "" and name in self.root_keys else "missing_required"
                extra = [k for k in value if k not in declared]
                hint = did_you_mean(name, extra)
                documented = f"required key {name!r}" + (f" ({hint.strip()})" if hint else "")
                found.append(self.drift(kind, f"{pointer}/{name}", documented, None))
        extras_allowed = schema.get("additionalProperties", None) not in (None, False)
        for name, item in value.items():
            if name in declared:
                found += self.walk(declared[name], item, f"{pointer}/{name}", name)
            elif declared and not extras_allowed:
                found.append(self.drift("undocumented_key", f"{pointer}/{name}",
                                        "one of " + ", ".join(sorted(declared)), item))
        return found


def _collect_id_shapes(value: Any, into: dict[str, set[str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and key.lower().endswith("id") and item:
                into.setdefault(key, set()).add(id_shape(item))
            _collect_id_shapes(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_id_shapes(item, into)


_SHAPES: dict[int, tuple[Operation, dict[str, set[str]]]] = {}  # id(op) -> (op, shapes); the op held, so ids stay


def documented_id_shapes(op: Operation) -> dict[str, set[str]]:
    """Key -> the id shapes the operation's examples (answers and callbacks) show under it."""
    cached = _SHAPES.get(id(op))
    if cached is not None and cached[0] is op:
        return cached[1]
    shapes: dict[str, set[str]] = {}
    for doc in op.responses.values():
        _collect_id_shapes(list(doc.examples.values()), shapes)
    for cb in op.callbacks.values():
        _collect_id_shapes(list(cb.examples.values()), shapes)
    _SHAPES[id(op)] = (op, shapes)  # operations are loaded once: a handful of entries
    return shapes


def media_type(value: str | None) -> tuple[str, str | None]:
    """(media type, charset) of a Content-Type, lower-cased."""
    parts = [p.strip().lower() for p in (value or "").split(";")]
    charset = next((p.split("=", 1)[1].strip('"') for p in parts[1:] if p.startswith("charset=")), None)
    return parts[0], charset


def response_drift(op: Operation, status: int, content_type: str | None, raw: bytes) -> list[Drift]:
    """Every drift of one answer of `op`: status, Content-Type, envelope, body code, then the body by its schema."""
    provider = op.provider
    found: list[Drift] = []
    walk = _Walk(op, "response", documented_id_shapes(op), (provider.code_field, provider.message_field))
    if status not in op.responses:
        return [walk.drift("undocumented_status", "/status", "one of " + ", ".join(map(str, sorted(op.responses))),
                           status)]
    documented, charset = media_type(provider.content_type)
    received, received_charset = media_type(content_type)
    if received != documented or (charset and received_charset != charset):
        found.append(walk.drift("content_type", "/header/Content-Type", provider.content_type, content_type))
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return [*found, walk.drift("envelope", "", "a JSON body", raw[:80].decode("utf-8", "replace"))]
    doc = op.responses[status]
    if doc.schema is None:
        return found
    if provider.body_transport or status >= 400:
        if not isinstance(body, dict):
            return [*found, walk.drift("envelope", "", f"an object with {provider.code_field!r} and "
                                       f"{provider.message_field!r}", body)]
        code = body.get(provider.code_field)
        if provider.body_transport and isinstance(code, int) and code not in op.documented_codes:
            return [*found, walk.drift("undocumented_code", f"/{provider.code_field}",
                                       "one of " + ", ".join(map(str, op.documented_codes)), code)]
    return found + walk.walk(doc.schema, body, "")


def callback_drift(op: Operation, callback: CallbackDoc, raw: bytes) -> list[Drift]:
    """Every drift of one callback payload against the operation's callback schema."""
    walk = _Walk(op, f"callback {callback.name}", documented_id_shapes(op), ())
    try:
        payload = json.loads(raw)
    except ValueError:
        return [walk.drift("envelope", "", "a JSON body", raw[:80].decode("utf-8", "replace"))]
    return walk.walk(callback.schema, payload, "")


def client_violations(referee: Referee, op: Operation, req: MockRequest) -> list[ContractViolation]:
    """What the request broke, judged as the mock judges it: its validation, then the strict referee."""
    exchange = {"operation": op.operation_id,
                "violations": [v.as_dict() for v in iter_violations(op, req)],
                "request": {"query": req.query, "body": None if req.body is NO_BODY else req.body}}
    return referee.review_one(exchange)

"""Check a request against its operation: security first (and stop), then parameters, then the body.

`iter_violations` is pure: it reads the operation and the request and yields `Violation`s, each
naming the field (as a JSON pointer into the request), what was expected, and what came.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from .request import BAD_JSON, NO_BODY, MockRequest
from .spec import Operation


@dataclass(slots=True)
class Violation:
    """One way a request breaks the contract. A value (see scenarios.Outcome)."""

    kind: str  # security | parameter | body | rule
    pointer: str  # JSON pointer into the request: /header/Authorization, /query/taskId, /body/clip_id
    message: str  # one sentence: the field, what is wrong
    expected: str = ""
    received: Any = None

    @property
    def field(self) -> str:
        """The bad field as the provider's users name it (`clip_id`, `taskId`, `data.0.id`)."""
        parts = self.pointer.split("/")[2:]
        return ".".join(parts) if parts else self.pointer.split("/")[1]

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies `received`, which is only ever read (the journal hands out copies).
        return {"kind": self.kind, "pointer": self.pointer, "message": self.message, "expected": self.expected,
                "received": self.received, "field": self.field}


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """` Did you mean 'x'?` for the closest option, or "" when none is close."""
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(schema: dict[str, Any]) -> str:
    """A short phrase for what a schema accepts: 'a number >= 0', 'one of "a", "b"'."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "enum" in schema:
        return "one of " + ", ".join(_short(v) for v in schema["enum"])
    if "const" in schema:
        return f"exactly {_short(schema['const'])}"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(describe({**schema, "type": k}) for k in kind)
    words = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
             "object": "an object", "array": "an array", "null": "null"}
    text = words.get(str(kind), "a value")
    if kind == "string":
        if "format" in schema:
            text = f"a {schema['format']} string"
        limits = [f"at least {schema['minLength']} characters"] if "minLength" in schema else []
        limits += [f"at most {schema['maxLength']} characters"] if "maxLength" in schema else []
        if limits:
            text += " of " + " and ".join(limits)
        if "pattern" in schema:
            text += f" matching {schema['pattern']}"
    if kind in ("integer", "number"):
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in schema:
                text += f" {sign} {schema[key]}"
    return text


def _subschema(schema: dict[str, Any], path: list[Any]) -> dict[str, Any]:
    node: Any = schema
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return node if isinstance(node, dict) else {}


def _pointer(base: str, parts: Collection[Any]) -> str:
    return base + "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in parts)


def schema_violations(validator: Any, schema: dict[str, Any], instance: Any, base: str,
                      kind: str) -> Iterator[Violation]:
    """Turn jsonschema errors into Violations with a field, an expectation and the value received."""
    if validator.is_valid(instance):  # the usual case, and much cheaper than collecting no errors
        return
    for error in validator.iter_errors(instance):
        where = list(error.instance_path)
        parent = _subschema(schema, list(error.schema_path)[:-1])
        name = type(error.kind).__name__
        if name == "Required":
            prop = error.kind.property
            expected = describe(_subschema(parent, ["properties", prop]))
            # A required name missing next to an unknown one close to it is most likely that name misspelled.
            sent = [k for k in error.instance if k not in parent.get("properties", {})] \
                if isinstance(error.instance, dict) else []
            close = difflib.get_close_matches(prop, sent, n=1, cutoff=0.6)
            hint = f" Did you mean {prop!r} for {close[0]!r}?" if close else ""
            yield Violation(kind, _pointer(base, [*where, prop]), f"{_field(where, prop)} is required.{hint}",
                            expected)
            continue
        if name == "AdditionalProperties":
            for prop in error.kind.unexpected:
                yield Violation(kind, _pointer(base, [*where, prop]), f"{_field(where, prop)} is not allowed here.",
                                "no such property")
            continue
        label = _field(where) or "the body"
        hint = did_you_mean(error.instance, parent.get("enum", ())) if name == "Enum" and isinstance(
            error.instance, str) else ""
        yield Violation(kind, _pointer(base, where), f"{label}: {error.message}.{hint}", describe(parent),
                        error.instance)


def _field(where: list[Any], last: Any = None) -> str:
    parts = [str(p) for p in where] + ([str(last)] if last is not None else [])
    return ".".join(parts)


def _coerce_param(value: str, schema: dict[str, Any]) -> Any:
    """Query and path values arrive as text; read them as the schema's scalar type when they parse."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    for kind in kinds:
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            continue
        if kind == "boolean" and value in ("true", "false"):
            return value == "true"
    return value


def security_violations(op: Operation, req: MockRequest, known_keys: Collection[str] | None) -> list[Violation]:
    if not op.secured:
        return []
    header = req.headers.get("authorization")
    if header is None or not header.strip():
        return [Violation("security", "/header/Authorization", "Authorization header is missing.",
                          "Bearer <api key>")]
    if req.api_key is None:
        return [Violation("security", "/header/Authorization", "Invalid authorization format.",
                          "Bearer <api key>", _short(header))]
    if known_keys is not None and req.api_key not in known_keys:
        return [Violation("security", "/header/Authorization", "The API key is not valid.",
                          "a configured API key", req.api_key[:4] + "…")]
    return []


def parameter_violations(op: Operation, req: MockRequest) -> Iterator[Violation]:
    if not op.params:
        return
    sources = {"path": req.path_params, "query": req.query, "header": req.headers}
    for param in op.params:
        values = sources[param.location]
        lookup = param.name.lower() if param.location == "header" else param.name
        where = f"/{param.location}/{param.name}"
        if lookup not in values or (values[lookup] == "" and param.location == "path"):
            if param.required:
                yield Violation("parameter", where, f"{param.name} is required ({param.location} parameter).",
                                describe(param.schema))
            continue
        value = _coerce_param(values[lookup], param.schema)
        for v in schema_violations(param.validator, param.schema, value, where, "parameter"):
            message = v.message.replace("the body", param.name, 1) if v.message.startswith("the body") else v.message
            yield Violation(v.kind, v.pointer, message, v.expected, v.received)


def body_violations(op: Operation, req: MockRequest) -> Iterator[Violation]:
    if op.body_schema is None:
        return
    if req.body is NO_BODY:
        if op.body_required:
            yield Violation("body", "/body", "The request body is required.", "a JSON object")
        return
    if req.body_problems:
        for problem in req.body_problems:
            yield Violation("body", problem.pointer, problem.message, problem.expected)
        return
    if req.body is BAD_JSON:
        yield Violation("body", "/body", f"The request body is not valid JSON ({req.body_error}).", "a JSON object")
        return
    yield from schema_violations(op.body_validator, op.body_schema, req.body, "/body", "body")


def rule_violations(op: Operation, req: MockRequest) -> Iterator[Violation]:
    """Cross-field rules the spec declares in `x-mock.rules` (ones JSON Schema cannot say)."""
    for rule in op.x_mock.get("rules") or ():
        if rule.get("rule") == "range":
            yield from _range_rule(rule, req.json)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_rule(rule: dict[str, Any], body: dict[str, Any]) -> Iterator[Violation]:
    start_name, end_name, span = rule["start"], rule["end"], float(rule.get("max_span", 0)) or None
    start, end = body.get(start_name), body.get(end_name)
    if start is None and end is None:
        return
    if (start is None) != (end is None):
        missing = start_name if start is None else end_name
        yield Violation("rule", f"/body/{missing}", f"{missing} is required when "
                        f"{end_name if missing == start_name else start_name} is given: send both bounds or neither.",
                        "both bounds or neither")
        return
    if not (_is_number(start) and _is_number(end)):
        return  # the schema already reported the type
    if end <= start:
        yield Violation("rule", f"/body/{end_name}", f"{end_name} ({end}) must be greater than {start_name} ({start}).",
                        f"{end_name} > {start_name}", end)
    elif span is not None and end - start > span + 1e-9:  # 2.2..32.2 is 30 s, not 30.000000000000004
        yield Violation("rule", f"/body/{end_name}", f"The range {start_name}..{end_name} is {end - start:g} s long; "
                        f"at most {span:g} s is allowed.", f"{end_name} - {start_name} <= {span:g}", end - start)


def iter_violations(op: Operation, req: MockRequest, known_keys: Collection[str] | None = None) -> list[Violation]:
    """Every violation of `req` against `op`: security alone if it fails, else parameters then body."""
    security = security_violations(op, req, known_keys)
    if security:
        return security
    found = list(parameter_violations(op, req)) if op.params else []
    body = list(body_violations(op, req))
    found += body
    if not body and op.x_mock.get("rules"):
        found += list(rule_violations(op, req))
    return found

"""Hypothesis strategies derived from the providers' specs, for judging API clients ("Schemathesis in reverse").

Operation-level: requests (valid or broken one way), responses, callbacks, error outcomes and behaviours.
Everything here is read off the resolved schemas of `openapi/*.yaml` (through `mockserver.spec`, and the
generator in `contracts.schemas`): no field lists are written by hand, so a spec change changes what is
generated. `adversarial=True` leans toward
values that are valid but easy to mishandle: absent optionals, nulls, unknown keys, boundary lengths and
numbers, odd characters, upper-case uuids, URLs with ports and queries, non-UTC offsets.

"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from mockserver.request import MockRequest
from mockserver.scenarios import SCENARIOS, WIRE_FAULTS
from mockserver.spec import PROVIDER_SPECS, Operation, Spec, load, spec_path
from mockserver.validation import rule_violations

from .schemas import (
    CHARS,
    NAMES,
    SPAN,
    TYPES,
    Schema,
    as_list,
    flatten,
    from_schema,
    generate,
    if_then_else,
    is_valid_for,
    merge,
    types_of,
)

__all__ = [
    "Behaviour", "RequestCase", "ResponseCase", "behaviours", "callback_kinds", "callbacks", "error_outcomes",
    "from_schema", "requests", "responses",
]


# ---------------------------------------------------------------- specs

@cache
def _spec(provider: str) -> Spec:
    if provider not in PROVIDER_SPECS:
        raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDER_SPECS)}")
    return load(spec_path(provider))


def _op(provider: str, operation_id: str) -> Operation:
    spec = _spec(provider)
    if operation_id not in spec.by_id:
        raise ValueError(f"{provider} has no operation {operation_id!r}; expected one of {', '.join(spec.by_id)}")
    return spec.by_id[operation_id]


# ---------------------------------------------------------------- requests

@dataclass(frozen=True)
class RequestCase:
    """One HTTP request a client could send for an operation."""

    method: str
    path: str  # path parameters filled in, percent-encoded
    query: dict[str, str]
    headers: dict[str, str]
    body: Any | None  # None: no body at all
    path_params: dict[str, str] = field(default_factory=dict)  # the raw values in `path`
    operation_id: str = ""
    violation: str | None = None  # invalid cases: missing | wrong_type | out_of_range | bad_enum | bad_format | ...
    target: str | None = None  # invalid cases: the JSON pointer broken (/body/clip_id, /query/taskId)

    @property
    def raw_body(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()

    def as_mock_request(self) -> MockRequest:
        """The case as the mock sees it after parsing, ready for `mockserver.validation.iter_violations`."""
        return MockRequest(self.method, self.path, {k.lower(): v for k, v in self.headers.items()}, dict(self.query),
                           self.raw_body, dict(self.path_params))


def _text(value: Any) -> str:
    """A parameter value as it travels in a URL or header."""
    return value if isinstance(value, str) else json.dumps(value)


def _read_param(text: str, schema: Schema) -> Any:
    """Parameters arrive as text; the mock reads them as the schema's scalar type when they parse."""
    for kind in types_of(schema):
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                return float(text)
        except ValueError:
            continue
        if kind == "boolean" and text in ("true", "false"):
            return text == "true"
    return text


def _auth(op: Operation) -> tuple[str, str]:
    """(header, scheme) of the operation's security scheme; the scheme is "" for a bare API-key header."""
    schemes = ((_spec(op.provider.name).document.get("components") or {}).get("securitySchemes") or {}).values()
    for scheme in schemes:
        if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
            return str(scheme["name"]), ""
    return "Authorization", "Bearer"


def _apply_limits(op: Operation, body: dict[str, Any], adv: bool, draw: st.DrawFn) -> dict[str, Any]:
    """Keep to `x-mock.limits` (a field's first applicable limit), so valid requests are not answered 413."""
    decided: set[str] = set()
    for rule in op.x_mock.get("limits") or ():
        name, when = rule["field"], rule.get("when") or {}
        if name in decided or not all(body.get(k) in as_list(v) for k, v in when.items()):
            continue
        decided.add(name)
        value, limit = body.get(name), int(rule["max"])
        if isinstance(value, str) and (len(value) > limit or (adv and value and draw(st.booleans()))):
            body = {**body, name: (value * limit)[:limit]}  # adversarial: exactly at the limit
    return body


def _apply_rules(op: Operation, body: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    """Build bodies that keep `x-mock.rules` (the VOX range: end after start, at most max_span apart)."""
    for rule in op.x_mock.get("rules") or ():
        if rule.get("rule") == "range" and rule["start"] in body and rule["end"] in body:
            span = float(rule.get("max_span") or 0) or SPAN
            start = body[rule["start"]]
            length = draw(st.sampled_from([span, int(span)]) | st.floats(0, span, exclude_min=True)
                          | st.integers(1, max(1, int(span))))
            body = {**body, rule["end"]: start + length}
    return body


def _valid_request(op: Operation, adv: bool) -> SearchStrategy[RequestCase]:
    params = {p.name: generate(p.schema, adv).filter(p.validator.is_valid) for p in op.params}
    body = from_schema(op.body_schema, adversarial=adv) if op.body_schema is not None else st.none()
    header, scheme = _auth(op)
    key = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
    if scheme:  # adversarial: the scheme name is case-insensitive (RFC 7235)
        names = st.sampled_from([scheme, scheme.lower(), scheme.upper()]) if adv else st.just(scheme)
        key = st.builds(lambda n, k: f"{n} {k}", names, key)

    @st.composite
    def build(draw: st.DrawFn) -> RequestCase:
        found: dict[str, dict[str, str]] = {"path": {}, "query": {}, "header": {}}
        for p in op.params:
            if p.required or draw(st.booleans()):
                found[p.location][p.name] = _text(draw(params[p.name]))
        headers = dict(found["header"])
        if op.secured:
            headers[header] = draw(key)
        value = draw(body) if op.body_schema is not None and (op.body_required or draw(st.booleans())) else None
        if isinstance(value, dict):
            value = _apply_limits(op, _apply_rules(op, value, draw), adv, draw)
        if value is not None:
            headers["Content-Type"] = "application/json"
        path = op.path
        for name, text in found["path"].items():
            path = path.replace("{" + name + "}", quote(text, safe=""))
        return RequestCase(op.method, path, found["query"], headers, value, found["path"], op.operation_id)

    # Rules live in mockserver; asking it keeps the kit and the mock in step on what a rule means. The body is
    # checked again because fitting a rule or a limit rewrites fields after the schema generator made them.
    body_ok = op.body_validator.is_valid if op.body_validator is not None else (lambda _: True)
    return build().filter(lambda case: (case.body is None or body_ok(case.body))
                          and not list(rule_violations(op, case.as_mock_request())))


def _of_type(kind: str) -> SearchStrategy[Any]:
    return {"null": st.none(), "boolean": st.booleans(), "integer": st.integers(-1000, 1000),
            "number": st.floats(-1000, 1000).filter(lambda f: not f.is_integer()),
            "string": st.text(CHARS, max_size=10), "array": st.lists(st.integers(), max_size=2),
            "object": st.dictionaries(NAMES, st.integers(), max_size=2)}[kind]


def _bad_values(schema: Schema, as_text: bool = False) -> list[tuple[str, SearchStrategy[Any]]]:
    """Each way one value can break `schema`: (kind, values that do, and no other way where avoidable)."""
    schema = flatten(schema)
    found: list[tuple[str, SearchStrategy[Any]]] = []
    fixed = [schema["const"]] if "const" in schema else list(schema.get("enum") or ())
    allowed = set(types_of(schema)) if "type" in schema else {_json_type(v) for v in fixed}
    allowed |= {"integer"} if "number" in allowed else set()
    if allowed and not (as_text and "string" in allowed):  # in a URL every value is text
        found.append(("wrong_type", st.sampled_from([t for t in TYPES if t not in allowed]).flatmap(_of_type)))
    same_type = st.one_of([_of_type(t) for t in sorted(allowed or {"string"})])
    if fixed:
        found.append(("bad_enum", same_type.filter(lambda v: v not in fixed)))
    if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & set(schema):
        numbers = st.integers(-10**6, 10**6) | (st.floats(-1e6, 1e6) if "integer" not in allowed else st.nothing())
        found.append(("out_of_range", numbers))
    if schema.get("minLength", 0) > 0:
        found.append(("out_of_range", st.text(CHARS, max_size=int(schema["minLength"]) - 1)))
    if "maxLength" in schema:
        size = int(schema["maxLength"]) + 1
        found.append(("out_of_range", st.text(CHARS, min_size=size, max_size=size + 4)))
    if "format" in schema or "pattern" in schema:
        found.append(("bad_format", st.text(CHARS, max_size=20)))
    invalid = is_valid_for(schema)
    return [(kind, values.filter(lambda v: not invalid(v))) for kind, values in found]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "integer" if isinstance(value, int) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _required_now(schema: Schema, body: dict[str, Any]) -> list[str]:
    """The body fields the schema requires for this body: required, dependentRequired and if/then."""
    schema = flatten(schema)
    found = list(schema.get("required") or ())
    found += [d for key, deps in (schema.get("dependentRequired") or {}).items() if key in body for d in deps]
    for c in if_then_else(schema):
        found += ((c.get("then") if is_valid_for(c["if"])(body) else c.get("else")) or {}).get("required") or []
    return list(dict.fromkeys(n for n in found if n in body))


# The ways an invalid request breaks the spec, simplest first: invalid cases shrink toward a missing field.
_VIOLATIONS = ("missing", "wrong_type", "out_of_range", "bad_enum", "bad_format", "unknown_property", "rule",
               "no_body", "security")


def _invalid_request(op: Operation, adv: bool) -> SearchStrategy[RequestCase]:
    header, scheme = _auth(op)
    valid, schema = _valid_request(op, adv), flatten(op.body_schema or {})
    props: dict[str, Schema] = schema.get("properties") or {}
    # Built once: how each parameter and body field can go wrong does not depend on the case at hand.
    bad_params = {p.name: [(kind, values.map(_text).filter(_param_breaks(p.validator, p.schema)))
                           for kind, values in _bad_values(p.schema, as_text=True)] for p in op.params}
    bad_fields = {name: _bad_values(sub) for name, sub in props.items()}

    @st.composite
    def build(draw: st.DrawFn) -> RequestCase:
        case = draw(valid)
        # Each option: (kind, the pointer it breaks, values that break it, how a value goes into the case).
        options: list[tuple[str, str, SearchStrategy[Any], Callable[[Any], RequestCase]]] = []
        if op.secured:
            rest = {k: v for k, v in case.headers.items() if k != header}
            options.append(("security", f"/header/{header}", st.none(), lambda _: replace(case, headers=rest)))
            if scheme:
                options.append(("security", f"/header/{header}", st.sampled_from(["Basic abc", scheme, f"{scheme} a b"]),
                                lambda h: replace(case, headers={**rest, header: h})))
        for p in op.params:
            if p.name not in {"path": case.path_params, "query": case.query, "header": case.headers}[p.location]:
                continue
            target, put = f"/{p.location}/{p.name}", _param_setter(op, case, p.location, p.name)
            if p.required:
                options.append(("missing", target, st.none(), put))
            options += [(kind, target, values, put) for kind, values in bad_params[p.name]]
        body = case.body
        if body is not None and op.body_required:
            options.append(("no_body", "/body", st.none(), lambda _: replace(case, body=None)))
        if isinstance(body, dict):
            for name in _required_now(schema, body):
                options.append(("missing", f"/body/{name}", st.just(_ABSENT), _body_setter(case, name)))
            for name in body:
                options += [(kind, f"/body/{name}", values, _body_setter(case, name))
                            for kind, values in bad_fields.get(name, ())]
            if schema.get("additionalProperties") is False:
                options.append(("unknown_property", "/body", NAMES.filter(lambda k: k not in props),
                                lambda k: replace(case, body={**body, k: 1})))
            for rule in op.x_mock.get("rules") or ():
                if rule.get("rule") == "range" and rule["start"] in body:
                    ends = _bad_ends(body[rule["start"]], float(rule.get("max_span") or 0))
                    options.append(("rule", f"/body/{rule['end']}", ends, _body_setter(case, rule["end"])))
        if not options:
            raise ValueError(f"{op.operation_id} has nothing a request can get wrong")
        # The kind first, then a field: else the many fields of a large body would crowd out the rarer kinds.
        kinds = sorted({kind for kind, _, _, _ in options}, key=_VIOLATIONS.index)
        kind = draw(st.sampled_from(kinds))
        same = [o for o in options if o[0] == kind]
        _, target, values, put = same[draw(st.integers(0, len(same) - 1))]
        return replace(put(draw(values)), violation=kind, target=target)

    return build()


_ABSENT: Any = object()  # a body field to remove


def _bad_ends(start: Any, span: float) -> SearchStrategy[Any]:
    """Range ends that break the range rule alone: at the start, or past the longest span allowed."""
    return st.just(start) | (st.integers(1, 100).map(lambda d: start + span + d) if span else st.nothing())


def _body_setter(case: RequestCase, name: str) -> Callable[[Any], RequestCase]:
    def put(value: Any) -> RequestCase:
        body: dict[str, Any] = case.body if isinstance(case.body, dict) else {}
        rest = {k: v for k, v in body.items() if k != name}
        return replace(case, body=rest if value is _ABSENT else {**rest, name: value})
    return put


def _param_setter(op: Operation, case: RequestCase, location: str, name: str) -> Callable[[Any], RequestCase]:
    return lambda text: _with_param(op, case, location, name, text)


def _param_breaks(validator: Any, schema: Schema) -> Callable[[str], bool]:
    """Does this text break the parameter once the mock reads it (as the schema's scalar type)?"""
    return lambda text: not validator.is_valid(_read_param(text, schema))


def _with_param(op: Operation, case: RequestCase, location: str, name: str, text: str | None) -> RequestCase:
    """`case` with one parameter set to `text`, or removed (None)."""
    def edit(values: dict[str, str]) -> dict[str, str]:
        rest = {k: v for k, v in values.items() if k != name}
        return rest if text is None else {**rest, name: text}

    if location == "query":
        return replace(case, query=edit(case.query))
    if location == "header":
        return replace(case, headers=edit(case.headers))
    path_params = {**case.path_params, name: text or ""}  # an empty segment is how a path omits a parameter
    path = op.path
    for key, value in path_params.items():
        path = path.replace("{" + key + "}", quote(value, safe=""))
    return replace(case, path=path, path_params=path_params)


@cache
def requests(provider: str, operation_id: str, *, valid: bool = True,
             adversarial: bool = False) -> SearchStrategy[RequestCase]:
    """Requests for one operation: valid ones pass the mock's validation; invalid ones break one thing."""
    op = _op(provider, operation_id)
    return _valid_request(op, adversarial) if valid else _invalid_request(op, adversarial)


# ---------------------------------------------------------------- responses and callbacks

@dataclass(frozen=True)
class ResponseCase:
    """One answer the provider could give: what a client under test must cope with."""

    status: int  # the HTTP status
    headers: dict[str, str]
    body: Any  # None: no body
    code: int  # the provider's outcome code: the HTTP status, or the body code (api.box)


def _success(op: Operation, code: int) -> bool:
    return code == 200 if op.provider.body_transport else 200 <= code < 300


def _response_schema(op: Operation, status: int, code: int) -> Schema | None:
    """The status's schema, narrowed to `code`: the provider's code field holds it, and fields the
    spec's example for that code shows as null (api.box errors' `data`) are null."""
    schema = op.responses[status].schema
    if schema is None:
        return None
    field_name, props = op.provider.code_field, dict(schema.get("properties") or {})
    pinned = props.get(field_name) or {}
    plain_integer = types_of(pinned) == ["integer"] and not {"const", "enum"} & set(pinned)
    if field_name in props and (op.provider.body_transport or plain_integer):
        props[field_name] = {**pinned, "const": code}
    example = op.example_for_code(code)
    if op.provider.body_transport and not _success(op, code) and example and isinstance(example[2], dict):
        props.update({k: {"type": "null"} for k, v in example[2].items() if v is None and k in props})
    return {**schema, "properties": props}


@cache
def responses(provider: str, operation_id: str, status: int | None = None, *, code: int | None = None,
              adversarial: bool = False) -> SearchStrategy[ResponseCase]:
    """Responses the provider may send for one operation: all outcomes, or one status or body code."""
    op = _op(provider, operation_id)
    if op.provider.body_transport:
        if status not in (None, *op.responses):
            raise ValueError(f"{provider} answers every outcome with HTTP {sorted(op.responses)}; "
                             f"choose the outcome with code= (one of {op.documented_codes})")
        pairs = [(s, c) for s in ([status] if status else sorted(op.responses)) for c in op.documented_codes]
    else:
        if status is not None and code is not None and status != code:
            raise ValueError(f"{provider} sends its code as the HTTP status; status={status} and code={code} differ")
        pairs = [(s, s) for s in sorted(op.responses)]
    chosen = [(s, c) for s, c in pairs if (code is None or c == code) and (op.provider.body_transport or
                                                                           status is None or s == status)]
    if not chosen:
        raise ValueError(f"{operation_id} documents no outcome status={status} code={code}; "
                         f"documented: {op.documented_codes}")
    return st.one_of([_response(op, s, c, adversarial) for s, c in chosen])


def _response(op: Operation, status: int, code: int, adv: bool) -> SearchStrategy[ResponseCase]:
    doc, schema = op.responses[status], _response_schema(op, status, code)
    body = st.none() if schema is None else from_schema(schema, adversarial=adv)
    headers = st.fixed_dictionaries({name: generate(h.get("schema") or {"type": "string"}, adv).map(_text)
                                     for name, h in doc.headers.items()})
    return st.builds(lambda b, h: ResponseCase(status, {**h, **({"Content-Type": "application/json"} if b is not None
                                                                 else {})}, b, code), body, headers)


def _branches(provider: str, operation_id: str) -> list[tuple[str, Schema, Any]]:
    """(kind, schema, validator of the whole callback) per oneOf/anyOf branch of each callback."""
    found = []
    for cb in _op(provider, operation_id).callbacks.values():
        parts = cb.schema.get("oneOf") or cb.schema.get("anyOf")
        base = {k: v for k, v in cb.schema.items() if k not in ("oneOf", "anyOf")}
        for index, part in enumerate(parts or [{}]):
            branch = merge(base, part)
            found.append((_label(cb.name, index, branch, cb.examples), branch, cb.validator))
    return found


def _label(name: str, index: int, branch: Schema, examples: dict[str, Any]) -> str:
    """A branch's kind: its title's first word, else the first example it alone accepts, else name.index."""
    if branch.get("title"):
        return str(branch["title"]).split()[0]
    ok = is_valid_for(branch)
    return next((example for example, value in examples.items() if ok(value)), f"{name}.{index}")


def _pin(schema: Schema, value: Any, depth: int = 3) -> Schema | None:
    """`schema` with the first property whose const/enum holds `value` fixed to it (and required), if any."""
    schema = flatten(schema)
    for name, sub in (schema.get("properties") or {}).items():
        sub = flatten(sub)
        if sub.get("const", object()) == value or value in (sub.get("enum") or ()):
            narrowed = {**sub, "const": value}
        elif depth > 1 and (deeper := _pin(sub, value, depth - 1)) is not None:
            narrowed = deeper
        else:
            continue
        required = list(dict.fromkeys([*(schema.get("required") or ()), name]))
        return {**schema, "properties": {**schema["properties"], name: narrowed}, "required": required}
    return None


def callback_kinds(provider: str, operation_id: str) -> tuple[str, ...]:
    """The kinds `callbacks()` accepts for an operation: one per oneOf branch of its callbacks."""
    return tuple(kind for kind, _, _ in _branches(provider, operation_id))


@cache
def callbacks(provider: str, operation_id: str, kind: str | None = None, *,
              adversarial: bool = False) -> SearchStrategy[Any]:
    """Callback payloads; `kind` picks a branch (`split_stem`) or a value it holds (`complete`, `song.failed`)."""
    branches = _branches(provider, operation_id)
    if not branches:
        raise ValueError(f"{operation_id} documents no callbacks")
    chosen = [(schema, v) for label, schema, v in branches if kind in (None, label)]
    if not chosen and kind is not None:
        chosen = [(pinned, v) for _, schema, v in branches if (pinned := _pin(schema, kind)) is not None]
    if not chosen:
        raise ValueError(f"{operation_id} has no callback kind {kind!r}; expected one of "
                         f"{', '.join(k for k, _, _ in branches)} or a value one of them holds")
    return st.one_of([from_schema(schema, adversarial=adversarial).filter(v.is_valid) for schema, v in chosen])


# ---------------------------------------------------------------- outcomes and behaviours

def _error_codes(op: Operation) -> list[int]:
    return [c for c in op.documented_codes if not _success(op, c)]


def error_outcomes(provider: str, operation_id: str) -> SearchStrategy[int]:
    """The operation's documented non-success codes (HTTP statuses, or api.box body codes)."""
    return st.sampled_from(_error_codes(_op(provider, operation_id)))


@dataclass(frozen=True)
class Behaviour:
    """How the provider behaves for one call, as the conformance driver sets it up on the mock."""

    kind: str  # normal | code | wire_fault | scenario
    value: int | str | None = None

    def fault(self, operation: str, times: int = 1) -> dict[str, Any] | None:
        """The `POST /__mock/faults` body that makes the mock behave so, or None for normal."""
        return None if self.kind == "normal" else {"operation": operation, self.kind: self.value, "times": times}

    def prefer(self) -> str | None:
        """The `Prefer:` header value that asks for this behaviour on one request, where one exists."""
        return f"{self.kind}={self.value}" if self.kind in ("code", "scenario") else None


def _ops(provider: str | None, operation_id: str | None) -> Iterable[Operation]:
    if operation_id is not None:
        if provider is None:
            raise ValueError("operation_id needs provider")
        return [_op(provider, operation_id)]
    return [op for name in ([provider] if provider else PROVIDER_SPECS) for op in _spec(name).operations]


@cache
def behaviours(provider: str | None = None, operation_id: str | None = None) -> SearchStrategy[Behaviour]:
    """One provider behaviour for one call: mostly normal, else a documented error, a wire fault or a
    callback scenario; shrinks toward normal."""
    ops = list(_ops(provider, operation_id))
    codes = sorted({c for op in ops for c in _error_codes(op)} | (
        {c for op in ops for c in op.provider.outcomes.values()} if operation_id is None else set()))
    choices = [st.just(Behaviour("normal")), st.sampled_from(codes).map(lambda c: Behaviour("code", c)),
               st.sampled_from(WIRE_FAULTS).map(lambda w: Behaviour("wire_fault", w))]
    if any(op.callbacks for op in ops):  # a scenario only shapes the callbacks of a task the call creates
        choices.append(st.sampled_from(SCENARIOS).map(lambda s: Behaviour("scenario", s)))
    weights = [6, 2, 1, 1][: len(choices)]
    slots = [i for i, w in enumerate(weights) for _ in range(w)]  # slot 0 is normal, so shrinking lands there
    return st.integers(0, len(slots) - 1).flatmap(lambda i: choices[slots[i]])

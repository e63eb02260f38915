"""Load an OpenAPI 3.1 document into resolved Operation records.

This is the only module that knows OpenAPI's layout: everything else reads `Spec`, `Operation`,
`ResponseDoc` and `CallbackDoc`. Validators are compiled here, once, at load time.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

PROVIDER_SPECS = ("musicapi", "apibox")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class SpecError(ValueError):
    """A spec file cannot be served: it is malformed or lacks what the mock needs."""


def spec_path(name: str) -> Path:
    """Return the path of a bundled spec (`musicapi`, `apibox`, `control`)."""
    checkout = Path(__file__).resolve().parent.parent / "openapi" / f"{name}.yaml"
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("mockserver.openapi").joinpath(f"{name}.yaml")))


def compile_schema(schema: Any) -> Any:
    """Compile a JSON Schema (2020-12, formats checked) into a reusable validator."""
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def resolve_refs(node: Any, root: dict[str, Any], _seen: tuple[str, ...] = ()) -> Any:
    """Inline every local `$ref` (`#/...`); sibling keys of a `$ref` override the target's."""
    if isinstance(node, list):
        return [resolve_refs(item, root, _seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node and isinstance(node["$ref"], str):
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise SpecError(f"$ref {ref!r} is not local; only '#/...' references are supported.")
        if ref in _seen:
            raise SpecError(f"$ref {ref!r} is circular; the mock needs finite schemas.")
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                target = target[part]
            except (KeyError, TypeError):
                raise SpecError(f"$ref {ref!r} points nowhere.") from None
        resolved = resolve_refs(target, root, (*_seen, ref))
        siblings = {k: resolve_refs(v, root, _seen) for k, v in node.items() if k != "$ref"}
        return {**resolved, **siblings} if isinstance(resolved, dict) else resolved
    return {k: resolve_refs(v, root, _seen) for k, v in node.items()}


@dataclass(frozen=True, slots=True)
class Provider:
    """Provider-wide facts from the spec's `x-mock-provider` block."""

    name: str
    transport: str  # "status": the HTTP status is the code; "body": HTTP 200 with the code in the body
    code_field: str
    message_field: str
    messages: dict[int, str]
    costs: dict[str, float]
    outcomes: dict[str, int]  # real cause (credits, rate_limit, maintenance, ...) -> documented code
    content_type: str = "application/json"  # the Content-Type of its JSON answers, as the real service labels them

    @property
    def body_transport(self) -> bool:
        return self.transport == "body"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # path | query | header
    required: bool
    schema: dict[str, Any]
    validator: Any


@dataclass(frozen=True, slots=True)
class ResponseDoc:
    status: int
    schema: dict[str, Any] | None
    validator: Any | None
    examples: dict[str, Any]
    headers: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CallbackDoc:
    name: str
    expression: str  # e.g. {$request.body#/callBackUrl}
    schema: dict[str, Any]
    validator: Any
    examples: dict[str, Any]

    @property
    def url_field(self) -> str | None:
        """The request-body field that carries the callback URL, if the expression names one."""
        return _body_field(self.expression)


@functools.cache  # a handful of expressions, read on every call that takes a callback URL
def _body_field(expression: str) -> str | None:
    match = re.fullmatch(r"\{\$request\.body#/([^}]+)\}", expression)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Operation:
    provider: Provider
    method: str
    path: str
    operation_id: str
    params: tuple[Param, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    body_validator: Any | None
    body_examples: dict[str, Any]
    secured: bool
    responses: dict[int, ResponseDoc]
    callbacks: dict[str, CallbackDoc]
    x_mock: dict[str, Any]
    pattern: re.Pattern[str] | None = field(default=None)

    @property
    def key(self) -> str:
        """The operation as users name it: `POST /api/v1/generate`."""
        return f"{self.method} {self.path}"

    @property
    def action(self) -> str | None:
        return self.x_mock.get("action")

    @cached_property
    def documented_codes(self) -> tuple[int, ...]:
        """Every outcome code the spec documents for this operation, in the provider's transport."""
        if not self.provider.body_transport:
            return tuple(sorted(self.responses))
        codes: set[int] = set()
        for doc in self.responses.values():
            field_schema = ((doc.schema or {}).get("properties") or {}).get(self.provider.code_field) or {}
            codes.update(int(c) for c in field_schema.get("enum", ()))
            if "const" in field_schema:
                codes.add(int(field_schema["const"]))
        return tuple(sorted(codes))

    def success_status(self) -> int:
        return min((s for s in self.responses if 200 <= s < 300), default=200)

    def examples(self) -> dict[str, tuple[int, Any]]:
        """Every named response example: name -> (HTTP status, body)."""
        found: dict[str, tuple[int, Any]] = {}
        for status, doc in sorted(self.responses.items()):
            for name, value in doc.examples.items():
                found.setdefault(name, (status, value))
        return found

    def example_for_code(self, code: int) -> tuple[str, int, Any] | None:
        """The first named example documenting `code`: (name, HTTP status, body)."""
        for name, (status, body) in self.examples().items():
            body_code = body.get(self.provider.code_field) if isinstance(body, dict) else None
            if (self.provider.body_transport and body_code == code) or (
                not self.provider.body_transport and status == code
            ):
                return name, status, body
        return None

    def message_for(self, code: int) -> str:
        """The provider's message for `code` on this operation: a documented example's, else the default."""
        found = self.example_for_code(code)
        if found and isinstance(found[2], dict) and isinstance(found[2].get(self.provider.message_field), str):
            return str(found[2][self.provider.message_field])
        return self.provider.messages.get(code, f"Error {code}")


@dataclass(frozen=True)
class Spec:
    """One provider's spec: its facts and its operations."""

    provider: Provider
    operations: tuple[Operation, ...]
    document: dict[str, Any]
    source: str

    @cached_property
    def by_id(self) -> dict[str, Operation]:
        return {op.operation_id: op for op in self.operations}


def _media_schema(content: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    media = (content or {}).get("application/json") or next(iter((content or {}).values()), None) or {}
    examples = {name: ex.get("value") for name, ex in (media.get("examples") or {}).items() if "value" in ex}
    if not examples and "example" in media:
        examples = {"default": media["example"]}
    return media.get("schema"), examples


def _path_pattern(path: str) -> re.Pattern[str] | None:
    if "{" not in path:
        return None
    parts = re.split(r"(\{[^}]+\})", path)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def _provider(document: dict[str, Any], source: str) -> Provider:
    block = document.get("x-mock-provider")
    if not isinstance(block, dict) or "name" not in block:
        raise SpecError(f"{source}: the root needs an 'x-mock-provider' block with at least 'name'.")
    transport = block.get("transport", "status")
    if transport not in ("status", "body"):
        raise SpecError(f"{source}: x-mock-provider.transport is {transport!r}; expected 'status' or 'body'.")
    return Provider(
        name=str(block["name"]),
        transport=transport,
        code_field=str(block.get("code_field", "code")),
        message_field=str(block.get("message_field", "message")),
        messages={int(k): str(v) for k, v in (block.get("messages") or {}).items()},
        costs={str(k): float(v) for k, v in (block.get("costs") or {}).items()},
        outcomes={str(k): int(v) for k, v in (block.get("outcomes") or {}).items()},
        content_type=str(block.get("content_type", "application/json")),
    )


def _operation(provider: Provider, method: str, path: str, raw: dict[str, Any], path_item: dict[str, Any],
               document: dict[str, Any]) -> Operation:
    params = []
    for p in [*(path_item.get("parameters") or []), *(raw.get("parameters") or [])]:
        if p.get("in") not in ("path", "query", "header"):
            continue
        schema = p.get("schema") or {}
        params.append(Param(p["name"], p["in"], bool(p.get("required") or p["in"] == "path"), schema,
                            compile_schema(schema)))
    body = raw.get("requestBody") or {}
    body_schema, body_examples = _media_schema(body.get("content"))
    responses: dict[int, ResponseDoc] = {}
    for status, resp in (raw.get("responses") or {}).items():
        if not str(status).isdigit():
            continue
        schema, examples = _media_schema(resp.get("content"))
        responses[int(status)] = ResponseDoc(int(status), schema, compile_schema(schema) if schema else None,
                                             examples, dict(resp.get("headers") or {}))
    callbacks: dict[str, CallbackDoc] = {}
    for name, cb in (raw.get("callbacks") or {}).items():
        for expression, cb_item in cb.items():
            post = cb_item.get("post") or {}
            schema, examples = _media_schema((post.get("requestBody") or {}).get("content"))
            if schema:
                callbacks[name] = CallbackDoc(name, expression, schema, compile_schema(schema), examples)
    security = raw.get("security", document.get("security") or [])
    return Operation(
        provider=provider,
        method=method.upper(),
        path=path,
        operation_id=str(raw.get("operationId") or f"{method}_{path}"),
        params=tuple(params),
        body_schema=body_schema,
        body_required=bool(body.get("required")),
        body_validator=compile_schema(body_schema) if body_schema else None,
        body_examples=body_examples,
        secured=bool(security) and not any(req == {} for req in security),  # {} makes it optional
        responses=responses,
        callbacks=callbacks,
        x_mock=dict(raw.get("x-mock") or {}),
        pattern=_path_pattern(path),
    )


def from_dict(document: dict[str, Any], source: str = "<dict>") -> Spec:
    """Build a Spec from a parsed OpenAPI document; every loader funnels into this."""
    if not str(document.get("openapi", "")).startswith("3."):
        raise SpecError(f"{source}: 'openapi' is {document.get('openapi')!r}; expected a 3.x version.")
    provider = _provider(document, source)
    resolved = resolve_refs(document, document)
    operations = []
    for path, item in (resolved.get("paths") or {}).items():
        for method in _HTTP_METHODS:
            if method in item:
                operations.append(_operation(provider, method, path, item[method], item, resolved))
    return Spec(provider, tuple(operations), resolved, source)


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)  # libyaml's parser: several times faster, when PyYAML has it


def _parse_yaml(text: str) -> Any:
    """`yaml.safe_load`, parsed by libyaml when available; a document libyaml rejects is read again by PyYAML's
    own parser, which reads what only it accepts and words the errors."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def load(path: str | Path) -> Spec:
    """Read a spec file (YAML or JSON)."""
    path = Path(path)
    try:
        document = _parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise SpecError(f"{path}: is not a mapping at the top level.")
    return from_dict(document, str(path))


def add_examples(specs: list[Spec], path: str | Path) -> int:
    """Add an overlay's named examples (`stemmock examples import`) to the operations of `specs`; returns how many.

    The overlay is `{examples: {operationId: {name: {status, value, ...}}}}`; an unknown operation, an
    undocumented status or a name the spec already uses stops loading with a SpecError naming it.
    """
    path = Path(path)
    try:
        overlay = _parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(overlay, dict) or not isinstance(overlay.get("examples"), dict):
        raise SpecError(f"{path}: has no 'examples' mapping; expected the output of `stemmock examples import`.")
    operations = {op.operation_id: op for spec in specs for op in spec.operations}
    added = 0
    for operation_id, named in overlay["examples"].items():
        op = operations.get(str(operation_id))
        if op is None:
            close = difflib.get_close_matches(str(operation_id), list(operations), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"{path}: {operation_id!r} is not an operation of the specs; expected an "
                            f"operationId.{hint}")
        for name, entry in (named or {}).items():
            status = entry.get("status") if isinstance(entry, dict) else None
            if status not in op.responses or "value" not in entry:
                raise SpecError(f"{path}: example {name!r} of {operation_id} has status {status!r}; expected one the "
                                f"spec documents ({', '.join(map(str, sorted(op.responses)))}) and a 'value'.")
            if str(name) in op.examples():
                raise SpecError(f"{path}: example {name!r} of {operation_id} is already named by the spec; expected a "
                                "new name.")
            op.responses[int(status)].examples[str(name)] = entry["value"]
            added += 1
    return added

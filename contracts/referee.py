"""The strict referee: every request a client sent, judged against the specs.

It reads the mock's journal. Besides the mock's own validation (which, like the providers, ignores
unknown fields), it flags unknown body fields and query parameters with "did you mean …?", and requests
to paths no provider has.

What the real API accepts is never a violation, even where one source frowns on it: a value the spec marks
with `x-mock-notes` (a model sunoapi.org calls deprecated) gives a `ContractNote`, from `Referee.notes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mockserver.spec import Operation, Spec
from mockserver.validation import did_you_mean


@dataclass(frozen=True, slots=True)
class ContractViolation:
    """One broken promise: a stable title and a specific, readable detail."""

    title: str
    detail: str
    operation: str | None = None
    pointer: str | None = None

    def __str__(self) -> str:
        where = " ".join(p for p in (self.operation, self.pointer) if p)
        return f"{self.title}: {where + ': ' if where else ''}{self.detail}"


@dataclass(frozen=True, slots=True)
class ContractNote:
    """Something worth knowing about a request the contract accepts (a deprecated value); never a failure."""

    detail: str
    operation: str | None = None
    pointer: str | None = None

    def __str__(self) -> str:
        where = " ".join(p for p in (self.operation, self.pointer) if p)
        return f"note: {where + ': ' if where else ''}{self.detail}"


def _noted_values(body: Any, schema: Any, path: str = "/body") -> list[tuple[str, str]]:
    """(pointer, note) for each body value its property's `x-mock-notes` names."""
    if not isinstance(body, dict) or not isinstance(schema, dict):
        return []
    found = []
    for key, value in body.items():
        prop = (schema.get("properties") or {}).get(key)
        if not isinstance(prop, dict):
            continue
        notes = prop.get("x-mock-notes") or {}
        if isinstance(value, str) and value in notes:
            found.append((f"{path}/{key}", str(notes[value])))
        found += _noted_values(value, prop, f"{path}/{key}")
    return found


def _unknown_fields(op: Operation, body: Any, path: str = "/body", schema: dict[str, Any] | None = None) -> list[
        tuple[str, str]]:
    """(pointer, message) for each body property the schema does not declare."""
    schema = op.body_schema if schema is None else schema
    if not isinstance(body, dict) or not isinstance(schema, dict) or "properties" not in schema:
        return []
    declared = schema["properties"]
    found = []
    for key, value in body.items():
        if key not in declared:
            found.append((f"{path}/{key}", f"{key!r} is not a field of this operation; expected one of "
                                           f"{', '.join(sorted(declared))}.{did_you_mean(key, declared)}"))
        else:
            found += _unknown_fields(op, value, f"{path}/{key}", declared[key])
    return found


class Referee:
    """Judges journal exchanges against the specs."""

    def __init__(self, specs: list[Spec]) -> None:
        self.operations = {op.operation_id: op for spec in specs for op in spec.operations}
        self.paths = sorted({f"{op.method} {op.path}" for op in self.operations.values()})

    def review(self, exchanges: Iterable[dict[str, Any]]) -> list[ContractViolation]:
        found: list[ContractViolation] = []
        for exchange in exchanges:
            found += self.review_one(exchange)
        return found

    def review_one(self, exchange: dict[str, Any]) -> list[ContractViolation]:
        name = exchange.get("operation")
        if name is None:
            if str(exchange.get("path", "")).startswith("/__mock"):
                return []
            call = f"{exchange.get('method')} {exchange.get('path')}"
            return [ContractViolation("request to an operation that exists",
                                      f"no provider has {call}.{did_you_mean(call, self.paths)}")]
        op = self.operations.get(name)
        if op is None:  # the control plane, or a spec the referee was not given
            return []
        found = [ContractViolation("request is valid", self._describe(v), op.key, v.get("pointer"))
                 for v in exchange.get("violations") or () if v.get("kind") != "security"]
        found += [ContractViolation("request is authenticated", v["message"], op.key, v.get("pointer"))
                  for v in exchange.get("violations") or () if v.get("kind") == "security"]
        request = exchange.get("request") or {}
        found += [ContractViolation("request has only documented fields", message, op.key, pointer)
                  for pointer, message in _unknown_fields(op, request.get("body"))]
        declared = {p.name for p in op.params if p.location == "query"}
        for key in request.get("query") or {}:
            if key not in declared:
                found.append(ContractViolation(
                    "request has only documented fields",
                    f"query parameter {key!r} is not documented; expected "
                    f"{', '.join(sorted(declared)) or 'none'}.{did_you_mean(key, declared)}", op.key, f"/query/{key}"))
        return found

    def notes(self, exchanges: Iterable[dict[str, Any]]) -> list[ContractNote]:
        """Notes on requests the contract accepts: values a source marks deprecated, and the like."""
        found: list[ContractNote] = []
        for exchange in exchanges:
            op = self.operations.get(exchange.get("operation") or "")
            if op is not None:
                body = (exchange.get("request") or {}).get("body")
                found += [ContractNote(note, op.key, pointer) for pointer, note in _noted_values(body, op.body_schema)]
        return found

    @staticmethod
    def _describe(violation: dict[str, Any]) -> str:
        text, _, hint = violation["message"].partition(" Did you mean ")
        text = text.rstrip(".")
        if violation.get("expected"):
            text += f"; expected {violation['expected']}"
        if violation.get("received") is not None:
            text += f", got {violation['received']!r}"
        return text + "." + (f" Did you mean {hint}" if hint else "")


def report(violations: list[ContractViolation]) -> str:
    """A readable block listing each violation on its own line."""
    lines = [f"{len(violations)} contract violation(s):"]
    lines += [f"  - {v}" for v in violations]
    return "\n".join(lines)

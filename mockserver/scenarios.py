"""decide(): which outcome a request gets, and why. Pure: it reads, it never mutates.

Precedence: validation > directive (`Prefer:`) > precondition (the resource exists) > credits > success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .request import MockRequest
from .spec import Operation
from .validation import Violation


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # success | error | example | rejected
    code: int  # the provider's code: the HTTP status (status transport) or the body code (body transport)
    reason: str  # why this outcome was chosen, for the journal
    message: str | None = None
    example: str | None = None  # the named example to answer with (kind == "example")
    cost: float = 0
    headers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        found = {"kind": self.kind, "code": self.code, "reason": self.reason}
        if self.message is not None:
            found["message"] = self.message
        if self.example is not None:
            found["example"] = self.example
        if self.cost:
            found["cost"] = self.cost
        return found


@dataclass(frozen=True, slots=True)
class Refusal:
    """A precondition the request failed: the provider's code and message."""

    code: int
    message: str
    reason: str


def cost_key(op: Operation, req: MockRequest) -> str | None:
    """The credit-cost key of this call: `x-mock.cost` names it, or names the body field that selects it."""
    spec = op.x_mock.get("cost")
    if isinstance(spec, dict):
        value = req.json.get(spec.get("field", ""), spec.get("default"))
        return str(value) if value is not None else None
    return str(spec) if spec else None


def rejection(op: Operation, violations: Sequence[Violation]) -> Outcome:
    """The provider's answer to an invalid request: 401 for security, else its validation code."""
    first = violations[0]
    if first.kind == "security":
        # MusicAPI's documented 401 messages are the violations' own; api.box has one message for every 401.
        message = f"{op.provider.messages[401]}: {first.message}" if op.provider.body_transport and \
            401 in op.provider.messages else first.message
        return Outcome("rejected", 401, f"security: {first.message}", message)
    # A provider may answer a specific missing field with its own code and words (api.box: 422 "Please enter callBackUrl.").
    for special in op.x_mock.get("missing_field_errors") or ():
        if len(violations) == 1 and first.pointer == f"/body/{special['field']}" and "is required" in first.message:
            return Outcome("rejected", int(special["code"]), f"validation: {first.message}", str(special["message"]))
    code = int(op.x_mock.get("validation_code", 400))
    message = "; ".join(f"{v.message.rstrip('.')} (expected {v.expected})" if v.expected else v.message.rstrip(".")
                        for v in violations) + "."
    return Outcome("rejected", code, f"validation: {len(violations)} violation(s)", message)


def _directive(op: Operation, req: MockRequest) -> Outcome | None:
    if "example" in req.prefer:
        name = req.prefer["example"]
        examples = op.examples()
        if name not in examples:
            listed = ", ".join(sorted(examples)) or "none"
            return Outcome("rejected", 400, "directive refused",
                           f"Prefer: example={name} names no example of {op.key}; documented examples: {listed}.")
        status, body = examples[name]
        code = body.get(op.provider.code_field, status) if op.provider.body_transport and isinstance(body, dict) \
            else status
        return Outcome("example", int(code), f"Prefer: example={name}", example=name)
    if "code" in req.prefer:
        raw = req.prefer["code"]
        documented = op.documented_codes
        if not raw.isdigit() or int(raw) not in documented:
            listed = ", ".join(str(c) for c in documented)
            return Outcome("rejected", 400, "directive refused",
                           f"Prefer: code={raw} is not a documented outcome of {op.key}; documented codes: {listed}.")
        code = int(raw)
        if code == (200 if op.provider.body_transport else op.success_status()):
            return None  # the ordinary success path, chosen explicitly
        if 200 <= code < 300:
            found = op.example_for_code(code)
            if found:
                return Outcome("example", code, f"Prefer: code={code}", example=found[0])
        return Outcome("error", code, f"Prefer: code={code}", op.message_for(code))
    return None


def decide(op: Operation, req: MockRequest, violations: Sequence[Violation],
           precheck: Callable[[], Refusal | None], balance: Callable[[], dict[str, float]],
           costs: dict[str, float]) -> Outcome:
    """Choose the outcome of one request. `precheck` and `balance` are read-only views of the state."""
    if violations:
        return rejection(op, violations)
    forced = _directive(op, req)
    if forced is not None:
        return forced
    refusal = precheck()
    if refusal is not None:
        return Outcome("error", refusal.code, refusal.reason, refusal.message)
    key = cost_key(op, req)
    cost = float(costs.get(key, 0)) if key else 0.0
    if cost:
        account = balance()
        available = account["credits"] + account["extra_credits"]
        if available < cost:
            code = int(op.x_mock.get("credits_code", 403 if not op.provider.body_transport else 429))
            message = op.provider.messages.get(code) or op.message_for(code)
            return Outcome("error", code, f"credits: {available:g} left, {cost:g} needed", message)
    reason = "Prefer: code=200" if "code" in req.prefer else "success"
    return Outcome("success", 200, reason, cost=cost)

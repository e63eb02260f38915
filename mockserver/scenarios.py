"""decide(): which outcome a request gets, and why.

Precedence: validation > directive (`Prefer:`) > maintenance > rate window > length limit > the resource
exists > credits > scripted fault > seeded fault > success. decide() only reads: state arrives through
a `View`, randomness through an injected, seeded `random.Random`; the app applies what it chose.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .request import MockRequest
from .spec import Operation
from .validation import Violation

SCENARIOS = ("callback_fails", "callback_duplicate", "callback_late", "callback_never")
WIRE_FAULTS = ("connection_reset", "truncated_body", "malformed_json", "empty_200", "slow_dribble",
               "connection_reset_after", "timeout_after")
# Wire faults that break the answer after the call took effect: the task is created and charged, the client
# never learns its id. The others break it before anything happened.
AFTER_EFFECT = ("connection_reset_after", "timeout_after")
# The terminal task statuses a call can be told to end in (`x-mock.task_outcomes` lists an operation's own).
TASK_OUTCOMES = ("create_task_failed", "generate_audio_failed", "sensitive_word_error", "callback_exception",
                 "failed")


@dataclass(slots=True)
class Outcome:
    """What a call gets, and why. A value: never changed once made.

    The per-call values (this, Refusal, Violation, Reply, CallState) are not `frozen`: a frozen dataclass
    sets each field through object.__setattr__ and takes three times as long to build, on every call.
    """

    kind: str  # success | error | example | rejected | wire
    code: int  # the provider's code: the HTTP status (status transport) or the body code (body transport)
    reason: str  # why this outcome was chosen, for the journal
    message: str | None = None
    example: str | None = None  # the named example to answer with (kind == "example")
    cost: float = 0
    headers: dict[str, str] = field(default_factory=dict)
    scenario: str | None = None  # a delivery behaviour for the task this call creates
    wire_fault: str | None = None
    task_outcome: str | None = None  # the terminal status the task this call creates ends in
    fault_id: str | None = None  # the scripted fault this outcome uses up
    admitted: bool = False  # the call passed the rate window, so it counts in it

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "code": self.code, "reason": self.reason}
        if self.message is not None:
            found["message"] = self.message
        if self.example is not None:
            found["example"] = self.example
        if self.scenario is not None:
            found["scenario"] = self.scenario
        if self.wire_fault is not None:
            found["wire_fault"] = self.wire_fault
        if self.task_outcome is not None:
            found["task_outcome"] = self.task_outcome
        if self.cost:
            found["cost"] = self.cost
        return found


@dataclass(slots=True)
class Refusal:
    """A precondition the request failed: the provider's code and message. A value (see Outcome)."""

    code: int
    message: str
    reason: str


class View(Protocol):
    """What decide() may read of the mock's state for one request."""

    costs: dict[str, float]

    def precheck(self) -> Refusal | None: ...

    def balance(self) -> dict[str, float]: ...

    def in_maintenance(self) -> bool: ...

    def retry_after(self) -> float | None: ...

    def scripted_fault(self) -> dict[str, Any] | None: ...

    def seeded_rules(self) -> Sequence[Any]: ...

    def script_step(self) -> dict[str, Any] | None: ...


def matches(op: Operation, pattern: str) -> bool:
    """Does `pattern` ("*", "POST /api/v1/generate" or an operationId) name this operation?"""
    return pattern in ("*", op.key, op.operation_id)


def cost_key(op: Operation, req: MockRequest) -> str | None:
    """The credit-cost key of this call: `x-mock.cost` names it, or names the body field that selects it."""
    spec = op.x_mock.get("cost")
    if isinstance(spec, dict):
        value = req.json.get(spec.get("field", ""), spec.get("default"))
        return str(value) if value is not None else None
    return str(spec) if spec else None


def rate_class(op: Operation) -> str:
    """`work` for calls that start work (they cost credits), `poll` for polling and balance calls."""
    return str(op.x_mock.get("rate_class") or ("work" if op.x_mock.get("cost") else "poll"))


def outcome_code(op: Operation, cause: str, default: int) -> int:
    return int(op.provider.outcomes.get(cause, default))


def error(op: Operation, cause: str, default: int, reason: str, message: str | None = None,
          headers: dict[str, str] | None = None) -> Outcome:
    code = outcome_code(op, cause, default)
    text = message or op.provider.messages.get(code) or op.message_for(code)
    return Outcome("error", code, reason, text, headers=headers or {})


def rejection(op: Operation, violations: Sequence[Violation]) -> Outcome:
    """The provider's answer to an invalid request: 401 for security, else its validation code."""
    first = violations[0]
    if first.kind == "security":
        # MusicAPI's documented 401 messages are the violations' own; api.box has one message for every 401.
        message = f"{op.provider.messages[401]}: {first.message}" if op.provider.body_transport and \
            401 in op.provider.messages else first.message
        return Outcome("rejected", 401, f"security: {first.message}", message)
    # A provider may answer one missing field with its own code and words (api.box: 422 "Please enter callBackUrl.").
    for special in op.x_mock.get("missing_field_errors") or ():
        if len(violations) == 1 and first.pointer == f"/body/{special['field']}" and "is required" in first.message:
            return Outcome("rejected", int(special["code"]), f"validation: {first.message}", str(special["message"]))
    code = int(op.x_mock.get("validation_code", outcome_code(op, "validation", 400)))
    message = "; ".join(f"{v.message.rstrip('.')} (expected {v.expected})" if v.expected else v.message.rstrip(".")
                        for v in violations) + "."
    return Outcome("rejected", code, f"validation: {len(violations)} violation(s)", message)


def _retry_header(op: Operation, code: int, seconds: float) -> dict[str, str]:
    """MusicAPI's 429 carries Retry-After (whole seconds, at least 1); api.box's 430 has no header."""
    if op.provider.body_transport or code != outcome_code(op, "rate_limit", 429):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def rate_limited(op: Operation, wait: float) -> Outcome:
    """The provider's answer when the call's rate window is full and admits another call in `wait` seconds."""
    cause = "rate_limit_poll" if rate_class(op) == "poll" and "rate_limit_poll" in op.provider.outcomes \
        else "rate_limit"
    code = outcome_code(op, cause, 429)
    return error(op, cause, 429, f"rate window full: next call admitted in {wait:.3f} s",
                 headers=_retry_header(op, code, wait))


def _example(op: Operation, name: str, reason: str) -> Outcome:
    """Answer the named example; its code is the body code (body transport) or its HTTP status."""
    status, body = op.examples()[name]
    code = body.get(op.provider.code_field, status) if op.provider.body_transport and isinstance(body, dict) \
        else status
    return Outcome("example", int(code), reason, example=name)


def _refuse_directive(op: Operation, text: str) -> Outcome:
    return Outcome("rejected", outcome_code(op, "validation", 400), "directive refused", text)


def _directive(op: Operation, req: MockRequest) -> Outcome | None:
    if "example" in req.prefer:
        name = req.prefer["example"]
        examples = op.examples()
        if name not in examples:
            listed = ", ".join(sorted(examples)) or "none"
            return _refuse_directive(op, f"Prefer: example={name} names no example of {op.key}; "
                                         f"documented examples: {listed}.")
        return _example(op, name, f"Prefer: example={name}")
    if "code" in req.prefer:
        raw = req.prefer["code"]
        documented = op.documented_codes
        # Only ASCII digits, and few: int() refuses other digits ("²") and more than 4,300 of them.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or int(raw) not in documented:
            listed = ", ".join(str(c) for c in documented)
            shown = raw if len(raw) <= 40 else f"{raw[:20]}... ({len(raw)} characters)"
            return _refuse_directive(op, f"Prefer: code={shown} is not a documented outcome of {op.key}; "
                                         f"documented codes: {listed}.")
        code = int(raw)
        if code == (200 if op.provider.body_transport else op.success_status()):
            return None  # the ordinary success path, chosen explicitly
        if 200 <= code < 300:
            found = op.example_for_code(code)
            if found:
                return Outcome("example", code, f"Prefer: code={code}", example=found[0])
        return Outcome("error", code, f"Prefer: code={code}", op.message_for(code), headers=_retry_header(op, code, 1))
    return None


def _scenario(op: Operation, req: MockRequest) -> tuple[str | None, Outcome | None]:
    name = req.prefer.get("scenario")
    if name is None:
        return None, None
    if name not in SCENARIOS or not op.x_mock.get("scenarios", bool(op.callbacks)):
        where = f"{op.key} sends no callback" if not op.callbacks else f"known scenarios: {', '.join(SCENARIOS)}"
        return None, _refuse_directive(op, f"Prefer: scenario={name} does not apply: {where}.")
    return name, None


def task_outcomes(op: Operation) -> tuple[str, ...]:
    """The terminal statuses the task an operation creates can be told to end in (none: it creates no task)."""
    return tuple(op.x_mock.get("task_outcomes") or ())


def _fault_outcome(op: Operation, fault: dict[str, Any], reason: str) -> Outcome:
    if fault.get("wire_fault") in ("slow_dribble", *AFTER_EFFECT):  # the ordinary answer, sent slowly or lost
        return Outcome("success", 200, reason, wire_fault=str(fault["wire_fault"]), fault_id=fault.get("id"))
    if fault.get("task_outcome"):
        return Outcome("success", 200, reason, task_outcome=str(fault["task_outcome"]), fault_id=fault.get("id"))
    if fault.get("example"):
        return dataclasses.replace(_example(op, str(fault["example"]), reason), fault_id=fault.get("id"))
    if fault.get("wire_fault"):
        return Outcome("wire", 0, reason, wire_fault=str(fault["wire_fault"]), fault_id=fault.get("id"))
    if fault.get("scenario"):
        return Outcome("success", 200, reason, scenario=str(fault["scenario"]), fault_id=fault.get("id"))
    code = int(fault["code"])
    return Outcome("error", code, reason, op.message_for(code), headers=_retry_header(op, code, 1),
                   fault_id=fault.get("id"))


def _script_step(op: Operation, step: dict[str, Any] | None) -> Outcome | None:
    """The behaviour a script queued for this call; a code or scenario this operation lacks plays as normal."""
    if not step:
        return None
    if "code" in step and int(step["code"]) in op.documented_codes and int(step["code"]) != 200:
        return _fault_outcome(op, {"code": step["code"]}, f"script step: code={step['code']}")
    if step.get("wire_fault"):
        return _fault_outcome(op, {"wire_fault": step["wire_fault"]}, f"script step: {step['wire_fault']}")
    if step.get("task_outcome") in task_outcomes(op):
        return _fault_outcome(op, {"task_outcome": step["task_outcome"]},
                              f"script step: task_outcome={step['task_outcome']}")
    examples = op.examples()
    if step.get("example") in examples:  # a valid but perhaps unusual body, e.g. `data: null`
        return _example(op, step["example"], f"script step: example={step['example']}")
    if step.get("scenario") and op.callbacks:
        return Outcome("success", 200, f"script step: scenario={step['scenario']}", scenario=str(step["scenario"]))
    return None


def _seeded(op: Operation, rules: Sequence[Any], rng: random.Random) -> Outcome | None:
    for index, rule in enumerate(rules):
        if not matches(op, rule.operation):
            continue
        roll = rng.random()
        if roll >= rule.rate:
            continue
        choices = [("code", c) for c in rule.codes if c in op.documented_codes]
        choices += [("wire_fault", w) for w in rule.wire_faults]
        choices += [("scenario", s) for s in rule.scenarios if op.callbacks]
        if choices:
            kind, value = choices[rng.randrange(len(choices))]
            return _fault_outcome(op, {kind: value}, f"seeded fault: faults[{index}] rolled {roll:.4f} < {rule.rate}")
    return None


def _too_long(op: Operation, req: MockRequest) -> Outcome | None:
    """Per-field length limits that depend on other fields (api.box: 413 "prompt too long")."""
    body, decided = req.json, set()
    for rule in op.x_mock.get("limits") or ():
        name = rule["field"]
        when = rule.get("when") or {}
        if name in decided or not all(body.get(k) in (v if isinstance(v, list) else [v]) for k, v in when.items()):
            continue
        decided.add(name)  # the first rule that applies to a field is its limit
        value = body.get(name)
        if isinstance(value, str) and len(value) > int(rule["max"]):
            condition = " and ".join(f"{k}={v}" for k, v in when.items())
            text = f"{name} is {len(value)} characters long; at most {rule['max']} are allowed" + (
                f" when {condition}." if condition else ".")
            return error(op, "too_long", 413, f"length limit: {name} > {rule['max']}", text)
    return None


def decide(op: Operation, req: MockRequest, violations: Sequence[Violation], view: View,
           rng: random.Random) -> Outcome:
    """Choose the outcome of one request."""
    if violations:
        return rejection(op, violations)
    scenario, refused = _scenario(op, req)
    if refused is not None:
        return refused
    forced = _directive(op, req)
    if forced is not None:
        return forced
    scripted_step = _script_step(op, view.script_step())
    if scripted_step is not None and scripted_step.kind != "success":
        return scripted_step
    scenario_reason = f"Prefer: scenario={scenario}" if scenario else None
    if scripted_step is not None and scripted_step.scenario:
        scenario, scenario_reason = scripted_step.scenario, scripted_step.reason
    if view.in_maintenance():
        return error(op, "maintenance", 503, "maintenance window")
    wait = view.retry_after()
    if wait is not None:
        return rate_limited(op, wait)
    outcome = _admitted(op, req, view, rng, scenario, scenario_reason)
    if scripted_step is not None and outcome.kind == "success" and (scripted_step.wire_fault or
                                                                    scripted_step.task_outcome):
        # A step that lets the call take effect (a task outcome, an answer lost after the effect) plays once
        # the call is admitted, charged like any other.
        outcome = dataclasses.replace(outcome, reason=scripted_step.reason, wire_fault=scripted_step.wire_fault,
                                      task_outcome=scripted_step.task_outcome)
    return outcome if outcome.admitted else dataclasses.replace(outcome, admitted=True)


def _admitted(op: Operation, req: MockRequest, view: View, rng: random.Random, scenario: str | None,
              scenario_reason: str | None) -> Outcome:
    """The outcome of a call the rate window admitted (decide marks it `admitted`; a success is built so).

    `scenario_reason` says where a delivery scenario came from (a `Prefer:` header or a script step)."""
    too_long = _too_long(op, req)
    if too_long is not None:
        return too_long
    refusal = view.precheck()
    if refusal is not None:
        return Outcome("error", refusal.code, refusal.reason, refusal.message)
    key = cost_key(op, req)
    cost = float(view.costs.get(key, 0)) if key else 0.0
    if cost:
        account = view.balance()
        available = account["credits"] + account["extra_credits"]
        if available < cost:
            return error(op, "credits", 403, f"credits: {available:g} left, {cost:g} needed")
    scripted = view.scripted_fault()
    if scripted is not None:
        outcome = _fault_outcome(op, scripted, f"scripted fault {scripted['id']} "
                                               f"({scripted['used'] + 1} of {scripted['times']})")
        return _with(outcome, cost, scenario)
    seeded = _seeded(op, view.seeded_rules(), rng)
    if seeded is not None:
        return _with(seeded, cost, scenario)
    reason = scenario_reason or ("Prefer: code=200" if "code" in req.prefer else "success")
    return Outcome("success", 200, reason, cost=cost, scenario=scenario, admitted=True)


def _with(outcome: Outcome, cost: float, scenario: str | None) -> Outcome:
    """A fault that lets the call succeed (a delivery scenario) still charges, and keeps a requested scenario."""
    if outcome.kind != "success":
        return outcome
    return dataclasses.replace(outcome, cost=cost, scenario=outcome.scenario or scenario, admitted=True)

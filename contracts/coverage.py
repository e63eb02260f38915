"""The client's report: requests per operation, violations, and its coverage of the contract.

Built from plain records (the mock's journal and its `/__mock/callbacks` deliveries), so it works on a
finished run without anything running: which documented status codes each operation met, which documented
callbacks the mock sent and what became of them, every violation the referee and the behavioural checks found.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import signal
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mockserver.spec import CallbackDoc, Operation

from . import behaviour
from .checks import CHECKS, RECOMMENDATIONS, Run
from .forged import FORGED_MARKS
from .referee import ContractViolation, Referee

EXIT_OK = 0
EXIT_VIOLATIONS = 1  # the client broke the contract
EXIT_USAGE = 2  # a bad option, config or script; nothing was run
EXIT_COMMAND_FAILED = 3  # the command exited non-zero or was killed by a signal
EXIT_TIMEOUT = 4  # the command was still running at --timeout and was killed
EXIT_NOT_STARTED = 5  # the command could not be started (not found, not executable)

# Behavioural checks that judge any client from the journal alone. The others in contracts.checks read a
# Python exception, which a process does not have.
BEHAVIOUR_CHECKS = ("waits after a call-frequency error before retrying",
                    "does not retry in a loop after insufficient credits",
                    "a duplicate callback is not processed twice",
                    "never polls faster than documented",
                    behaviour.STOPS_ON_FAILURE,
                    behaviour.ERRORS_REACH_USER,
                    behaviour.PAID_TWICE,
                    behaviour.FORGED)
POLLING_CHECK = BEHAVIOUR_CHECKS[3]  # its documented interval is scaled with --time-scale


# -- coverage ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandResult:
    """How the command ended."""

    argv: tuple[str, ...]
    returncode: int | None  # None when it never started
    seconds: float
    timed_out: bool = False
    error: str | None = None  # why it could not be started
    output: str = ""  # the tail of what it printed (stdout and stderr together)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        shown = shlex.join(self.argv)
        if self.error:
            return f"`{shown}` could not be started: {self.error}"
        if self.timed_out:
            return f"`{shown}` was still running after {self.seconds:.1f} s and was killed (--timeout)"
        if self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"`{shown}` was killed by {name} after {self.seconds:.1f} s"
        return f"`{shown}` exited {self.returncode} after {self.seconds:.1f} s"


@dataclass(frozen=True, slots=True)
class OperationCoverage:
    """One operation: how often the client called it and which documented codes it met."""

    operation: str  # "POST /api/v1/generate"
    operation_id: str
    calls: int
    codes: dict[int, int]  # the provider's code (HTTP status, or api.box's body code) -> times met
    documented: tuple[int, ...]
    wire_faults: dict[str, int] = field(default_factory=dict)

    @property
    def met(self) -> list[int]:
        return sorted(c for c in self.codes if c in self.documented)

    @property
    def not_met(self) -> list[int]:
        return [c for c in self.documented if c not in self.codes]


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """One callback the mock sent (or owed), matched to the documented example it is closest to."""

    id: str
    operation: str | None
    callback: str | None
    example: str | None
    event: str
    url: str
    to_receiver: bool  # sent to STEMMOCK_CALLBACK_URL
    state: str
    attempts: tuple[dict[str, Any], ...]

    def describe(self) -> str:
        where = "the check-client receiver" if self.to_receiver else self.url
        tries = len(self.attempts)
        last = self.attempts[-1] if self.attempts else {}
        if self.state == "delivered":
            status = f"delivered (HTTP {last.get('status')}" + (f", attempt {tries})" if tries > 1 else ")")
        elif self.state in ("suppressed", "blocked"):
            status = self.state
        else:
            status = f"{self.state} after {_n(tries, 'attempt')}" + (f": {last.get('error')}" if last else "")
        return f"{self.id} {self.event} -> {where}: {status}"


@dataclass(frozen=True, slots=True)
class CallbackCoverage:
    """One documented callback of an operation the client called: which of its examples were sent."""

    operation: str
    callback: str
    documented: tuple[str, ...]  # the spec's example names, e.g. text, first, complete, failure
    sent: dict[str, int]

    @property
    def not_met(self) -> list[str]:
        return [name for name in self.documented if name not in self.sent]


@dataclass(frozen=True, slots=True)
class Finding:
    """A contract violation, with the request it was found in (the journal's `seq`, from 1) when it has one."""

    violation: ContractViolation
    request: int | None = None
    expected: str | None = None
    received: Any = None

    def describe(self) -> str:
        return (f"#{self.request} " if self.request else "") + str(self.violation)

    def as_dict(self) -> dict[str, Any]:
        v = self.violation
        return {"request": self.request, "title": v.title, "operation": v.operation, "pointer": v.pointer,
                "detail": v.detail, "expected": self.expected, "received": self.received}


@dataclass(frozen=True)
class Report:
    """The verdict on one run: how the command ended, what it called, what broke, what it covered."""

    command: CommandResult
    operations: list[OperationCoverage]  # every provider operation: called ones first, by first call
    downloads: dict[int, int]  # HTTP status -> files downloaded
    unknown: list[str]  # "METHOD /path -> 404" for requests no operation has
    findings: list[Finding]
    callbacks: list[CallbackCoverage]
    deliveries: list[DeliverySummary]
    mock_errors: list[str] = field(default_factory=list)
    strict: bool = True
    time_scale: float = 1.0
    journal_full: bool = False
    recommendations: list[Finding] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # each task the client created, as it last saw it
    last_answers: dict[str, list[str]] = field(default_factory=dict)  # operation -> its last answers, oldest first
    surfaced: bool = False  # the command ended with a declared error exit after a documented error

    @property
    def failed_contract(self) -> bool:
        return bool(self.mock_errors) or (self.strict and bool(self.findings))

    @property
    def exit_code(self) -> int:
        if self.command.error:
            return EXIT_NOT_STARTED
        if self.command.timed_out:
            return EXIT_TIMEOUT
        if not self.command.ok and not self.surfaced:
            return EXIT_COMMAND_FAILED
        return EXIT_VIOLATIONS if self.failed_contract else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": {"argv": list(self.command.argv), "returncode": self.command.returncode,
                        "seconds": round(self.command.seconds, 3), "timed_out": self.command.timed_out,
                        "error": self.command.error},
            "time_scale": self.time_scale,
            "operations": [{"operation": o.operation, "operation_id": o.operation_id, "calls": o.calls,
                            "codes": {str(c): n for c, n in sorted(o.codes.items())},
                            "wire_faults": o.wire_faults, "documented": list(o.documented), "met": o.met,
                            "not_met": o.not_met} for o in self.operations],
            "downloads": {str(s): n for s, n in sorted(self.downloads.items())},
            "unknown_requests": self.unknown,
            "callbacks": [{"operation": c.operation, "callback": c.callback, "documented": list(c.documented),
                           "sent": c.sent, "not_met": c.not_met} for c in self.callbacks],
            "deliveries": [{**dataclasses.asdict(d), "attempts": list(d.attempts)} for d in self.deliveries],
            "violations": [f.as_dict() for f in self.findings],
            "recommendations": [f.as_dict() for f in self.recommendations],
            "tasks": self.tasks,
            "last_answers": self.last_answers,
            "surfaced_error": self.surfaced,
            "mock_errors": self.mock_errors,
            "journal_full": self.journal_full,
            "strict": self.strict,
            "exit_code": self.exit_code,
        }


def _met_code(op: Operation, exchange: Mapping[str, Any]) -> int:
    """The code the client met, in the provider's transport: the HTTP status, or api.box's body code."""
    response = exchange.get("response") or {}
    body = response.get("body")
    if op.provider.body_transport and isinstance(body, dict) and isinstance(body.get(op.provider.code_field), int):
        return int(body[op.provider.code_field])
    if not op.provider.body_transport and isinstance(response.get("status"), int):
        return int(response["status"])
    return int((exchange.get("outcome") or {}).get("code") or 0)


def operation_coverage(referee: Referee, exchanges: Sequence[Mapping[str, Any]]) -> list[OperationCoverage]:
    """Calls, codes met and wire faults per provider operation: called ones in the order of their first call."""
    codes: dict[str, Counter[int]] = {name: Counter() for name in referee.operations}
    wire: dict[str, Counter[str]] = {name: Counter() for name in referee.operations}
    for exchange in exchanges:
        op = referee.operations.get(str(exchange.get("operation")))
        if op is None:
            continue
        outcome = exchange.get("outcome") or {}
        if outcome.get("kind") == "wire":  # the answer broke on the wire: no code reached the client
            wire[op.operation_id][str(outcome.get("wire_fault"))] += 1
        else:
            codes[op.operation_id][_met_code(op, exchange)] += 1
    first = {name: i for i, name in enumerate(dict.fromkeys(str(e.get("operation")) for e in exchanges))}
    order = sorted(referee.operations, key=lambda name: first.get(name, len(first)))  # stable: spec order after
    return [OperationCoverage(referee.operations[name].key, name, sum(codes[name].values()) + sum(wire[name].values()),
                              dict(codes[name]), referee.operations[name].documented_codes, dict(wire[name]))
            for name in order]


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """JSON pointer -> scalar for every leaf; a list stands for its first item."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(_leaves(item, f"{path}/{key}"))
        return found or {path: {}}
    if isinstance(value, list):
        return _leaves(value[0], f"{path}/0") if value else {path: []}
    return {path: value}


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The share of leaf paths two bodies have in common: how alike their shapes are."""
    return len(a.keys() & b.keys()) / max(1, len(a.keys() | b.keys()))


def _nearest_example(callback: CallbackDoc, payload: Mapping[str, Any]) -> str | None:
    """The callback's documented example a payload is: the most agreeing discriminators, then the closest shape.

    Discriminators are the leaves every example has and not all with the same value (`code`, `event`,
    `callbackType`, ...); values that merely repeat across examples (a model name) say nothing.
    """
    examples = {name: _leaves(body) for name, body in callback.examples.items()}
    if not examples:
        return None
    common = set.intersection(*(set(leaves) for leaves in examples.values()))
    discriminators = [p for p in common if len({json.dumps(e[p], sort_keys=True) for e in examples.values()}) > 1]
    best: tuple[tuple[int, float], str] | None = None
    for name, leaves in examples.items():
        score = (sum(1 for p in discriminators if p in payload and payload[p] == leaves[p]), _overlap(leaves, payload))
        if best is None or score > best[0]:
            best = (score, name)
    return None if best is None else best[1]


def classify_delivery(referee: Referee, delivery: Mapping[str, Any]) -> tuple[Operation, str, str] | None:
    """(operation, callback name, example name) of a delivery: the callback its shape is closest to, then the example.

    Deliveries do not name the operation whose task they report; their payloads follow its documented callback.
    """
    payload = _leaves(delivery.get("payload"))
    best: tuple[float, Operation, str, str] | None = None
    for op in referee.operations.values():
        if op.provider.name != delivery.get("provider"):
            continue
        for callback in op.callbacks.values():
            nearest = _nearest_example(callback, payload)
            shape = max((_overlap(_leaves(body), payload) for body in callback.examples.values()), default=0.0)
            if nearest is not None and (best is None or shape > best[0]):
                best = (shape, op, callback.name, nearest)
    return None if best is None else best[1:]


def delivery_summaries(referee: Referee, deliveries: Iterable[Mapping[str, Any]],
                       receiver_url: str = "") -> list[DeliverySummary]:
    summaries = []
    for delivery in deliveries:
        match = classify_delivery(referee, delivery)
        url = str(delivery.get("url") or "")
        summaries.append(DeliverySummary(
            str(delivery.get("id")), match[0].key if match else None, match[1] if match else None,
            match[2] if match else None, str(delivery.get("event")), url,
            bool(receiver_url) and url.startswith(receiver_url), str(delivery.get("state")),
            tuple(dict(a) for a in delivery.get("attempts") or ())))
    return summaries


def callback_coverage(referee: Referee, operations: Sequence[OperationCoverage],
                      deliveries: Sequence[DeliverySummary]) -> list[CallbackCoverage]:
    """For each operation the client called that documents callbacks: which examples were sent (tried at least once)."""
    found = []
    for usage in operations:
        op = referee.operations[usage.operation_id]
        for callback in op.callbacks.values() if usage.calls else ():
            sent = Counter(d.example for d in deliveries
                           if d.operation == op.key and d.callback == callback.name and d.example and d.attempts)
            found.append(CallbackCoverage(op.key, callback.name, tuple(callback.examples), dict(sent)))
    return found


def _finding(violation: ContractViolation, request: int, exchange: Mapping[str, Any]) -> Finding:
    """The referee's violation, with the expected and received values the mock recorded for its pointer."""
    for raw in exchange.get("violations") or ():
        if violation.pointer and raw.get("pointer") == violation.pointer:
            return Finding(violation, request, raw.get("expected"), raw.get("received"))
    return Finding(violation, request)


def review(referee: Referee, exchanges: Sequence[dict[str, Any]], deliveries: Sequence[dict[str, Any]],
           time_scale: float = 1.0, command: CommandResult | None = None, *,
           error_exit: tuple[int, ...] | None = None, require_retries: bool = False) -> list[Finding]:
    """Every violation: the referee's, request by request, then the behavioural checks over the whole run."""
    return _review(referee, exchanges, deliveries, time_scale, command, error_exit, require_retries)[0]


def _review(referee: Referee, exchanges: Sequence[dict[str, Any]], deliveries: Sequence[dict[str, Any]],
            time_scale: float, command: CommandResult | None, error_exit: tuple[int, ...] | None,
            require_retries: bool, forged: bool = False) -> tuple[list[Finding], list[Finding], Run]:
    """(violations, recommendations, the run judged); `require_retries` makes the retry advice a violation."""
    found = [_finding(v, int(exchange.get("seq") or i), exchange) for i, exchange in enumerate(exchanges, 1)
             for v in referee.review_one(exchange)]
    run = Run(_scaled_referee(referee, time_scale), list(exchanges), list(deliveries), command=command,
              time_scale=time_scale, error_exit=error_exit, forged=FORGED_MARKS if forged else ())
    scaled = f" (the spec's, x{time_scale:g} like all task time)" if time_scale != 1.0 else ""
    found += [Finding(dataclasses.replace(v, detail=v.detail + scaled) if title == POLLING_CHECK else v)
              for title in BEHAVIOUR_CHECKS for v in CHECKS[title](run)]
    advice = [Finding(v) for func in RECOMMENDATIONS.values() for v in func(run)]
    if require_retries:
        return found + advice, [], run
    return found, advice, run


def _scaled_referee(referee: Referee, factor: float) -> Referee:
    """A referee whose documented polling intervals run `factor` times as long, like the mock's task time."""
    if factor == 1.0:
        return referee
    scaled = Referee([])
    scaled.paths = referee.paths
    scaled.operations = {
        name: dataclasses.replace(op, x_mock={**op.x_mock, "poll_interval_s": float(op.x_mock["poll_interval_s"])
                                              * factor}) if op.x_mock.get("poll_interval_s") else op
        for name, op in referee.operations.items()}
    return scaled


def build_report(referee: Referee, exchanges: Sequence[dict[str, Any]], deliveries: Sequence[dict[str, Any]],
                 command: CommandResult, *, strict: bool = True, receiver_url: str = "", time_scale: float = 1.0,
                 journal_size: int | None = None, error_exit: tuple[int, ...] | None = None,
                 require_retries: bool = False, probe: Sequence[Finding] = (), forged: bool = False) -> Report:
    """The verdict on one run, from the mock's journal (`GET /__mock/journal`) and deliveries (`/__mock/callbacks`).

    `probe`: violations a second, short run at another time scale found (fixed-interval polling)."""
    operations = operation_coverage(referee, exchanges)
    summaries = delivery_summaries(referee, deliveries, receiver_url)
    downloads = Counter(int((e.get("outcome") or {}).get("code") or 0) for e in exchanges
                        if e.get("operation") == "download")
    unknown = [f"{e.get('method')} {e.get('path')} -> {(e.get('outcome') or {}).get('code')}" for e in exchanges
               if e.get("operation") is None and not str(e.get("path", "")).startswith("/__mock")]
    findings, advice, run = _review(referee, exchanges, deliveries, time_scale, command, error_exit, require_retries,
                                    forged)
    findings += list(probe)
    zero = min((float(e.get("time") or 0.0) for e in exchanges), default=0.0)
    surfaced = bool(error_exit) and command.returncode in (error_exit or ()) and not command.timed_out and (
        any((e.get("outcome") or {}).get("kind") in ("error", "rejected", "wire") for e in run.calls()) or
        any(t.failed for t in behaviour.tasks_of(run)))
    return Report(command, operations, dict(downloads), unknown, findings,
                  callback_coverage(referee, operations, summaries), summaries,
                  [str(e["error"]) for e in exchanges if e.get("error")], strict, time_scale,
                  journal_size is not None and len(exchanges) >= journal_size, advice,
                  [t.as_dict(zero) | {"text": t.describe(zero)} for t in behaviour.tasks_of(run)],
                  behaviour.last_answers(run), surfaced)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _counts(counts: Mapping[Any, int]) -> str:
    return ", ".join(f"{key} x{n}" for key, n in sorted(counts.items(), key=lambda item: str(item[0])))


def _operation_lines(report: Report) -> list[str]:
    called = [o for o in report.operations if o.calls]
    total = sum(o.calls for o in called)
    downloads = sum(report.downloads.values())
    unknown = len(report.unknown)
    lines = [f"Requests: {_n(total, 'provider call')}, {_n(downloads, 'download')}, {unknown} to unknown paths"]
    for usage in called:
        codes = _counts(usage.codes) + (f"; wire faults {_counts(usage.wire_faults)}" if usage.wire_faults else "")
        lines.append(f"  {usage.operation}  {_n(usage.calls, 'call')}: {codes}")
        lines.append(f"      coverage: met {len(usage.met)} of {len(usage.documented)} documented codes "
                     f"({', '.join(map(str, usage.met)) or 'none'}); not met: "
                     f"{', '.join(map(str, usage.not_met)) or 'none'}")
    if report.downloads:
        lines.append(f"  GET /files/...  {_n(downloads, 'download')}: {_counts(report.downloads)}")
    lines += [f"  unknown: {line}" for line in report.unknown]
    never = [o.operation for o in report.operations if not o.calls]
    if never:
        lines.append(f"  not called ({len(never)}): {', '.join(never)}")
    return lines


def _callback_lines(report: Report) -> list[str]:
    sent = sum(1 for d in report.deliveries if d.attempts)
    delivered = sum(1 for d in report.deliveries if d.state == "delivered")
    lines = [f"Callbacks: {sent} sent, {delivered} delivered, {len(report.deliveries) - sent} not sent"]
    for cover in report.callbacks:
        lines.append(f"  {cover.operation} {cover.callback}: {_counts(cover.sent) or 'none sent'}")
        lines.append(f"      coverage: met {len(cover.sent)} of {len(cover.documented)} documented callbacks; "
                     f"not met: {', '.join(cover.not_met) or 'none'}")
    lines += [f"    {d.describe()}" for d in report.deliveries]
    if not report.callbacks and not report.deliveries:
        lines.append("  none: no operation the client called sends one")
    return lines


def _verdict(report: Report) -> str:
    code = report.exit_code
    if code == EXIT_OK:
        note = f" ({len(report.findings)} violation(s) reported, --no-strict)" if report.findings else ""
        if report.surfaced:
            note += f"; it surfaced a documented error (exit {report.command.returncode}, declared by --error-exit)"
        return f"PASS: the client kept the contract{note} (exit {code})."
    reasons = []
    if not report.command.ok:
        reasons.append(report.command.describe())
    if report.findings and report.strict:
        reasons.append(f"{len(report.findings)} contract violation(s)")
    if report.mock_errors:
        reasons.append(f"the mock itself failed {len(report.mock_errors)} time(s)")
    return f"FAIL: {'; '.join(reasons)} (exit {code})."


def format_report(report: Report) -> str:
    """The report as text, one section per question: what was called, what broke, what was covered."""
    speed = f"; task time x{report.time_scale:g}" if report.time_scale != 1.0 else ""
    lines = [f"stemmock check-client: {report.command.describe()}{speed}", ""]
    lines += _operation_lines(report)
    lines.append("")
    lines += _callback_lines(report)
    lines.append("")
    if report.findings:
        lines.append(f"Contract violations ({len(report.findings)}):")
        lines += [f"  - {f.describe()}" for f in report.findings]
    else:
        lines.append("Contract violations: none")
    if report.recommendations:
        lines.append(f"Recommendations ({len(report.recommendations)}; --require-retries makes them violations):")
        lines += [f"  - {f.describe()}" for f in report.recommendations]
    if report.tasks and (report.findings or report.command.timed_out or not report.command.ok):
        lines.append("Tasks the client created:")
        lines += [f"  - {t['text']}" for t in report.tasks]
    if report.last_answers and (report.findings or report.command.timed_out or not report.command.ok):
        lines.append("Last answers per operation (oldest first):")
        lines += [f"  {name}: {'; '.join(answers)}" for name, answers in report.last_answers.items()]
    lines += [f"The mock raised an error (a stemmock bug, please report it):\n{e}" for e in report.mock_errors]
    if report.journal_full:
        lines.append("Note: the journal was full; only the latest requests were judged.")
    lines += ["", _verdict(report)]
    return "\n".join(lines)



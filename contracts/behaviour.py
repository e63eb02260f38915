"""Client checks about what real clients get wrong: failed tasks, crashes, retries, forged callbacks, paying twice.

Registered in `contracts.checks`' table under stable titles (import this module to have them). Task states come
from `contracts.tasks`; a check-client run also carries how its command ended (`Run.command`) and its output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mockserver.scenarios import AFTER_EFFECT
from mockserver.spec import Operation

from .checks import MIN_BACKOFF_S, Run, _v, check, retry_after
from .referee import ContractViolation
from .tasks import TaskState, created_task, poll_status, task_states

STOPS_ON_FAILURE = "stops on a terminal failure and surfaces it"
ERRORS_REACH_USER = "errors reach the user"
RETRIES = "retries transient errors with backoff"
FORGED = "does not act on a forged callback"
PAID_TWICE = "no paid work is done twice"

# What an uncaught exception looks like in a command's output, per runtime.
CRASHES = (
    ("Python traceback", re.compile(r"^Traceback \(most recent call last\):$", re.MULTILINE),
     re.compile(r"^(\w[\w.]*(?:Error|Exception|Interrupt)\b.*)$", re.MULTILINE)),
    ("Node stack trace", re.compile(r"^\s+at .+:\d+:\d+\)?$", re.MULTILINE),
     re.compile(r"^((?:Uncaught )?\w*Error\b.*)$", re.MULTILINE)),
)


def _t(run: Run, at: float) -> str:
    zero = min((float(e.get("time") or 0.0) for e in run.exchanges), default=at)
    return f"t={at - zero:.1f} s"


def tasks_of(run: Run) -> list[TaskState]:
    """The tasks the client created; their polling intervals are the referee's (check-client's are scaled)."""
    return task_states(run.referee.operations, run.exchanges, run.callbacks)


def ended_with_error(run: Run) -> bool:
    """Python: the flow raised. A command: it exited non-zero (or was killed), not 0."""
    if run.command is None:
        return run.error is not None
    return not run.command.ok


def _last_call(run: Run) -> dict[str, Any] | None:
    calls = run.calls()
    return calls[-1] if calls else None


def _answer(run: Run, exchange: dict[str, Any] | None) -> str:
    """One provider answer in a line: operation, status, body code, task status, message."""
    if exchange is None:
        return "no provider call was made"
    op = run.referee.operations[exchange["operation"]]
    outcome = exchange.get("outcome") or {}
    if outcome.get("wire_fault") and outcome.get("wire_fault") != "slow_dribble":
        return f"{op.key} -> no usable answer ({outcome['wire_fault']}, #{exchange.get('seq', '?')})"
    response = exchange.get("response") or {}
    body = response.get("body")
    parts = [f"HTTP {response.get('status')}"]
    if isinstance(body, dict):
        code = body.get(op.provider.code_field)
        if op.provider.body_transport and code is not None:
            parts.append(f"code {code}")
        if op.provider.body_transport and "data" in body and body["data"] is None:
            parts.append("data null")
        status = _poll_status(op, exchange)
        if status:
            parts.append(f"task {status}")
        message = body.get("msg") or body.get("message")
        if message and outcome.get("kind") in ("error", "rejected"):
            parts.append(repr(str(message)))
    return f"{op.key} -> {', '.join(parts)}"


def _poll_status(op: Operation, exchange: dict[str, Any]) -> str | None:
    return poll_status(op, exchange)[0] if op.x_mock.get("poll_task") else None


def last_answers(run: Run, per_operation: int = 3) -> dict[str, list[str]]:
    """The last answers the client got, per operation it called."""
    found: dict[str, list[str]] = {}
    for exchange in run.calls():
        op = run.referee.operations[exchange["operation"]]
        found.setdefault(op.key, []).append(_answer(run, exchange).split(" -> ", 1)[1])
    return {name: answers[-per_operation:] for name, answers in found.items()}


def crash(run: Run) -> str | None:
    """How the command crashed (an uncaught exception in its output, or a signal), or None."""
    command = run.command
    if command is None or command.timed_out or command.error:
        return None
    output = command.output or ""
    for runtime, marker, line in CRASHES:
        if marker.search(output):
            last = line.findall(output)
            return f"{runtime}: {last[-1].strip()}" if last else runtime
    if command.returncode is not None and command.returncode < 0:
        return command.describe().split("` ", 1)[-1]
    if run.error_exit and command.returncode not in (0, *run.error_exit):
        return f"exit {command.returncode}, not one of the declared error exits ({', '.join(map(str, run.error_exit))})"
    return None


@check(STOPS_ON_FAILURE)
def stops_on_terminal_failure(run: Run) -> list[ContractViolation]:
    found = []
    states = tasks_of(run)
    for state in states:
        if state.terminal_at is None:
            continue
        grace = state.poll_interval or 0.0
        late = [at for at in state.polls_after_terminal if at - state.terminal_at > grace]
        if late:
            found.append(_v(f"{state.describe(_zero(run))}, the last at {_t(run, late[-1])}: a terminal status does "
                            f"not change; stop polling within one documented interval ({grace:g} s)", state.operation))
    failed = [s for s in states if s.failed]
    if not failed:
        return found
    last = failed[-1]
    at, status, message = last.failure() or (0.0, "failed", None)
    recovered = any(s.created_at > at and s.operation == last.operation and not s.failed for s in states)
    if recovered:
        return found  # it made the same kind of task again after the failure, and that one did not fail
    short = last.id[:8] + "…" if len(last.id) > 12 else last.id
    what = f"task {short} ended {status} at {_t(run, at)}" + (f" ({message})" if message else "")
    command = run.command
    if command is not None and command.timed_out:
        found.append(_v(f"{what}, yet the command was still running at --timeout: a failed task must end the "
                        "flow with an error", last.operation))
    elif not ended_with_error(run):
        returned = "the command exited 0" if command is not None else "the client returned normally"
        found.append(_v(f"{what}, yet {returned}: failed results were returned as a success", last.operation))
    elif command is not None and crash(run) is None:
        words = [w for w in (status, message) if w]
        output = command.output or ""
        if not any(w.lower() in output.lower() for w in words) and "fail" not in output.lower():
            found.append(_v(f"{what}; the command exited {command.returncode} but its output names neither the "
                            f"status nor the provider's message", last.operation))
    return found


def _zero(run: Run) -> float:
    return min((float(e.get("time") or 0.0) for e in run.exchanges), default=0.0)


@check(ERRORS_REACH_USER)
def errors_reach_user(run: Run) -> list[ContractViolation]:
    """check-client only: a documented error ends in the output, a crash is told apart from a surfaced error."""
    command = run.command
    if command is None or command.error:
        return []
    crashed = crash(run)
    if crashed is not None:
        return [_v(f"the client crashed ({crashed}) after its last answer: {_answer(run, _last_call(run))}; a "
                   "documented answer must end in a handled error, not an uncaught exception")]
    if command.timed_out:
        return []
    last: dict[str, dict[str, Any]] = {}
    for exchange in run.calls():
        last[exchange["operation"]] = exchange
    found = []
    output = (command.output or "").lower()
    for exchange in last.values():
        outcome = exchange.get("outcome") or {}
        if outcome.get("kind") not in ("error", "rejected"):
            continue
        op = run.referee.operations[exchange["operation"]]
        code, message = outcome.get("code"), str(outcome.get("message") or "")
        if re.search(rf"\b{code}\b", output) or (message and message.lower()[:40] in output):
            continue
        ended = "exited 0" if command.ok else f"exited {command.returncode}"
        found.append(_v(f"the last {op.key} answered code {code} ({message!r}); the command {ended}, but its "
                        "output names neither the code nor the message: the error never reached the user", op.key))
    return found


def _transient(op: Operation, exchange: dict[str, Any]) -> str | None:
    """Why this answer is worth retrying (a call-frequency, maintenance or server error, a broken answer)."""
    outcome = exchange.get("outcome") or {}
    codes = {op.provider.outcomes.get(c) for c in ("rate_limit", "rate_limit_poll", "maintenance")}
    # A server error on a paid call may have been charged all the same: only a free call is safe to send again.
    server_error = 500 <= int(outcome.get("code") or 0) < 600 and not op.x_mock.get("cost")
    if outcome.get("kind") == "error" and (outcome.get("code") in codes or server_error):
        return f"code {outcome['code']}"
    if outcome.get("kind") == "wire" and not op.x_mock.get("cost"):  # a paid call's lost answer is ambiguous
        return str(outcome.get("wire_fault"))
    return None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ra, rb = a.get("request") or {}, b.get("request") or {}
    return a["operation"] == b["operation"] and a.get("api_key") == b.get("api_key") and \
        a.get("path") == b.get("path") and ra.get("query") == rb.get("query") and ra.get("body") == rb.get("body")


@check(RETRIES, recommendation=True)
def retries_transient_errors(run: Run) -> list[ContractViolation]:
    calls, found, judged = run.calls(), [], set()
    wait = MIN_BACKOFF_S * min(1.0, run.time_scale)
    for i, exchange in enumerate(calls):
        op = run.referee.operations[exchange["operation"]]
        why = _transient(op, exchange)
        if why is None or op.key in judged:
            continue
        earlier = next((e for e in reversed(calls[:i]) if _same(e, exchange)), None)
        if earlier is not None and _transient(op, earlier):
            continue  # a retry that failed again: the first of the streak is judged
        again = next((e for e in calls[i + 1:] if _same(e, exchange)), None)
        asked = retry_after(exchange)
        if again is None:
            judged.add(op.key)
            found.append(_v(f"did not retry {op.key} after {why} at {_t(run, exchange['time'])}: transient errors "
                            f"usually pass; retry with backoff (at least {wait:g} s, doubling)", op.key))
        elif again["time"] - exchange["time"] < max(wait, asked or 0.0):
            judged.add(op.key)
            need = f"the answer's Retry-After: {asked:g} s" if asked else f"at least {wait:g} s"
            found.append(_v(f"retried {op.key} {again['time'] - exchange['time']:.3f} s after {why}; back off "
                            f"first ({need})", op.key))
    return found


@check(FORGED)
def forged_callbacks(run: Run) -> list[ContractViolation]:
    """The kit's forged callbacks carry ids and file names no real task has; using one is acting on it."""
    if not run.forged:
        return []
    found = []
    for exchange in run.exchanges:
        text = json.dumps([exchange.get("path"), (exchange.get("request") or {}).get("body"),
                           (exchange.get("request") or {}).get("query")])
        hit = next((mark for mark in run.forged if mark in text), None)
        if hit is not None:
            what = "downloaded" if exchange.get("operation") == "download" else "called"
            found.append(_v(f"{what} {exchange.get('method')} {exchange.get('path')} with {hit!r}, which only a "
                            "forged callback carried (a wrong signature, or a task the client never created): "
                            "verify a callback before acting on it"))
    return found[:3]


@check(PAID_TWICE)
def paid_twice(run: Run) -> list[ContractViolation]:
    """After an answer lost once the call took effect, sending the same paid call again pays twice."""
    calls, found = run.calls(), []
    for i, exchange in enumerate(calls):
        outcome = exchange.get("outcome") or {}
        op = run.referee.operations[exchange["operation"]]
        if outcome.get("wire_fault") not in AFTER_EFFECT or not outcome.get("cost"):
            continue
        again = [e for e in calls[i + 1:] if _same(e, exchange) and (e.get("outcome") or {}).get("cost")
                 and (e.get("outcome") or {}).get("kind") in ("success", "example")]
        if not again:
            continue
        first = created_task(op, exchange) or "?"
        dupes = [created_task(op, e) or "?" for e in again]
        cost = sum(float((e.get("outcome") or {}).get("cost") or 0) for e in again)
        found.append(_v(f"sent {op.key} again after its answer was lost ({outcome['wire_fault']} at "
                        f"{_t(run, exchange['time'])}; the call had taken effect): task {first} exists and "
                        f"{', '.join(dupes)} duplicate{'s' if len(dupes) == 1 else ''} it, {cost:g} credit(s) paid "
                        "twice; look the result up (record-info, the balance) before sending a paid call again",
                        op.key))
    return found

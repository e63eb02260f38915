"""Client checks: small registered functions over one run of a client against the mock.

Each check has a stable title and returns the violations it found in a `Run`: the journal of the run,
the callbacks the mock delivered, and how the client ended.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .referee import ContractViolation, Referee
from .tasks import PENDING, poll_status

MIN_BACKOFF_S = 1.0  # a retry after a call-frequency error must come at least this late, and after Retry-After
MAX_CALLS_AFTER_CREDITS = 1  # one more try (say, after a top-up) is fine; more is a loop


@dataclass
class Run:
    referee: Referee
    exchanges: list[dict[str, Any]]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    expected_errors: tuple[type[BaseException], ...] = (Exception,)
    command: Any = None  # how a check-client command ended (a CommandResult); None for a Python flow
    time_scale: float = 1.0  # task time's scale: waits the kit asks of a client shrink with it
    error_exit: tuple[int, ...] | None = None  # exit codes a command declared for "a documented error"
    forged: tuple[str, ...] = ()  # ids and file names the kit's forged callbacks carried

    def calls(self) -> list[dict[str, Any]]:
        """Provider calls only: no downloads, no control plane."""
        return [e for e in self.exchanges if e.get("operation") in self.referee.operations]

    def is_cause(self, exchange: dict[str, Any], *causes: str) -> bool:
        op = self.referee.operations[exchange["operation"]]
        outcome = exchange.get("outcome") or {}
        codes = {op.provider.outcomes.get(c) for c in causes}
        return outcome.get("kind") == "error" and outcome.get("code") in codes


Check = Callable[[Run], list[ContractViolation]]
CHECKS: dict[str, Check] = {}
# Advice rather than a broken promise: reported, never failing a run, unless a caller asks for them as checks.
RECOMMENDATIONS: dict[str, Check] = {}


def check(title: str, *, recommendation: bool = False) -> Callable[[Check], Check]:
    """Register a client check (or a recommendation) under a stable title."""

    def register(func: Check) -> Check:
        def titled(run: Run) -> list[ContractViolation]:
            return [ContractViolation(title, v.detail, v.operation, v.pointer) for v in func(run)]

        (RECOMMENDATIONS if recommendation else CHECKS)[title] = titled
        return titled

    return register


def _v(detail: str, operation: str | None = None) -> ContractViolation:
    return ContractViolation("", detail, operation)


@check("every request is valid")
def valid_requests(run: Run) -> list[ContractViolation]:
    return [ContractViolation("", v.detail if v.title == "request is valid" else f"{v.title}: {v.detail}",
                              v.operation, v.pointer) for v in run.referee.review(run.exchanges)]


@check("no crash with an unexpected exception")
def no_crash(run: Run) -> list[ContractViolation]:
    if run.error is None or isinstance(run.error, run.expected_errors):
        return []
    expected = ", ".join(e.__name__ for e in run.expected_errors)
    return [_v(f"the client raised {type(run.error).__name__}: {run.error} (expected only {expected})")]


@check("documented errors reach the caller as errors")
def errors_reach_caller(run: Run) -> list[ContractViolation]:
    if run.error is not None:
        return []
    last: dict[str, dict[str, Any]] = {}
    for exchange in run.calls():
        last[exchange["operation"]] = exchange
    found = []
    for name, exchange in last.items():
        outcome = exchange.get("outcome") or {}
        if outcome.get("kind") in ("error", "rejected", "wire"):
            what = outcome.get("wire_fault") or f"code {outcome.get('code')}"
            op = run.referee.operations[name]
            found.append(_v(f"the last {op.key} ended in {what} ({outcome.get('reason')}), yet the client returned "
                            "normally: the error never reached its caller", op.key))
    return found


def _same_call(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["operation"] == b["operation"] and a.get("api_key") == b.get("api_key")


def retry_after(exchange: dict[str, Any]) -> float | None:
    """The seconds the answer's Retry-After header asked for (delay-seconds form), if it had one."""
    headers = (exchange.get("response") or {}).get("headers") or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@check("waits after a call-frequency error before retrying")
def backoff_after_rate_limit(run: Run) -> list[ContractViolation]:
    calls, found = run.calls(), []
    for i, exchange in enumerate(calls):
        if not run.is_cause(exchange, "rate_limit", "rate_limit_poll"):
            continue
        retry = next((later for later in calls[i + 1:] if _same_call(later, exchange)), None)
        asked = retry_after(exchange)
        wait = max(MIN_BACKOFF_S, asked or 0.0)
        if retry is not None and retry["time"] - exchange["time"] < wait:
            op = run.referee.operations[exchange["operation"]]
            why = f"the answer's Retry-After: {asked:g}" if asked is not None else "no Retry-After was given"
            found.append(_v(f"retried {retry['time'] - exchange['time']:.3f} s after code "
                            f"{exchange['outcome']['code']} (call frequency too high); wait at least "
                            f"{wait:g} s ({why})", op.key))
    return found


@check("does not retry in a loop after insufficient credits")
def no_loop_after_credits(run: Run) -> list[ContractViolation]:
    calls, found = run.calls(), []
    for i, exchange in enumerate(calls):
        if not run.is_cause(exchange, "credits"):
            continue
        again = [later for later in calls[i + 1:] if _same_call(later, exchange)]
        if len(again) > MAX_CALLS_AFTER_CREDITS:
            op = run.referee.operations[exchange["operation"]]
            found.append(_v(f"called {op.key} {len(again)} more times after code {exchange['outcome']['code']} "
                            "(insufficient credits); credits do not come back by retrying", op.key))
            break
    return found


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return [value] if isinstance(value, str) and "/files/" in value else []


def _ids(value: Any, key: str = "") -> set[str]:
    """String values of id-like keys (`id`, `task_id`, `clip_id`, `audioId`, ...) anywhere in `value`."""
    if isinstance(value, dict):
        return {i for k, v in value.items() for i in _ids(v, str(k))}
    if isinstance(value, list):
        return {i for v in value for i in _ids(v, key)}
    return {value} if isinstance(value, str) and value and key.lower().endswith("id") else set()


def _received_at(delivery: dict[str, Any]) -> float | None:
    """When the receiver first acknowledged `delivery` (a 2xx attempt), or None if it never did."""
    return next((a["at"] for a in delivery.get("attempts") or () if 200 <= (a.get("status") or 0) < 300), None)


def _paid_twice(run: Run) -> list[ContractViolation]:
    """The same paid call, same body, charged again after a callback that carried its ids.

    Downloads catch a result processed twice when the callback carries file URLs (api.box); a provider whose
    callback carries ids the client then spends credits on (MusicAPI: clip ids for VOX) shows it as work paid
    for twice. A retry after an error is not counted: only calls that succeeded and were charged are.
    """
    received = [(at, _ids(d.get("payload"))) for d in run.callbacks if (at := _received_at(d)) is not None]
    counts: dict[tuple[str, Any, str], list[dict[str, Any]]] = defaultdict(list)
    for exchange in run.calls():
        outcome = exchange.get("outcome") or {}
        body = (exchange.get("request") or {}).get("body")
        if outcome.get("kind") != "success" or not outcome.get("cost") or not isinstance(body, dict):
            continue
        used = _ids(body)
        if any(at <= exchange["time"] and used & ids for at, ids in received):
            counts[(exchange["operation"], exchange.get("api_key"), json.dumps(body, sort_keys=True))].append(exchange)
    found = []
    for (name, _key, body_text), calls in counts.items():
        if len(calls) > 1:
            op = run.referee.operations[name]
            found.append(_v(f"made the same paid {op.key} call {len(calls)} times ({body_text}), each charged "
                            f"{calls[0]['outcome']['cost']:g} credit(s), with ids a callback delivered: "
                            "a repeated callback was processed again", op.key))
    return found


@check("a duplicate callback is not processed twice")
def duplicate_callback_once(run: Run) -> list[ContractViolation]:
    delivered = {u.split("/files/", 1)[1] for d in run.callbacks for u in _urls(d.get("payload"))}
    counts: dict[str, int] = defaultdict(int)
    for exchange in run.exchanges:
        if exchange.get("operation") == "download" and exchange.get("method") == "GET":
            counts[str(exchange["path"]).split("/files/", 1)[-1]] += 1
    return [_v(f"downloaded /files/{path} {n} times: a repeated callback was processed again")
            for path, n in sorted(counts.items()) if n > 1 and path in delivered] + _paid_twice(run)


@check("never polls faster than documented")
def polling_interval(run: Run) -> list[ContractViolation]:
    """Only the wait after an answer that showed the task still pending counts: a retry after an error answer
    (or a lost one) is the retry checks' business, not polling."""
    last: dict[tuple[Any, ...], float] = {}
    found = []
    for exchange in run.calls():
        op = run.referee.operations[exchange["operation"]]
        interval = op.x_mock.get("poll_interval_s")
        if not interval:
            continue
        key = (op.operation_id, exchange.get("api_key"), exchange["path"],
               tuple(sorted(((exchange.get("request") or {}).get("query") or {}).items())))
        if key in last and exchange["time"] - last[key] < float(interval):
            found.append(_v(f"polled {exchange['time'] - last[key]:.3f} s after the previous poll of the same task "
                            f"had shown it pending; the documented interval is {interval} s", op.key))
        status = poll_status(op, exchange)[0] if op.x_mock.get("poll_task") else "pending"
        if status in PENDING:
            last[key] = exchange["time"]
        else:
            last.pop(key, None)
    return found


def run_checks(run: Run, titles: list[str] | None = None, *,
               recommendations: bool = False) -> list[ContractViolation]:
    """The violations every check (or those titled) finds; with `recommendations`, the recommendations' too."""
    table = {**CHECKS, **RECOMMENDATIONS} if recommendations else CHECKS
    return [v for title, func in table.items() if titles is None or title in titles for v in func(run)]


def run_recommendations(run: Run) -> list[ContractViolation]:
    return [v for func in RECOMMENDATIONS.values() for v in func(run)]


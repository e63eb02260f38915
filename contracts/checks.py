"""Client checks: small registered functions over one run of a client against the mock.

Each check has a stable title and returns the violations it found in a `Run`: the journal of the run,
the callbacks the mock delivered, and how the client ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .referee import ContractViolation, Referee

MIN_BACKOFF_S = 1.0  # a retry after a call-frequency error must come at least this late (or after Retry-After)
MAX_CALLS_AFTER_CREDITS = 1  # one more try (say, after a top-up) is fine; more is a loop


@dataclass
class Run:
    referee: Referee
    exchanges: list[dict[str, Any]]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    expected_errors: tuple[type[BaseException], ...] = (Exception,)

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


def check(title: str) -> Callable[[Check], Check]:
    """Register a client check under a stable title."""

    def register(func: Check) -> Check:
        def titled(run: Run) -> list[ContractViolation]:
            return [ContractViolation(title, v.detail, v.operation, v.pointer) for v in func(run)]

        CHECKS[title] = titled
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


@check("waits after a call-frequency error before retrying")
def backoff_after_rate_limit(run: Run) -> list[ContractViolation]:
    calls, found = run.calls(), []
    for i, exchange in enumerate(calls):
        if not run.is_cause(exchange, "rate_limit", "rate_limit_poll"):
            continue
        retry = next((later for later in calls[i + 1:] if _same_call(later, exchange)), None)
        if retry is not None and retry["time"] - exchange["time"] < MIN_BACKOFF_S:
            op = run.referee.operations[exchange["operation"]]
            found.append(_v(f"retried {retry['time'] - exchange['time']:.3f} s after code "
                            f"{exchange['outcome']['code']} (call frequency too high); wait at least "
                            f"{MIN_BACKOFF_S:g} s (or Retry-After)", op.key))
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


@check("a duplicate callback is not processed twice")
def duplicate_callback_once(run: Run) -> list[ContractViolation]:
    delivered = {u.split("/files/", 1)[1] for d in run.callbacks for u in _urls(d.get("payload"))}
    counts: dict[str, int] = defaultdict(int)
    for exchange in run.exchanges:
        if exchange.get("operation") == "download" and exchange.get("method") == "GET":
            counts[str(exchange["path"]).split("/files/", 1)[-1]] += 1
    return [_v(f"downloaded /files/{path} {n} times: a repeated callback was processed again")
            for path, n in sorted(counts.items()) if n > 1 and path in delivered]


@check("never polls faster than documented")
def polling_interval(run: Run) -> list[ContractViolation]:
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
            found.append(_v(f"polled {exchange['time'] - last[key]:.3f} s after the previous poll of the same task; "
                            f"the documented interval is {interval} s", op.key))
        last[key] = exchange["time"]
    return found


def run_checks(run: Run, titles: list[str] | None = None) -> list[ContractViolation]:
    return [v for title, func in CHECKS.items() if titles is None or title in titles for v in func(run)]

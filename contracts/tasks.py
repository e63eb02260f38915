"""The tasks a client created and what it saw of them, read from the mock's journal and deliveries.

The spec says where to look: a creating operation's `x-mock.task_id` is the JSON pointer of the new task's id in
its answer; a polling operation's `x-mock.poll_task` names the parameter carrying the task id and the pointers of
the task's status and error message. Callbacks name their task in `data.task_id` (api.box) or `task_id`
(MusicAPI). Nothing here runs anything: it works on the plain records of a finished run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mockserver.spec import Operation

# Task statuses by what they mean to a client. MusicAPI's not-ready answer (HTTP 202) is pending too.
PENDING = frozenset({"PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "pending", "running", "not_ready"})
FAILED = frozenset({"CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "SENSITIVE_WORD_ERROR", "failed"})
DONE = frozenset({"SUCCESS", "CALLBACK_EXCEPTION", "succeeded"})
TERMINAL = FAILED | DONE


def pointer(value: Any, path: str) -> Any:
    """The value at a JSON pointer; a `0` step over a list collects every item (a task's clips)."""
    parts = [p for p in path.split("/") if p]
    for index, part in enumerate(parts):
        if isinstance(value, list) and part == "0":
            rest = "/" + "/".join(parts[index + 1:])
            return [pointer(item, rest) for item in value]
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _one(value: Any) -> Any:
    """A list of clip statuses read as one: failed if any failed, else the first."""
    if isinstance(value, list):
        values = [v for v in value if v is not None]
        return next((v for v in values if v in FAILED), values[0] if values else None)
    return value


def created_task(op: Operation, exchange: Mapping[str, Any]) -> str | None:
    """The id of the task this call created (answered or not: the journal keeps an answer the wire lost)."""
    where = op.x_mock.get("task_id")
    outcome = exchange.get("outcome") or {}
    if not where or outcome.get("kind") not in ("success", "example"):
        return None
    found = pointer((exchange.get("response") or {}).get("body"), str(where))
    return found if isinstance(found, str) and found else None


def polled_task(op: Operation, exchange: Mapping[str, Any]) -> str | None:
    """The task id a poll asks about, from its query or path."""
    spec = op.x_mock.get("poll_task") or {}
    name = spec.get("param")
    if not name:
        return None
    query = (exchange.get("request") or {}).get("query") or {}
    if name in query:
        return str(query[name])
    path, template = str(exchange.get("path") or ""), op.path
    prefix = template.split("{", 1)[0]
    return path[len(prefix):].split("/", 1)[0] if "{" in template and path.startswith(prefix) else None


def poll_status(op: Operation, exchange: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(task status, error message) a poll answered; (None, None) for an error answer or an unknown task."""
    spec = op.x_mock.get("poll_task") or {}
    outcome = exchange.get("outcome") or {}
    response = exchange.get("response") or {}
    if outcome.get("kind") not in ("success", "example") or outcome.get("wire_fault") not in (None, "slow_dribble"):
        return None, None
    if not op.provider.body_transport and response.get("status") == 202:
        return "not_ready", None
    body = response.get("body")
    status = _one(pointer(body, str(spec.get("status") or "")))
    message = _one(pointer(body, str(spec.get("message") or ""))) if spec.get("message") else None
    return (str(status) if status is not None else None), (str(message) if message else None)


def callback_task(payload: Any) -> tuple[str | None, bool, str | None]:
    """(task id, whether it reports a failure, its message) of a callback payload."""
    if not isinstance(payload, dict):
        return None, False, None
    data = payload.get("data")
    task = (data.get("task_id") if isinstance(data, dict) else None) or payload.get("task_id")
    failed = payload.get("code") not in (200, None) or str(payload.get("event") or "").endswith(".failed")
    return (str(task) if task else None), failed, payload.get("msg") or payload.get("message")


@dataclass
class TaskState:
    """One task the client created, and what it saw of it."""

    id: str
    operation: str  # "POST /api/v1/generate"
    created_at: float
    poll_interval: float | None = None  # of the operation that polls it (documented, scaled)
    status: str | None = None  # the last status the client was shown (poll or callback)
    message: str | None = None
    terminal_at: float | None = None  # when the client was first shown a terminal status
    terminal_status: str | None = None
    terminal_message: str | None = None
    polls: int = 0
    polls_after_terminal: list[float] = field(default_factory=list)  # after a poll showed it terminal
    callback_failure: tuple[float, str, str | None] | None = None  # (when, what, message) a failure callback said
    answer_lost: bool = False  # its create call's answer never reached the client

    @property
    def failed(self) -> bool:
        return self.terminal_status in FAILED or (self.terminal_status is None and self.callback_failure is not None)

    def failure(self) -> tuple[float, str, str | None] | None:
        """(when, status, message) the client was first told the task failed: a poll, else a failure callback."""
        if self.terminal_status in FAILED and self.terminal_at is not None:
            return self.terminal_at, self.terminal_status, self.terminal_message
        return self.callback_failure if self.terminal_status is None else None

    def as_dict(self, zero: float = 0.0) -> dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "created_at": round(self.created_at - zero, 3),
                "status": self.status, "message": self.message, "polls": self.polls,
                "terminal_status": self.terminal_status,
                "terminal_at": None if self.terminal_at is None else round(self.terminal_at - zero, 3),
                "polls_after_terminal": len(self.polls_after_terminal), "answer_lost": self.answer_lost}

    def describe(self, zero: float = 0.0) -> str:
        short = self.id[:8] + "…" if len(self.id) > 12 else self.id
        lost = " (its answer was lost)" if self.answer_lost else ""
        if self.terminal_status is not None and self.terminal_at is not None:
            text = f"task {short} ({self.operation}{lost}) has been {self.terminal_status} since " \
                   f"t={self.terminal_at - zero:.1f} s"
            if self.terminal_message and self.failed:
                text += f" ({self.terminal_message})"
            more = len(self.polls_after_terminal)
            return text + (f"; the client polled it {more} more time{'s' if more != 1 else ''}" if more else "")
        if self.callback_failure is not None:
            at, what, message = self.callback_failure
            return f"task {short} ({self.operation}{lost}) was reported failed by {what} at t={at - zero:.1f} s" + (
                f" ({message})" if message else "") + f"; polled {self.polls} time{'s' if self.polls != 1 else ''}"
        shown = f"last shown {self.status}" if self.status else "its status never shown to the client"
        return f"task {short} ({self.operation}{lost}), created at t={self.created_at - zero:.1f} s: {shown}, " \
               f"polled {self.polls} time{'s' if self.polls != 1 else ''}"


def task_states(operations: Mapping[str, Operation], exchanges: Iterable[Mapping[str, Any]],
                deliveries: Iterable[Mapping[str, Any]] = ()) -> list[TaskState]:
    """Every task the client created, in creation order, with the statuses its polls and callbacks showed."""
    tasks: dict[str, TaskState] = {}
    pollers: dict[str, float] = {}
    for op in operations.values():
        interval = op.x_mock.get("poll_interval_s")
        if op.x_mock.get("poll_task") and interval:
            pollers[op.provider.name] = float(interval)
    events: list[tuple[float, int, str, Any]] = []
    for exchange in exchanges:
        op = operations.get(str(exchange.get("operation")))
        if op is not None:
            events.append((float(exchange.get("time") or 0.0), 0, "exchange", (op, exchange)))
    for delivery in deliveries:
        at = next((a.get("at") for a in delivery.get("attempts") or () if 200 <= (a.get("status") or 0) < 300), None)
        if at is not None:
            events.append((float(at), 1, "callback", delivery))
    for at, _order, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "callback":
            task_id, failed, message = callback_task(item.get("payload"))
            state = tasks.get(str(task_id))
            if state is not None and failed and state.callback_failure is None:
                code = (item.get("payload") or {}).get("code")
                what = f"a {(item.get('payload') or {}).get('event') or 'failure'} webhook" \
                    if item.get("provider") == "musicapi" else f"an error callback (code {code})"
                state.callback_failure = (at, what, message)
            continue
        op, exchange = item
        created = created_task(op, exchange)
        if created is not None:
            lost = (exchange.get("outcome") or {}).get("wire_fault") in ("connection_reset_after", "timeout_after")
            tasks.setdefault(created, TaskState(created, op.key, at, pollers.get(op.provider.name),
                                                answer_lost=lost))
            continue
        polled = polled_task(op, exchange)
        state = tasks.get(str(polled)) if polled else None
        if state is None:
            continue
        if state.terminal_at is not None:
            state.polls_after_terminal.append(at)
        state.polls += 1
        status, message = poll_status(op, exchange)
        if status is not None:
            _shown(state, at, status, message)
    return list(tasks.values())


def _shown(state: TaskState, at: float, status: str, message: str | None) -> None:
    state.status, state.message = status, message
    if status in TERMINAL and state.terminal_at is None:
        state.terminal_at, state.terminal_status, state.terminal_message = at, status, message

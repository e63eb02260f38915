"""The control plane under /__mock/, described by openapi/control.yaml.

Requests are validated against that spec like provider requests; each operation's `x-mock.action`
(`control.<name>`) names one handler here. Handlers answer (HTTP status, JSON body), and see of the mock only
what `ControlledMock` names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import yaml

from .config import suggest
from .journal import redact
from .request import MockRequest
from .scenarios import matches, task_outcomes
from .validation import did_you_mean
from .version import __version__

if TYPE_CHECKING:
    from .callbacks import Deliveries
    from .clock import Clock, Scheduler
    from .spec import Spec
    from .store import Store


class ControlledMock(Protocol):
    """What the control plane needs of the mock: its state, time, callbacks and providers."""

    specs: list[Spec]
    control_spec: Spec
    provider_names: list[str]
    started: float  # time.monotonic() when the mock was built
    store: Store
    clock: Clock
    scheduler: Scheduler
    deliveries: Deliveries

    def reset(self) -> None: ...

    def in_maintenance(self, provider: str, flags: dict[str, bool] | None = None) -> bool: ...


Handler = Callable[[ControlledMock, MockRequest], Awaitable[tuple[int, Any]]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        HANDLERS[f"control.{name}"] = func
        return func

    return register


def unprocessable(message: str) -> tuple[int, Any]:
    """A well-formed request that does not fit the named operation's contract."""
    return 422, {"code": 422, "message": message}


@handler("reset")
async def reset(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    mock.reset()
    return 200, {"reset": True}


class Raw(NamedTuple):
    """A body that is not JSON (a spec as YAML), answered as is with its content type."""

    data: bytes
    content_type: str


_FILTERS = ("api_key", "status", "outcome", "since", "path")  # besides `operation`, which the store applies


def _journal(mock: ControlledMock, req: MockRequest, limit: int | None) -> list[dict[str, Any]]:
    """The journal's records that match the query's filters, the last `limit` of them."""
    q = req.query
    operation = q.get("operation")
    if operation is not None and " " in operation:  # `METHOD /path`, as in faults: its operationId
        found = [op for spec in mock.specs for op in spec.operations if matches(op, operation)]
        operation = found[0].operation_id if found else operation
    if not any(name in q for name in _FILTERS):
        # The limit is applied before any record is built: `?limit=1` reads one record whatever the ring holds.
        return mock.store.journal(limit, operation)
    keys = {q["api_key"], redact(q["api_key"])} if "api_key" in q else None
    status = int(q["status"]) if "status" in q else None
    since = float(q["since"]) if "since" in q else None
    path = q.get("path")
    prefix = path[:-1] if path is not None and path.endswith("*") else None

    def wanted(record: dict[str, Any]) -> bool:
        response, outcome = record.get("response") or {}, record.get("outcome") or {}
        return ((keys is None or record.get("api_key") in keys)
                and (status is None or response.get("status") == status)
                and ("outcome" not in q or outcome.get("kind") == q["outcome"])
                and (since is None or record.get("time", 0) >= since)
                and (path is None or (record.get("path", "").startswith(prefix) if prefix is not None
                                      else record.get("path") == path)))

    items = [record for record in mock.store.journal(None, operation) if wanted(record)]
    return items[-limit:] if limit else items


@handler("journal")
async def journal(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    items = _journal(mock, req, int(req.query["limit"]) if "limit" in req.query else None)
    return 200, {"exchanges": items, "count": len(items)}


@handler("journal_count")
async def journal_count(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    return 200, {"count": len(_journal(mock, req, None))}


@handler("health")
async def health(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    store: dict[str, Any] = {"kind": "memory" if not mock.store.shared else "redis", "reachable": True}
    ping = getattr(mock.store, "ping", None)
    if ping is not None:
        try:
            ping()
        except Exception as exc:  # any failure to answer is "unreachable", reported with its reason
            store.update(reachable=False, error=str(exc))
    up = store["reachable"]
    return (200 if up else 503), {"status": "ok" if up else "unavailable", "version": __version__,
                                  "uptime_s": round(time.monotonic() - mock.started, 3), "store": store}


@handler("spec")
async def spec(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    name, _, kind = req.path_params["file"].rpartition(".")
    found = [s for s in [*mock.specs, mock.control_spec] if s.provider.name == name]
    if not found:  # the path's enum is the providers the mock loads; one built with fewer says so
        return 404, {"code": 404, "message": f"spec {name!r} is not served by this mock."}
    document = {**found[0].document, "servers": [{"url": req.base_url, "description": "this stemmock"}]}
    # Through JSON, so that both forms say the same (YAML's integer keys, such as status codes, become strings).
    document = json.loads(json.dumps(document))
    if kind == "json":
        return 200, document
    return 200, Raw(yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode(), "application/yaml")


@handler("callbacks")
async def callbacks(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    items = mock.deliveries.list()
    return 200, {"callbacks": items, "count": len(items)}


@handler("credits")
async def credits(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    key, body = req.path_params["api_key"], req.json
    providers = [body["provider"]] if body.get("provider") else mock.provider_names
    balances = {p: mock.store.set_balance(p, key, body["credits"], body.get("extra_credits", 0)) for p in providers}
    return 200, {"api_key": key, "balances": balances}


@handler("get_maintenance")
async def get_maintenance(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    return 200, {"maintenance": {p: mock.in_maintenance(p) for p in mock.provider_names}}


@handler("set_maintenance")
async def set_maintenance(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    body = req.json
    for provider in [body["provider"]] if body.get("provider") else mock.provider_names:
        mock.store.set_maintenance(provider, bool(body["on"]))
    return await get_maintenance(mock, req)


@handler("list_faults")
async def list_faults(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    return 200, {"faults": mock.store.faults()}


@handler("add_fault")
async def add_fault(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    body = req.json
    name = body["operation"]
    found = [op for spec in mock.specs for op in spec.operations if matches(op, name) and name != "*"]
    if not found:
        known = [op.operation_id for spec in mock.specs for op in spec.operations]
        known += [op.key for spec in mock.specs for op in spec.operations]
        return 404, {"code": 404, "message": f"operation {name!r} names no provider operation.{suggest(name, known)}"}
    op = found[0]
    if "code" in body and body["code"] not in op.documented_codes:
        listed = ", ".join(str(c) for c in op.documented_codes)
        return unprocessable(f"code {body['code']} is not a documented outcome of {op.key}; "
                             f"documented codes: {listed}.")
    if "scenario" in body and not op.callbacks:
        return unprocessable(f"scenario {body['scenario']!r} does not apply: {op.key} sends no callback.")
    if "task_outcome" in body and body["task_outcome"] not in task_outcomes(op):
        listed = ", ".join(task_outcomes(op)) or "none: it creates no task"
        return unprocessable(f"task_outcome {body['task_outcome']!r} does not apply to {op.key}; "
                             f"its task outcomes: {listed}.")
    if "example" in body and body["example"] not in op.examples():
        listed = ", ".join(sorted(op.examples())) or "none"
        return unprocessable(f"example {body['example']!r} names no example of {op.key}; "
                             f"documented examples: {listed}.{did_you_mean(body['example'], list(op.examples()))}")
    fault = {"operation": op.operation_id, "times": body.get("times", 1), "api_key": body.get("api_key")}
    for kind in ("code", "wire_fault", "scenario", "task_outcome", "example"):
        if kind in body:
            fault[kind] = body[kind]
    return 201, mock.store.add_fault(fault)


@handler("clear_faults")
async def clear_faults(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    mock.store.clear_faults()
    return 200, {"faults": []}


@handler("set_script")
async def set_script(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    mock.store.set_script(list(req.json["steps"]))
    return 200, {"steps": mock.store.script()}


@handler("get_script")
async def get_script(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    return 200, {"steps": mock.store.script()}


@handler("get_clock")
async def get_clock(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    return 200, {"mode": mock.clock.mode, "now": mock.clock.now(), "pending": len(mock.scheduler)}


@handler("advance")
async def advance(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    ran = await mock.scheduler.advance(float(req.json["seconds"]))
    return 200, {"now": mock.clock.now(), "ran": ran, "pending": len(mock.scheduler)}

"""The control plane under /__mock/, described by openapi/control.yaml.

Requests are validated against that spec like provider requests; each operation's `x-mock.action`
(`control.<name>`) names one handler here. Handlers answer (HTTP status, JSON body), and see of the mock only
what `ControlledMock` names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .config import suggest
from .request import MockRequest
from .scenarios import matches, task_outcomes
from .validation import did_you_mean

if TYPE_CHECKING:
    from .callbacks import Deliveries
    from .clock import Clock, Scheduler
    from .spec import Spec
    from .store import Store


class ControlledMock(Protocol):
    """What the control plane needs of the mock: its state, time, callbacks and providers."""

    specs: list[Spec]
    provider_names: list[str]
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


@handler("journal")
async def journal(mock: ControlledMock, req: MockRequest) -> tuple[int, Any]:
    # The limit is applied before any record is built: `?limit=1` reads one record whatever the ring holds.
    limit = int(req.query["limit"]) if "limit" in req.query else None
    items = mock.store.journal(limit, req.query.get("operation"))
    return 200, {"exchanges": items, "count": len(items)}


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

"""The inspector: `GET /__mock/ui`, a page of what the mock saw, decided and sent, fed by `GET /__mock/events`.

Its operations are described by openapi/inspector.yaml; each `x-mock.action` (`inspector.<name>`) names one
handler here. The page is plain HTML, CSS and JS shipped in the package (it needs no network beyond the mock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.responses import StreamingResponse

from ..request import MockRequest
from ..responses import JsonResponse, json_response
from .events import EventHub, reader
from .views import balances, tasks

_TYPES = {"page.html": "text/html; charset=utf-8", "inspector.css": "text/css; charset=utf-8",
          "inspector.js": "text/javascript; charset=utf-8"}
STREAM_SECONDS = 10.0  # a stream's life: short, so that a server shutting down never waits long for a page

Answer = JsonResponse | StreamingResponse
Handler = Callable[[Any, MockRequest], Awaitable[Answer]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        HANDLERS[f"inspector.{name}"] = func
        return func

    return register


def _file(name: str) -> JsonResponse:
    data = resources.files(__name__).joinpath(name).read_bytes()
    return JsonResponse(200, data, {"Cache-Control": "no-cache"}, _TYPES[name])


def hub(mock: Any) -> EventHub:
    """The mock's event hub, made on first use."""
    found: EventHub | None = getattr(mock, "event_hub", None)
    if found is None:
        found = mock.event_hub = EventHub(reader(mock))
    return found


@handler("page")
async def page(mock: Any, req: MockRequest) -> Answer:
    answer = _file("page.html")
    if mock.config.admin_token:  # the page then asks for the token before it asks for any data
        answer = JsonResponse(200, answer.body.replace(b'<html lang="en">', b'<html lang="en" data-guarded>', 1),
                              {"Cache-Control": "no-cache"}, _TYPES["page.html"])
    return answer


@handler("asset")
async def asset(mock: Any, req: MockRequest) -> Answer:
    return _file(req.path_params["asset"])


@handler("events")
async def events(mock: Any, req: MockRequest) -> Answer:
    keys = [k for k in req.query.get("keys", "").split(",") if k][:50]
    seconds = float(req.query.get("max_seconds", STREAM_SECONDS))
    return StreamingResponse(hub(mock).stream(keys, seconds), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@handler("tasks")
async def list_tasks(mock: Any, req: MockRequest) -> Answer:
    return json_response(200, {"tasks": tasks(mock), "now": mock.clock.now()})


@handler("balance")
async def balance(mock: Any, req: MockRequest) -> Answer:
    key = req.path_params["api_key"]
    return json_response(200, {"api_key": key, "balances": balances(mock, key)})


def _no_delivery(delivery_id: str) -> JsonResponse:
    return json_response(404, {"code": 404, "message": f"delivery {delivery_id!r} does not exist; expected the id "
                                                       f"of one listed by GET /__mock/callbacks."})


@handler("headers")
async def headers(mock: Any, req: MockRequest) -> Answer:
    delivery_id = req.path_params["delivery_id"]
    found = mock.deliveries.signed_headers(delivery_id)
    return _no_delivery(delivery_id) if found is None else json_response(200, {"id": delivery_id, "headers": found})


@handler("resend")
async def resend(mock: Any, req: MockRequest) -> Answer:
    delivery_id = req.path_params["delivery_id"]
    delivery = mock.store.get("delivery", delivery_id)
    if delivery is None:
        return _no_delivery(delivery_id)
    if not delivery.get("url"):
        return json_response(422, {"code": 422, "message": f"delivery {delivery_id!r} has no URL to send to."})
    attempt = await mock.deliveries.resend(delivery)
    return json_response(200, {"id": delivery_id, "attempt": attempt})


__all__ = ["HANDLERS", "hub"]

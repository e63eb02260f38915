"""A real HTTP endpoint that collects callback deliveries and can be told to fail the next N."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .live import LiveServer


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class CallbackReceiver:
    """Collects every POST it gets; `fail_next(n, status)` makes the next n answer `status`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._fail: list[int] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST", "PUT"])])
        self._server = LiveServer(self.app)
        self.url = ""

    async def _receive(self, request: Request) -> JSONResponse:
        raw = await request.body()
        with self._lock:
            status = self._fail.pop(0) if self._fail else 200
            self._deliveries.append(Delivery(request.url.path, {k.lower(): v for k, v in request.headers.items()},
                                             raw, status))
        return JSONResponse({"received": status == 200}, status_code=status)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == 200]

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._fail.clear()

    def endpoint(self, name: str = "callback") -> str:
        return f"{self.url}/{name}"

    def start(self) -> CallbackReceiver:
        self._server.start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> CallbackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

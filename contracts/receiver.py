"""A real HTTP endpoint that collects callback deliveries and can be told to refuse or time out the next N."""

from __future__ import annotations

import asyncio
import json
import re
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


RECEIVER_MODES = ("refuse", "timeout")


def parse_receiver(text: str) -> tuple[str, int]:
    """`refuse*3` or `timeout*1` (times default 1) -> (mode, times)."""
    found = re.fullmatch(r"\s*(\w+)\s*(?:\*\s*(\d+))?\s*", text or "")
    if not found or found[1] not in RECEIVER_MODES or (found[2] is not None and int(found[2]) < 1):
        raise ValueError(f"receiver behaviour {text!r} is not MODE[*TIMES]; expected refuse*N or timeout*N "
                         "with N >= 1, e.g. 'refuse*3'.")
    return found[1], int(found[2] or 1)


class CallbackReceiver:
    """Collects every POST it gets; `fail_next(n, status)` makes the next n answer `status`, `hang_next(n)` makes
    them wait `hold` seconds before answering (longer than the mock's callback timeout: the attempt times out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._fail: list[int] = []
        self._hang: list[float] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST", "PUT"])])
        self._server = LiveServer(self.app)
        self.url = ""

    async def _receive(self, request: Request) -> JSONResponse:
        raw = await request.body()
        with self._lock:
            hold = self._hang.pop(0) if self._hang else 0.0
            status = 504 if hold else self._fail.pop(0) if self._fail else 200
        if hold:
            await asyncio.sleep(hold)
        with self._lock:
            self._deliveries.append(Delivery(request.url.path, {k.lower(): v for k, v in request.headers.items()},
                                             raw, status))
        return JSONResponse({"received": status == 200}, status_code=status)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int, hold: float) -> None:
        with self._lock:
            self._hang.extend([hold] * n)

    def behave(self, text: str, callback_timeout: float) -> None:
        """Apply `refuse*N` (answer 503) or `timeout*N` (answer after the mock's callback timeout) to the next N."""
        mode, times = parse_receiver(text)
        if mode == "refuse":
            self.fail_next(times, 503)
        else:
            self.hang_next(times, callback_timeout + 0.5)

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
            self._hang.clear()

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

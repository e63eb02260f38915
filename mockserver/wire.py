"""Wire faults: answers that break at the HTTP or TCP level, for testing a client's robustness.

`connection_reset_after` and `timeout_after` break the answer of a call that took effect (the task exists and is
charged): the connection is reset at once, or after `hang_seconds` without a byte sent.

`connection_reset` and `truncated_body` need the server's socket: they reach its transport through uvicorn's
own `send` (a method of the connection's request cycle). Provider requests get that `send` directly; a request
that goes through Starlette, which wraps `send`, carries it in the scope under RAW_SEND. Without a transport
(in-process ASGI) they raise `ConnectionResetError` into the caller instead (`connection_reset` after the plain
500 that an unhandled error gets, since nothing was sent yet).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

RAW_SEND = "stemmock.raw_send"


def _transport(scope: Scope, send: Send) -> Any:
    cycle = getattr(scope.get(RAW_SEND, send), "__self__", None)
    return getattr(cycle, "transport", None)


def _reset(transport: Any) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # the socket may already be gone; closing is what matters
            pass
    transport.abort()


class WireFaultResponse:
    """An ASGI response that delivers `body` broken in the way `fault` names."""

    def __init__(self, fault: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
                 dribble_seconds: float = 2.0, content_type: str = "application/json",
                 hang_seconds: float = 30.0) -> None:
        self.fault = fault
        self.content_type = content_type
        self.body = body
        self.status = status
        self.headers = headers or {}
        self.dribble_seconds = dribble_seconds
        self.hang_seconds = hang_seconds

    def _start(self, length: int) -> dict[str, Any]:
        headers = [(b"content-type", self.content_type.encode()), (b"content-length", str(length).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        return {"type": "http.response.start", "status": self.status, "headers": headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport(scope, send)
        if self.fault == "timeout_after":  # the call took effect; no answer comes before the client gives up
            await asyncio.sleep(self.hang_seconds)
        if self.fault in ("connection_reset", "connection_reset_after", "timeout_after"):
            if transport is None:
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                raise ConnectionResetError(f"stemmock wire fault: {self.fault}")
            _reset(transport)
            return
        if self.fault == "truncated_body":
            await send(self._start(len(self.body)))
            await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
            if transport is None:
                raise ConnectionResetError("stemmock wire fault: truncated_body")
            await asyncio.sleep(0)  # let the half body reach the socket before it closes
            transport.close()
            return
        if self.fault == "malformed_json":
            broken = self.body[: max(1, len(self.body) * 2 // 3)] + b"\x00<html>"
            await send(self._start(len(broken)))
            await send({"type": "http.response.body", "body": broken})
            return
        if self.fault == "empty_200":
            await send(self._start(0))
            await send({"type": "http.response.body", "body": b""})
            return
        if self.fault == "slow_dribble":
            await send(self._start(len(self.body)))
            pieces = max(1, min(20, len(self.body)))
            size = -(-len(self.body) // pieces)
            for start in range(0, len(self.body), size):
                await asyncio.sleep(self.dribble_seconds / pieces)
                await send({"type": "http.response.body", "body": self.body[start:start + size], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        raise ValueError(f"wire fault {self.fault!r} is unknown")

"""A minimal callback receiver (raw ASGI on uvicorn + uvloop + httptools) that timestamps every POST.

POST <any path>  -> 200 {}; the arrival time (time.monotonic(), comparable across processes) is kept per path.
GET /__stats     -> {path: [arrival, ...]}      POST /__reset -> forget them.
`python -m benchmarks.receiver --port P`
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import uvicorn

ARRIVALS: dict[str, list[float]] = {}
_OK = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def _reply(send: Any, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": headers or [(b"content-type", b"application/json"),
                                       (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    path = scope["path"]
    if path == "/__stats":
        await _reply(send, json.dumps(ARRIVALS).encode())
    elif path == "/__reset":
        ARRIVALS.clear()
        await _reply(send, b"{}", _OK)
    else:
        ARRIVALS.setdefault(path, []).append(time.monotonic())
        await _reply(send, b"{}", _OK)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, backlog=4096)

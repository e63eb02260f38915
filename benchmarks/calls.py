"""The cost of one call inside the app: raw ASGI calls (no server, no HTTP client) in a plain loop.

`python -m benchmarks.calls [--calls N] [--repeat R] [--only NAME] [--no-floor]` prints, per request the load
rows send, the best of R runs in microseconds of CPU time per call, next to the floor (benchmarks/floor.py)
answering the same bytes. Nothing here touches the network, so it isolates what the app itself spends per
request; `py-spy record -- python -m benchmarks.calls --only "valid VOX" --no-floor` profiles one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from mockserver import MockConfig, create_app

from .floor import make_app

AUTH = [(b"authorization", b"Bearer bench"), (b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")]
CALLBACK = "http://127.0.0.1:9/callback"


def scope(method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": query, "headers": list(headers if headers is not None else AUTH),
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {}}


async def call(app: Any, method: str, path: str, body: bytes = b"", query: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app: (status, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(method, path, query), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _time(app: Any, path: str, body: bytes, calls: int, status: int) -> float:
    """Microseconds per call over `calls` calls of the same request."""
    for _ in range(200):  # warm-up
        got = await call(app, "POST", path, body)
    if got[0] != status:
        raise RuntimeError(f"{path} answered {got[0]} {got[1][:300]!r}; expected {status}")
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    for _ in range(calls):
        await call(app, "POST", path, body)
    return (time.process_time() - start) / calls * 1e6


async def requests(app: Any) -> dict[str, tuple[str, bytes, int]]:
    """The three requests the load rows send, with the resources they need made first."""
    _, raw = await call(app, "POST", "/api/v1/sonic/upload", json.dumps({"url": "https://example.com/a.mp3"}).encode())
    clip = json.loads(raw)["clip_id"]
    _, raw = await call(app, "POST", "/api/v1/generate", json.dumps(
        {"prompt": "a benchmark", "customMode": False, "instrumental": False, "model": "V4_5",
         "callBackUrl": CALLBACK}).encode())
    task_id = json.loads(raw)["data"]["taskId"]
    await call(app, "POST", "/__mock/clock/advance", b'{"seconds": 10}')
    _, raw = await call(app, "GET", "/api/v1/generate/record-info", query=f"taskId={task_id}".encode())
    audio_id = json.loads(raw)["data"]["response"]["sunoData"][0]["id"]
    return {
        "valid VOX": ("/api/v1/sonic/vox", json.dumps({"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30}).encode(),
                      200),
        "invalid VOX": ("/api/v1/sonic/vox", json.dumps({"clip_id": 12345, "vocal_start_s": 0,
                                                         "vocal_end_s": 30}).encode(), 400),
        "vocal-removal": ("/api/v1/vocal-removal/generate", json.dumps(
            {"taskId": task_id, "audioId": audio_id, "type": "separate_vocal", "callBackUrl": CALLBACK}).encode(), 200),
    }


async def main(calls: int, repeat: int, only: str | None = None, floor: bool = True,
               store: str = "memory") -> dict[str, Any]:
    config = MockConfig(clock="manual", default_credits=1e12, store=store,
                        rate_limits={"apibox": {"work": None, "poll": None}})  # as the load rows: no api.box window
    app = create_app(config)
    found: dict[str, Any] = {}
    for name, (path, body, status) in (await requests(app)).items():
        if only and only != name:
            continue
        sample = await call(app, "POST", path, body)
        mock_us = min([await _time(app, path, body, calls, status) for _ in range(repeat)])
        floor_us = min([await _time(make_app(status, sample[1]), path, body, calls, status)
                        for _ in range(repeat)]) if floor else 0.0
        found[name] = {"mock_us": round(mock_us, 1), "floor_us": round(floor_us, 1)}
    await app.state.mock.deliveries.close()
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="one request by name (e.g. 'valid VOX'), for profiling")
    parser.add_argument("--no-floor", action="store_true", help="time the mock only")
    parser.add_argument("--store", default="memory", help="memory (default) or a Redis URL (flushed: use a spare db)")
    args = parser.parse_args()
    for name, row in asyncio.run(main(args.calls, args.repeat, args.only, not args.no_floor, args.store)).items():
        print(f"{name:15s} mock {row['mock_us']:7.1f} µs/call   floor {row['floor_us']:5.1f} µs/call")

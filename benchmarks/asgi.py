"""The in-process fixture: VOX calls through httpx.AsyncClient(transport=ASGITransport(app)) in a plain loop,
on the default asyncio loop, as a test suite would use the mock. The floor: the same loop against floor.py.

`python -m benchmarks.asgi --seconds S --max-calls N`; prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx

from mockserver import MockConfig, create_app

from .floor import make_app

AUTH = {"Authorization": "Bearer bench"}


async def loop(app: Any, body: dict[str, Any] | None, seconds: float, max_calls: int) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 headers=AUTH) as c:
        if body is None:  # the mock: a clip to separate first
            clip = (await c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"})).json()
            body = {"clip_id": clip["clip_id"], "vocal_start_s": 0, "vocal_end_s": 30}
        for _ in range(50):  # warm-up
            r = await c.post("/api/v1/sonic/vox", json=body)
        calls, start = 0, time.perf_counter()
        deadline = start + seconds
        while calls < max_calls and time.perf_counter() < deadline:
            r = await c.post("/api/v1/sonic/vox", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"VOX answered {r.status_code}: {r.text[:300]}")
            calls += 1
        elapsed = time.perf_counter() - start
    return {"calls": calls, "seconds": elapsed, "per_second": calls / elapsed, "sample": r.text}


async def main(seconds: float, max_calls: int) -> dict[str, Any]:
    config = MockConfig(clock="manual", default_credits=1e12)
    mock = await loop(create_app(config), None, seconds, max_calls)
    floor = await loop(make_app(200, mock.pop("sample").encode()), {"clip_id": "x"}, seconds, max_calls)
    floor.pop("sample")
    return {"mock": mock, "floor": floor}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-calls", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.seconds, args.max_calls))))

"""Callback burst: N separation tasks fall due at one instant of the manual clock; how fast they all arrive.

Run as a child pinned to the server core, with benchmarks.receiver on the other core:
`python -m benchmarks.callbacks --tasks 10000 --receiver http://127.0.0.1:P`; prints one JSON line.

The mock runs in this process on uvloop (the `stemmock serve` stack): N vocal-removal tasks are created
through httpx.ASGITransport, then one `POST /__mock/clock/advance` makes them all due and delivers them.
Lag is measured on the wall clock, from the start of that advance to each arrival at the receiver (with a
manual clock every attempt's recorded `at` equals its due instant, so the clock cannot show lag).
The floor: the same N bodies POSTed by a bare asyncio HTTP/1.1 client over as many keep-alive
connections as the mock's delivery concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvloop

from mockserver import MockConfig, create_app
from mockserver.config import RateLimit

AUTH = {"Authorization": "Bearer bench"}
NO_LIMITS: dict[str, dict[str, RateLimit | None]] = {"apibox": {"work": None, "poll": None},
                                                     "musicapi": {"work": None, "poll": None}}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def arrivals(receiver: str, path: str) -> list[float]:
    async with httpx.AsyncClient(base_url=receiver, timeout=60) as c:
        return list((await c.get("/__stats")).json().get(path, []))


async def reset_receiver(receiver: str) -> None:
    async with httpx.AsyncClient(base_url=receiver, timeout=60) as c:
        (await c.post("/__reset")).raise_for_status()


async def wait_arrivals(receiver: str, path: str, count: int, timeout: float) -> list[float]:
    """The receiver's arrival times on `path`, once it has `count` (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await arrivals(receiver, path)
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


def summary(start: float, end: float, seen: list[float], count: int) -> dict[str, Any]:
    lags = [t - start for t in seen]
    last = max(lags) if lags else float("nan")
    return {"expected": count, "arrived": len(seen), "call_seconds": end - start, "all_arrived_seconds": last,
            "per_second": len(seen) / last if lags and last > 0 else 0.0,
            "lag_p50_ms": percentile(lags, 50) * 1000, "lag_p99_ms": percentile(lags, 99) * 1000}


async def mock_burst(tasks: int, receiver: str) -> tuple[dict[str, Any], bytes]:
    config = MockConfig(clock="manual", rate_limits=NO_LIMITS, default_credits=1e12)
    app = create_app(config)
    mock = app.state.mock
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080", headers=AUTH,
                                 timeout=120) as c:
        gen = (await c.post("/api/v1/generate", json={
            "prompt": "a benchmark", "customMode": False, "instrumental": False, "model": "V4_5",
            "callBackUrl": f"{receiver}/setup"})).json()
        task_id = gen["data"]["taskId"]
        await c.post("/__mock/clock/advance", json={"seconds": 10})
        info = (await c.get("/api/v1/generate/record-info", params={"taskId": task_id})).json()
        audio_id = info["data"]["response"]["sunoData"][0]["id"]
        body = {"taskId": task_id, "audioId": audio_id, "type": "separate_vocal", "callBackUrl": f"{receiver}/cb"}
        created_at = time.monotonic()
        for _ in range(tasks):
            answer = (await c.post("/api/v1/vocal-removal/generate", json=body)).json()
            if answer.get("code") != 200:
                raise RuntimeError(f"vocal-removal was refused: {answer}")
        create_seconds = time.monotonic() - created_at
        await reset_receiver(receiver)
        start = time.monotonic()
        advanced = (await c.post("/__mock/clock/advance", json={"seconds": 10})).json()
        end = time.monotonic()
        seen = await wait_arrivals(receiver, "/cb", tasks, timeout=30)
        deliveries = [d for d in (await c.get("/__mock/callbacks")).json()["callbacks"] if d["url"].endswith("/cb")]
    await mock.deliveries.close()
    delivered = sum(d["state"] == "delivered" for d in deliveries)
    errors = Counter(str(a["error"]) for d in deliveries for a in d["attempts"] if a["error"])
    latencies = [a["latency_ms"] for d in deliveries for a in d["attempts"] if a["latency_ms"] is not None]
    result = summary(start, end, seen, tasks)
    result.update(create_seconds=create_seconds, create_per_second=tasks / create_seconds, ran=advanced["ran"],
                  delivered_state=delivered, attempts=sum(len(d["attempts"]) for d in deliveries),
                  attempt_latency_p99_ms=percentile(latencies, 99), failed_attempts=dict(errors.most_common(5)),
                  states=dict(Counter(d["state"] for d in deliveries)))
    payload = json.dumps(deliveries[0]["payload"], separators=(",", ":")).encode() if deliveries else b"{}"
    return result, payload


async def floor_burst(tasks: int, receiver: str, payload: bytes, concurrency: int) -> dict[str, Any]:
    parts = urlsplit(receiver)
    request = (f"POST /floor HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    left = tasks

    async def worker() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while left > 0:
            left -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await reset_receiver(receiver)
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, tasks))))
    end = time.monotonic()
    return summary(start, end, await wait_arrivals(receiver, "/floor", tasks, timeout=30), tasks)


async def main(tasks: int, receiver: str) -> dict[str, Any]:
    mock, payload = await mock_burst(tasks, receiver)
    floor = await floor_burst(tasks, receiver, payload, MockConfig().callbacks.concurrency)
    return {"mock": mock, "floor": floor, "payload_bytes": len(payload)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--receiver", required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(main(args.tasks, args.receiver))))

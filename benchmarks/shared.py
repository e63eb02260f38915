"""The shared-store row: `stemmock serve --store redis://... --workers 2` against one worker in memory.

Both servers run in the same phase, pinned to the same server core (the redis-server beside them), with
wrk on the load core as everywhere else: so the row shows what the shared store costs per request on the
same CPU budget. On a machine with more cores than this one, the workers would each get their own.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from . import cases, load
from .cases import AUTH, READY_PATH, Case
from .procs import SERVER_CORE, BenchError, Server, ensure_tool, free_port, stemmock_command
from .report import Report

CONNECTIONS = (16, 64)
WORKERS = 2


def start_redis(binary: str, log_dir: Path) -> tuple[Server, str]:
    """A throw-away redis-server (no persistence) on a free port, pinned with the servers; its URL."""
    port = free_port()
    server = Server("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(log_dir)], port, log_dir)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start; see {server.log}") from None
            time.sleep(0.02)
    client.close()
    return server, f"redis://127.0.0.1:{port}/0"


def start_shared_mock(config: Path, log_dir: Path, store: str) -> Server:
    port = free_port()
    cmd = [*stemmock_command(), "serve", "--port", str(port), "--clock", "manual", "--config", str(config),
           "--store", store, "--workers", str(WORKERS), "--log-level", "warning"]
    server = Server("stemmock-redis", cmd, port, log_dir)
    server.wait_ready(READY_PATH, AUTH, timeout=30)
    return server


def vox_runs(server: Server, case: Case, seconds: float, warmup: float) -> dict[int, tuple[load.Run, float]]:
    """VOX at each connection count after a warm-up: the run and the successes its credits say were charged."""
    runs = {}
    load.wrk(server.url + case.path, case.body, CONNECTIONS[0], warmup)
    for conns in CONNECTIONS:
        before = cases.balance(server.url, "musicapi")
        run = load.wrk(server.url + case.path, case.body, conns, seconds)
        runs[conns] = (run, before - cases.balance(server.url, "musicapi"))
    return runs


def shared_rows(report: Report, seconds: float, warmup: float, config: Path, log_dir: Path) -> None:
    """VOX throughput and latency: 2 workers on Redis (stemmock column) vs 1 worker in memory (floor column)."""
    redis_server, store = start_redis(ensure_tool("redis-server", "redis-server"), log_dir)
    problems: list[str] = []
    try:
        memory = cases.start_mock(config, log_dir, "stemmock-memory")
        memory.wait_ready(READY_PATH, AUTH)
        vox = cases.prepare(memory.url)[0]
        in_memory = vox_runs(memory, vox, seconds, warmup)
        memory.stop()
        shared = start_shared_mock(config, log_dir, store)
        vox = cases.prepare(shared.url)[0]
        on_redis = vox_runs(shared, vox, seconds, warmup)
        shared.stop()
    finally:
        redis_server.stop()
    for conns in CONNECTIONS:
        (run, charged), (base, _charged) = on_redis[conns], in_memory[conns]
        label = f"VOX, {conns} conn: {WORKERS} workers on Redis (floor column: 1 worker in memory)"
        report.add(f"{label}: throughput", run.rps, base.rps, "req/s")
        report.add(f"{label}: p99 latency", run.p99_ms, base.p99_ms, "ms")
        problems += load.check(run, vox, f"Redis VOX c{conns}", charged, conns)
    report.notes.append(
        f"Shared store: both servers pinned to core {SERVER_CORE} (the Redis row's {WORKERS} workers and its "
        "redis-server share it), wrk on the load core; every VOX answer on Redis was charged exactly once "
        "(credits checked after each run)." if not problems else "CHECK FAILED: " + "; ".join(problems))

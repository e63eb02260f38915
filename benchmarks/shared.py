"""The shared-store row: `stemmock serve --store redis://... --workers 2` against one worker in memory.

Both servers run in the same phase, pinned to the same server core (the redis-server beside them), with
wrk on the load core as everywhere else: so the row shows what the shared store costs per request on the
same CPU budget. On a machine with more cores than this one, the workers would each get their own.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import redis

from . import cases, load
from .cases import AUTH, READY_PATH, Case
from .procs import SERVER_CORE, BenchError, CpuWatch, Server, descendants, ensure_tool, free_port, \
    process_cpu_seconds, stemmock_command, tree_cpu_seconds
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


@dataclasses.dataclass
class Measured:
    run: load.Run
    charged: float  # successes the credits say were charged
    worker_us: float  # CPU per answered call of the mock's processes (all workers), µs
    redis_us: float  # CPU per answered call of redis-server, µs (0 without one)
    foreign_cores: float  # other load on the machine meanwhile
    split: list[float] = dataclasses.field(default_factory=list)  # CPU seconds of each process of the server


def vox_runs(server: Server, case: Case, seconds: float, warmup: float,
             redis_pid: int | None = None) -> dict[int, Measured]:
    """VOX at each connection count after a warm-up: the run, the calls charged and the CPU per call (/proc)."""
    runs = {}
    load.wrk(server.url + case.path, case.body, CONNECTIONS[0], warmup)
    for conns in CONNECTIONS:
        before = cases.balance(server.url, "musicapi")
        pids = [server.proc.pid, *([redis_pid] if redis_pid else [])]
        procs = descendants(server.proc.pid)
        each = [process_cpu_seconds(p) for p in procs]
        cpu, rcpu = tree_cpu_seconds(server.proc.pid), tree_cpu_seconds(redis_pid) if redis_pid else 0.0
        with CpuWatch(*pids) as watch:
            run = load.wrk(server.url + case.path, case.body, conns, seconds)
        cpu, rcpu = tree_cpu_seconds(server.proc.pid) - cpu, (tree_cpu_seconds(redis_pid) - rcpu if redis_pid else 0.0)
        split = sorted((process_cpu_seconds(p) - t for p, t in zip(procs, each)), reverse=True)
        calls = max(run.requests, 1)
        runs[conns] = Measured(run, before - cases.balance(server.url, "musicapi"), cpu / calls * 1e6,
                               rcpu / calls * 1e6, watch.foreign_cores, split)
    return runs


ROUNDS = 3  # paired memory/Redis measurements; the row shows the round with the median CPU ratio


def shared_rows(report: Report, seconds: float, warmup: float, config: Path, log_dir: Path) -> None:
    """VOX throughput, latency and CPU per call: 2 workers on Redis (stemmock column) vs 1 worker in memory
    (floor column). Both servers stay up and are measured in turn, `ROUNDS` times: each row shows the round whose
    CPU ratio is the median (a few seconds of interference on a shared machine moves one round, not the row), and
    the notes list every round."""
    redis_server, store = start_redis(ensure_tool("redis-server", "redis-server"), log_dir)
    problems: list[str] = []
    rounds: list[tuple[dict[int, Measured], dict[int, Measured]]] = []
    try:
        memory = cases.start_mock(config, log_dir, "stemmock-memory")
        memory.wait_ready(READY_PATH, AUTH)
        shared = start_shared_mock(config, log_dir, store)
        mem_vox, red_vox = cases.prepare(memory.url)[0], cases.prepare(shared.url)[0]
        for _ in range(ROUNDS):
            rounds.append((vox_runs(memory, mem_vox, seconds, warmup),
                           vox_runs(shared, red_vox, seconds, warmup, redis_server.proc.pid)))
        shared.stop()
        memory.stop()
    finally:
        redis_server.stop()
    loads, seen = [], []
    for conns in CONNECTIONS:
        paired = sorted(((_cpu_ratio(red[conns], mem[conns]), mem[conns], red[conns]) for mem, red in rounds),
                        key=lambda r: r[0])
        cpu_ratio, mem, red = paired[len(paired) // 2]
        label = f"VOX, {conns} conn: {WORKERS} workers on Redis (floor column: 1 worker in memory)"
        ratio = red.run.rps / mem.run.rps if mem.run.rps else 0.0
        report.add(f"{label}: throughput", red.run.rps, mem.run.rps, "req/s", f"at least 0.6x memory ({ratio:.2f}x)",
                   ratio >= 0.6)
        report.add(f"{label}: p99 latency", red.run.p99_ms, mem.run.p99_ms, "ms",
                   "under 10 ms" if conns == 16 else "", red.run.p99_ms < 10 if conns == 16 else None)
        total = red.worker_us + red.redis_us
        report.add(f"{label}: CPU per call, workers + redis-server (workers {red.worker_us:.0f}, redis-server "
                   f"{red.redis_us:.0f})", round(total, 1), round(mem.worker_us, 1), "µs",
                   f"at most 1.5x memory ({cpu_ratio:.2f}x)", cpu_ratio <= 1.5)
        for mem_round, red_round in rounds:
            problems += load.check(red_round[conns].run, red_vox, f"Redis VOX c{conns}", red_round[conns].charged,
                                   conns)
        seen.append(f"c{conns}: " + ", ".join(
            f"{r.run.rps / m.run.rps:.2f}x throughput, {_cpu_ratio(r, m):.2f}x CPU ({r.worker_us:.0f} + "
            f"{r.redis_us:.0f} vs {m.worker_us:.0f} µs), p99 {r.run.p99_ms:.2f} ms, worker CPU "
            + "/".join(f"{x:.1f}" for x in r.split[:WORKERS]) + " s"
            for m, r in ((mem_round[conns], red_round[conns]) for mem_round, red_round in rounds)))
        loads.append(f"c{conns}: " + ", ".join(f"{m[conns].foreign_cores:.2f}/{r[conns].foreign_cores:.2f}"
                                               for m, r in rounds))
    report.notes.append("Shared-store rounds (Redis against memory, in order; each row shows the median; worker CPU: "
                        "seconds each worker process spent, busiest first: the workers share one listening socket, "
                        "and the first to wake may accept every connection): " + "; ".join(seen) + ".")
    report.notes.append("Other load on the machine during the shared-store runs (cores, memory/Redis run, per round): "
                        + "; ".join(loads) + ".")
    report.notes.append(
        f"Shared store: both servers pinned to core {SERVER_CORE} (the Redis row's {WORKERS} workers and its "
        "redis-server share it), wrk on the load core; every VOX answer on Redis was charged exactly once "
        "(credits checked after each run)." if not problems else "CHECK FAILED: " + "; ".join(problems))


def _cpu_ratio(red: Measured, mem: Measured) -> float:
    return (red.worker_us + red.redis_us) / mem.worker_us if mem.worker_us else 0.0


def redis_soak_rows(report: Report, calls: int, time_cap: float, config: Path, log_dir: Path) -> None:
    """Vocal-removal calls (each makes a task and queues its callback job) through 2 workers on Redis: redis-server's
    `used_memory` after 10,000 calls, just past the default `retention.max_tasks` (100,000), and after `calls`.
    The manual clock never moves, so no job falls due: only retention keeps the tasks and their jobs bounded."""
    redis_server, store = start_redis(ensure_tool("redis-server", "redis-server"), log_dir)
    try:
        shared = start_shared_mock(config, log_dir, store)
        try:
            case = cases.SOAK
            before = cases.balance(shared.url, "apibox")
            url, client = shared.url + case.path, redis.Redis.from_url(store)
            measured, sent, _spent = load.send_in_steps(
                url, case.body, [10_000, 110_000, calls], 3000.0, time_cap,
                lambda: (client.info("memory")["used_memory"] / 2**20, client.zcard("stemmock:due")))
            series = [(n, used, jobs) for n, (used, jobs) in measured]
            client.close()
            charged = (before - cases.balance(shared.url, "apibox")) / 10
        finally:
            shared.stop()
    finally:
        redis_server.stop()
    for n, used, jobs in series:
        report.add(f"Redis used_memory after {n:,} vocal-removal calls (2 workers; {jobs:,} jobs queued)",
                   round(used, 1), None, "MiB")
    if len(series) >= 3:
        (_, past_cap, _), (n_end, end, _) = series[1], series[-1]
        growth = end / past_cap - 1
        report.add(f"Redis used_memory after {n_end:,} calls against {series[1][0]:,} (past max_tasks)", round(end, 1),
                   round(past_cap, 1), "MiB", f"within 20% ({growth:+.1%})", abs(growth) <= 0.2)
    if sent < calls:
        report.notes.append(f"The Redis soak was cut at its time cap: {sent:,} of {calls:,} calls sent.")
    if charged < sent:
        report.notes.append(f"CHECK FAILED: the Redis soak sent {sent:,} calls and only {charged:,.0f} were charged.")

"""wrk runs: a fixed-duration load row, and a count of requests (for the memory soak)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .procs import LOAD_CORE, BenchError, CpuWatch

T = TypeVar("T")

if TYPE_CHECKING:
    from .cases import Case

SCRIPT = Path(__file__).with_name("wrk.lua")


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int  # connect + read + write + timeout
    status_errors: int  # HTTP status >= 400
    foreign_cores: float = 0.0  # other load on the machine during the run (see procs.CpuWatch)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, body: str, conns: int, seconds: float, limit: int = 0, key: str = "bench",
        server_pid: int | None = None) -> Run:
    """One wrk run, pinned to the load core, one thread, `conns` keep-alive connections."""
    env = {**os.environ, "BENCH_BODY": body, "BENCH_KEY": key, "BENCH_LIMIT": str(limit)}
    cmd = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(SCRIPT), url]
    with CpuWatch(*([server_pid] if server_pid else [])) as watch:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}")
    r = json.loads(lines[-1][len("RESULT "):])
    return Run(r["requests"], r["duration_us"] / 1e6, r["p50_us"] / 1000, r["p99_us"] / 1000, r["max_us"] / 1000,
               r["connect"] + r["read"] + r["write"] + r["timeout"], r["status"], watch.foreign_cores)


def send_count(url: str, body: str, count: int, conns: int, rate: float, time_cap: float) -> tuple[int, float, float]:
    """Send about `count` requests (wrk stopped by its Lua counter); (sent, seconds spent, rate seen).

    wrk sleeps for its whole -d even after its thread stops, so each chunk's duration is estimated from
    `rate`; a chunk that ran out of time measures the rate anew and is followed by another, until `count`
    is sent or `time_cap` is reached.
    """
    sent, started, rate = 0, time.perf_counter(), max(rate, 100.0)
    for _ in range(20):
        left, spent = count - sent, time.perf_counter() - started
        if left <= 0 or spent >= time_cap:
            break
        run = wrk(url, body, conns, min(left / rate * 1.1 + 1, time_cap - spent + 1), limit=left)
        if run.socket_errors:
            raise BenchError(f"{run.socket_errors} socket errors while sending {count} requests to {url}")
        sent += run.requests
        if run.requests < left:  # it ran its whole duration: a true rate
            rate = max(run.requests / max(run.seconds, 1e-3), 100.0)
    return sent, time.perf_counter() - started, rate


def send_in_steps(url: str, body: str, steps: list[int], rate: float, time_cap: float,
                  measure: Callable[[], T]) -> tuple[list[tuple[int, T]], int, float]:
    """Send requests up to each count in `steps` (16 connections, `send_count`), taking `measure()` after each, until
    the last count or `time_cap`; ([(calls sent so far, measure)], calls sent, seconds spent)."""
    series: list[tuple[int, T]] = []
    sent, spent = 0, 0.0
    for target in steps:
        if spent >= time_cap:
            break
        more, took, rate = send_count(url, body, target - sent, 16, rate, time_cap - spent)
        sent, spent = sent + more, spent + took
        series.append((sent, measure()))
    return series, sent, spent


def check(run: Run, case: Case, where: str, charged: float | None, conns: int) -> list[str]:
    """What is wrong with a run: socket errors, wrong statuses, or fewer successes than answers."""
    problems = []
    if run.socket_errors:
        problems.append(f"{where}: {run.socket_errors} socket errors")
    expected_status_errors = run.requests if case.status >= 400 else 0
    if run.status_errors != expected_status_errors:
        problems.append(f"{where}: {run.status_errors} answers with HTTP >= 400 (expected {expected_status_errors})")
    if charged is not None and not run.requests <= charged <= run.requests + conns:
        problems.append(f"{where}: {run.requests} answers but {charged:.0f} successes charged")
    return problems

"""Shared fixtures: a real mock server (manual clock) and a real callback receiver, each on a free port.

The session's mock runs once per store, in memory and on a real Redis server the session starts, so every
test that uses `mock` checks both implementations of the store.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app

API_KEY = "test-key"


class MockHandle:
    """The running mock, with the control-plane calls tests use."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.app = server.app
        self.control = httpx.Client(base_url=self.url, timeout=30)

    def reset(self) -> None:
        self.control.post("/__mock/reset").raise_for_status()

    def advance(self, seconds: float) -> dict[str, Any]:
        response = self.control.post("/__mock/clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        return response.json()

    def journal(self) -> list[dict[str, Any]]:
        return self.control.get("/__mock/journal").json()["exchanges"]

    def callbacks(self) -> list[dict[str, Any]]:
        return self.control.get("/__mock/callbacks").json()["callbacks"]

    def set_credits(self, key: str, credits: float, extra_credits: float = 0, provider: str | None = None) -> None:
        body: dict[str, Any] = {"credits": credits, "extra_credits": extra_credits}
        if provider:
            body["provider"] = provider
        self.control.put(f"/__mock/credits/{key}", json=body).raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, with its files in a temporary directory."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="stemmock-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory, "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--databases", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis for the session (skipped where redis-server is missing, except in CI, where it must be)."""
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()), None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it from the distribution's packages")
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary)
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> str:
    """An empty Redis database (db 1) for one test."""
    url = redis_server.url(1)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture(scope="session", params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """`memory`, or the session Redis's db 0: each store the mock can run on."""
    if request.param == "memory":
        return "memory"
    server: RedisServer = request.getfixturevalue("redis_server")
    with redis.Redis.from_url(server.url(0)) as client:
        client.flushdb()
    return server.url(0)


@pytest.fixture(scope="session")
def mock_server(store_url: str) -> Iterator[MockHandle]:
    app = create_app(MockConfig(clock="manual", clock_start=1_767_225_600, store=store_url))  # 2026-01-01T00:00Z
    with LiveServer(app) as server:
        handle = MockHandle(server)
        yield handle
        handle.control.close()


@pytest.fixture()
def mock(mock_server: MockHandle) -> MockHandle:
    """The session's mock, reset to a clean state for this test."""
    mock_server.reset()
    return mock_server


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


@pytest.fixture()
def receiver(receiver_server: CallbackReceiver) -> CallbackReceiver:
    receiver_server.clear()
    return receiver_server


@pytest.fixture()
def client(mock: MockHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
        yield c

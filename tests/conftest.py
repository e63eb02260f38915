"""Shared fixtures: a real mock server (manual clock) and a real callback receiver, each on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

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


@pytest.fixture(scope="session")
def mock_server() -> Iterator[MockHandle]:
    app = create_app(MockConfig(clock="manual", clock_start=1_767_225_600))  # 2026-01-01T00:00:00Z
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

"""Property: hostile bodies, headers and paths on every operation of the three specs, through the real server.

No answer is a 5xx (or api.box's body code 500) unless forced (Prefer, a fault, the script, maintenance), no
connection is dropped, and a balance changes only when the call made its resource.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import MockHandle
from hostile import API_KEY, HostileRequest, forced, requests
from hypothesis import HealthCheck, event, given, settings

PROVIDERS = ("musicapi", "apibox")
KINDS = ("clip", "task", "upload", "apibox_task")


def _state(mock: MockHandle) -> tuple[dict[str, Any], int]:
    store = mock.app.state.mock.store
    return ({p: store.balance(p, API_KEY) for p in PROVIDERS}, sum(len(store.all(kind)) for kind in KINDS))


def _restore(mock: MockHandle) -> None:
    """Undo what a control-plane call may have switched on, so that it forces nothing on later calls."""
    mock.control.put("/__mock/maintenance", json={"on": False}).raise_for_status()
    mock.control.delete("/__mock/faults").raise_for_status()
    mock.control.put("/__mock/script", json={"steps": []}).raise_for_status()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def _check(mock: MockHandle, http: httpx.Client, request: HostileRequest) -> None:
    before = _state(mock)
    try:
        answer = http.request(request.method, request.path, content=request.body, headers=list(request.headers))
    except httpx.TransportError as exc:  # the connection was dropped without an answer
        raise AssertionError(f"{request.method} {request.path[:200]}: no answer ({exc!r})") from exc
    event(f"HTTP {answer.status_code}")
    journal = mock.app.state.mock.store.journal(limit=1)
    outcome = journal[-1].get("outcome") if journal else None
    body_code = None
    if answer.headers.get("content-type", "").startswith("application/json") and answer.content:
        parsed = answer.json()  # every answer the mock sends is JSON it can read back
        body_code = parsed.get("code") if isinstance(parsed, dict) else None
    provider = request.operation.provider.name if request.operation is not None else None
    if answer.status_code >= 500 or (provider == "apibox" and body_code == 500):
        assert forced(outcome), f"{request.method} {request.path[:200]} -> {answer.status_code} {answer.text[:300]}"
    if provider == "control":
        _restore(mock)
        return
    after = _state(mock)
    if after[0] != before[0]:
        assert after[1] > before[1] or (outcome or {}).get("kind") == "success", \
            f"{request.method} {request.path[:200]} changed a balance without making anything: {outcome}"


def test_hostile_requests_get_client_errors_and_charge_nothing_for_nothing(mock: MockHandle) -> None:
    """Answers every hostile request, never with an unforced 5xx, and charges only with a resource made."""
    mock.set_credits(API_KEY, 1_000_000)
    with httpx.Client(base_url=mock.url, timeout=30) as http:
        _check(mock, http)
    assert httpx.get(f"{mock.url}/api/v1/get-credits", headers={"Authorization": f"Bearer {API_KEY}"}).status_code \
        in (200, 503)

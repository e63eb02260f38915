"""The ASGI entry: provider and control requests skip Starlette's routing, and are answered as it would answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from mockserver import MockConfig, create_app
from mockserver.app import MockApp
from mockserver.request import scope_headers, scope_query, url_path
from mockserver.responses import JsonResponse
from mockserver.wire import RAW_SEND


def _scope(method: str, path: str, *, root_path: str = "", query: bytes = b"",
           headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": root_path, "query_string": query,
            "headers": headers if headers is not None else [(b"host", b"t"), (b"authorization", b"Bearer k")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


def _call(app: MockApp, scope: dict[str, Any], body: bytes = b"{}", *, through_starlette: bool = False) -> list[Any]:
    """The messages the app sends (and the error it raises, if any)."""
    return asyncio.run(_messages(app, scope, body, through_starlette))


async def _messages(app: MockApp, scope: dict[str, Any], body: bytes, through_starlette: bool) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        if through_starlette:  # Starlette's own middleware and routes, which the direct path must match
            await Starlette.__call__(app, {**scope, RAW_SEND: send}, receive, send)
        else:
            await app(dict(scope), receive, send)
    except Exception as exc:  # noqa: BLE001  (the error is part of what is compared)
        sent.append(type(exc).__name__)
    return sent


DIRECT, ROUTED = (create_app(MockConfig(clock="manual", clock_start=1_767_225_600)) for _ in range(2))


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"])
@pytest.mark.parametrize("path", ["/", "/api/v1/sonic/vox", "/api/v1/sonic/task/x", "/api/v1/generate/record-info",
                                  "/files/", "/files/1767225600000-1000-abc/a.mp3", "/files/x\n", "/a\nb", "/a\n",
                                  "/__mock/journal", "/__mock/clock", "*"])
@pytest.mark.parametrize("root_path", ["", "/r"])
def test_a_request_is_answered_as_starlettes_routing_answered_it(method: str, path: str, root_path: str) -> None:
    """Answers every method and path exactly as routing the request through Starlette does."""
    scope = _scope(method, path, root_path=root_path)
    assert _call(DIRECT, scope) == _call(ROUTED, scope, through_starlette=True)  # the two apps see the same calls


def test_an_error_of_the_mocks_own_outside_a_call_answers_the_providers_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers a bug outside the provider pipeline with the provider's own 500 shape and closes; nothing is raised."""
    def broken(scope: Any) -> dict[str, str]:
        raise RuntimeError("a bug of the mock's")

    monkeypatch.setattr("mockserver.intake.scope_query", broken)
    for path, expected in (("/api/v1/sonic/vox", (500, {"code": 500, "message": "Internal Server Error."})),
                           ("/api/v1/generate", (200, {"code": 500, "msg": "Server error, please try again later",
                                                       "data": None}))):
        sent = _call(create_app(MockConfig(clock="manual")), _scope("POST", path))
        assert len(sent) == 2 and sent[0]["status"] == expected[0] and json.loads(sent[1]["body"]) == expected[1]
        assert (b"connection", b"close") in sent[0]["headers"]


@pytest.mark.parametrize("status", [200, 201, 204, 304, 400, 500])
@pytest.mark.parametrize("headers", [None, {}, {"Retry-After": "3"}, {"Content-Type": "text/x", "content-length": "9"}])
def test_json_response_sends_starlettes_headers(status: int, headers: dict[str, str] | None) -> None:
    """Sends the header list Starlette's Response sends for the same answer."""
    body = json.dumps({"code": status}).encode()
    starlette = Response(body, status_code=status, headers=headers, media_type="application/json")
    assert JsonResponse(status, body, headers).raw_headers == starlette.raw_headers


APP = create_app(MockConfig(clock="manual"))
PATHS = st.text(st.sampled_from("aZ/?#\\\t\r\n %é\x85:@[].-_"), max_size=10).map(lambda p: "/" + p)
HOSTS = st.sampled_from([b"127.0.0.1:8080", b"example.com", b"[::1]:80", b"bad host", b"h:99999", b"EXAMPLE.com:443"])


@settings(max_examples=300)
@given(path=PATHS, query=st.text(st.sampled_from("ab=&%;+ é"), max_size=8), hosts=st.lists(HOSTS, max_size=2),
       scheme=st.sampled_from(["http", "https"]), root_path=st.sampled_from(["", "/r", "/r/"]),
       server=st.sampled_from([("127.0.0.1", 8080), ("::1", 80), ("h", 443)]))
def test_the_request_is_read_as_starlette_reads_it(path: str, query: str, hosts: list[bytes], scheme: str,
                                                    root_path: str, server: tuple[str, int]) -> None:
    """Reads path, headers, query and origin from the scope as Starlette's Request does."""
    headers = [(b"x-a", b"1"), (b"x-b", "é".encode()), *((b"host", h) for h in hosts)]
    scope = {**_scope("GET", path, root_path=root_path, query=query.encode(), headers=headers), "scheme": scheme,
             "server": server}
    request = Request(scope)
    assert url_path(path) == request.url.path
    assert scope_headers(scope) == {k.lower(): v for k, v in request.headers.items()}
    assert scope_query(scope) == dict(request.query_params)
    assert APP.mock.intake.base_url(scope) == str(request.base_url).rstrip("/")

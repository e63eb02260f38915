"""render(): an outcome becomes the provider's own answer (its status, envelope and message key)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from .store import codec
from .scenarios import Outcome
from .spec import Operation, Provider


def error_body(provider: Provider, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error in the provider's transport."""
    if provider.body_transport:
        return 200, {provider.code_field: code, provider.message_field: message, "data": None}
    return code, {provider.code_field: code, provider.message_field: message}


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON, as answers and callback bodies are sent."""
    return codec.dumps(body)


class JsonResponse:
    """A JSON answer as an ASGI app: the two messages, with the headers Starlette's `Response` sends.

    Those are the given headers (names lower-cased), then `content-length` and `content-type` unless given;
    `content_type` is the provider's own label for JSON (api.box: `application/json;charset=UTF-8`).
    """

    __slots__ = ("body", "raw_headers", "status")

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        if not headers and not (status < 200 or status in (204, 304)):  # the usual answer, built directly
            self.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")),
                                (b"content-type", content_type.encode("latin-1"))]
            return
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] if headers else []
        names = {name for name, _value in raw}
        if b"content-length" not in names and not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        if b"content-type" not in names:
            raw.append((b"content-type", content_type.encode("latin-1")))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> JsonResponse:
    return JsonResponse(status, encode(body), headers, content_type)


def render_outcome(op: Operation, outcome: Outcome) -> tuple[int, Any, dict[str, str]]:
    """(status, body, headers) for an outcome that does not run the action: an example or an error."""
    if outcome.kind == "example" and outcome.example is not None:
        status, body = op.examples()[outcome.example]
        return status, body, dict(outcome.headers)
    status, body = error_body(op.provider, outcome.code, outcome.message or op.message_for(outcome.code))
    return status, body, dict(outcome.headers)


def render(op: Operation, outcome: Outcome,
           answer: tuple[int, Any, dict[str, str]] | None) -> tuple[int, Any, dict[str, str]]:
    """Step 6: the answer the call's effect made (its status, body, headers), else the outcome's own answer."""
    return answer if answer is not None else render_outcome(op, outcome)

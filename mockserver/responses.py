"""render(): an outcome becomes the provider's own answer (its status, envelope and message key)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from .scenarios import Outcome
from .spec import Operation, Provider


def error_body(provider: Provider, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error in the provider's transport."""
    if provider.body_transport:
        return 200, {provider.code_field: code, provider.message_field: message, "data": None}
    return code, {provider.code_field: code, provider.message_field: message}


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON, as answers and callback bodies are sent."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(body), status_code=status, headers=headers, media_type="application/json")


def render_outcome(op: Operation, outcome: Outcome) -> tuple[int, Any, dict[str, str]]:
    """(status, body, headers) for an outcome that does not run the action: an example or an error."""
    if outcome.kind == "example" and outcome.example is not None:
        status, body = op.examples()[outcome.example]
        return status, body, dict(outcome.headers)
    status, body = error_body(op.provider, outcome.code, outcome.message or op.message_for(outcome.code))
    return status, body, dict(outcome.headers)

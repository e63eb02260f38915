"""MockRequest: what the pipeline needs from an HTTP request, parsed once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

NO_BODY: Any = object()  # the request carried no body at all
BAD_JSON: Any = object()  # the body is not JSON


def parse_prefer(header: str | None) -> dict[str, str]:
    """`Prefer: code=430, example=insufficient_credits` -> {"code": "430", "example": "insufficient_credits"}."""
    found: dict[str, str] = {}
    for token in (header or "").replace(";", ",").split(","):
        name, sep, value = token.strip().partition("=")
        if sep and name.strip():
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def bearer_key(header: str | None) -> str | None:
    """The key of `Authorization: Bearer <key>`, or None when the header is absent or malformed."""
    if not header:
        return None
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key and " " not in key else None


@dataclass
class MockRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    query: dict[str, str]
    raw_body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    body_error: str | None = None

    def __post_init__(self) -> None:
        self.prefer = parse_prefer(self.headers.get("prefer"))
        self.api_key = bearer_key(self.headers.get("authorization"))
        self.body = self._parse_body()

    def _parse_body(self) -> Any:
        if not self.raw_body.strip():
            return NO_BODY
        try:
            return json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError) as exc:
            self.body_error = str(exc)
            return BAD_JSON

    @property
    def json(self) -> dict[str, Any]:
        """The body when it is a JSON object, else an empty mapping."""
        return self.body if isinstance(self.body, dict) else {}

    def field(self, name: str) -> Any:
        """A body field, else a query parameter, else a path parameter."""
        if name in self.json:
            return self.json[name]
        if name in self.query:
            return self.query[name]
        return self.path_params.get(name)

"""MockRequest: what the pipeline needs from an HTTP request, parsed once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect

from . import codec

NO_BODY: Any = object()  # the request carried no body at all
BAD_JSON: Any = object()  # the body is not JSON


def parse_prefer(header: str | None) -> dict[str, str]:
    """`Prefer: code=430, example=insufficient_credits` -> {"code": "430", "example": "insufficient_credits"}."""
    found: dict[str, str] = {}
    if not header:
        return found
    for token in header.replace(";", ",").split(","):
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


def url_path(path: str) -> str:
    """The scope's path as Starlette's `request.url.path` reads it (`?`, `#` and `\\` escaped, a leading `/` added,
    then tabs and line breaks dropped as `urlsplit` does): the path the router, journal and errors use."""
    if path[:1] == "/" and path.isprintable() and "?" not in path and "#" not in path and "\\" not in path:
        return path
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    if path and path[:1] != "/":
        path = "/" + path
    return path.replace("\t", "").replace("\r", "").replace("\n", "")


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request headers by lower-case name (the last one wins when a name repeats)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def scope_query(scope: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters (the last value wins when a name repeats; blank values kept)."""
    raw = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


async def read_body(receive: Any) -> bytes:
    """The whole request body from ASGI `receive`; ClientDisconnect if the client goes away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


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
        # The body when it is a JSON object, else an empty mapping (read many times per call: set once).
        self.json: dict[str, Any] = self.body if isinstance(self.body, dict) else {}

    def _parse_body(self) -> Any:
        if not self.raw_body.strip():
            return NO_BODY
        try:
            return codec.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError) as exc:
            self.body_error = str(exc)
            return BAD_JSON

    def field(self, name: str) -> Any:
        """A body field, else a query parameter, else a path parameter."""
        if name in self.json:
            return self.json[name]
        if name in self.query:
            return self.query[name]
        return self.path_params.get(name)

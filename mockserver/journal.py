"""The journal's entries: one call's parts kept in a tuple, built into a record only when the journal is read."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

import orjson

from .request import BAD_JSON, NO_BODY, MockRequest, printable
from .store import codec

_JOURNAL_BODY_BYTES = 64 * 1024  # a request body kept in the journal at most (the ring holds a thousand)


@functools.lru_cache(maxsize=4096)
def redact(api_key: str | None) -> str | None:
    """An API key as the journal shows it: a prefix and a short stable hash, so that one key's calls still group."""
    if api_key is None:
        return None
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{printable(api_key[:min(4, len(api_key) // 2)])}…{digest}"


def journal_body(req: MockRequest) -> bytes | None:
    """The request body as the journal keeps it, encoded now: None (no body), or JSON text that reads back."""
    if req.body is NO_BODY:
        return None
    if req.body is BAD_JSON:
        return b'"<invalid JSON>"'
    if len(req.raw_body) > _JOURNAL_BODY_BYTES:
        return codec.dumps(f"<a JSON body of {len(req.raw_body)} bytes, too large to keep>")
    # JSON the mock read without a problem reads back the same with `codec.loads` (nothing deeper than the limit,
    # no lone surrogate, no number it refused): kept as sent, which costs nothing.
    return req.raw_body


def journal_headers(req: MockRequest) -> bytes:
    """The request headers as the journal keeps them, encoded now; Authorization shows its key redacted."""
    headers = req.headers
    if "authorization" in headers:
        auth = headers["authorization"]
        scheme = auth.split(" ", 1)[0] if " " in auth.strip() else ""
        headers = {**headers, "authorization": f"{scheme} {redact(req.api_key)}" if req.api_key else "<redacted>"}
    return codec.dumps(headers)


class Exchange(tuple):  # type: ignore[type-arg]
    """One journaled call as its parts: a single object for the garbage collector, made a record when read.

    (time, operation, method, path, api key, query, request body, violations, outcome, status, the answer's own
    headers, encoded answer, encoded request headers); the answer is kept encoded, copied to its exact size, so
    that no part of it is a live container.
    """

    __slots__ = ()

    @property
    def operation_id(self) -> str:
        return str(self[1].operation_id)

    def __call__(self) -> dict[str, Any]:
        return self._record(codec.loads)

    def encoded(self) -> bytes:
        """The record as JSON, for a store that keeps it encoded: the parts the mock encoded itself (the answer,
        the request headers) are embedded as they are, not read and written again. What orjson cannot write (a
        lone surrogate, an integer beyond 64 bits) is written by json, escaped."""
        try:
            return orjson.dumps(self._record(orjson.Fragment), default=str)
        except TypeError:  # orjson.JSONEncodeError
            return json.dumps(self(), separators=(",", ":"), default=str).encode()

    def _record(self, own: Callable[[bytes], Any]) -> dict[str, Any]:
        """The record, with `own` applied to the parts the mock encoded itself."""
        now, op, method, path, api_key, query, body, violations, outcome, status, headers, raw, request_headers = self
        return {
            "time": now, "operation": op.operation_id, "provider": op.provider.name,
            "method": method, "path": path, "api_key": redact(api_key),
            "request": {"query": query, "headers": own(request_headers),
                        "body": None if body is None else codec.loads(body)},
            "violations": [v.as_dict() for v in violations], "outcome": outcome.as_dict(),
            "response": {"status": status, "headers": dict(headers), "body": own(raw)},
        }

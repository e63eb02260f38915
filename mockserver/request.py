"""MockRequest: what the pipeline needs from an HTTP request, parsed once."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect

from .store import codec

NO_BODY: Any = object()  # the request carried no body at all
BAD_JSON: Any = object()  # the body is not JSON, or JSON the mock refuses (see `BodyProblem`)
DEFAULT_MAX_DEPTH = 64
# An integer literal is read, however large, while a double can hold it (as JavaScript and Go read numbers; a
# field that is ignored may hold a 35-digit one); beyond that (309 digits) it is out of range, as 1e400 is.
# Python itself refuses to convert more than 4,300 digits.
_DOUBLE_RANGE = "a number from -1.7976931348623157e308 to 1.7976931348623157e308"
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str every surrogate is a lone one (pairs are decoded)
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:]')  # the strings and brackets of a JSON text


class BodyTooLarge(Exception):
    """The body is longer than `limits.max_body_bytes` (the rest of it is not read)."""


class BodyTimeout(Exception):
    """The announced body did not arrive within `limits.body_timeout` seconds."""


@dataclass(slots=True)
class BodyProblem:
    """A part of a JSON body the mock refuses before validating it: the field, what is wrong, what was expected."""

    pointer: str
    message: str
    expected: str


def printable(text: str) -> str:
    """`text` with every lone UTF-16 surrogate replaced by U+FFFD, so that it can be sent as UTF-8."""
    return _SURROGATE.sub("\ufffd", text) if _surrogates(text) else text


def _surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _pointer(parts: list[Any]) -> str:
    return "/body" + "".join("/" + printable(str(p)).replace("~", "~0").replace("/", "~1") for p in parts)


def _label(parts: list[Any]) -> str:
    return ".".join(printable(str(p)) for p in parts) or "The body"


class _Huge(int):
    """An integer literal beyond what a double holds: kept as its number of digits."""


class _Constant(float):
    """NaN, Infinity or -Infinity, which JSON does not allow but Python's reader accepts."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits < 309:
        return int(text)
    if digits <= 310:
        value = int(text)
        try:
            float(value)
            return value
        except OverflowError:
            pass
    return _Huge(digits)


def _parse_constant(text: str) -> float:
    return _Constant(float(text))


def _too_deep(raw: bytes, limit: int) -> list[Any] | None:
    """The path to the first container nested deeper than `limit` (its top-level field), or None."""
    depth, key, top = 0, None, None
    stack: list[bytes] = []
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            if depth == 1 and stack[0] == b"{":
                top = key
            stack.append(token)
            depth += 1
            if depth > limit:
                if top is None:
                    return []
                try:
                    return [json.loads(top)]
                except ValueError:
                    return []
        elif token in (b"]", b"}"):
            depth -= 1
            if stack:
                stack.pop()
        elif token == b":":
            pass
        elif depth == 1:
            key = token
    return None


def _problems(value: Any, parts: list[Any], found: list[BodyProblem]) -> None:
    """What a strict JSON reader refuses in a value Python's reader accepted: lone surrogates, NaN and Infinity, a
    number beyond a double."""
    if len(found) >= 10:
        return
    if isinstance(value, str):
        if _surrogates(value):
            found.append(BodyProblem(_pointer(parts), f"{_label(parts)} is not valid Unicode text (it holds a lone "
                                     "UTF-16 surrogate).", "a string of valid Unicode characters"))
    elif isinstance(value, _Constant):
        found.append(BodyProblem(_pointer(parts), f"{_label(parts)} is {'NaN' if value != value else 'Infinity'}, "
                                 "which JSON does not allow.", "a finite number"))
    elif isinstance(value, float) and not math.isfinite(value):
        found.append(BodyProblem(_pointer(parts), f"{_label(parts)} is a number out of range (beyond a double).",
                                 _DOUBLE_RANGE))
    elif isinstance(value, _Huge):
        found.append(BodyProblem(_pointer(parts), f"{_label(parts)} is a number of {int(value)} digits, out of "
                                 "range.", _DOUBLE_RANGE))
    elif isinstance(value, dict):
        for name, item in value.items():
            if _surrogates(name):
                found.append(BodyProblem(_pointer([*parts, name]), f"The field name {_label([*parts, name])!r} is "
                                         "not valid Unicode text (it holds a lone UTF-16 surrogate).",
                                         "a name of valid Unicode characters"))
            _problems(item, [*parts, name], found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _problems(item, [*parts, index], found)


def parse_json_body(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[Any, list[BodyProblem], str | None]:
    """(value, problems, error) of a request body; the value is BAD_JSON when it is not JSON or has problems.

    Bounded before parsing: nesting deeper than `max_depth` is found by a scan of the text, so neither the
    parser nor anything after it recurses that deep. What orjson reads is strict JSON already; a text only
    Python's reader accepts is checked for what a strict reader would refuse.
    """
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        path = _too_deep(raw, max_depth)
        if path is not None:
            return BAD_JSON, [BodyProblem(_pointer(path), f"{_label(path)} is nested more than {max_depth} levels "
                                          "deep.", f"at most {max_depth} levels of arrays and objects")], None
    if codec.LONG_DIGIT_RUN not in raw.translate(codec.DIGITS_AS_NINES):
        try:
            return orjson.loads(raw), [], None
        except orjson.JSONDecodeError:
            pass
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return BAD_JSON, [], printable(str(exc))
    found: list[BodyProblem] = []
    _problems(value, [], found)
    return (BAD_JSON, found, None) if found else (value, [], None)


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


async def read_body(receive: Any, max_bytes: int | None = None, timeout: float | None = None,
                    watch: BodyWatch | None = None) -> bytes:
    """The whole request body from ASGI `receive`; ClientDisconnect if the client goes away first.

    BodyTooLarge as soon as more than `max_bytes` have come (nothing more is read), BodyTimeout when the body
    has not all come within `timeout` seconds (timed by `watch`, else by a timer of its own).
    """
    if timeout is None:
        return await _read(receive, max_bytes)
    if watch is not None:
        return await watch.read(receive, max_bytes, timeout)
    try:
        async with asyncio.timeout(timeout):
            return await _read(receive, max_bytes)
    except TimeoutError:
        raise BodyTimeout() from None


class BodyWatch:
    """Ends body reads that outlive their deadline, with one timer for all of them.

    A timer per request (asyncio.timeout) would leave a cancelled timer and its context in the loop's heap for
    every call until its deadline passes: thousands of objects under load. The usual body is all there when
    the read starts, so its entry is added and removed in one step.
    """

    TICK = 0.25  # seconds between looks: a timeout fires up to this much late

    def __init__(self) -> None:
        self._reads: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self, receive: Any, max_bytes: int | None, timeout: float) -> bytes:
        task = asyncio.current_task()
        if task is None:  # not inside a task: nothing to cancel, so a timer of its own
            return await read_body(receive, max_bytes, timeout)
        loop = asyncio.get_running_loop()
        self._reads[task] = loop.time() + timeout
        if self._timer is None or self._loop is not loop:  # (an app may outlive its first loop, as in tests)
            self._loop = loop
            self._timer = loop.call_later(self.TICK, self._look, loop)
        try:
            return await _read(receive, max_bytes)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise BodyTimeout() from None
        finally:
            self._reads.pop(task, None)

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._reads.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.TICK, self._look, loop) if self._reads else None


async def _read(receive: Any, max_bytes: int | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BodyTooLarge()
            chunks.append(chunk)
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
    max_depth: int = DEFAULT_MAX_DEPTH
    body_problems: list[BodyProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefer = parse_prefer(self.headers.get("prefer"))
        self.api_key = bearer_key(self.headers.get("authorization"))
        self.body = self._parse_body()
        # The body when it is a JSON object, else an empty mapping (read many times per call: set once).
        self.json: dict[str, Any] = self.body if isinstance(self.body, dict) else {}

    def _parse_body(self) -> Any:
        if not self.raw_body.strip():
            return NO_BODY
        value, self.body_problems, self.body_error = parse_json_body(self.raw_body, self.max_depth)
        return value

    def field(self, name: str) -> Any:
        """A body field, else a query parameter, else a path parameter."""
        if name in self.json:
            return self.json[name]
        if name in self.query:
            return self.query[name]
        return self.path_params.get(name)

"""Steps 1 and 2 of a call, route and parse: a request's way from the ASGI scope to a `MockRequest`, and the
answers given before it reaches the pipeline (the provider's 404/405, the limits' 400/408/413, the mock's own
500 outside a call), each journaled."""

from __future__ import annotations

import functools
import itertools
import logging
import traceback

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope

from .clock import Clock
from .config import MockConfig
from .request import BodyTimeout, BodyTooLarge, BodyWatch, MockRequest, printable, read_body, scope_headers, \
    scope_query, url_path
from .responses import JsonResponse, error_body, json_response
from .router import Router
from .scenarios import outcome_code
from .spec import Operation, Spec
from .store import Record, Store

log = logging.getLogger("stemmock")
_SERVER_ERROR = PlainTextResponse("Internal Server Error", status_code=500, headers={"Connection": "close"})


class Intake:
    """Routes and reads requests for the mock, and answers those that never reach a call."""

    def __init__(self, config: MockConfig, specs: list[Spec], router: Router, store: Store, clock: Clock) -> None:
        self.config, self.specs, self.router, self.store, self.clock = config, specs, router, store, clock
        self._body_watch = BodyWatch()

    def base_url(self, scope: Scope) -> str:
        """The origin of the URLs handed out: `public_url`, else the one the request was sent to."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        host = None
        for name, value in scope["headers"]:
            if name == b"host":  # the first one, as Starlette reads it
                host = value
                break
        server = scope.get("server")
        return _origin(scope.get("scheme", "http"), host, tuple(server) if server else None,
                       scope.get("root_path", ""), scope.get("app_root_path"))

    def own_error(self, scope: Scope, exc: Exception) -> JsonResponse | PlainTextResponse:
        """The answer to an error of the mock's own outside `handle`: logged with its traceback, journaled, and
        answered in the shape of the provider the path belongs to (the connection is closed: part of the
        request may be unread)."""
        log.exception("%s %s failed", scope.get("method"), scope.get("path"))
        try:
            path = url_path(scope["path"])
            spec = self.router.provider_of(path)
            record: Record = {"time": self.clock.now(), "operation": None, "method": scope.get("method"),
                              "path": printable(path), "outcome": {"kind": "error", "code": 500,
                                                                   "reason": f"mock error: {type(exc).__name__}"}}
            if log.isEnabledFor(logging.DEBUG):
                record["error"] = traceback.format_exc()
            self.store.record(record)
            if spec is None:
                return json_response(500, {"code": 500, "message": "The mock failed; see its log."},
                                     {"Connection": "close"})
            status, body = error_body(spec.provider, 500, spec.provider.messages.get(500, "Internal Server Error"))
            return json_response(status, body, {"Connection": "close"})
        except Exception:  # even the journal is failing: Starlette's own answer
            log.exception("answering the mock's own error failed")
            return _SERVER_ERROR

    def route(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | JsonResponse:
        """1. route: the operation and its path parameters, or the provider's 404/405."""
        op, allowed, params = self.router.match(method, path)
        if op is None:
            return self._no_route(method, path, allowed)
        return op, params

    async def parse(self, op: Operation, params: dict[str, str], method: str, path: str, scope: Scope,
                    receive: Receive) -> MockRequest | JsonResponse:
        """2. parse: the request read within the limits (its body parsed once), or the limit's answer."""
        limits = self.config.limits
        headers = scope_headers(scope)
        size = sum(map(len, itertools.chain.from_iterable(scope["headers"])))
        if size > limits.max_header_bytes:
            largest = max(scope["headers"], key=lambda pair: len(pair[1]))[0].decode("latin-1")
            return self._refuse_early(op, method, path, "validation", 400, (
                f"The request headers are {size} bytes long ({largest} is the longest); at most "
                f"{limits.max_header_bytes} bytes are allowed."), close=False)
        announced = headers.get("content-length", "")
        if announced and (len(announced) > 18 or (announced.isdigit() and int(announced) > limits.max_body_bytes)):
            return self._too_large(op, method, path, announced)
        # Only a body that was announced can keep the call waiting; the usual request has it all already.
        timeout = limits.body_timeout if announced not in ("", "0") or "transfer-encoding" in headers else None
        try:
            raw = await read_body(receive, limits.max_body_bytes, timeout, self._body_watch)
        except BodyTooLarge:
            return self._too_large(op, method, path, "more than " + str(limits.max_body_bytes))
        except BodyTimeout:
            return self._refuse_early(op, method, path, "timeout", 408, (
                f"The request body did not arrive within {limits.body_timeout:g} s; expected the "
                "announced body in full."))
        return MockRequest(method, path, headers, scope_query(scope), raw, params, self.base_url(scope),
                           max_depth=limits.max_json_depth)

    def _too_large(self, op: Operation, method: str, path: str, size: str) -> JsonResponse:
        return self._refuse_early(op, method, path, "too_large", 413, (
            f"The request body is {size} bytes long; at most {self.config.limits.max_body_bytes} bytes are "
            "allowed."))

    def _refuse_early(self, op: Operation, method: str, path: str, cause: str, code: int, message: str,
                      close: bool = True) -> JsonResponse:
        """A request refused before its body is read (or in full): the provider's answer, and the connection closed
        when part of the body may still be on the way."""
        code = outcome_code(op, cause, code) if op.provider.name != "control" else code
        if op.provider.name == "control":
            status, body = code, {"code": code, "message": message}
        else:
            status, body = error_body(op.provider, code, message)
        self.store.record({"time": self.clock.now(), "operation": op.operation_id, "provider": op.provider.name,
                           "method": method, "path": path,
                           "outcome": {"kind": "rejected", "code": code, "reason": f"limit: {message}"}})
        return json_response(status, body, {"Connection": "close"} if close else None)

    def _no_route(self, method: str, path: str, allowed: list[str]) -> JsonResponse:
        spec = self.router.provider_of(path)
        if allowed:  # the path exists, the method does not
            message = f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}."
            spec = spec or next(s for s in self.router.specs if any(o.path == path or (o.pattern and o.pattern.match(path))
                                                            for o in s.operations))
            code = 404 if spec.provider.body_transport else 405
            _status, body = error_body(spec.provider, code, message)
            self.store.record({"time": self.clock.now(), "operation": None, "method": method, "path": path,
                               "outcome": {"kind": "unrouted", "code": 405, "reason": message}})
            return json_response(405, body, {"Allow": ", ".join(allowed)}, spec.provider.content_type)
        message = f"No operation matches {method} {path}."
        self.store.record({"time": self.clock.now(), "operation": None, "method": method, "path": path,
                           "outcome": {"kind": "unrouted", "code": 404, "reason": message}})
        if spec is None:
            return json_response(404, {"code": 404, "message": message})
        status, body = error_body(spec.provider, 404, message)
        return json_response(status if spec.provider.body_transport else 404, body, None, spec.provider.content_type)

    # -- files ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _origin(scheme: str, host: bytes | None, server: tuple[str, int] | None, root_path: str,
            app_root_path: str | None) -> str:
    """Starlette's `request.base_url` without the trailing `/`, for the parts of the scope it reads."""
    scope = {"type": "http", "scheme": scheme, "server": server, "root_path": root_path, "path": root_path,
             "query_string": b"", "headers": [] if host is None else [(b"host", host)]}
    if app_root_path is not None:
        scope["app_root_path"] = app_root_path
    return str(Request(scope).base_url).rstrip("/")


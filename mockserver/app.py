"""create_app(config): both providers' routes built from their specs, the request pipeline, /__mock/*, /files/*.

One request, end to end (`Mock.handle`): route -> parse -> validate -> decide -> apply -> render ->
(callbacks were scheduled by apply) -> journal.
"""

from __future__ import annotations

import contextlib
import logging
import random
import traceback
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import audio
from .actions import Action, Context, load_actions
from .callbacks import Deliveries
from .clock import Clock, Scheduler
from .config import MockConfig
from .request import NO_BODY, MockRequest
from .responses import error_body, json_response, render_outcome
from .scenarios import Outcome, decide
from .spec import PROVIDER_SPECS, Operation, Spec, SpecError, load, spec_path
from .state import MemoryStore, Store

log = logging.getLogger("stemmock")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Router:
    """Method + path -> operation, built once. Tells an unknown path (404) from a wrong method (405)."""

    def __init__(self, specs: list[Spec]) -> None:
        self.literal: dict[str, dict[str, Operation]] = {}
        self.templated: list[tuple[Any, dict[str, Operation]]] = []
        templated: dict[str, dict[str, Operation]] = {}
        for spec in specs:
            for op in spec.operations:
                table = self.literal if op.pattern is None else templated
                if op.method in table.setdefault(op.path, {}):
                    raise SpecError(f"{op.key} is declared twice ({spec.source}).")
                table[op.path][op.method] = op
        for path, methods in templated.items():
            self.templated.append((next(iter(methods.values())).pattern, methods))
        self.specs = specs

    def match(self, method: str, path: str) -> tuple[Operation | None, list[str], dict[str, str]]:
        """(operation, methods allowed on the path, path parameters)."""
        methods = self.literal.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for pattern, candidates in self.templated:
                found = pattern.match(path)
                if found:
                    methods, params = candidates, found.groupdict()
                    break
        if methods is None:
            return None, [], {}
        return methods.get(method), sorted(methods), params

    def provider_of(self, path: str) -> Spec | None:
        """The provider whose paths share the longest prefix with `path` (None on a tie or no overlap)."""
        scores: dict[str, int] = {}
        for spec in self.specs:
            for op in spec.operations:
                common = 0
                for a, b in zip(op.path, path):
                    if a != b:
                        break
                    common += 1
                scores[spec.provider.name] = max(scores.get(spec.provider.name, 0), common)
        ranked = sorted(((score, name) for name, score in scores.items()), reverse=True)
        if not ranked or ranked[0][0] <= len("/api/") or (len(ranked) > 1 and ranked[0][0] == ranked[1][0]):
            return None
        return next(s for s in self.specs if s.provider.name == ranked[0][1])


class Mock:
    """The mock's parts, wired once per app."""

    def __init__(self, config: MockConfig, specs: list[Spec] | None = None, store: Store | None = None) -> None:
        self.config = config
        self.specs = specs if specs is not None else [load(spec_path(name)) for name in PROVIDER_SPECS]
        self.router = Router(self.specs)
        self.actions = load_actions()
        for spec in self.specs:
            for op in spec.operations:
                if op.action and op.action not in self.actions:
                    raise SpecError(f"{op.key}: x-mock.action {op.action!r} is not a known behaviour; "
                                    f"known: {', '.join(sorted(self.actions))}.")
        self.costs = {s.provider.name: {**s.provider.costs, **config.costs} for s in self.specs}
        self.known_keys = set(config.keys) if config.keys is not None else None
        self.clock = Clock(config.clock, config.clock_start)
        self.scheduler = Scheduler(self.clock, config.callbacks.concurrency)
        opening = {k: {"credits": v.credits, "extra_credits": v.extra_credits} for k, v in (config.keys or {}).items()}
        self.store = store or MemoryStore({"credits": config.default_credits,
                                           "extra_credits": config.default_extra_credits},
                                          config.journal_size, opening)
        self.deliveries = Deliveries(self.store, self.clock, self.scheduler, config)
        self.rng = random.Random(config.seed)

    def reset(self) -> None:
        """Forget all state: resources, balances, journal, pending callbacks; ids restart from the seed."""
        self.store.reset()
        self.scheduler.clear()
        self.rng = random.Random(self.config.seed)

    # -- the pipeline ---------------------------------------------------------------------------------------
    def base_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    async def handle(self, request: Request) -> Response:
        op, allowed, params = self.router.match(request.method, request.url.path)
        if op is None:
            return self._no_route(request, allowed)
        req = MockRequest(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()},
                          dict(request.query_params), await request.body(), params, self.base_url(request))
        try:
            status, body, headers, outcome, violations = self._answer(op, req)
        except Exception as exc:  # never a bare 500: the provider's own server error, and the cause journaled
            log.exception("%s failed", op.key)
            outcome = Outcome("error", 500, f"mock error: {type(exc).__name__}: {exc}",
                              op.message_for(500))
            status, body = error_body(op.provider, 500, outcome.message or "Internal Server Error")
            headers, violations = {}, []
            self.store.record({"error": traceback.format_exc()})
        self._journal(op, req, violations, outcome, status, body)
        return json_response(status, body, headers)

    def _answer(self, op: Operation, req: MockRequest) -> tuple[int, Any, dict[str, str], Outcome, list[Any]]:
        from .validation import iter_violations

        violations = iter_violations(op, req, self.known_keys)
        action: Action | None = self.actions.get(op.action) if op.action else None
        ctx = Context(op, req, self.store, self.clock, self.scheduler, self.deliveries, self.config, self.rng,
                      req.base_url)
        provider = op.provider.name
        outcome = decide(op, req, violations,
                         precheck=(lambda: action.precheck(ctx)) if action else (lambda: None),
                         balance=lambda: self.store.balance(provider, ctx.api_key),
                         costs=self.costs[provider])
        if outcome.kind != "success":
            status, body, headers = render_outcome(op, outcome)
            return status, body, headers, outcome, violations
        if outcome.cost and self.store.charge(provider, ctx.api_key, outcome.cost) is None:
            # The balance changed between decide and charge (another worker spent it): refuse, charge nothing.
            outcome = decide(op, req, violations, lambda: None, lambda: self.store.balance(provider, ctx.api_key),
                             self.costs[provider])
            status, body, headers = render_outcome(op, outcome)
            return status, body, headers, outcome, violations
        if action is None:
            status, body = self._first_example(op)
            return status, body, {}, outcome, violations
        reply = action.run(ctx)
        return reply.status, reply.body, dict(reply.headers), outcome, violations

    @staticmethod
    def _first_example(op: Operation) -> tuple[int, Any]:
        status = op.success_status()
        doc = op.responses.get(status)
        if doc and doc.examples:
            return status, next(iter(doc.examples.values()))
        return status, {}

    def _journal(self, op: Operation, req: MockRequest, violations: list[Any], outcome: Outcome, status: int,
                 body: Any) -> None:
        self.store.record({
            "time": self.clock.now(), "operation": op.operation_id, "provider": op.provider.name,
            "method": req.method, "path": req.path, "api_key": req.api_key,
            "request": {"query": req.query, "body": None if req.body is NO_BODY else (
                req.body if not isinstance(req.body, object) or isinstance(req.body, (dict, list, str, int, float,
                                                                                        bool)) else "<invalid JSON>")},
            "violations": [v.as_dict() for v in violations], "outcome": outcome.as_dict(),
            "response": {"status": status, "body": body},
        })

    def _no_route(self, request: Request, allowed: list[str]) -> Response:
        path, method = request.url.path, request.method
        spec = self.router.provider_of(path)
        if allowed:  # the path exists, the method does not
            message = f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}."
            spec = spec or next(s for s in self.specs if any(o.path == path or (o.pattern and o.pattern.match(path))
                                                            for o in s.operations))
            code = 404 if spec.provider.body_transport else 405
            _status, body = error_body(spec.provider, code, message)
            self.store.record({"time": self.clock.now(), "operation": None, "method": method, "path": path,
                               "outcome": {"kind": "unrouted", "code": 405, "reason": message}})
            return json_response(405, body, {"Allow": ", ".join(allowed)})
        message = f"No operation matches {method} {path}."
        self.store.record({"time": self.clock.now(), "operation": None, "method": method, "path": path,
                           "outcome": {"kind": "unrouted", "code": 404, "reason": message}})
        if spec is None:
            return json_response(404, {"code": 404, "message": message})
        status, body = error_body(spec.provider, 404, message)
        return json_response(status if spec.provider.body_transport else 404, body)

    # -- files ------------------------------------------------------------------------------------------------
    async def serve_file(self, request: Request) -> Response:
        ref = audio.parse_file_path(request.url.path)
        if ref is None or self.clock.now_ms() - ref.created_ms > self.config.file_retention * 1000:
            return json_response(404, {"code": 404, "message": "File not found or expired."})
        data = audio.mp3_bytes(ref.duration_ms)
        size = len(data)
        headers = {"Accept-Ranges": "bytes", "Content-Type": audio.CONTENT_TYPE,
                   "Content-Disposition": f'inline; filename="{ref.name}"',
                   "Cache-Control": "public, max-age=1209600"}
        span = audio.byte_range(request.headers.get("range"), size)
        if span is False:
            return Response(b"", 416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status, start, end = (206, span[0], span[1]) if isinstance(span, tuple) else (200, 0, size - 1)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        content = b"" if request.method == "HEAD" else data[start:end + 1]
        response = Response(content, status, headers=headers)
        response.headers["Content-Length"] = str(end - start + 1)
        return response

    # -- control plane ------------------------------------------------------------------------------------------
    async def control_reset(self, request: Request) -> Response:
        self.reset()
        return json_response(200, {"reset": True})

    async def control_journal(self, request: Request) -> Response:
        limit = request.query_params.get("limit")
        items = self.store.journal(int(limit) if limit and limit.isdigit() else None)
        return json_response(200, {"exchanges": items, "count": len(items)})

    async def control_callbacks(self, request: Request) -> Response:
        items = self.deliveries.list()
        return json_response(200, {"callbacks": items, "count": len(items)})

    async def control_advance(self, request: Request) -> Response:
        body = await _json(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return json_response(400, {"error": f"seconds is {seconds!r}; expected a number >= 0."})
        ran = await self.scheduler.advance(float(seconds))
        return json_response(200, {"now": self.clock.now(), "ran": ran, "pending": len(self.scheduler)})

    async def control_credits(self, request: Request) -> Response:
        key = request.path_params["api_key"]
        body = await _json(request)
        if not isinstance(body, dict):
            return json_response(400, {"error": "The body must be a JSON object with 'credits'."})
        credits, extra, provider = body.get("credits"), body.get("extra_credits", 0), body.get("provider")
        for name, value in (("credits", credits), ("extra_credits", extra)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                return json_response(400, {"error": f"{name} is {value!r}; expected a number >= 0."})
        names = [s.provider.name for s in self.specs]
        if provider is not None and provider not in names:
            return json_response(400, {"error": f"provider is {provider!r}; expected one of {', '.join(names)}."})
        balances = {p: self.store.set_balance(p, key, credits, extra) for p in ([provider] if provider else names)}
        return json_response(200, {"api_key": key, "balances": balances})


async def _json(request: Request) -> Any:
    import json

    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None


def create_app(config: MockConfig | None = None, *, specs: list[Spec] | None = None) -> Starlette:
    """The ASGI app serving both providers, the files they hand out, and /__mock/*."""
    mock = Mock(config or MockConfig(), specs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mock.scheduler.start()
        yield
        pending = await mock.scheduler.stop(mock.config.callbacks.grace)
        if pending:
            shown = "; ".join(pending[:20]) + ("; ..." if len(pending) > 20 else "")
            log.warning("shutting down with %d scheduled deliveries not made: %s", len(pending), shown)
        await mock.deliveries.close()

    routes = [
        Route("/__mock/reset", mock.control_reset, methods=["POST"]),
        Route("/__mock/journal", mock.control_journal, methods=["GET"]),
        Route("/__mock/callbacks", mock.control_callbacks, methods=["GET"]),
        Route("/__mock/clock/advance", mock.control_advance, methods=["POST"]),
        Route("/__mock/credits/{api_key}", mock.control_credits, methods=["PUT"]),
        Route("/files/{rest:path}", mock.serve_file, methods=["GET", "HEAD"]),
        Route("/{path:path}", mock.handle, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.mock = mock
    return app

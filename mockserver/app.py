"""create_app(config): the mock's parts wired once, and `Mock.handle`, one provider call as eight steps.

1 route and 2 parse (`intake`), 3 validate (`validation`), 4 decide (`scenarios`, reading `policy`), 5 apply
(`effects`: charge, create, queue callbacks, in one store step), 6 render (`responses`), 7 schedule (the
callbacks the call queued are woken on the clock), 8 journal (`journal`). Provider and control requests reach
the mock straight from the ASGI scope (`MockApp`); Starlette serves the lifespan and /files/* (`files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import re
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .callbacks import Deliveries
from .clock import Clock, Scheduler
from .config import MockConfig, check_against_specs
from .control import HANDLERS as CONTROL
from .control import Raw
from .effects import Effects
from .files import FileServer
from .inspector import HANDLERS as INSPECTOR
from .intake import Intake
from .journal import Exchange, journal_body, journal_headers, redact
from .policy import CallView, Policy
from .providers import CALLBACKS, JOBS, Context, load_actions
from .request import MockRequest, url_path
from .responses import JsonResponse, encode, error_body, json_response, render
from .router import Router
from .scenarios import Outcome, decide, rate_limited, rejection
from .spec import PROVIDER_SPECS, Operation, Spec, SpecError, add_examples, load, spec_path
from .store import CountedRandom, Record, StaleIds, Store, codec, open_store
from .validation import Violation, iter_violations
from .wire import RAW_SEND, WireFaultResponse

log = logging.getLogger("stemmock")
access = logging.getLogger("stemmock.access")  # one line per provider call with `access_log`
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHODS = frozenset(ALL_METHODS)
_CATCH_ALL = re.compile(r"^/.*$")  # what the route `/{path:path}` matches


class Mock:
    """The mock's parts, wired once per app, and the request pipeline."""

    def __init__(self, config: MockConfig, specs: list[Spec] | None = None, store: Store | None = None) -> None:
        self.config = config
        self.specs = specs if specs is not None else [load(spec_path(name)) for name in PROVIDER_SPECS]
        if config.examples:  # recorded answers, named: `Prefer: example=<name>` answers them
            add_examples(self.specs, config.examples)
        check_against_specs(config, self.specs)  # a fault on a misspelt operation would never fire
        self.control_spec = load(spec_path("control"))
        self.started = time.monotonic()  # for the uptime /__mock/health reports
        self.inspector_spec = load(spec_path("inspector"))
        self.router = Router([*self.specs, self.control_spec, self.inspector_spec])
        self.actions = load_actions()
        for spec in self.specs:
            for op in spec.operations:
                if op.action and op.action not in self.actions:
                    raise SpecError(f"{op.key}: x-mock.action {op.action!r} is not a known behaviour; "
                                    f"known: {', '.join(sorted(self.actions))}.")
        self.provider_names = [s.provider.name for s in self.specs]
        self.known_keys = set(config.keys) if config.keys is not None else None
        self.store = store or open_store(config)
        self.clock = Clock(config.clock, config.clock_start, self.store)
        self.policy = Policy(config, self.specs, self.store, self.clock)
        self.scheduler = Scheduler(self.clock, self.store, config.callbacks.concurrency)
        self.deliveries = Deliveries(self.store, self.clock, self.scheduler, config, CALLBACKS)
        for kind, job in JOBS.items():  # the providers' stage jobs, which open their callbacks
            self.scheduler.register(kind, functools.partial(job, self.deliveries))
        self.effects = Effects(self.store, self.scheduler, self.policy.costs)
        self.intake = Intake(config, self.specs, self.router, self.store, self.clock)
        self.files = FileServer(self.store, self.clock, config)
        self._seed_rngs()

    def _seed_rngs(self) -> None:
        # Separate streams, so that adding a fault rule does not change the ids a session gets. Workers sharing
        # a store draw ids from its counter, so that two of them never hand out the same id.
        self.rng = CountedRandom(self.store, self.config.seed) if self.store.shared else random.Random(self.config.seed)
        self.fault_rng = random.Random(f"faults/{self.config.seed}")
        self.policy.seed(self.config.seed)

    def reset(self) -> None:
        """Forget all state: resources, balances, journal, faults, pending callbacks; ids restart from the seed."""
        self.store.reset()
        self._seed_rngs()

    def in_maintenance(self, provider: str, flags: dict[str, bool] | None = None) -> bool:
        """Whether `provider` is down (see `Policy.in_maintenance`)."""
        return self.policy.in_maintenance(provider, flags)

    # -- the pipeline ---------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: a provider or control-plane request, read from the scope and answered with raw `send`."""
        try:
            response = await self.respond(scope, receive)
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:  # the mock's own bug outside a provider call: the provider's 500, never a bare one
            response = self.intake.own_error(scope, exc)
        await response(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive) -> JsonResponse | WireFaultResponse:
        """Steps 1 and 2, then the control plane's answer or `handle`'s."""
        method, path = scope["method"], url_path(scope["path"])
        routed = self.intake.route(method, path)                                 # 1 route
        if isinstance(routed, JsonResponse):
            return routed
        op, params = routed
        req = await self.intake.parse(op, params, method, path, scope, receive)  # 2 parse
        if isinstance(req, JsonResponse):
            return req
        if op.provider.name == "control":
            return await self._control(op, req)
        if op.provider.name == "inspector":
            return await self._inspect(op, req)
        return await self.handle(op, req, scope.get("client") if self.config.access_log else None)

    async def handle(self, op: Operation, req: MockRequest,
                     client: tuple[str, int] | None = None) -> JsonResponse | WireFaultResponse:
        """One provider call: steps 3 to 8, in `_answer`; then the configured latency, and the wire fault.

        With `access_log` on, one line in uvicorn's access format plus the operation and outcome (`client` is the
        peer's address).
        """
        delay = self.policy.latency(op)
        # One call is one instant: a shared clock is read once for it, not once per use.
        if self.store.shared:
            with self.clock.pinned():
                status, raw, headers, outcome = await self._answer(op, req)
        else:
            status, raw, headers, outcome = await self._answer(op, req)
        if self.config.access_log:
            peer = f"{client[0]}:{client[1]}" if client else "-"
            query = "&".join(f"{k}={v}" for k, v in req.query.items())
            access.info('%s - "%s %s%s HTTP/1.1" %d %s %s %d (%s)', peer, req.method, req.path,
                        f"?{query}" if query else "", status, op.operation_id, outcome.kind, outcome.code,
                        outcome.reason)
        if delay > 0:
            await asyncio.sleep(delay)
        if outcome.wire_fault:
            return WireFaultResponse(outcome.wire_fault, raw, status, headers, self.config.dribble_seconds,
                                     op.provider.content_type, self.config.hang_seconds)
        return JsonResponse(status, raw, headers, op.provider.content_type)

    ATTEMPTS = 8  # how often a call is decided again because other workers moved the state under it

    async def _answer(self, op: Operation, req: MockRequest, attempt: int = 1) -> tuple[int, bytes,
                                                                                        dict[str, str], Outcome]:
        """(status, encoded body, headers, outcome) of one call, journaled."""
        try:
            action = self.actions.get(op.action) if op.action else None
            ctx = Context(op, req, self.store, self.clock, self.scheduler, self.config, self.rng, req.base_url)
            violations = iter_violations(op, req, self.known_keys)                      # 3 validate
            outcome = self._decide(op, req, violations, CallView(self.policy, self.config, op, ctx, action))  # 4
            effect = self.effects.apply(op, outcome, action, ctx)                       # 5 apply
            outcome = effect.outcome
            status, body, headers = render(op, outcome, effect.answer)                  # 6 render
            raw = body if isinstance(body, bytes) else encode(body)
            # 8 journal, in the commit's own step when the call has something to store (one round trip on a
            # shared store). The journal keeps the call's parts in one tuple and builds the record when it is
            # read. A record built now (or a closure over the parts) would leave a score of objects per call for
            # the garbage collector to walk again and again until the journal drops them: pauses of several ms
            # under load. Every part is encoded now, so that reading it back never fails.
            if self.clock.unpinned():  # refused before deciding: the instant from the worker's copy, checked
                self.clock.pin(self.store.quiet_call(op.provider.name, req.api_key))
            exchange = self._exchange(op, req, violations, outcome, status, headers, raw)
            if effect.pending is not None and not await self.effects.commit(effect.pending, exchange):
                # The balance changed between decide and commit (another worker spent it): refused, nothing kept.
                effect = self.effects.spent(op)
                outcome = effect.outcome
                status, body, headers = render(op, outcome, None)
                raw = body if isinstance(body, bytes) else encode(body)
                await self.store.arecord(self._exchange(op, req, violations, outcome, status, headers, raw))
            elif effect.pending is None:
                await self.store.arecord(exchange)
            if effect.jobs:                                                             # 7 schedule
                self.scheduler.wake()
        except StaleIds as exc:
            # Another worker reset the store or changed what the call was decided on while it ran: nothing was
            # stored, and the call is decided again on the fresh state (with ids from a block of the new generation
            # after a reset).
            self.store.end_call()
            self.clock.unpin()
            if attempt >= self.ATTEMPTS:
                return self._failed(op, req, exc)
            return await self._answer(op, req, attempt + 1)
        except Exception as exc:  # never a bare 500: the provider's own server error, and the cause journaled
            self.store.end_call()
            return self._failed(op, req, exc)  # nothing the call made was committed: nothing to roll back
        self.store.end_call()
        return status, raw, headers, outcome

    def _exchange(self, op: Operation, req: MockRequest, violations: list[Violation], outcome: Outcome,
                  status: int, headers: dict[str, str], raw: bytes) -> Exchange:
        """The journal's entry for one call, as the parts it is built from when read."""
        return Exchange((self.clock.now(), op, req.method, req.path, req.api_key, req.query, journal_body(req),
                         tuple(violations), outcome, status, headers, codec.exact_size(raw),
                         journal_headers(req)))

    def _decide(self, op: Operation, req: MockRequest, violations: list[Violation], view: CallView) -> Outcome:
        """Step 4: the outcome, its fault's turn and its rate-window place taken in the store."""
        outcome = decide(op, req, violations, view, self.fault_rng)
        while outcome.fault_id and not self.store.take_fault(outcome.fault_id):
            # Another worker used the fault's last turn since decide looked: decide again on a fresh read
            # without it (a script step already taken is not taken twice).
            view.forget_reads()
            outcome = decide(op, req, violations, view, self.fault_rng)
        if outcome.admitted:
            limit, key = self.policy.rate_window(op, view.ctx.api_key)
            if limit is not None and not self.store.rate_hit(key, self.clock.now(), limit.limit, limit.window):
                # Another worker filled the window since decide looked: refuse, count nothing.
                wait = self.store.rate_retry_after(key, self.clock.now(), limit.limit, limit.window) or 0.0
                return rate_limited(op, wait)
        return outcome

    def _failed(self, op: Operation, req: MockRequest, exc: Exception) -> tuple[int, bytes, dict[str, str], Outcome]:
        """A bug of the mock's inside a call: logged, journaled, answered with the provider's own server error."""
        log.exception("%s failed", op.key)
        outcome = Outcome("error", 500, f"mock error: {type(exc).__name__}", op.message_for(500))
        status, body = error_body(op.provider, 500, outcome.message or "Internal Server Error")
        record: Record = {"time": self.clock.now(), "operation": op.operation_id, "provider": op.provider.name,
                          "method": req.method, "path": req.path, "api_key": redact(req.api_key),
                          "outcome": outcome.as_dict(), "response": {"status": status, "headers": {}, "body": body}}
        if log.isEnabledFor(logging.DEBUG):  # file paths and values: only for whoever runs the mock
            record["error"] = traceback.format_exc()
        self.store.record(record)
        return status, encode(body), {}, outcome

    async def _control(self, op: Operation, req: MockRequest) -> JsonResponse:
        token = self.config.admin_token
        if token and req.api_key != token:
            return json_response(401, {"code": 401, "message": "The admin token is missing or wrong."})
        violations = iter_violations(op, req, None)
        if violations:
            outcome = rejection(op, violations)
            return json_response(outcome.code, {"code": outcome.code, "message": outcome.message})
        status, body = await CONTROL[str(op.action)](self, req)
        if isinstance(body, Raw):
            return JsonResponse(status, body.data, None, body.content_type)
        return json_response(status, body)


    async def _inspect(self, op: Operation, req: MockRequest) -> Any:
        """The inspector's page, files (public: they hold no data) and data (guarded like the control plane)."""
        token = self.config.admin_token
        # A browser's EventSource sends no header: the event stream takes the token in its query too.
        if token and not op.x_mock.get("public") and token not in (req.api_key, req.query.get("token")):
            return json_response(401, {"code": 401, "message": "The admin token is missing or wrong."})
        violations = iter_violations(op, req, None)
        if violations:
            outcome = rejection(op, violations)
            return json_response(outcome.code, {"code": outcome.code, "message": outcome.message})
        return await INSPECTOR[str(op.action)](self, req)


def _to_mock(scope: Scope) -> bool:
    """Whether Starlette would route this request to the mock's catch-all route (so its routing can be skipped)."""
    method, path = scope["method"], scope["path"]
    return method in _METHODS and not scope.get("root_path") and _CATCH_ALL.match(path) is not None and not (
        method in ("GET", "HEAD") and path.startswith("/files/"))


class MockApp(Starlette):
    """Starlette for the lifespan and /files/*; provider and control-plane requests go straight to the mock."""

    mock: Mock
    # Set by `stemmock serve`: once started, move the whole start-up heap (specs, validators, routes, the
    # server's own modules and loop) out of the collector's sight. Collections would otherwise walk it again
    # and again under load (pauses of several ms in the p99). An app used in-process leaves its host's GC alone.
    freeze_heap = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if _to_mock(scope):
                await self.mock(scope, receive, send)  # the server's own `send`, as the wire faults need it
                return
            # Starlette wraps `send`: the wire faults find the server's own here. (Only here: a scope that holds
            # the server's `send` is a reference cycle, left for the garbage collector on every request.)
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(config: MockConfig | None = None, *, specs: list[Spec] | None = None) -> MockApp:
    """The ASGI app serving both providers, the files they hand out, and /__mock/*."""
    mock = Mock(config or MockConfig(), specs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mock.scheduler.start()
        if app.freeze_heap:  # type: ignore[attr-defined]
            gc.collect()
            gc.freeze()
            # Calls waiting for their step on a shared store hold their objects meanwhile: at the default threshold
            # (700 net allocations) 32 calls in flight set off a young collection every few calls, each walking
            # what those calls hold. Collected ten times less often, they cost ~5% less CPU per call.
            young, middle, old = gc.get_threshold()
            gc.set_threshold(max(young, 10_000), middle, old)
            mock.deliveries.after_first_sender = gc.freeze  # and the HTTP client's modules, once imported
        yield
        pending = await mock.scheduler.stop(mock.config.callbacks.grace)
        if mock.store.shared:  # the jobs stay in the store: the next start (or another worker) runs them
            log.info("stopping; %d job(s) stay queued in the store", len(mock.scheduler))
        else:
            stages = [label for label in pending if not label.startswith("retry ")]
            if stages:  # stages not reached yet owe no callback so far; say which would have come
                shown = "; ".join(stages[:20]) + ("; ..." if len(stages) > 20 else "")
                log.info("shutting down before %d task stages: %s", len(stages), shown)
            await mock.deliveries.flush(mock.config.callbacks.grace)  # logs the task ids still owed a callback
        await mock.deliveries.close()
        await mock.store.aclose()

    routes = [
        Route("/files/{rest:path}", mock.files.serve, methods=["GET", "HEAD"]),
        Route("/{path:path}", mock, methods=ALL_METHODS),  # the mock is an ASGI app
    ]
    app = MockApp(routes=routes, lifespan=lifespan)
    app.state.mock = app.mock = mock
    return app

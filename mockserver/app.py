"""create_app(config): both providers' routes built from their specs, the request pipeline, /__mock/*, /files/*.

One request, end to end: `Mock.respond` routes and parses it, `Mock.handle` validates -> decides -> applies ->
renders -> (callbacks were scheduled by apply) -> journals. Provider and control requests reach the mock straight
from the ASGI scope (`MockApp`); Starlette serves the lifespan and /files/*.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import itertools
import logging
import random
import re
import traceback
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import audio, covers
from .store import codec
from .callbacks import Deliveries, refused_target
from .clock import Clock, Scheduler
from .config import MockConfig, RateLimit, parse_instant
from .control import HANDLERS as CONTROL
from .request import (
    BAD_JSON,
    NO_BODY,
    BodyTimeout,
    BodyTooLarge,
    BodyWatch,
    MockRequest,
    printable,
    read_body,
    scope_headers,
    scope_query,
    url_path,
)
from .responses import JsonResponse, encode, error_body, json_response, render_outcome
from .scenarios import (
    Outcome,
    Refusal,
    cost_key,
    decide,
    error,
    matches,
    outcome_code,
    rate_class,
    rate_limited,
    rejection,
)
from .providers import CALLBACKS, JOBS, Action, Context, load_actions
from .spec import PROVIDER_SPECS, Operation, Spec, SpecError, load, spec_path
from .store import CallState, CountedRandom, Record, Store, open_store
from .validation import iter_violations
from .wire import RAW_SEND, WireFaultResponse

log = logging.getLogger("stemmock")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_METHODS = frozenset(ALL_METHODS)
_CATCH_ALL = re.compile(r"^/.*$")  # what the route `/{path:path}` matches
_SERVER_ERROR = PlainTextResponse("Internal Server Error", status_code=500, headers={"Connection": "close"})
_JOURNAL_BODY_BYTES = 64 * 1024  # a request body kept in the journal at most (the ring holds a thousand)


@functools.lru_cache(maxsize=4096)
def redact(api_key: str | None) -> str | None:
    """An API key as the journal shows it: a prefix and a short stable hash, so that one key's calls still group."""
    if api_key is None:
        return None
    digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{printable(api_key[:min(4, len(api_key) // 2)])}…{digest}"


def _journal_body(req: MockRequest) -> bytes | None:
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


class _CallStore:
    """The store as one call's action sees it: what the action writes is held until the call commits.

    The writes, the charge and the jobs then reach the store in one step (`Store.commit`), so a call that fails
    half-way changes nothing, and one that is charged has made its resource.
    """

    __slots__ = ("_store", "writes")

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes: dict[tuple[str, str], Record] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put(self, kind: str, rid: str, record: Record) -> None:
        # Kept as given until the commit, which follows the action at once (an action does not change a record
        # after storing it); reads get a copy, as from the store.
        self.writes[(kind, rid)] = record

    def get(self, kind: str, rid: str) -> Record | None:
        held = self.writes.get((kind, rid))
        return codec.loads(codec.pack(held)) if held is not None else self._store.get(kind, rid)

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        record = self.get(kind, rid)
        if record is None:
            return None
        record.update(changes)
        self.put(kind, rid, record)
        return record

    def records(self) -> list[tuple[str, str, Record]]:
        return [(kind, rid, record) for (kind, rid), record in self.writes.items()]


class Router:
    """Method + path -> operation, built once. Tells an unknown path (404) from a wrong method (405)."""

    def __init__(self, specs: list[Spec]) -> None:
        self.literal: dict[str, dict[str, Operation]] = {}
        self.templated: list[tuple[Any, str, dict[str, Operation]]] = []
        templated: dict[str, dict[str, Operation]] = {}
        for spec in specs:
            for op in spec.operations:
                table = self.literal if op.pattern is None else templated
                if op.method in table.setdefault(op.path, {}):
                    raise SpecError(f"{op.key} is declared twice ({spec.source}).")
                table[op.path][op.method] = op
        for path, methods in templated.items():
            self.templated.append((next(iter(methods.values())).pattern, path, methods))
        # The methods each path allows, as a 405 lists them: sorted once, shared by every match (read-only).
        self.allowed = {path: sorted(methods) for path, methods in [*self.literal.items(), *templated.items()]}
        self.specs = specs

    def match(self, method: str, path: str) -> tuple[Operation | None, list[str], dict[str, str]]:
        """(operation, methods allowed on the path, path parameters)."""
        methods = self.literal.get(path)
        if methods is not None:
            return methods.get(method), self.allowed[path], {}
        for pattern, template, candidates in self.templated:
            found = pattern.match(path)
            if found:
                return candidates.get(method), self.allowed[template], found.groupdict()
        return None, [], {}

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


class _RequestView:
    """The read-only view of the mock's state that decide() gets for one request."""

    def __init__(self, mock: Mock, op: Operation, ctx: Context, action: Action | None) -> None:
        self.mock, self.op, self.ctx, self.action = mock, op, ctx, action
        self.costs = mock.costs[op.provider.name]
        self._step: dict[str, Any] | None = None
        self._step_taken = False
        self._state: CallState | None = None  # read with the script step; dropped by `forget_reads`

    def precheck(self) -> Refusal | None:
        for callback in self.op.callbacks.values():  # an http(s) URL, on the configured allow-list of hosts
            url = self.ctx.req.json.get(callback.url_field or "")
            refused = refused_target(url, self.mock.config.callbacks.allow_hosts) if isinstance(url, str) else None
            if refused is not None:
                code = outcome_code(self.op, "validation", 400)
                return Refusal(code, f"{callback.url_field}: {refused}", "callback target refused")
        return self.action.precheck(self.ctx) if self.action else None

    def balance(self) -> dict[str, float]:
        if self._state is not None:
            return dict(self._state.balance)
        return self.mock.store.balance(self.op.provider.name, self.ctx.api_key)

    def in_maintenance(self) -> bool:
        return self.mock.in_maintenance(self.op.provider.name,
                                        self._state.maintenance if self._state is not None else None)

    def retry_after(self) -> float | None:
        limit, key = self.mock.rate_window(self.op, self.ctx.api_key)
        if limit is None:
            return None
        return self.mock.store.rate_retry_after(key, self.mock.clock.now(), limit.limit, limit.window)

    def scripted_fault(self) -> dict[str, Any] | None:
        for fault in self._state.faults if self._state is not None else self.mock.store.faults():
            if fault["operation"] == self.op.operation_id and fault["used"] < fault["times"] and \
                    fault.get("api_key") in (None, self.ctx.api_key):
                return fault
        return None

    def seeded_rules(self) -> tuple[Any, ...]:
        return self.mock.config.faults

    def script_step(self) -> dict[str, Any] | None:
        """The call's scripted behaviour, taken from the script once however often decide asks.

        Decide asks for it before maintenance, faults and balance, so those are read with it (one round
        trip on a shared store) and answered from that read until `forget_reads`.
        """
        if not self._step_taken:
            self._state = self.mock.store.call_state(self.op.provider.name, self.ctx.api_key)
            self._step, self._step_taken = self._state.script_step, True
        return self._step

    def forget_reads(self) -> None:
        """Read maintenance, faults and balance afresh from now on (another worker has changed them)."""
        self._state = None


class Mock:
    """The mock's parts, wired once per app."""

    def __init__(self, config: MockConfig, specs: list[Spec] | None = None, store: Store | None = None) -> None:
        self.config = config
        self.specs = specs if specs is not None else [load(spec_path(name)) for name in PROVIDER_SPECS]
        self.control_spec = load(spec_path("control"))
        self.router = Router([*self.specs, self.control_spec])
        self.actions = load_actions()
        for spec in self.specs:
            for op in spec.operations:
                if op.action and op.action not in self.actions:
                    raise SpecError(f"{op.key}: x-mock.action {op.action!r} is not a known behaviour; "
                                    f"known: {', '.join(sorted(self.actions))}.")
        self.provider_names = [s.provider.name for s in self.specs]
        self.costs = {s.provider.name: {**s.provider.costs, **config.costs} for s in self.specs}
        self.known_keys = set(config.keys) if config.keys is not None else None
        self.windows = [(parse_instant(w.start), parse_instant(w.end), w.provider) for w in config.maintenance]
        self.store = store or open_store(config)
        self._rate_windows = {op.key: ((config.rate_limits.get(spec.provider.name) or {}).get(rate_class(op)),
                                       f"{spec.provider.name}/{rate_class(op)}/")
                              for spec in self.specs for op in spec.operations}
        # Each operation's latency rule, the first that names it, found once.
        self._latency_rules = {op.key: rule for spec in self.specs for op in spec.operations
                               if (rule := next((r for r in config.latency if matches(op, r.operation)), None))}
        self.clock = Clock(config.clock, config.clock_start, self.store)
        self.scheduler = Scheduler(self.clock, self.store, config.callbacks.concurrency)
        self.deliveries = Deliveries(self.store, self.clock, self.scheduler, config, CALLBACKS)
        for kind, job in JOBS.items():  # the providers' stage jobs, which open their callbacks
            self.scheduler.register(kind, functools.partial(job, self.deliveries))
        self._body_watch = BodyWatch()
        self._seed_rngs()

    def _seed_rngs(self) -> None:
        # Separate streams, so that adding a fault rule does not change the ids a session gets. Workers sharing
        # a store draw ids from its counter, so that two of them never hand out the same id.
        self.rng = CountedRandom(self.store, self.config.seed) if self.store.shared else random.Random(self.config.seed)
        self.fault_rng = random.Random(f"faults/{self.config.seed}")
        self.latency_rng = random.Random(f"latency/{self.config.seed}")

    def reset(self) -> None:
        """Forget all state: resources, balances, journal, faults, pending callbacks; ids restart from the seed."""
        self.store.reset()
        self._seed_rngs()

    def in_maintenance(self, provider: str, flags: dict[str, bool] | None = None) -> bool:
        """Whether `provider` is down: switched to maintenance (`flags`: the store's switches, as read for
        the call) or inside a configured window."""
        if (self.store.maintenance() if flags is None else flags).get(provider):
            return True
        if not self.windows:
            return False
        now = self.clock.now()
        return any(start <= now < end and who in (None, "", provider) for start, end, who in self.windows)

    def rate_window(self, op: Operation, api_key: str) -> tuple[RateLimit | None, str]:
        """The operation's rate limit (None: unlimited) and the key of its sliding window for `api_key`."""
        limit, prefix = self._rate_windows[op.key]
        return limit, prefix + api_key

    def latency(self, op: Operation) -> float:
        rule = self._latency_rules.get(op.key)
        if rule is None:
            return 0.0
        return rule.fixed or (self.latency_rng.uniform(rule.min, rule.max) if rule.max else 0.0)

    # -- the pipeline ---------------------------------------------------------------------------------------
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: a provider or control-plane request, read from the scope and answered with raw `send`."""
        try:
            response = await self.respond(scope, receive)
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:  # the mock's own bug outside a provider call: the provider's 500, never a bare one
            response = self._own_error(scope, exc)
        await response(scope, receive, send)

    def _own_error(self, scope: Scope, exc: Exception) -> JsonResponse | PlainTextResponse:
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

    async def respond(self, scope: Scope, receive: Receive) -> JsonResponse | WireFaultResponse:
        """Route the request and read it: the provider's 404/405, the control plane's answer, or `handle`'s."""
        method, path = scope["method"], url_path(scope["path"])
        op, allowed, params = self.router.match(method, path)
        if op is None:
            return self._no_route(method, path, allowed)
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
        req = MockRequest(method, path, headers, scope_query(scope), raw, params, self.base_url(scope),
                          max_depth=limits.max_json_depth)
        if op.provider.name == "control":
            return await self._control(op, req)
        return await self.handle(op, req)

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

    async def handle(self, op: Operation, req: MockRequest) -> JsonResponse | WireFaultResponse:
        """One provider call: validate, decide, apply, render, journal."""
        delay = self.latency(op)
        # One call is one instant: a shared clock is read once for it, not once per use.
        if self.store.shared:
            with self.clock.pinned():
                status, raw, headers, outcome = self._answer_and_journal(op, req)
        else:
            status, raw, headers, outcome = self._answer_and_journal(op, req)
        if delay > 0:
            await asyncio.sleep(delay)
        if outcome.wire_fault:
            return WireFaultResponse(outcome.wire_fault, raw, status, headers, self.config.dribble_seconds,
                                     op.provider.content_type, self.config.hang_seconds)
        return JsonResponse(status, raw, headers, op.provider.content_type)

    def _answer_and_journal(self, op: Operation, req: MockRequest) -> tuple[int, bytes, dict[str, str], Outcome]:
        """(status, encoded body, headers, outcome) of one call, journaled."""
        try:
            status, body, headers, outcome, violations = self._answer(op, req)
            raw = body if isinstance(body, bytes) else encode(body)
        except Exception as exc:  # never a bare 500: the provider's own server error, and the cause journaled
            # Nothing the call made was committed (see `_answer`): there is nothing to roll back.
            log.exception("%s failed", op.key)
            outcome = Outcome("error", 500, f"mock error: {type(exc).__name__}", op.message_for(500))
            status, body = error_body(op.provider, 500, outcome.message or "Internal Server Error")
            record: Record = {"time": self.clock.now(), "operation": op.operation_id, "provider": op.provider.name,
                              "method": req.method, "path": req.path, "api_key": redact(req.api_key),
                              "outcome": outcome.as_dict(), "response": {"status": status, "headers": {},
                                                                         "body": body}}
            if log.isEnabledFor(logging.DEBUG):  # file paths and values: only for whoever runs the mock
                record["error"] = traceback.format_exc()
            self.store.record(record)
            return status, encode(body), {}, outcome
        # The journal keeps the call's parts in one tuple and builds the record when it is read. A record built
        # now (or a closure over the parts) would leave a score of objects per call for the garbage collector
        # to walk again and again until the journal drops them: pauses of several ms under load. Every part is
        # encoded now, so that reading it back never fails.
        self.store.record(_Exchange((self.clock.now(), op, req.method, req.path, req.api_key, req.query,
                                     _journal_body(req), tuple(violations), outcome, status, headers,
                                     codec.exact_size(raw))))
        return status, raw, headers, outcome

    def _answer(self, op: Operation, req: MockRequest) -> tuple[int, Any, dict[str, str], Outcome, list[Any]]:
        violations = iter_violations(op, req, self.known_keys)
        action: Action | None = self.actions.get(op.action) if op.action else None
        ctx = Context(op, req, self.store, self.clock, self.scheduler, self.config, self.rng,
                      req.base_url)
        provider = op.provider.name
        view = _RequestView(self, op, ctx, action)
        outcome = decide(op, req, violations, view, self.fault_rng)
        while outcome.fault_id and not self.store.take_fault(outcome.fault_id):
            # Another worker used the fault's last turn since decide looked: decide again on a fresh read
            # without it (a script step already taken is not taken twice).
            view.forget_reads()
            outcome = decide(op, req, violations, view, self.fault_rng)
        if outcome.admitted:
            limit, key = self.rate_window(op, ctx.api_key)
            if limit is not None and not self.store.rate_hit(key, self.clock.now(), limit.limit, limit.window):
                # Another worker filled the window since decide looked: refuse, count nothing.
                wait = self.store.rate_retry_after(key, self.clock.now(), limit.limit, limit.window) or 0.0
                outcome = rate_limited(op, wait)
                status, body, headers = render_outcome(op, outcome)
                return status, body, headers, outcome, violations
        if outcome.kind == "wire":  # an answer that looks like success until it breaks
            return 200, self._first_example(op)[1], {}, outcome, violations
        if outcome.kind == "example" and action is not None:
            adopted = self._example_with_ids(op, outcome, action, ctx)
            if adopted is not None:
                return adopted[0], adopted[1], {}, outcome, violations
        if outcome.kind != "success":
            status, body, headers = render_outcome(op, outcome)
            return status, body, headers, outcome, violations
        if action is None:
            if outcome.cost and self.store.commit(provider, ctx.api_key, outcome.cost, [], []) is None:
                return self._spent(op, violations)
            status, body = self._first_example(op)
            return status, body, {}, outcome, violations
        ctx.scenario, ctx.task_outcome = outcome.scenario, outcome.task_outcome
        made = self._run_and_commit(action, ctx, outcome.cost)
        if made is None:
            return self._spent(op, violations)  # nothing of the call was stored
        reply, raw = made
        return reply.status, raw, dict(reply.headers), outcome, violations

    def _run_and_commit(self, action: Action, ctx: Context, cost: float) -> tuple[Any, bytes] | None:
        """(reply, encoded body) of the action, its writes, jobs and charge stored in one step; None: not stored.

        What the action makes is held, then charged and stored as one step: a call is charged only if its
        resource was made, and a call that fails half-way (a bug of the mock's) leaves nothing behind.
        """
        real = ctx.store
        held = _CallStore(self.store)
        ctx.store = cast(Store, held)
        jobs = self.scheduler.hold()
        try:
            reply = action.run(ctx)
            raw = encode(reply.body)  # an answer that cannot be sent must not be paid for
        finally:
            self.scheduler.release()
            ctx.store = real
        if (held.writes or jobs or cost) and self.store.commit(
                ctx.op.provider.name, ctx.api_key, cost, held.records() if held.writes else [], jobs) is None:
            return None
        if jobs:
            self.scheduler.wake()
        return reply, raw

    @staticmethod
    def _spent(op: Operation, violations: list[Any]) -> tuple[int, Any, dict[str, str], Outcome, list[Any]]:
        """The balance changed between decide and charge (another worker spent it): refuse, charge nothing."""
        outcome = error(op, "credits", 403, "credits: spent by a concurrent call")
        status, body, headers = render_outcome(op, outcome)
        return status, body, headers, outcome, violations

    def _example_with_ids(self, op: Operation, outcome: Outcome, action: Action,
                          ctx: Context) -> tuple[int, Any] | None:
        """A success example answered with the ids of what the call made or asked about, so the mock knows them.

        A call that creates (it has a cost) creates and is charged as usual; a poll puts the task it asks about
        in the example's state (`ctx.example`). None: the example is an error, or the call could not take effect
        (unknown resource, credits short), so it is answered as written.
        """
        status, body = op.examples()[str(outcome.example)]
        if not 200 <= status < 300 or not isinstance(body, dict) or (
                op.provider.body_transport and body.get(op.provider.code_field) != 200):
            return None
        if action.precheck(ctx) is not None:
            return None
        key = cost_key(op, ctx.req)
        cost = float(self.costs[op.provider.name].get(key, 0)) if key else 0.0
        ctx.example = body
        made = self._run_and_commit(action, ctx, cost)
        if made is None:
            return None
        outcome.cost = cost
        return status, adopt_ids(body, made[0].body)

    async def _control(self, op: Operation, req: MockRequest) -> JsonResponse:
        token = self.config.admin_token
        if token and req.api_key != token:
            return json_response(401, {"code": 401, "message": "The admin token is missing or wrong."})
        violations = iter_violations(op, req, None)
        if violations:
            outcome = rejection(op, violations)
            return json_response(outcome.code, {"code": outcome.code, "message": outcome.message})
        status, body = await CONTROL[str(op.action)](self, req)
        return json_response(status, body)

    @staticmethod
    def _first_example(op: Operation) -> tuple[int, Any]:
        status = op.success_status()
        doc = op.responses.get(status)
        if doc and doc.examples:
            return status, next(iter(doc.examples.values()))
        return status, {}

    def _no_route(self, method: str, path: str, allowed: list[str]) -> JsonResponse:
        spec = self.router.provider_of(path)
        if allowed:  # the path exists, the method does not
            message = f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}."
            spec = spec or next(s for s in self.specs if any(o.path == path or (o.pattern and o.pattern.match(path))
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
    async def serve_file(self, request: Request) -> Response | JsonResponse:
        try:
            return self._file(request)
        except Exception as exc:  # the mock's own bug: a JSON 500 (logged), never a dropped connection
            log.exception("serving %r failed", request.url.path)
            self.store.record({"time": self.clock.now(), "operation": "download", "provider": "files",
                               "method": request.method, "path": printable(request.url.path),
                               "outcome": {"kind": "error", "code": 500,
                                           "reason": f"mock error: {type(exc).__name__}"}})
            return json_response(500, {"code": 500, "message": "The file could not be served; see the mock's log."},
                                 {"Connection": "close"})

    def _file(self, request: Request) -> Response | JsonResponse:
        ref = audio.parse_file_path(request.url.path)
        if ref is None or self.clock.now_ms() - ref.created_ms > self.config.file_retention * 1000:
            return json_response(404, {"code": 404, "message": "File not found or expired."})
        cover = covers.jpeg_bytes(ref.file_id) if ref.is_cover else None
        size = len(cover) if cover is not None else audio.mp3_size(ref.duration_ms)
        headers = {"Accept-Ranges": "bytes", "Content-Type": covers.CONTENT_TYPE if cover else audio.CONTENT_TYPE,
                   "Content-Disposition": content_disposition(ref.name),
                   "Cache-Control": "public, max-age=1209600"}
        span = audio.byte_range(request.headers.get("range"), size)
        if span is False:
            return Response(b"", 416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status, start, end = (206, span[0], span[1]) if isinstance(span, tuple) else (200, 0, size - 1)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        content = b"" if request.method == "HEAD" else cover[start:end + 1] if cover is not None else \
            audio.mp3_slice(ref.duration_ms, start, end)
        response = Response(content, status, headers=headers)
        response.headers["Content-Length"] = str(end - start + 1)
        # Downloads are journaled too, so the contract kit can tell a result processed twice.
        self.store.record({"time": self.clock.now(), "operation": "download", "provider": "files",
                           "method": request.method, "path": printable(request.url.path),
                           "outcome": {"kind": "file", "code": status, "reason": "file served"}})
        return response


def adopt_ids(example: Any, real: Any, key: str = "") -> Any:
    """`example` with each id (a string under a key ending in `id`) taken from `real` at the same place, if any."""
    if isinstance(example, dict) and isinstance(real, dict):
        return {k: adopt_ids(v, real.get(k), k) if k in real else v for k, v in example.items()}
    if isinstance(example, list) and isinstance(real, list):
        return [adopt_ids(v, real[i], key) if i < len(real) else v for i, v in enumerate(example)]
    if isinstance(example, str) and isinstance(real, str) and key.lower().endswith("id") and real:
        return real
    return example


class _Exchange(tuple):  # type: ignore[type-arg]
    """One journaled call as its parts: a single object for the garbage collector, made a record when read.

    (time, operation, method, path, api key, query, request body, violations, outcome, status, the answer's own
    headers, encoded answer); the answer is kept encoded, copied to its exact size, so that no part of it is a
    live container.
    """

    __slots__ = ()

    @property
    def operation_id(self) -> str:
        return str(self[1].operation_id)

    def __call__(self) -> dict[str, Any]:
        now, op, method, path, api_key, query, body, violations, outcome, status, headers, raw = self
        return {
            "time": now, "operation": op.operation_id, "provider": op.provider.name,
            "method": method, "path": path, "api_key": redact(api_key),
            "request": {"query": query, "body": None if body is None else codec.loads(body)},
            "violations": [v.as_dict() for v in violations], "outcome": outcome.as_dict(),
            "response": {"status": status, "headers": dict(headers), "body": codec.loads(raw)},
        }


_TOKEN_CHARS = re.compile(r"[^0-9A-Za-z!#$&+.^_`|~-]")  # what a quoted-string fallback may not hold, made `_`


def content_disposition(name: str) -> str:
    """`inline` with the file's name: an ASCII `filename` that cannot break out of its quotes, and the name itself
    as RFC 6266 `filename*` when it is not plain ASCII (no header parameter can be injected either way)."""
    fallback = _TOKEN_CHARS.sub("_", name)
    if fallback == name:
        return f'inline; filename="{name}"'
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(printable(name), safe='')}"


@functools.lru_cache(maxsize=256)
def _origin(scheme: str, host: bytes | None, server: tuple[str, int] | None, root_path: str,
            app_root_path: str | None) -> str:
    """Starlette's `request.base_url` without the trailing `/`, for the parts of the scope it reads."""
    scope = {"type": "http", "scheme": scheme, "server": server, "root_path": root_path, "path": root_path,
             "query_string": b"", "headers": [] if host is None else [(b"host", host)]}
    if app_root_path is not None:
        scope["app_root_path"] = app_root_path
    return str(Request(scope).base_url).rstrip("/")


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
        mock.store.close()

    routes = [
        Route("/files/{rest:path}", mock.serve_file, methods=["GET", "HEAD"]),
        Route("/{path:path}", mock, methods=ALL_METHODS),  # the mock is an ASGI app
    ]
    app = MockApp(routes=routes, lifespan=lifespan)
    app.state.mock = app.mock = mock
    return app

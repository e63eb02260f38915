"""The proxy: each provider request is validated, forwarded unchanged to its upstream, its answer validated and
handed back unchanged; with the relay on, the provider's callbacks come here first, are validated, forwarded to
the client's own URL and recorded.

Outgoing traffic goes only to the upstreams it was given and, for relayed callbacks, to the callback URL the
client itself sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.referee import ContractViolation, Referee
from mockserver.request import NO_BODY, MockRequest
from mockserver.spec import PROVIDER_SPECS, CallbackDoc, Operation, Spec, load, spec_path

from .drift import Drift, callback_drift, client_violations, response_drift
from .recording import Recorder
from .report import DriftLog

log = logging.getLogger("stemmock.proxy")

# Not forwarded: they describe one hop, not the message (RFC 9110 §7.6.1), or httpx sets them itself. Without
# Accept-Encoding the upstream answers uncompressed, so the bytes validated are the bytes handed back.
_HOP = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                  "upgrade", "content-length", "content-encoding", "accept-encoding"})
RELAY_PATH = "/__mock/relay/"
MAX_RELAYS = 100_000  # callback URLs remembered (about 200 bytes each)


@dataclass
class ProxyConfig:
    """What `stemmock proxy` is told."""

    upstreams: dict[str, str]  # provider name -> base URL
    record: str | None = None
    relay_callbacks: bool = False
    public_url: str | None = None  # the proxy's own URL as the provider reaches it (for the relay)
    webhook_secret: str | None = None  # MusicAPI's secret for jobs that send none (to check signatures)
    timeout: float = 120.0
    specs: list[Spec] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Relay:
    """A callback URL the proxy put in place of the client's."""

    op: Operation
    callback: CallbackDoc
    target: str  # the client's own URL
    secret: str | None


def _match(specs: list[Spec], method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
    for spec in specs:
        for op in spec.operations:
            if op.pattern is None and op.path == path and op.method == method:
                return op, {}
            found = op.pattern.match(path) if op.pattern is not None else None
            if found and op.method == method:
                return op, found.groupdict()
    return None, {}


def _provider_for(specs: list[Spec], path: str, upstreams: dict[str, str]) -> str | None:
    """The named upstream whose provider's paths share the longest prefix with `path`."""
    best, score = None, 0
    for spec in specs:
        if spec.provider.name not in upstreams:
            continue
        for op in spec.operations:
            common = next((i for i, (a, b) in enumerate(zip(op.path, path)) if a != b), min(len(op.path), len(path)))
            if common > score:
                best, score = spec.provider.name, common
    return best if best is not None else (next(iter(upstreams)) if len(upstreams) == 1 else None)


def musicapi_signature(secret: str, timestamp: str, raw: bytes) -> str:
    """MusicAPI's `X-Webhook-Signature`: `sha256=` + hex HMAC-SHA256 of `"<timestamp>.<raw body>"`."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()


class Proxy:
    """The proxy's state: specs, referee, upstream client, relay table, drift log, recording."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.specs = config.specs or [load(spec_path(name)) for name in PROVIDER_SPECS]
        self.referee = Referee(self.specs)
        self.log = DriftLog()
        self.recorder = Recorder(config.record) if config.record else None
        self._relays: OrderedDict[str, _Relay] = OrderedDict()
        self._lock = threading.Lock()
        self.http: httpx.AsyncClient | None = None

    # -- provider calls ------------------------------------------------------------------------------------------

    async def forward(self, request: Request) -> Response:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.url.path
        op, params = _match(self.specs, request.method, path)
        req = MockRequest(request.method, path, headers, dict(request.query_params), raw, params)
        if op is None:
            provider = _provider_for(self.specs, path, self.config.upstreams)
            name = f"{request.method} {path}"
            violations = self.referee.review_one({"operation": None, "method": request.method, "path": path})
        else:
            provider = op.provider.name
            name = op.key
            violations = client_violations(self.referee, op, req)
        upstream = self.config.upstreams.get(provider or "")
        if upstream is None:
            return JSONResponse({"code": 502, "message": f"{path} belongs to no provider given with --upstream; "
                                 f"expected one of {', '.join(sorted(self.config.upstreams))}."}, status_code=502)
        body = self._relayed_body(op, req) if op is not None and self.config.relay_callbacks else raw
        sent = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = upstream.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        assert self.http is not None
        try:
            answer = await self.http.request(request.method, url, headers=sent, content=body)
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__} from {upstream}: {exc}"
            self.log.upstream_error(name, message)
            self._record_exchange(op, name, req, None, [], violations, message)
            return JSONResponse({"code": 502, "message": f"The upstream {upstream} did not answer: {exc}."},
                                status_code=502)
        drifts = response_drift(op, answer.status_code, answer.headers.get("content-type"), answer.content) \
            if op is not None else []
        self.log.call(name, drifts, violations)
        self._record_exchange(op, name, req, answer, drifts, violations)
        back = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        return Response(answer.content, answer.status_code, headers=back)

    def _relayed_body(self, op: Operation, req: MockRequest) -> bytes:
        """The body with each callback URL field pointing at this proxy (the rest as sent)."""
        body = req.json
        changed = False
        for callback in op.callbacks.values():
            url_field = callback.url_field
            target = body.get(url_field) if url_field else None
            if not isinstance(target, str) or not target:
                continue
            token = secrets.token_hex(16)
            secret = body.get("webhook_secret") if isinstance(body.get("webhook_secret"), str) else None
            with self._lock:
                self._relays[token] = _Relay(op, callback, target, secret or self.config.webhook_secret)
                if len(self._relays) > MAX_RELAYS:  # a long run: the oldest task's callbacks have long arrived
                    self._relays.popitem(last=False)
            body = {**body, str(url_field): f"{self._public_url(req)}{RELAY_PATH}{token}"}
            changed = True
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if changed else req.raw_body

    def _public_url(self, req: MockRequest) -> str:
        return (self.config.public_url or f"http://{req.headers.get('host', '127.0.0.1')}").rstrip("/")

    # -- callbacks -----------------------------------------------------------------------------------------------

    async def relay(self, request: Request) -> Response:
        token = request.path_params["token"]
        with self._lock:
            relay = self._relays.get(token)
        if relay is None:
            return JSONResponse({"code": 404, "message": f"relay {token!r} is not one this proxy handed out."},
                                status_code=404)
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        drifts = callback_drift(relay.op, relay.callback, raw)
        if relay.op.provider.name == "musicapi" and relay.secret:
            expected = musicapi_signature(relay.secret, headers.get("x-webhook-timestamp", ""), raw)
            if not hmac.compare_digest(expected, headers.get("x-webhook-signature", "")):
                drifts.append(Drift("signature", relay.op.key, "/header/X-Webhook-Signature",
                                    "sha256=<hex HMAC-SHA256 of timestamp.body, keyed with the webhook secret>",
                                    headers.get("x-webhook-signature"), f"callback {relay.callback.name}"))
        sent = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        assert self.http is not None
        status: int | None = None
        error: str | None = None
        try:
            answer = await self.http.post(relay.target, content=raw, headers=sent)
            status = answer.status_code
            content, back = answer.content, {"content-type": answer.headers.get("content-type", "application/json")}
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            content, back = json.dumps({"received": False, "error": error}).encode(), {
                "content-type": "application/json"}
        self.log.call(relay.op.key, drifts, callback=True)
        if self.recorder is not None:
            self.recorder.write({"type": "callback", "time": time.time(), "provider": relay.op.provider.name,
                                 "operation": relay.op.operation_id, "callback": relay.callback.name,
                                 "headers": headers, "body": _decoded(raw),
                                 "forwarded": {"url": relay.target, "status": status, "error": error},
                                 "drifts": [d.as_dict() for d in drifts]})
        return Response(content, status if status is not None else 502, headers=back)

    # -- reports -------------------------------------------------------------------------------------------------

    async def drift(self, request: Request) -> JSONResponse:
        return JSONResponse(self.log.as_dict())

    def _record_exchange(self, op: Operation | None, name: str, req: MockRequest, answer: httpx.Response | None,
                         drifts: list[Drift], violations: list[ContractViolation], error: str | None = None) -> None:
        if self.recorder is None:
            return
        response = None if answer is None else {"status": answer.status_code, "headers": dict(answer.headers),
                                                "body": _decoded(answer.content)}
        self.recorder.write({
            "type": "exchange", "time": time.time(), "provider": op.provider.name if op else None,
            "operation": op.operation_id if op else None, "key": name, "method": req.method, "path": req.path,
            "query": req.query, "request": {"headers": req.headers, "body": None if req.body is NO_BODY else
                                            req.body if req.body_error is None else _decoded(req.raw_body)},
            "response": response, "error": error, "drifts": [d.as_dict() for d in drifts],
            "client_violations": [str(v) for v in violations]})


def _decoded(raw: bytes) -> Any:
    """A body as recorded: its JSON value, else its text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


async def _own_path_only(request: Request) -> JSONResponse:
    """`/__mock/*` is the proxy's own: what it does not serve is never sent to a provider."""
    return JSONResponse({"code": 404, "message": f"{request.url.path} is not served by the proxy; expected "
                         f"GET /__mock/drift."}, status_code=404)


def create_proxy_app(config: ProxyConfig) -> Starlette:
    """The proxy as an ASGI app; `app.state.proxy` is its `Proxy`."""
    proxy = Proxy(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=config.timeout, follow_redirects=False, trust_env=False) as http:
            proxy.http = http
            try:
                yield
            finally:
                if proxy.recorder is not None:
                    proxy.recorder.close()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(routes=[Route("/__mock/drift", proxy.drift, methods=["GET"]),
                            Route(RELAY_PATH + "{token}", proxy.relay, methods=["POST", "PUT"]),
                            Route("/__mock/{rest:path}", _own_path_only, methods=methods),
                            Route("/{path:path}", proxy.forward, methods=methods)],
                    lifespan=lifespan)
    app.state.proxy = proxy
    return app

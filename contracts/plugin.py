"""The pytest plugin (entry point `pytest11`): fixtures for the mock, a callback receiver, and the referee.

    def test_my_client(stemmock):
        client = MyClient(base_url=stemmock.url, api_key="my-key")
        ...
        stemmock.clock.advance(60)

At teardown the test fails with every request of the client that broke the contract (opt out with
`@pytest.mark.stemmock(strict=False)`), and with any error raised inside the mock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mockserver import MockConfig, create_app
from mockserver.spec import PROVIDER_SPECS, load, spec_path

from .check_client import parse_fault, parse_task_outcome
from .live import LiveServer
from .receiver import CallbackReceiver
from .referee import ContractViolation, Referee, report

MARKER = "stemmock"
DEFAULT_KEY = "test-key"


class _Control:
    """Calls /__mock/* on a live server (a plain HTTP client) or an in-process app (a private event loop)."""

    def __init__(self, url: str | None = None, app: Any = None) -> None:
        self._sync = httpx.Client(base_url=url, timeout=60) if url else None
        self._loop: asyncio.AbstractEventLoop | None = None
        if app is not None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="stemmock-control", daemon=True).start()
            self._async = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stemmock")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._sync is not None:
            response = self._sync.request(method, path, **kwargs)
        else:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._async.request(method, path, **kwargs), self._loop)
            response = future.result(timeout=120)
        if response.status_code >= 400:
            raise ValueError(f"{method} {path} was refused: {response.text}")
        return response.json()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._async.aclose(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)


class Clock:
    """The mock's clock as a test sees it."""

    def __init__(self, control: _Control) -> None:
        self._control = control

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the clock and run everything that falls due (stages, callbacks, retries)."""
        return dict(self._control.request("POST", "/__mock/clock/advance", json={"seconds": seconds}))

    @property
    def now(self) -> float:
        return float(self._control.request("GET", "/__mock/clock")["now"])


class Stemmock:
    """A running mock, with the control plane as methods and the referee's verdict."""

    def __init__(self, control: _Control, url: str, mock: Any) -> None:
        self._control = control
        self.url = url
        self.musicapi_url = url  # both providers share one origin; their paths do not collide
        self.apibox_url = url
        self.mock = mock  # the in-process Mock (state, clock, specs), for advanced use
        self.clock = Clock(control)
        self.strict = True
        self.referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])

    @property
    def journal(self) -> list[dict[str, Any]]:
        return list(self._control.request("GET", "/__mock/journal")["exchanges"])

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        return list(self._control.request("GET", "/__mock/callbacks")["callbacks"])

    def calls(self, operation: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """The journaled calls of `operation` (an operationId or `METHOD /path`) that match every filter.

        Filters are those of `GET /__mock/journal`: api_key, status, outcome, since (a clock instant) and path
        (a trailing `*` matches a prefix).
        """
        query = _query(operation, filters)
        return list(self._control.request("GET", "/__mock/journal", params=query)["exchanges"])

    def assert_called(self, operation: str | None = None, times: int | None = None, **filters: Any) -> None:
        """Fail unless `operation` was called (exactly `times` times, when given) with calls matching `filters`.

        The message lists the near misses: calls of the operation that missed a filter, or, when there are
        none, calls of other operations that match the filters.
        """
        query = _query(operation, filters)
        found = int(self._control.request("GET", "/__mock/journal/count", params=query)["count"])
        if (found == times) if times is not None else found > 0:
            return
        wanted = f"{operation or 'any operation'}" + (f" with {_shown(filters)}" if filters else "")
        expected = f"{times} time(s)" if times is not None else "at least once"
        # Each filter asked of the mock on its own, so that "differs" means exactly what the mock matches.
        meets = {name: {e["seq"] for e in self.calls(operation, **{name: filters[name]})} for name in filters}
        near = [e for e in self.calls(operation) if any(e["seq"] not in seqs for seqs in meets.values())] \
            if operation else []
        if not near and filters:
            near = [e for e in self.calls(None, **filters) if e.get("operation") != operation]
        lines = [f"expected {wanted} to be called {expected}; it was called {found} time(s)."]
        if near:
            lines.append("Near misses (newest last):")
            lines += [f"  - {_describe(e, [n for n, seqs in meets.items() if e['seq'] not in seqs])}"
                      for e in near[-10:]]
        else:
            lines.append(f"No near misses: the journal holds {len(self.journal)} call(s).")
        raise AssertionError("\n".join(lines))

    def reset(self) -> None:
        self._control.request("POST", "/__mock/reset")

    def set_credits(self, key: str, credits: float, extra_credits: float = 0, provider: str | None = None) -> None:
        body: dict[str, Any] = {"credits": credits, "extra_credits": extra_credits}
        if provider:
            body["provider"] = provider
        self._control.request("PUT", f"/__mock/credits/{key}", json=body)

    def fault(self, operation: str, code: int | None = None, *, wire_fault: str | None = None,
              scenario: str | None = None, times: int = 1, api_key: str | None = None) -> dict[str, Any]:
        """Make the next `times` calls of `operation` fail with `code` (or a wire fault, or a scenario)."""
        body: dict[str, Any] = {"operation": operation, "times": times}
        for name, value in (("code", code), ("wire_fault", wire_fault), ("scenario", scenario),
                            ("api_key", api_key)):
            if value is not None:
                body[name] = value
        return dict(self._control.request("POST", "/__mock/faults", json=body))

    def maintenance(self, on: bool = True, provider: str | None = None) -> None:
        body: dict[str, Any] = {"on": on}
        if provider:
            body["provider"] = provider
        self._control.request("PUT", "/__mock/maintenance", json=body)

    def violations(self) -> list[ContractViolation]:
        """Every contract violation in the requests made since the last reset."""
        return self.referee.review(self.journal)

    def server_errors(self) -> list[str]:
        return [str(e["error"]) for e in self.journal if e.get("error")]

    def verdict(self) -> str | None:
        """The failure text for teardown, or None when the client kept the contract."""
        problems = self.server_errors()
        text = [f"the mock raised an error:\n{e}" for e in problems]
        if self.strict:
            found = self.violations()
            if found:
                text.append(report(found))
        return "\n\n".join(text) or None


_FILTERS = ("api_key", "status", "outcome", "since", "path")


def _query(operation: str | None, filters: dict[str, Any]) -> dict[str, str]:
    unknown = sorted(set(filters) - set(_FILTERS))
    if unknown:
        raise TypeError(f"{unknown[0]!r} is not a journal filter; expected one of {', '.join(_FILTERS)}.")
    query = {name: str(value) for name, value in filters.items() if value is not None}
    if operation is not None:
        query["operation"] = operation
    return query


def _shown(filters: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in filters.items())


def _describe(exchange: dict[str, Any], missed: list[str]) -> str:
    outcome = exchange.get("outcome") or {}
    text = (f"#{exchange.get('seq')} t={exchange.get('time')} {exchange.get('operation')}: {exchange.get('method')} "
            f"{exchange.get('path')} -> HTTP {(exchange.get('response') or {}).get('status')}, "
            f"{outcome.get('kind')} {outcome.get('code')}, api_key {exchange.get('api_key')}")
    return text + (f" (differs: {', '.join(missed)})" if missed else "")


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    return dict(marker.kwargs) if marker else {}


def _prepare(handle: Stemmock, options: dict[str, Any]) -> None:
    handle.reset()
    handle.strict = bool(options.get("strict", True))
    credits = options.get("credits")
    if isinstance(credits, dict):
        for key, amount in credits.items():
            handle.set_credits(key, amount)
    elif credits is not None:
        handle.set_credits(str(options.get("api_key", DEFAULT_KEY)), credits)
    scenario = options.get("scenario")
    if scenario:
        for spec in handle.referee.operations.values():
            if spec.callbacks:
                handle.fault(spec.operation_id, scenario=scenario, times=1_000_000)
    for operation, outcome in (options.get("task_outcome") or {}).items():
        handle._control.request("POST", "/__mock/faults", json=parse_task_outcome(f"{operation}={outcome}"))
    for text in options.get("faults") or ():
        handle._control.request("POST", "/__mock/faults", json=parse_fault(text))
    if options.get("script") is not None:
        handle._control.request("PUT", "/__mock/script", json={"steps": list(options["script"])})


def _config(options: dict[str, Any]) -> MockConfig:
    return MockConfig(clock=options.get("clock", "manual"), seed=int(options.get("seed", 0)), journal_size=100_000)


@pytest.fixture(scope="session")
def _stemmock_servers() -> Iterator[dict[tuple[str, int], tuple[LiveServer, Stemmock]]]:
    servers: dict[tuple[str, int], tuple[LiveServer, Stemmock]] = {}
    yield servers
    for server, handle in servers.values():
        handle._control.close()
        server.stop()


def _check(handle: Stemmock) -> None:
    verdict = handle.verdict()
    if verdict:
        pytest.fail(verdict, pytrace=False)


@pytest.fixture()
def stemmock(request: pytest.FixtureRequest,
             _stemmock_servers: dict[tuple[str, int], tuple[LiveServer, Stemmock]]) -> Iterator[Stemmock]:
    """A real mock server on a free port: started once per session (per clock and seed), reset per test."""
    options = _options(request)
    config = _config(options)
    key = (config.clock, config.seed)
    if key not in _stemmock_servers:
        app = create_app(config)
        server = LiveServer(app).start()
        _stemmock_servers[key] = (server, Stemmock(_Control(url=server.url), server.url, app.state.mock))
    handle = _stemmock_servers[key][1]
    _prepare(handle, options)
    yield handle
    _check(handle)


@pytest.fixture()
def stemmock_app(request: pytest.FixtureRequest) -> Iterator[Stemmock]:
    """The same mock in-process (ASGI, no socket): pass `stemmock_app.transport` to an httpx client."""
    options = _options(request)
    app = create_app(_config(options))
    control = _Control(app=app)
    handle = Stemmock(control, "http://stemmock", app.state.mock)
    handle.transport = httpx.ASGITransport(app=app)  # type: ignore[attr-defined]
    handle.app = app  # type: ignore[attr-defined]
    _prepare(handle, options)
    yield handle
    try:
        _check(handle)
    finally:
        control.close()


@pytest.fixture()
def callback_receiver(request: pytest.FixtureRequest) -> Iterator[CallbackReceiver]:
    """A real HTTP endpoint that collects callback deliveries; `.fail_next(n)` makes the next n fail.

    The marker's `receiver="refuse*N"` or `"timeout*N"` makes it refuse, or answer too late for the mock's
    callback timeout, the next N deliveries."""
    with CallbackReceiver() as receiver:
        behaviour = _options(request).get("receiver")
        if behaviour:
            receiver.behave(behaviour, MockConfig().callbacks.timeout)
        yield receiver


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(scenario=None, credits=None, api_key='{DEFAULT_KEY}', clock='manual', seed=0, strict=True, "
        "task_outcome={OPERATION: OUTCOME}, faults=['OPERATION=OUTCOME[*TIMES]'], script=[steps], "
        "receiver='refuse*N|timeout*N'): set up the stemmock fixtures for this test.")

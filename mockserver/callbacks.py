"""Callback delivery: open a delivery, POST it on the scheduler, retry, record each attempt.

A delivery is opened (`Deliveries.open`) by a provider's stage job when its task reaches the stage it reports,
with the payload the provider built then from the task record polling reads; it stays fixed across retries.
The provider also signs each attempt (`ProviderCallbacks.headers`). This module knows no provider. Each
attempt is recorded (time, status, latency, error); after the last retry fails the delivery is given up and
the task shows `CALLBACK_EXCEPTION`. Deliveries run on the scheduler, never inside a request.

A task's `scenario` (set from `Prefer: scenario=...`) is read when the stage fires:

- `callback_fails`: the task's failure body is sent instead of its result (generation: one `error`
  callback at the `complete` instant and no `text`/`first` stages).
- `callback_duplicate`: every delivery is made twice, same body and same `X-Webhook-Id`; the copy is a
  second delivery record with `duplicate_of`.
- `callback_late`: the first attempt of every delivery is made `callbacks.late_delay` seconds after the stage.
- `callback_never`: no request is made; the delivery is recorded with state `suppressed` and no attempts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from .clock import Clock, Scheduler
from .config import CallbackConfig, MockConfig
from .responses import encode
from .sender import HttpSender, SendError
from .store import Store

log = logging.getLogger("stemmock.callbacks")

SCENARIOS = ("callback_fails", "callback_duplicate", "callback_late", "callback_never")
# Delivery states: pending (an attempt is due or running), delivered, failed (retries exhausted),
# suppressed (callback_never), blocked (the URL's host is not in callbacks.allow_hosts).
TERMINAL_STATES = ("delivered", "failed", "suppressed", "blocked")


class ProviderCallbacks(Protocol):
    """What delivery needs of a provider: where its tasks are stored, and the headers that sign an attempt."""

    task_kind: str  # the store kind marked `callback_exception` when a delivery of the provider's is given up

    def headers(self, delivery: dict[str, Any], body: bytes, timestamp: str, config: CallbackConfig) -> dict[str, str]:
        """The provider's own headers for one attempt of `delivery` (its signature, ids), made at `timestamp`."""
        ...


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_URL = re.compile(r"(?i)https?://[^/?#@:\[\]\s]+(?::[0-9]{1,5})?(?:[/?#]|$)")  # a plain host and port


def refused_target(url: str | None, allow_hosts: tuple[str, ...]) -> str | None:
    """Why `url` may not be called back (a sentence naming the value and what was expected), or None.

    It must be an http(s) URL with a host; with `allow_hosts` its host must be one of them, exactly or under a
    `*.domain` entry, and an entry that names a port (`host:port`, `[::1]:8080`) allows that port only.
    """
    if not allow_hosts and url and _HTTP_URL.match(url):  # the usual case, without parsing the URL
        return None
    try:
        parts = urlsplit(url or "")
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number, or out of range
        return f"{url!r} is not a URL the mock can call; expected an http or https URL."
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
        return f"{url!r} is not an http or https URL; expected a callback URL such as https://example.com/hook."
    if not allow_hosts:
        return None
    port = port if port is not None else _DEFAULT_PORTS[parts.scheme.lower()]
    for entry in allow_hosts:
        name, wanted = _host_port(entry.lower())
        if (host == name or (name.startswith("*.") and host.endswith(name[1:]))) and wanted in (None, port):
            return None
    return f"the host of {url!r} is not allowed; expected one of {', '.join(allow_hosts)}."


def _host_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port or None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return entry, None


def host_allowed(url: str | None, allow_hosts: tuple[str, ...]) -> bool:
    """Whether `url` may be called back (see `refused_target`)."""
    return refused_target(url, allow_hosts) is None


class Deliveries:
    """Every callback the mock owes, and the attempts made to deliver each."""

    def __init__(self, store: Store, clock: Clock, scheduler: Scheduler, config: MockConfig,
                 providers: Mapping[str, ProviderCallbacks]) -> None:
        self.store = store
        self.providers = providers
        self.clock = clock
        self.scheduler = scheduler
        self.config = config
        self._sender: HttpSender | None = None
        # Called once the sender exists (its HTTP client modules are imported then): `stemmock serve` freezes
        # the heap again here, as it did at start-up.
        self.after_first_sender: Callable[[], None] | None = None
        self._inflight: set[str] = set()  # delivery ids with an attempt on the wire from this worker
        scheduler.register("attempt", self._attempt)

    # -- delivery -------------------------------------------------------------------------------------------
    def _next_id(self) -> str:
        # The store's counter: unique across workers, and restarting with the rest of the state on reset.
        return f"dlv_{self.store.next_id('delivery'):06d}"

    def _new(self, provider: str, task: dict[str, Any], event: str, payload: dict[str, Any],
             scenario: str | None, **extra: Any) -> dict[str, Any]:
        """The delivery of `event` for the task: made once. A stage job that runs again (its worker died after
        opening the delivery) gets the delivery it opened, so it is never sent under a second record."""
        slot = f"{task['id']}/{event}" + ("/copy" if extra.get("duplicate_of") else "")
        known = self.store.get("delivery_slot", slot)
        if known is not None:
            existing = self.store.get("delivery", known["id"])
            if existing is not None:
                return existing
            delivery_id = known["id"]
        else:
            delivery_id = self._next_id()
            self.store.put("delivery_slot", slot, {"id": delivery_id})  # first: a record is never made twice
        url = task.get("webhook_url") or task.get("callback_url")
        delivery = {"id": delivery_id, "provider": provider, "task_id": task["id"], "url": url,
                    "event": event, "payload": payload, "state": "pending", "attempts": [],
                    "webhook_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{task['id']}/{event}")),
                    "secret": task.get("webhook_secret"), "scenario": scenario, "created_at": self.clock.now(),
                    "next_attempt_at": self.clock.now(), "error": None, **extra}
        refused = refused_target(url, self.config.callbacks.allow_hosts)
        if refused is not None:  # the config changed since the call was accepted (a restart on a shared store)
            delivery.update(state="blocked", next_attempt_at=None, error=f"callbacks.allow_hosts: {refused}")
            log.warning("callback %s for task %s blocked: %s", delivery["id"], task["id"], delivery["error"])
        self.store.put("delivery", delivery["id"], delivery)
        return delivery

    async def open(self, provider: str, task: dict[str, Any], event: str, payload: dict[str, Any]) -> None:
        """Open the delivery of `event` for `task` (once) and make its first attempt, as the task's scenario says."""
        scenario = task.get("scenario") if task.get("scenario") in SCENARIOS else None
        delivery = self._new(provider, task, event, payload, scenario)
        if delivery["state"] != "pending":
            return
        if delivery["attempts"] or (delivery.get("next_attempt_at") or 0) > self.clock.now():
            return  # opened before by a worker that died after scheduling its next attempt: that job makes it
        if scenario == "callback_never":
            self.store.update("delivery", delivery["id"], {"state": "suppressed", "next_attempt_at": None})
            return
        if scenario == "callback_late":
            delay = self.config.callbacks.late_delay
            self.store.update("delivery", delivery["id"], {"next_attempt_at": self.clock.now() + delay})
            self.scheduler.after(delay, "attempt", delivery["id"], label=f"late {delivery['id']}",
                                 owner=("delivery", delivery["id"]))
            return
        await self._attempt(delivery["id"])
        if scenario == "callback_duplicate":
            # The copy goes out after the original, so a receiver sees the same body twice in a row.
            copy = self._new(provider, task, event, payload, scenario, duplicate_of=delivery["id"])
            await self._attempt(copy["id"])

    def _headers(self, delivery: dict[str, Any], body: bytes, at: float | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "stemmock-callbacks"}
        timestamp = str(int(self.clock.now() if at is None else at))
        headers.update(self.providers[delivery["provider"]].headers(delivery, body, timestamp, self.config.callbacks))
        return headers

    def _http(self) -> HttpSender:
        if self._sender is None:
            self._sender = HttpSender(self.config.callbacks.concurrency)
            if self.after_first_sender is not None:
                self.after_first_sender()
                self.after_first_sender = None
        return self._sender

    async def _post(self, delivery: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One POST of the delivery's body; the attempt as recorded (status or error, latency)."""
        body = encode(delivery["payload"])
        attempt: dict[str, Any] = {"at": self.clock.now(), "status": None, "latency_ms": None, "error": None}
        started = time.perf_counter()
        try:
            # The provider's 15 s covers the whole attempt: connect, send and the answer's head.
            async with asyncio.timeout(timeout):
                status = await self._http().post(delivery["url"], body, self._headers(delivery, body))
            attempt["status"] = status
            if not 200 <= status < 300:
                attempt["error"] = f"receiver answered HTTP {status}"
        except TimeoutError:
            attempt["error"] = f"timeout after {timeout:g} s"
        except SendError as exc:
            attempt["error"] = str(exc)
        except Exception as exc:  # an attempt must end recorded, or its delivery would stay pending forever
            log.exception("callback %s: unexpected error while sending", delivery["id"])
            attempt["error"] = f"{type(exc).__name__}: {exc}"
        attempt["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return attempt

    async def _attempt(self, delivery_id: str, *, final: bool = False, timeout: float | None = None) -> None:
        """Make one attempt; on failure schedule the next retry, or give up when none is left (or `final`)."""
        delivery = self.store.get("delivery", delivery_id)
        if delivery is None or delivery["state"] != "pending" or delivery_id in self._inflight:
            return
        self._inflight.add(delivery_id)
        try:
            attempt = await self._post(delivery, self.config.callbacks.timeout if timeout is None else timeout)
        finally:
            self._inflight.discard(delivery_id)
        attempts = [*delivery["attempts"], attempt]
        ok = attempt["status"] is not None and 200 <= attempt["status"] < 300
        retries = self.config.callbacks.retries
        if ok:
            self.store.update("delivery", delivery_id, {"attempts": attempts, "state": "delivered",
                                                        "next_attempt_at": None, "error": None})
        elif final:
            # Shutdown: the attempt is recorded, nothing more is scheduled; flush reports the task.
            self.store.update("delivery", delivery_id, {"attempts": attempts, "next_attempt_at": None,
                                                        "error": attempt["error"]})
        elif len(attempts) <= len(retries):
            delay = retries[len(attempts) - 1]
            self.store.update("delivery", delivery_id, {"attempts": attempts, "error": attempt["error"],
                                                        "next_attempt_at": self.clock.now() + delay})
            self.scheduler.after(delay, "attempt", delivery_id, label=f"retry {delivery_id}",
                                 owner=("delivery", delivery_id))
            log.warning("callback %s attempt %d to %s failed: %s; next retry at t=%.3f (in %g s)", delivery_id,
                        len(attempts), delivery["url"], attempt["error"], self.clock.now() + delay, delay)
        else:
            self.store.update("delivery", delivery_id, {"attempts": attempts, "state": "failed",
                                                        "next_attempt_at": None, "error": attempt["error"]})
            kind = self.providers[delivery["provider"]].task_kind
            self.store.update(kind, delivery["task_id"], {"callback_exception": True})
            log.warning("callback %s attempt %d to %s failed: %s; given up after %d attempts (task %s)", delivery_id,
                        len(attempts), delivery["url"], attempt["error"], len(attempts), delivery["task_id"])

    def signed_headers(self, delivery_id: str) -> dict[str, str] | None:
        """The headers the delivery's last attempt went out with (signed as then), or its next one would; None if
        there is no such delivery. They follow from the payload and the instant, so nothing is kept per attempt."""
        delivery = self.store.get("delivery", delivery_id)
        if delivery is None:
            return None
        at = delivery["attempts"][-1]["at"] if delivery["attempts"] else None
        return self._headers(delivery, encode(delivery["payload"]), at)

    async def resend(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """Send a delivery once more, now, with its payload; the attempt is recorded with `resent` and returned."""
        attempt = {**await self._post(delivery, self.config.callbacks.timeout), "resent": True}
        current = self.store.get("delivery", delivery["id"]) or delivery
        self.store.update("delivery", delivery["id"], {"attempts": [*current["attempts"], attempt]})
        return attempt

    # -- shutdown -------------------------------------------------------------------------------------------
    async def flush(self, grace: float) -> list[str]:
        """Attempt every pending delivery once within `grace` seconds; log and return the task ids still owed.

        Meant for app shutdown of a mock whose state dies with it, after the scheduler has stopped: retries
        and late first attempts that are scheduled in the future are tried now, because the process will not
        be there when they fall due. (A shared store keeps them owed instead; see `owed`.)
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        limit = asyncio.Semaphore(self.config.callbacks.concurrency)

        async def once(delivery_id: str) -> None:
            async with limit:
                left = deadline - loop.time()
                if left > 0:
                    await self._attempt(delivery_id, final=True, timeout=min(self.config.callbacks.timeout, left))

        pending = [d["id"] for d in self.store.all("delivery") if d["state"] == "pending"]
        if pending:
            tasks = [loop.create_task(once(i)) for i in pending]
            # Each attempt's own timeout ends by the deadline; the margin only covers scheduling overhead.
            _done, late = await asyncio.wait(tasks, timeout=grace + 1.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        owed = self.owed()
        if owed:
            log.warning("shutting down with %d task(s) whose callbacks were not delivered: %s", len(owed),
                        ", ".join(owed))
        return owed

    def owed(self) -> list[str]:
        """Task ids with a delivery still pending."""
        return sorted({d["task_id"] for d in self.store.all("delivery") if d["state"] == "pending"})

    def list(self) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in d.items() if k != "secret"} for d in self.store.all("delivery")),
                      key=lambda d: d["id"])

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

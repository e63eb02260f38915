"""Callback delivery: schedule on the clock, build the documented payload, sign, POST, retry, record.

A delivery is opened when its task reaches the stage it reports. Its payload is built then, from the
same task record that polling reads, and stays fixed across retries. Each attempt is recorded (time,
status, latency, error); after the last retry fails the delivery is given up and the task shows
`CALLBACK_EXCEPTION`. Deliveries run on the scheduler, never inside a request.

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
import base64
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import apibox, musicapi
from .clock import Clock, Scheduler
from .config import MockConfig
from .responses import encode
from .store import Store

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("stemmock.callbacks")

STAGE_MESSAGES = {"text": "Text generation completed.", "first": "First song generated successfully.",
                  "complete": "All generated successfully."}
SCENARIOS = ("callback_fails", "callback_duplicate", "callback_late", "callback_never")
# Delivery states: pending (an attempt is due or running), delivered, failed (retries exhausted),
# suppressed (callback_never), blocked (the URL's host is not in callbacks.allow_hosts).
TERMINAL_STATES = ("delivered", "failed", "suppressed", "blocked")


def musicapi_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "timestamp.raw body">`, as MusicAPI signs its webhooks."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def apibox_signature(key: str, task_id: str, timestamp: str) -> str:
    """base64 HMAC-SHA256 of `taskId.timestamp` (the kie-style variant; the body is not covered)."""
    return base64.b64encode(hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()).decode()


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


class SendError(Exception):
    """A POST that produced no HTTP status; the message starts with the failure class (ConnectError, ...)."""


class HttpSender:
    """Callback POSTs through aiohttp's pooled client; only the answer's status is read.

    aiohttp rather than httpx here: httpx's async pool caps a burst of deliveries at a few hundred per
    second on this kind of machine, aiohttp sends thousands.
    """

    def __init__(self, max_connections: int) -> None:
        import aiohttp  # noqa: F401  (imported when the first delivery is made: start-up does not pay for it)

        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            # Idle connections are dropped after 2 s: receivers commonly close them after 5 s (uvicorn's
            # default), and a connection reused just as the peer closes it fails a delivery for no reason.
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=2.0)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url`; the answer's status code. Raises SendError when there is none."""
        import aiohttp

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SendError(f"UnsupportedURL: {url!r} is not an http(s) URL")
        try:
            return await self._post(url, body, headers)
        except aiohttp.ClientOSError as exc:
            if "request body" not in str(exc):
                raise SendError(f"ClientOSError: {exc}") from exc
            # The request never left (a kept-alive connection closed under it): once more, on a new connection.
            try:
                return await self._post(url, body, {**headers, "Connection": "close"})
            except aiohttp.ClientError as again:
                raise SendError(f"{type(again).__name__}: {again}") from again

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import aiohttp

        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status
        except aiohttp.ClientConnectorError as exc:
            raise SendError(f"ConnectError: {exc}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise SendError("ReadError: the connection closed before an answer") from exc
        except aiohttp.ClientResponseError as exc:  # the peer answered something that is not HTTP
            raise SendError(f"ProtocolError: {exc.message}") from exc
        except aiohttp.ClientOSError:
            raise
        except aiohttp.ClientError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a URL aiohttp cannot use
            raise SendError(f"UnsupportedURL: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Deliveries:
    """Every callback the mock owes, and the attempts made to deliver each."""

    def __init__(self, store: Store, clock: Clock, scheduler: Scheduler, config: MockConfig) -> None:
        self.store = store
        self.clock = clock
        self.scheduler = scheduler
        self.config = config
        self._sender: HttpSender | None = None
        # Called once the sender exists (its HTTP client modules are imported then): `stemmock serve` freezes
        # the heap again here, as it did at start-up.
        self.after_first_sender: Callable[[], None] | None = None
        self._inflight: set[str] = set()  # delivery ids with an attempt on the wire from this worker
        scheduler.register("generation_stage", self._generation_stage)
        scheduler.register("separation_done", self._separation_done)
        scheduler.register("musicapi_done", self._musicapi_done)
        scheduler.register("upload_done", self._upload_done)
        scheduler.register("attempt", self._attempt)

    # -- scheduling (called from actions, inside a request: cheap, no I/O) ----------------------------------
    def schedule_generation(self, task: dict[str, Any]) -> None:
        if not task.get("callback_url"):
            return
        for stage in ("text", "first", "complete"):
            self.scheduler.at(task["stages"][stage], "generation_stage", task["id"], stage,
                              label=f"apibox generate {task['id']} {stage}")

    def schedule_separation(self, task: dict[str, Any]) -> None:
        if task.get("callback_url"):
            self.scheduler.at(task["done_at"], "separation_done", task["id"],
                              label=f"apibox vocal-removal {task['id']}")

    def schedule_musicapi(self, task: dict[str, Any]) -> None:
        self.scheduler.at(task["ready_at"], "musicapi_done", task["id"], label=f"musicapi task {task['id']}")

    def schedule_upload(self, task: dict[str, Any]) -> None:
        self.scheduler.at(task["ready_at"], "upload_done", task["id"], label=f"musicapi upload {task['id']}")

    # -- payloads (built when the stage is reached, from the task record) ------------------------------------
    @staticmethod
    def _failed(task: dict[str, Any]) -> bool:
        return bool(task.get("failed")) or task.get("scenario") == "callback_fails"

    async def _generation_stage(self, task_id: str, stage: str) -> None:
        task = self.store.get("apibox_task", task_id)
        if task is None:
            return
        if self._failed(task):
            # A failed generation reports once, at its terminal instant, with the documented `error` stage.
            if stage != "complete":
                return
            payload = {"code": task.get("error_code") or 500,
                       "msg": task.get("error_message") or "Generation failed.",
                       "data": {"callbackType": "error", "task_id": task_id, "data": None}}
            await self._open("apibox", task, "generate.error", payload)
            return
        payload = {"code": 200, "msg": STAGE_MESSAGES[stage],
                   "data": {"callbackType": stage, "task_id": task_id,
                            "data": apibox.generation_tracks(task, self.clock.now())}}
        await self._open("apibox", task, f"generate.{stage}", payload)

    async def _separation_done(self, task_id: str) -> None:
        task = self.store.get("apibox_task", task_id)
        if task is None:
            return
        if self._failed(task):
            payload = {"code": task.get("error_code") or 500,
                       "msg": task.get("error_message") or "Vocal separation failed",
                       "data": {"task_id": task_id, "vocal_removal_info": None}}
            event = "vocal_removal.failed"
        else:
            info = {"origin_url": "", **apibox.separation_files(task)}
            payload = {"code": 200, "msg": "vocal Removal generated successfully.",
                       "data": {"task_id": task_id, "vocal_removal_info": info}}
            event = f"vocal_removal.{task['type']}"
        await self._open("apibox", task, event, payload)

    async def _musicapi_done(self, task_id: str) -> None:
        task = self.store.get("task", task_id)
        if task is None or not task.get("webhook_url"):
            return
        now = self.clock.now()
        clips = [musicapi.clip_view(c, now) for c in (self.store.get("clip", cid) for cid in task["clips"]) if c]
        task_failed = self._failed(task)
        if task_failed:
            # The webhook must not show playable clips for a failed task, whatever the clip records say.
            message = task.get("error_message") or "Generation failed."
            clips = [{**c, "state": "failed", "audio_url": "", "duration": None, "error_message": message}
                     for c in clips]
        failed = task_failed or any(c["state"] == "failed" for c in clips)
        event = "song.failed" if failed else "song.completed"
        code = (task.get("error_code") or 500) if failed else 200
        message = (task.get("error_message") or "failed") if failed else "success"
        payload = {"code": code, "message": message, "task_id": task_id, "platform": "sonic", "event": event,
                   "data": clips}
        await self._open("musicapi", task, event, payload)

    async def _upload_done(self, task_id: str) -> None:
        task = self.store.get("upload", task_id)
        if task is None:
            return
        if self._failed(task):
            payload = {"code": 400, "message": "Invalid parameters.", "task_id": task_id}
            event = "upload.failed"
        else:
            payload = {"code": 200, "message": "success", "task_id": task_id, "clip_id": task["clip_id"]}
            event = "upload.completed"
        await self._open("musicapi", task, event, payload)

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

    async def _open(self, provider: str, task: dict[str, Any], event: str, payload: dict[str, Any]) -> None:
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
            self.scheduler.after(delay, "attempt", delivery["id"], label=f"late {delivery['id']}")
            return
        await self._attempt(delivery["id"])
        if scenario == "callback_duplicate":
            # The copy goes out after the original, so a receiver sees the same body twice in a row.
            copy = self._new(provider, task, event, payload, scenario, duplicate_of=delivery["id"])
            await self._attempt(copy["id"])

    def _headers(self, delivery: dict[str, Any], body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "stemmock-callbacks"}
        timestamp = str(int(self.clock.now()))
        if delivery["provider"] == "musicapi":
            secret = delivery.get("secret") or self.config.callbacks.webhook_secret
            headers.update({"X-Webhook-Id": delivery["webhook_id"], "Idempotency-Key": delivery["webhook_id"],
                            "X-Webhook-Event": delivery["event"], "X-Webhook-Timestamp": timestamp,
                            "X-Webhook-Signature": musicapi_signature(secret, timestamp, body)})
        elif self.config.callbacks.apibox_hmac_key:
            headers.update({"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": apibox_signature(
                self.config.callbacks.apibox_hmac_key, delivery["task_id"], timestamp)})
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
            self.scheduler.after(delay, "attempt", delivery_id, label=f"retry {delivery_id}")
        else:
            self.store.update("delivery", delivery_id, {"attempts": attempts, "state": "failed",
                                                        "next_attempt_at": None, "error": attempt["error"]})
            kind = "task" if delivery["provider"] == "musicapi" else "apibox_task"
            self.store.update(kind, delivery["task_id"], {"callback_exception": True})
            log.warning("callback %s for task %s given up after %d attempts: %s", delivery_id, delivery["task_id"],
                        len(attempts), attempt["error"])

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

"""Callback delivery: schedule on the clock, build the documented payload, sign, POST, retry, record.

A delivery is created when its task reaches the stage it reports. Its payload is built then, from the
same task record that polling reads, and stays fixed across retries. Each attempt is recorded (time,
status, latency, error); after the last retry fails the delivery is given up and the task shows
`CALLBACK_EXCEPTION`. Deliveries run on the scheduler, never inside a request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

import httpx

from . import apibox, musicapi
from .clock import Clock, Scheduler
from .config import MockConfig
from .state import Store

log = logging.getLogger("stemmock.callbacks")

STAGE_MESSAGES = {"text": "Text generation completed.", "first": "First song generated successfully.",
                  "complete": "All generated successfully."}


def musicapi_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "timestamp.raw body">`, as MusicAPI signs its webhooks."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def apibox_signature(key: str, task_id: str, timestamp: str) -> str:
    """base64 HMAC-SHA256 of `taskId.timestamp` (the kie-style variant; the body is not covered)."""
    return base64.b64encode(hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()).decode()


class Deliveries:
    """Every callback the mock owes, and the attempts made to deliver each."""

    def __init__(self, store: Store, clock: Clock, scheduler: Scheduler, config: MockConfig) -> None:
        self.store = store
        self.clock = clock
        self.scheduler = scheduler
        self.config = config
        self._client: httpx.AsyncClient | None = None
        self._seq = 0

    # -- scheduling (called from actions, inside a request: cheap, no I/O) ----------------------------------
    def schedule_generation(self, task: dict[str, Any]) -> None:
        if not task.get("callback_url"):
            return
        for stage in ("text", "first", "complete"):
            self.scheduler.at(task["stages"][stage], self._job(self._generation_stage, task["id"], stage),
                              f"apibox generate {task['id']} {stage}")

    def schedule_separation(self, task: dict[str, Any]) -> None:
        if task.get("callback_url"):
            self.scheduler.at(task["done_at"], self._job(self._separation_done, task["id"]),
                              f"apibox vocal-removal {task['id']}")

    def schedule_musicapi(self, task: dict[str, Any]) -> None:
        self.scheduler.at(task["ready_at"], self._job(self._musicapi_done, task["id"]), f"musicapi task {task['id']}")

    @staticmethod
    def _job(func: Any, *args: Any) -> Any:
        async def run() -> None:
            await func(*args)

        return run

    # -- payloads (built when the stage is reached, from the task record) ------------------------------------
    async def _generation_stage(self, task_id: str, stage: str) -> None:
        task = self.store.get("apibox_task", task_id)
        if task is None:
            return
        payload = {"code": 200, "msg": STAGE_MESSAGES[stage],
                   "data": {"callbackType": stage, "task_id": task_id,
                            "data": apibox.generation_tracks(task, self.clock.now())}}
        await self._open("apibox", task, f"generate.{stage}", payload)

    async def _separation_done(self, task_id: str) -> None:
        task = self.store.get("apibox_task", task_id)
        if task is None:
            return
        if task.get("failed"):
            payload = {"code": task.get("error_code", 500), "msg": task.get("error_message", "Vocal separation failed"),
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
        failed = any(c["state"] == "failed" for c in clips)
        event = "song.failed" if failed else "song.completed"
        payload = {"code": 500 if failed else 200, "message": "failed" if failed else "success", "task_id": task_id,
                   "platform": "sonic", "event": event, "data": clips}
        await self._open("musicapi", task, event, payload)

    # -- delivery -------------------------------------------------------------------------------------------
    async def _open(self, provider: str, task: dict[str, Any], event: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        url = task.get("webhook_url") if provider == "musicapi" else task.get("callback_url")
        delivery = {"id": f"dlv_{self._seq:06d}", "provider": provider, "task_id": task["id"], "url": url,
                    "event": event, "payload": payload, "state": "pending", "attempts": [],
                    "webhook_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{task['id']}/{event}")),
                    "secret": task.get("webhook_secret"), "created_at": self.clock.now()}
        self.store.put("delivery", delivery["id"], delivery)
        await self._attempt(delivery["id"])

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

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self.config.callbacks.concurrency)
            self._client = httpx.AsyncClient(timeout=self.config.callbacks.timeout, limits=limits, trust_env=False)
        return self._client

    async def _attempt(self, delivery_id: str) -> None:
        delivery = self.store.get("delivery", delivery_id)
        if delivery is None or delivery["state"] != "pending":
            return
        body = json.dumps(delivery["payload"], ensure_ascii=False, separators=(",", ":")).encode()
        attempt: dict[str, Any] = {"at": self.clock.now(), "status": None, "latency_ms": None, "error": None}
        started = time.perf_counter()
        try:
            response = await self._http().post(delivery["url"], content=body, headers=self._headers(delivery, body))
            attempt["status"] = response.status_code
        except httpx.TimeoutException:
            attempt["error"] = f"timeout after {self.config.callbacks.timeout:g} s"
        except httpx.HTTPError as exc:
            attempt["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempt["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        attempts = [*delivery["attempts"], attempt]
        ok = attempt["status"] is not None and 200 <= attempt["status"] < 300
        retries = self.config.callbacks.retries
        if ok:
            self.store.update("delivery", delivery_id, {"attempts": attempts, "state": "delivered"})
        elif len(attempts) <= len(retries):
            self.store.update("delivery", delivery_id, {"attempts": attempts})
            self.scheduler.after(retries[len(attempts) - 1], self._job(self._attempt, delivery_id),
                                 f"retry {delivery_id}")
        else:
            self.store.update("delivery", delivery_id, {"attempts": attempts, "state": "failed"})
            kind = "task" if delivery["provider"] == "musicapi" else "apibox_task"
            self.store.update(kind, delivery["task_id"], {"callback_exception": True})
            log.warning("callback %s for task %s given up after %d attempts", delivery_id, delivery["task_id"],
                        len(attempts))

    def list(self) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in d.items() if k != "secret"} for d in self.store.all("delivery")),
                      key=lambda d: d["id"])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

"""A small, careful MusicAPI "sonic" client: create music -> webhook or poll -> extract vocals with VOX.

It retries only what the provider documents as passing: HTTP 429 (after its `Retry-After`) and 503
(maintenance), plus, for free reads, 500 and broken answers. A paid POST whose answer was lost is not sent
again, since it may have been charged; a 403 (credits, subscription) is never retried. It polls a task every
20 s (the documented 15-25 s), checks each webhook's `X-Webhook-Signature`, and extracts each task's vocals
once, however often its webhook is delivered and whether the clips came from a webhook or from polling.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx

POLL_INTERVAL_S = 20.0  # the spec asks for 15-25 s between polls of a task
MAX_POLLS = 30
MAX_VOX_SPAN_S = 30.0
BACKOFF_S = 2.0  # first wait after a 429 without Retry-After, doubled per attempt
MAINTENANCE_BACKOFF_S = 30.0  # first wait after a 503, doubled per attempt
COSTS = {"vox": 1, "upload": 2, "create": 20}  # create costs 10-20 credits depending on the model: plan for 20


class MusicApiError(Exception):
    """The provider refused or failed the call; `status` is its HTTP status (None when no answer applies)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(f"MusicAPI HTTP {status}: {message}" if status else f"MusicAPI: {message}")
        self.message = message
        self.status = status


class BadRequest(MusicApiError):
    """HTTP 400: a field is invalid, or the clip was not made on MusicAPI or is not ready yet."""


class Unauthorized(MusicApiError):
    """HTTP 401: the API key is missing, malformed or unknown."""


class Forbidden(MusicApiError):
    """HTTP 403: not enough credits, no active subscription, or refused content. Retrying cannot help."""


class InsufficientCredits(Forbidden):
    """The balance is below what the next calls cost; found before spending anything."""


class NotFound(MusicApiError):
    """HTTP 404: the task or clip is unknown (to this API key)."""


class RateLimited(MusicApiError):
    """HTTP 429 (call frequency too high) on every attempt."""


class ServerError(MusicApiError):
    """HTTP 500, an answer that is not the documented JSON, or no answer at all."""


class Unavailable(MusicApiError):
    """HTTP 503 (maintenance) on every attempt."""


class TaskFailed(MusicApiError):
    """The task ended with failed clips; MusicAPI refunds their credits."""


class WebhookError(MusicApiError):
    """A webhook whose signature or headers do not check out: answer it 401 and drop it."""


ERRORS: dict[int, type[MusicApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                          429: RateLimited, 500: ServerError, 503: Unavailable}


@dataclass(frozen=True, slots=True)
class Credits:
    credits: float  # subscription credits of this billing cycle
    extra_credits: float  # one-time pack credits, spent first

    @property
    def total(self) -> float:
        return self.credits + self.extra_credits


@dataclass(frozen=True, slots=True)
class Vox:
    """The vocals of one clip, between `start_s` and `end_s`."""

    vox_audio_id: str
    clip_id: str
    start_s: float
    end_s: float
    audio_url: str | None  # not every answer carries one


def _retry_after(response: httpx.Response) -> float:
    """The `Retry-After` header in seconds, 0 when absent or not a number of seconds."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return 0.0


def _error(response: httpx.Response, body: Any) -> MusicApiError:
    """The typed error for a documented error status; handlers answer `message`, some only `error`."""
    fields = body if isinstance(body, dict) else {}
    message = str(fields.get("message") or fields.get("error") or response.reason_phrase or "no message")
    status = response.status_code
    return ERRORS.get(status, ServerError if status >= 500 else MusicApiError)(message, status)


def _field(body: dict[str, Any], name: str, what: str) -> str:
    """The non-empty string `body[name]`; ServerError when a success answer lacks it."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ServerError(f"{what} answered without {name}: {body!r}")
    return value


def _seconds(value: Any) -> float | None:
    """A clip `duration`: a number, a decimal string such as "104.88", or null."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class MusicApiClient:
    """MusicAPI "sonic" over HTTP: one method per operation, typed errors, and only the retries the spec allows."""

    def __init__(self, base_url: str, api_key: str, *, sleep: Callable[[float], None] = time.sleep,
                 attempts: int = 4, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        self.sleep = sleep
        self.attempts = attempts

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, min_wait: float = 0.0, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """(status, body) of a 2xx answer, after the retries the spec allows; a typed error otherwise.

        `min_wait` is the least time between two attempts (a poll's retry keeps the polling interval).
        """
        free_to_repeat = method == "GET"  # reads cost nothing and change nothing
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                response = self.http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent: safe to send again
                if last:
                    raise ServerError(f"{method} {path} could not connect: {exc}") from exc
                self.sleep(max(min_wait, BACKOFF_S * 2**attempt))
                continue
            except httpx.TransportError as exc:  # sent, but the answer was lost: a POST may have been charged
                if last or not free_to_repeat:
                    raise ServerError(f"{method} {path} got no usable answer: {exc!r}") from exc
                self.sleep(max(min_wait, BACKOFF_S * 2**attempt))
                continue
            try:
                body = response.json()
            except ValueError:  # empty, truncated or not JSON
                body = None
            status = response.status_code
            if 200 <= status < 300 and isinstance(body, dict):
                return status, body
            if 200 <= status < 300:
                error: MusicApiError = ServerError(f"{method} {path} answered {status} with no JSON object", status)
            else:
                error = _error(response, body)
            if last:
                raise error
            if status == 429:
                self.sleep(max(min_wait, _retry_after(response) or BACKOFF_S * 2**attempt))
            elif status == 503:
                self.sleep(max(min_wait, MAINTENANCE_BACKOFF_S * 2**attempt))
            elif free_to_repeat and (status >= 500 or 200 <= status < 300):
                self.sleep(max(min_wait, BACKOFF_S * 2**attempt))
            else:
                raise error
        raise AssertionError("unreachable")

    def credits(self) -> Credits:
        _status, body = self._call("GET", "/api/v1/get-credits")
        try:
            return Credits(float(body["credits"]), float(body["extra_credits"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError(f"get-credits answered {body!r}") from exc

    def ensure_credits(self, needed: float) -> Credits:
        """The balance, or InsufficientCredits when it cannot pay `needed` credits."""
        balance = self.credits()
        if balance.total < needed:
            raise InsufficientCredits(f"{balance.total:g} credits left, {needed:g} needed")
        return balance

    def upload(self, url: str) -> str:
        """Register audio at a public URL; its `clip_id` (usable with VOX and stems)."""
        _status, body = self._call("POST", "/api/v1/sonic/upload", json={"url": url})
        return _field(body, "clip_id", "upload")

    def create(self, description: str, *, webhook_url: str | None = None, webhook_secret: str | None = None,
               mv: str = "sonic-v5") -> str:
        """Start a song from a description; its `task_id`. With `webhook_url`, the result is also POSTed there."""
        request: dict[str, Any] = {"task_type": "create_music", "custom_mode": False, "mv": mv,
                                   "gpt_description_prompt": description}
        if webhook_url:
            request["webhook_url"] = webhook_url
        if webhook_secret:
            request["webhook_secret"] = webhook_secret
        _status, body = self._call("POST", "/api/v1/sonic/create", json=request)
        return _field(body, "task_id", "create")

    def task(self, task_id: str) -> list[dict[str, Any]] | None:
        """The task's clips once it is terminal; None while it runs (HTTP 202 `not_ready`)."""
        status, body = self._call("GET", f"/api/v1/sonic/task/{task_id}", min_wait=POLL_INTERVAL_S)
        if status == 202 or body.get("type") == "not_ready":  # older copies answer not_ready with HTTP 200
            return None
        clips = body.get("data")
        if not isinstance(clips, list):
            raise ServerError(f"task {task_id} answered without data: {body!r}")
        return clips

    def vox(self, clip_id: str, start_s: float = 0.0, end_s: float = MAX_VOX_SPAN_S) -> Vox:
        """Extract the vocals of `clip_id` between `start_s` and `end_s` (at most 30 s apart)."""
        if not 0 <= start_s < end_s or end_s - start_s > MAX_VOX_SPAN_S:
            raise ValueError(f"the VOX range {start_s:g}-{end_s:g} s is invalid; expected 0 <= start < end, "
                             f"at most {MAX_VOX_SPAN_S:g} s apart")
        _status, body = self._call("POST", "/api/v1/sonic/vox", json={
            "clip_id": clip_id, "vocal_start_s": start_s, "vocal_end_s": end_s})
        data = body.get("data")
        if not isinstance(data, dict):
            raise ServerError(f"VOX answered without data: {body!r}")
        url = data.get("vocal_audio_url")
        return Vox(_field(data, "vox_audio_id", "VOX"), clip_id, start_s, end_s, url if isinstance(url, str) else None)


def first_clip(clips: Any, task_id: str) -> dict[str, Any]:
    """The first succeeded clip of a terminal task; TaskFailed when a clip failed."""
    found: list[dict[str, Any]] = [c for c in clips if isinstance(c, dict)] if isinstance(clips, list) else []
    failed = [c for c in found if c.get("state") == "failed"]
    if failed:
        raise TaskFailed(f"task {task_id} failed: {failed[0].get('error_message') or 'no reason given'}")
    done = [c for c in found if c.get("state") == "succeeded" and isinstance(c.get("clip_id"), str)]
    if not done:
        raise ServerError(f"task {task_id} finished without a succeeded clip")
    return done[0]


class WebhookVerifier:
    """Checks MusicAPI webhook signatures and passes each event on once, keyed on `X-Webhook-Id`.

    The seen ids live in this process; with several workers, keep them in shared storage instead
    (a unique key in a database), so that two workers cannot both take the same delivery.
    """

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self._seen: set[str] = set()

    def verify(self, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        """The event, when `X-Webhook-Signature` is the HMAC of "<timestamp>.<raw body>"; else WebhookError."""
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get("x-webhook-timestamp", "")
        digest = hmac.new(self._secret, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not timestamp or not hmac.compare_digest(f"sha256={digest}", lower.get("x-webhook-signature", "")):
            raise WebhookError("the X-Webhook-Signature does not match the body", 401)
        try:
            event = json.loads(raw)
        except ValueError as exc:
            raise WebhookError(f"the webhook body is not JSON: {exc}", 400) from exc
        if not isinstance(event, dict):
            raise WebhookError("the webhook body is not a JSON object", 400)
        return event

    def receive(self, headers: Mapping[str, str], raw: bytes, process: Callable[[dict[str, Any]], None]) -> bool:
        """Verify a delivery and `process` its event, unless that event was processed before. True if processed."""
        event = self.verify(headers, raw)
        lower = {k.lower(): v for k, v in headers.items()}
        webhook_id = lower.get("x-webhook-id") or lower.get("idempotency-key")
        if not webhook_id:
            raise WebhookError("the webhook has no X-Webhook-Id", 400)
        if webhook_id in self._seen:
            return False
        process(event)
        self._seen.add(webhook_id)  # only once processed: a delivery that failed half-way is processed when resent
        return True


class VocalExtractor:
    """Turns each finished task into one VOX extraction, whether its clips come from a webhook or from polling."""

    def __init__(self, client: MusicApiClient) -> None:
        self.client = client
        self.done: dict[str, Vox | TaskFailed] = {}

    def on_webhook(self, event: dict[str, Any]) -> None:
        """Handle one verified song webhook."""
        kind, task_id = event.get("event"), str(event.get("task_id"))
        if kind == "song.streaming":
            return  # the files are not final yet
        if kind == "song.failed" or event.get("code") != 200:
            self.done.setdefault(task_id, TaskFailed(f"task {task_id} failed: {event.get('message')}"))
            return
        self.finish(task_id, event.get("data"))

    def finish(self, task_id: str, clips: Any) -> None:
        """Extract up to 30 s of the vocals of the task's first clip, once per task."""
        if task_id in self.done:
            return  # a repeated or late webhook, or a webhook after polling got there first
        try:
            clip = first_clip(clips, task_id)
        except TaskFailed as failure:
            self.done[task_id] = failure
            return
        duration = _seconds(clip.get("duration"))
        end = min(MAX_VOX_SPAN_S, duration) if duration and duration > 0 else MAX_VOX_SPAN_S
        self.done[task_id] = self.client.vox(clip["clip_id"], 0.0, end)

    def result(self, task_id: str) -> Vox | None:
        """The task's vocals, None while unknown; raises TaskFailed for a failed task."""
        outcome = self.done.get(task_id)
        if isinstance(outcome, TaskFailed):
            raise outcome
        return outcome


WEBHOOK_SECRET = "whsec_reference_client"


def extract_vocals(env: Any) -> Vox:
    """Create -> webhook (or poll) -> VOX, as a conformance target: `env` comes from check_client."""
    with MusicApiClient(env.url, env.api_key, sleep=env.sleep) as client:
        webhooks, vocals = WebhookVerifier(WEBHOOK_SECRET), VocalExtractor(client)
        client.ensure_credits(COSTS["create"] + COSTS["vox"])
        task_id = client.create("a calm piano song", webhook_url=env.callback_url, webhook_secret=WEBHOOK_SECRET)
        for _ in range(MAX_POLLS):
            env.sleep(POLL_INTERVAL_S)
            for delivery in env.callbacks():
                try:
                    webhooks.receive(delivery.headers, delivery.raw, vocals.on_webhook)
                except WebhookError:
                    continue  # forged or corrupted: a web handler would answer 401; polling still finds the task
            if vocals.result(task_id) is None:  # no webhook yet: poll
                clips = client.task(task_id)
                if clips is not None:
                    vocals.finish(task_id, clips)
            result = vocals.result(task_id)
            if result is not None:
                return result
        raise ServerError(f"task {task_id} did not finish within {MAX_POLLS * POLL_INTERVAL_S:g} s")


def upload_and_extract(env: Any) -> Vox:
    """Upload -> VOX of the first 30 s, as a conformance target."""
    with MusicApiClient(env.url, env.api_key, sleep=env.sleep) as client:
        client.ensure_credits(COSTS["upload"] + COSTS["vox"])
        clip_id = client.upload("https://files.example.com/audio/my-demo.mp3")
        return client.vox(clip_id, 0.0, MAX_VOX_SPAN_S)

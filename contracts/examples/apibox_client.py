"""A small, careful api.box client for vocal separation: generate -> wait -> separate -> handle the callback.

It retries what the provider documents as transient (430 and 405 call frequency, 455 maintenance,
500, broken connections) with backoff, falls back to polling record-info when no callback comes, never
polls faster than the documented 30 s, and handles each result once even when a callback is repeated.
A paid call whose answer was lost is not sent again (it may have been charged and created its task), and
only callbacks for tasks it created are acted on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TRANSIENT = {405, 430, 455, 500}
POLL_INTERVAL_S = 30.0


class ApiboxError(Exception):
    """The provider refused or failed the call; `code` is its body code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"api.box code {code}: {message}")
        self.code = code


class ApiboxClient:
    def __init__(self, base_url: str, api_key: str, *, sleep: Callable[[float], None] = time.sleep,
                 attempts: int = 4) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        self.sleep = sleep
        self.attempts = attempts

    def _call(self, method: str, path: str, *, backoff: float = 2.0, paid: bool = False, **kwargs: Any) -> Any:
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                body = self.http.request(method, path, **kwargs).json()
            except (httpx.TransportError, ValueError) as exc:  # reset, truncated or malformed answer
                if last or paid:  # a paid call may have taken effect: sending it again could pay twice
                    raise ApiboxError(500, f"no usable answer: {exc}") from exc
                self.sleep(backoff * 2**attempt)
                continue
            code = body.get("code") if isinstance(body, dict) else None
            if code == 200:
                return body.get("data")
            if code in TRANSIENT and not last:
                self.sleep(backoff * 2**attempt)
                continue
            raise ApiboxError(int(code) if isinstance(code, int) else 500, str((body or {}).get("msg")))
        raise AssertionError("unreachable")

    def generate(self, prompt: str, callback_url: str) -> str:
        data = self._call("POST", "/api/v1/generate", paid=True, json={
            "customMode": False, "instrumental": False, "model": "V4_5", "prompt": prompt,
            "callBackUrl": callback_url})
        return str(data["taskId"])

    def tracks(self, task_id: str, polls: int = 20) -> list[dict[str, Any]]:
        """Poll generation record-info (every 30 s) until the tracks are ready."""
        for _ in range(polls):
            self.sleep(POLL_INTERVAL_S)
            data = self._call("GET", "/api/v1/generate/record-info", params={"taskId": task_id},
                              backoff=POLL_INTERVAL_S)
            status = (data or {}).get("status")
            if status in ("SUCCESS", "CALLBACK_EXCEPTION"):
                return list(((data or {}).get("response") or {}).get("sunoData") or [])
            if status and status.endswith(("FAILED", "ERROR")):
                raise ApiboxError(int((data or {}).get("errorCode") or 500), f"generation {status}")
        raise ApiboxError(500, f"generation {task_id} did not finish")

    def separate(self, task_id: str, audio_id: str, callback_url: str, kind: str = "separate_vocal") -> str:
        data = self._call("POST", "/api/v1/vocal-removal/generate", paid=True, json={
            "taskId": task_id, "audioId": audio_id, "type": kind, "callBackUrl": callback_url})
        return str(data["taskId"])

    def separation(self, task_id: str) -> dict[str, Any] | None:
        """The separation's record-info response URLs once done, None while pending."""
        data = self._call("GET", "/api/v1/vocal-removal/record-info", params={"taskId": task_id},
                          backoff=POLL_INTERVAL_S)
        flag = (data or {}).get("successFlag")
        if flag in ("SUCCESS", "CALLBACK_EXCEPTION"):
            return dict((data or {}).get("response") or {})
        if flag and flag.endswith("FAILED"):
            raise ApiboxError(int((data or {}).get("errorCode") or 500), f"separation {flag}")
        return None

    def download(self, url: str) -> bytes:
        response = self.http.get(url)
        response.raise_for_status()
        return response.content


class Results:
    """Handles separation callbacks: each task's result once, whatever the number of deliveries."""

    def __init__(self, client: ApiboxClient) -> None:
        self.client = client
        self.files: dict[str, bytes] = {}
        self.expected: set[str] = set()  # the separation tasks this client created

    def handle(self, payload: dict[str, Any]) -> None:
        data = payload.get("data") or {}
        task_id = data.get("task_id")
        if "vocal_removal_info" not in data or task_id in self.files or task_id not in self.expected:
            return  # a generation stage, a repeated delivery, or a task this client never created
        if payload.get("code") != 200 or not data.get("vocal_removal_info"):
            raise ApiboxError(int(payload.get("code") or 500), str(payload.get("msg")))
        self.files[task_id] = self.client.download(data["vocal_removal_info"]["vocal_url"])


def separate_vocals(env: Any) -> bytes:
    """The whole flow as a conformance target: `env` comes from contracts.conformance.check_client."""
    client = ApiboxClient(env.url, env.api_key, sleep=env.sleep)
    results = Results(client)
    task_id = client.generate("a calm piano song", env.callback_url)
    tracks = client.tracks(task_id)
    separation = client.separate(task_id, tracks[0]["id"], env.callback_url)
    results.expected.add(separation)
    for _ in range(30):
        env.sleep(POLL_INTERVAL_S)
        for delivery in env.callbacks():
            results.handle(delivery.json)
        if separation in results.files:
            return results.files[separation]
    done = client.separation(separation)  # no callback came: poll once more, then give up
    if done and done.get("vocalUrl"):
        return client.download(done["vocalUrl"])
    raise ApiboxError(500, f"separation {separation} delivered nothing")

"""Forged callbacks: what the kit sends to see whether a client acts on a callback it should drop.

One per run, once the client has created a task that calls back: api.box gets a separation result for a task the
client never created; MusicAPI a `song.completed` webhook for the client's own task with a wrong
`X-Webhook-Signature`. Both carry ids and a file name no real task has (`FORGED_MARKS`); the file is one the mock
serves like any other, so a client that downloads it gets audio, and the journal shows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

FORGED_TASK = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"
FORGED_ID = "f0f0f0f0-f0f0-4f0f-8f0f-f0f0f0f0f0f0"
FORGED_FILE = "forged_by_stemmock"
FORGED_MARKS = (FORGED_TASK, FORGED_ID, FORGED_FILE)
CALLBACK_FIELDS = ("callBackUrl", "webhook_url", "callback_url")


def callback_of(exchange: Mapping[str, Any]) -> str | None:
    """The callback URL a successful call asked for, if it asked for one."""
    body = (exchange.get("request") or {}).get("body")
    if (exchange.get("outcome") or {}).get("kind") != "success" or not isinstance(body, dict):
        return None
    return next((str(body[f]) for f in CALLBACK_FIELDS if isinstance(body.get(f), str) and body[f]), None)


def first_callback_call(exchanges: Iterable[Mapping[str, Any]], wanted: str | None = None,
                        skip_prefix: str | None = None) -> Mapping[str, Any] | None:
    """The first successful call that asked to be called back (at `wanted`, or anywhere but under `skip_prefix`)."""
    for exchange in exchanges:
        url = callback_of(exchange)
        if url and (wanted is None or url == wanted) and not (skip_prefix and url.startswith(skip_prefix)):
            return exchange
    return None


def forged_delivery(made: Mapping[str, Any], base_url: str, now_ms: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the forged callback for the task `made` created."""
    url = f"{base_url}/files/{now_ms}-30000-{FORGED_ID}/{FORGED_FILE}.mp3"
    headers = {"Content-Type": "application/json", "User-Agent": "stemmock-forged"}
    payload: dict[str, Any]
    if made.get("provider") == "musicapi":
        answer = (made.get("response") or {}).get("body")
        task = str((answer if isinstance(answer, dict) else {}).get("task_id") or FORGED_TASK)
        clip = {"clip_id": FORGED_ID, "state": "succeeded", "title": "forged", "audio_url": url, "duration": 30}
        payload = {"code": 200, "message": "success", "task_id": task, "platform": "sonic", "event": "song.completed",
                   "data": [clip]}
        headers.update({"X-Webhook-Id": FORGED_ID, "X-Webhook-Event": "song.completed",
                        "X-Webhook-Timestamp": str(now_ms // 1000), "X-Webhook-Signature": "sha256=" + "0" * 64})
    else:
        payload = {"code": 200, "msg": "vocal Removal generated successfully.",
                   "data": {"task_id": FORGED_TASK, "callbackType": "complete",
                            "vocal_removal_info": {"vocal_url": url, "instrumental_url": url, "origin_url": ""},
                            "data": [{"id": FORGED_ID, "audio_url": url, "stream_audio_url": url}]}}
    return json.dumps(payload).encode(), headers


def send_forged(made: Mapping[str, Any], base_url: str, now_ms: int) -> bool:
    """POST the forged callback to the URL `made` asked for; False when it could not be delivered."""
    url = callback_of(made)
    if url is None:
        return False
    body, headers = forged_delivery(made, base_url, now_ms)
    try:
        httpx.post(url, content=body, headers=headers, timeout=10, trust_env=False)
    except httpx.HTTPError:
        return False  # the client's endpoint is not up (yet): nothing was forged
    return True

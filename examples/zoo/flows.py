"""Python client flows, each with one mistake real clients make, as conformance targets (`env` from check_client).

Each flow is the careful reference flow of its provider with one thing done the way published clients do it.
`examples/zoo/__init__.py` lists them with the script that exposes the bug and the check that must catch it.
"""

from __future__ import annotations

from typing import Any

import httpx

from contracts.examples.apibox_client import POLL_INTERVAL_S, ApiboxClient, ApiboxError, Results
from contracts.examples.musicapi_client import (
    POLL_INTERVAL_S as MUSICAPI_POLL_S,
)
from contracts.examples.musicapi_client import (
    WEBHOOK_SECRET,
    MusicApiClient,
    ServerError,
    VocalExtractor,
    Vox,
    WebhookError,
    WebhookVerifier,
)

GENERATE = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a calm piano song"}


# -- api.box ---------------------------------------------------------------------------------------------------
def apibox_polls_failed_task(env: Any) -> list[dict[str, Any]]:
    """Waits for SUCCESS and treats every other status as "not yet": a failed generation is polled to the end."""
    client = ApiboxClient(env.url, env.api_key, sleep=env.sleep)
    task_id = client.generate("a calm piano song", env.callback_url)
    for _ in range(12):
        env.sleep(POLL_INTERVAL_S)
        data = client._call("GET", "/api/v1/generate/record-info", params={"taskId": task_id}) or {}
        if data.get("status") == "SUCCESS":  # the bug: GENERATE_AUDIO_FAILED, SENSITIVE_WORD_ERROR never end it
            return list(data["response"]["sunoData"])
    raise ApiboxError(500, f"generation {task_id} timed out")


def apibox_failed_as_success(env: Any) -> list[dict[str, Any]]:
    """Stops polling on any terminal status, but hands a failed generation back as an empty success."""
    client = ApiboxClient(env.url, env.api_key, sleep=env.sleep)
    task_id = client.generate("a calm piano song", env.callback_url)
    for _ in range(12):
        env.sleep(POLL_INTERVAL_S)
        data = client._call("GET", "/api/v1/generate/record-info", params={"taskId": task_id}) or {}
        status = str(data.get("status"))
        if status not in ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS"):
            return list((data.get("response") or {}).get("sunoData") or [])  # the bug: [] for a failure
    raise ApiboxError(500, f"generation {task_id} timed out")


def apibox_resends_paid_call(env: Any) -> str:
    """Retries generate after any broken answer, as a generic HTTP retry helper does: a lost answer pays twice."""
    http = httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {env.api_key}"}, timeout=30)
    for attempt in range(3):
        try:
            body = http.post("/api/v1/generate", json={**GENERATE, "callBackUrl": env.callback_url}).json()
        except (httpx.TransportError, ValueError):
            env.sleep(2.0 * 2**attempt)  # the bug: the call may have taken effect before its answer broke
            continue
        if body.get("code") != 200:
            raise ApiboxError(int(body.get("code") or 500), str(body.get("msg")))
        return str(body["data"]["taskId"])
    raise ApiboxError(500, "no answer")


def apibox_trusts_any_callback(env: Any) -> bytes:
    """Downloads the vocals of whatever separation result is called back, even for a task it never created."""
    client = ApiboxClient(env.url, env.api_key, sleep=env.sleep)
    results = Results(client)
    task_id = client.generate("a calm piano song", env.callback_url)
    tracks = client.tracks(task_id)
    client.separate(task_id, tracks[0]["id"], env.callback_url)
    for _ in range(30):
        env.sleep(POLL_INTERVAL_S)
        for delivery in env.callbacks():
            task = ((delivery.json.get("data") or {}).get("task_id"))
            results.expected.add(task)  # the bug: every task id that is called back is taken for its own
            results.handle(delivery.json)
        if results.files:
            return next(iter(results.files.values()))
    raise ApiboxError(500, "no callback")


def apibox_gives_up_on_500(env: Any) -> list[dict[str, Any]]:
    """Polls record-info, but takes a single 500 (a passing server error) for the end of the flow."""
    client = ApiboxClient(env.url, env.api_key, sleep=env.sleep, attempts=1)  # the bug: one attempt, no retry
    task_id = client.generate("a calm piano song", env.callback_url)
    return client.tracks(task_id)


# -- MusicAPI --------------------------------------------------------------------------------------------------
def musicapi_failed_clips_as_success(env: Any) -> list[dict[str, Any]]:
    """Returns the clips of a finished task without looking at their `state`: failed clips come back as songs."""
    with MusicApiClient(env.url, env.api_key, sleep=env.sleep) as client:
        task_id = client.create("a calm piano song")
        for _ in range(20):
            env.sleep(MUSICAPI_POLL_S)
            clips = client.task(task_id)
            if clips is not None:
                return clips  # the bug: `state: failed` clips are a failure, not a result
        raise ServerError(f"task {task_id} did not finish")


def musicapi_skips_signature(env: Any) -> Vox:
    """Processes every webhook without checking `X-Webhook-Signature`, so a forged one is acted on."""
    with MusicApiClient(env.url, env.api_key, sleep=env.sleep) as client:
        vocals = VocalExtractor(client)
        task_id = client.create("a calm piano song", webhook_url=env.callback_url, webhook_secret=WEBHOOK_SECRET)
        for _ in range(20):
            env.sleep(MUSICAPI_POLL_S)
            for delivery in env.callbacks():
                event = delivery.json  # the bug: no WebhookVerifier.verify
                if event.get("event") == "song.completed" and event.get("data"):
                    vocals.done.pop(task_id, None)
                    vocals.finish(task_id, event["data"])
            result = vocals.result(task_id)
            if result is not None:
                return result
        raise ServerError(f"task {task_id} did not finish")


def musicapi_retries_at_once(env: Any) -> Vox:
    """Retries a failed poll immediately, in a tight loop, instead of backing off."""
    webhooks = WebhookVerifier(WEBHOOK_SECRET)
    with MusicApiClient(env.url, env.api_key, sleep=lambda _s: None) as client:  # the bug: retries never wait
        vocals = VocalExtractor(client)
        task_id = client.create("a calm piano song")
        for _ in range(20):
            env.sleep(MUSICAPI_POLL_S)
            for delivery in env.callbacks():
                try:
                    webhooks.receive(delivery.headers, delivery.raw, vocals.on_webhook)
                except WebhookError:
                    continue
            clips = client.task(task_id)
            if clips is not None:
                vocals.finish(task_id, clips)
                result = vocals.result(task_id)
                if result is not None:
                    return result
        raise ServerError(f"task {task_id} did not finish")

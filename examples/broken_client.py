"""A deliberately broken api.box client: each planted bug is one the contract kit must catch.

    field_name     sends `callbackUrl` instead of `callBackUrl` when separating
    no_callback    generates without `callBackUrl`
    no_backoff     retries a 430 (call frequency too high) at once
    null_crash     reads record-info's `data` without allowing for null
    double_process handles every callback delivery, repeated ones too
"""

from __future__ import annotations

from typing import Any

import httpx

from contracts.examples.apibox_client import POLL_INTERVAL_S, ApiboxError

BUGS = ("field_name", "no_callback", "no_backoff", "null_crash", "double_process")


def flow(bug: str) -> Any:
    """The separation flow with one planted bug, as a conformance target."""

    def separate_vocals(env: Any) -> bytes:
        http = httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {env.api_key}"}, timeout=30)

        def call(method: str, path: str, **kwargs: Any) -> Any:
            for _ in range(4):
                try:
                    body = http.request(method, path, **kwargs).json()
                except (httpx.TransportError, ValueError) as exc:
                    if method == "POST":  # a paid call may have taken effect: sending it again could pay twice
                        raise ApiboxError(500, f"no usable answer: {exc}") from exc
                    env.sleep(POLL_INTERVAL_S)
                    continue
                if body.get("code") in (430, 455, 500, 405):
                    if bug != "no_backoff":
                        env.sleep(POLL_INTERVAL_S)
                    continue
                if body.get("code") != 200:
                    raise ApiboxError(int(body.get("code") or 500), str(body.get("msg")))
                return body.get("data")
            raise ApiboxError(500, "gave up")

        generate = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a song"}
        if bug != "no_callback":
            generate["callBackUrl"] = env.callback_url
        task_id = call("POST", "/api/v1/generate", json=generate)["taskId"]
        tracks: list[Any] = []
        for _ in range(20):
            env.sleep(POLL_INTERVAL_S)
            data = call("GET", "/api/v1/generate/record-info", params={"taskId": task_id})
            if bug == "null_crash":
                status = data["status"]  # planted: data is null for an unknown or failed lookup
            else:
                status = (data or {}).get("status")
            if status in ("SUCCESS", "CALLBACK_EXCEPTION"):  # the latter: done, its callbacks failed
                tracks = data["response"]["sunoData"]
                break
            if status and status.endswith(("FAILED", "ERROR")):
                raise ApiboxError(int(data.get("errorCode") or 500), f"generation {status}")
        if not tracks:
            raise ApiboxError(500, "no tracks")
        url_key = "callbackUrl" if bug == "field_name" else "callBackUrl"
        sep = call("POST", "/api/v1/vocal-removal/generate", json={
            "taskId": task_id, "audioId": tracks[0]["id"], url_key: env.callback_url})["taskId"]
        seen: set[str] = set()
        result = b""
        for _ in range(30):
            env.sleep(POLL_INTERVAL_S)
            for delivery in env.callbacks():
                data = delivery.json.get("data") or {}
                if data.get("task_id") != sep or (bug != "double_process" and sep in seen):
                    continue
                seen.add(sep)
                info = data.get("vocal_removal_info")
                if not info:
                    raise ApiboxError(int(delivery.json.get("code") or 500), "separation failed")
                result = http.get(info["vocal_url"]).content
            if sep in seen:
                env.sleep(POLL_INTERVAL_S)
                for delivery in env.callbacks():  # late repeats are processed as well by the buggy variant
                    data = delivery.json.get("data") or {}
                    if bug == "double_process" and data.get("task_id") == sep and data.get("vocal_removal_info"):
                        http.get(data["vocal_removal_info"]["vocal_url"])
                return result
        raise ApiboxError(500, "no callback")

    separate_vocals.__qualname__ = f"flow({bug!r})"
    return separate_vocals

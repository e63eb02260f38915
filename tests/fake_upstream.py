"""A small stand-in for the real providers, answering with the specs' own examples, with switches that drift.

It keeps every request it got (to show the proxy forwards them unchanged) and the callbacks it owes; `fire()`
POSTs those at once, so tests never wait for them.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.live import LiveServer
from mockserver.spec import Operation, load, spec_path

DEFAULT_SECRET = "upstream-default-secret"

# switch -> (operation it changes, the pointer of the drift it causes)
SWITCHES = {
    "extra_key": ("getVox", "/data/surprise"),
    "renamed_field": ("getVox", "/data/vox_audio_id"),
    "new_body_code": ("separateVocals", "/code"),
    "number_as_string": ("getCredits", "/credits"),
    "new_enum_value": ("getVocalSeparationDetails", "/data/successFlag"),
    "missing_required": ("getVox", "/data/source_clip_id"),
    "content_type": ("getVox", "/header/Content-Type"),
    "id_shape": ("separateVocals", "/data/taskId"),
    "callback_extra_field": ("separateVocals", "/data/vocal_removal_info/karaoke_url"),
    "undocumented_status": ("getCredits", "/status"),
    "envelope": ("getRemainingCredits", "/msg"),
}


class FakeUpstream:
    """Both providers' paths on one real server; `switch` names the drift to put in the next answers."""

    def __init__(self) -> None:
        specs = [load(spec_path("musicapi")), load(spec_path("apibox"))]
        self.ops: dict[str, Operation] = {op.operation_id: op for spec in specs for op in spec.operations}
        self.switch: str | None = None
        self.received: list[dict[str, Any]] = []
        self.owed: list[tuple[str, bytes, dict[str, str]]] = []  # (url, body, headers)
        self._lock = threading.Lock()
        routes = [Route(op.path, self._answer(op), methods=[op.method]) for op in self.ops.values()
                  if op.operation_id in ("getVox", "createMusic", "getCredits", "separateVocals",
                                         "getVocalSeparationDetails", "getRemainingCredits")]
        self.app = Starlette(routes=routes)
        self._server = LiveServer(self.app)
        self.url = ""

    def _answer(self, op: Operation) -> Any:
        async def answer(request: Request) -> Response:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else None
            with self._lock:
                self.received.append({"operation": op.operation_id, "headers": dict(request.headers),
                                      "raw": raw, "query": dict(request.query_params)})
            status, value = next((s, v) for s, v in op.examples().values() if 200 <= s < 300)
            value = copy.deepcopy(value)
            self._owe(op, body if isinstance(body, dict) else {})
            content_type = op.provider.content_type
            if self.switch and SWITCHES[self.switch][0] == op.operation_id:
                value, content_type = self._drift(value, content_type)
                if self.switch == "undocumented_status":
                    status = 402
            return Response(json.dumps(value).encode(), status, media_type=None,
                            headers={"content-type": content_type})
        return answer

    def _drift(self, value: Any, content_type: str) -> tuple[Any, str]:
        switch = self.switch
        if switch == "extra_key":
            value["data"]["surprise"] = True
        elif switch == "renamed_field":
            value["data"]["voxAudioId"] = value["data"].pop("vox_audio_id")
        elif switch == "new_body_code":
            value["code"] = 456
        elif switch == "number_as_string":
            value["credits"] = str(value["credits"])
        elif switch == "new_enum_value":
            value["data"]["successFlag"] = "QUEUED"
        elif switch == "missing_required":
            del value["data"]["source_clip_id"]
        elif switch == "content_type":
            content_type = "text/plain; charset=utf-8"
        elif switch == "undocumented_status":
            value = {"code": 402, "message": "Payment required"}
        elif switch == "envelope":
            value["message"] = value.pop("msg")
        elif switch == "id_shape":
            value["data"]["taskId"] = "task-7731"
        return value, content_type

    def _owe(self, op: Operation, body: dict[str, Any]) -> None:
        """Queue the documented callback for a call that names a callback URL."""
        for callback in op.callbacks.values():
            url = body.get(callback.url_field or "")
            if not isinstance(url, str) or not callback.examples:
                continue
            payload = copy.deepcopy(next(iter(callback.examples.values())))
            if self.switch == "callback_extra_field" and op.operation_id == "separateVocals":
                payload["data"]["vocal_removal_info"]["karaoke_url"] = "https://files.example.com/s/k.mp3"
            raw = json.dumps(payload).encode()
            headers = {"content-type": "application/json"}
            if op.provider.name == "musicapi":
                secret = body.get("webhook_secret") or DEFAULT_SECRET
                timestamp = "1764590000"
                signature = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
                headers.update({"x-webhook-id": "evt_1", "idempotency-key": "evt_1",
                                "x-webhook-event": str(payload.get("event")), "x-webhook-timestamp": timestamp,
                                "x-webhook-signature": f"sha256={signature}"})
            with self._lock:
                self.owed.append((url, raw, headers))

    def fire(self) -> list[int]:
        """POST every owed callback now; the HTTP status each got."""
        with self._lock:
            owed, self.owed = self.owed, []
        with httpx.Client(timeout=10, trust_env=False) as http:
            return [http.post(url, content=raw, headers=headers).status_code for url, raw, headers in owed]

    def reset(self) -> None:
        with self._lock:
            self.switch = None
            self.received.clear()
            self.owed.clear()

    def start(self) -> FakeUpstream:
        self._server.start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()

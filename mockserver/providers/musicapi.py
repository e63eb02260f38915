"""MusicAPI "sonic" behaviours: clips from upload and create, stems tasks, VOX, credits.

Clips and tasks belong to the API key that made them. A task answers HTTP 202 `{"type": "not_ready"}`
until its `ready_at` on the mock's clock, then HTTP 200 with its clips.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import sys
from array import array
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..files import audio, covers
from ..scenarios import Refusal
from .common import duration_for, failed
from .registry import CALLBACKS, Callbacks, Context, Reply, action, job, reads_field

if TYPE_CHECKING:
    from ..callbacks import Deliveries
    from ..config import CallbackConfig

STEMS = {
    "basic": ("Vocals", "Instrumental"),
    "full": ("Vocals", "Backing Vocals", "Drums", "Bass", "Guitar", "Keyboard", "Percussion", "Strings", "Synth",
             "FX", "Brass", "Woodwinds"),
}


def _iso(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(instant * 1000) % 1000:03d}Z"


WAVE_STEP_S = 0.5  # one waveform point per half second of audio
WAVE_MIP_MAP_LEVEL = 11  # the level upstream VOX answers show


def waveform(clip_id: str, start: float, end: float) -> dict[str, Any]:
    """VOX's `wave_response` for `start..end` of a clip: per half second, the vocal's peak level below and above zero.

    The points are read from one SHAKE-256 stream of the clip id, at their position in the clip, so the same
    clip always has the same waveform and two overlapping windows agree where they overlap."""
    first = int(start / WAVE_STEP_S)
    lows, highs = _wave_points(clip_id, first, max(first + 1, int(-(-end // WAVE_STEP_S))))
    return {"waveform_aggregates": [{"mip_map_level": WAVE_MIP_MAP_LEVEL, "data": [lows, highs]}]}


@functools.lru_cache(maxsize=1024)  # VOX is on the hot path, and clients ask for the same window again and again
def _wave_points(clip_id: str, first: int, last: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (below zero, above zero) levels of points first..last-1: one digest for the whole window, not one per point."""
    levels = array("H", hashlib.shake_256(clip_id.encode()).digest(4 * last)[4 * first:])  # 2 levels per point
    if sys.byteorder == "big":
        levels.byteswap()  # the same numbers on every machine
    return tuple(-(v >> 1) for v in levels[0::2]), tuple(v >> 1 for v in levels[1::2])


def _new_clip(ctx: Context, **fields: Any) -> dict[str, Any]:
    clip_id = ctx.uuid()
    now = ctx.clock.now()
    clip = {"id": clip_id, "api_key": ctx.api_key, "created_at": now, "ready_at": now, "base_url": ctx.base_url,
            "title": "", "tags": "", "lyrics": "", "mv": "sonic-v5", "duration": duration_for(clip_id),
            "negative_tags": "", "style_weight": None, "weirdness_constraint": None, "failed": False, **fields}
    ctx.store.put("clip", clip_id, clip)
    return clip


def clip_view(clip: dict[str, Any], now: float) -> dict[str, Any]:
    """A clip as `GET /sonic/task/{id}` and the webhooks show it at `now`."""
    ready = now >= clip["ready_at"]
    state = "failed" if clip.get("failed") and ready else ("succeeded" if ready else "running")
    ready_ms = int(clip["ready_at"] * 1000)
    audio_url = clip["base_url"] + audio.file_path(clip["id"], clip["title"] or "clip", clip["duration"],
                                                   ready_ms) if state == "succeeded" else ""
    image_url = clip["base_url"] + covers.file_path(clip["id"], clip["title"] or "clip", ready_ms) \
        if state == "succeeded" else ""
    view = {
        "clip_id": clip["id"], "state": state, "title": clip["title"], "tags": clip["tags"],
        "lyrics": clip["lyrics"], "image_url": image_url, "audio_url": audio_url, "video_url": None,
        "created_at": _iso(clip["created_at"]), "mv": clip["mv"],
        "gpt_description_prompt": clip.get("gpt_description_prompt"),
        "duration": clip["duration"] if state == "succeeded" else None, "negative_tags": clip["negative_tags"],
        "style_weight": clip["style_weight"], "weirdness_constraint": clip["weirdness_constraint"],
    }
    if clip.get("stem_type"):
        view["stem_type"] = clip["stem_type"]
    if state == "failed":
        view["error_message"] = clip.get("error_message") or "Generation failed."
    return view


def _ready_clip(ctx: Context) -> Refusal | None:
    clip_id = ctx.req.json.get("clip_id")
    clip = ctx.owned("clip", clip_id)
    if clip is None:
        return Refusal(404, f"clip not found: clip_id {clip_id!r} was not made by upload or create with this API key.",
                       "precondition: unknown clip")
    if ctx.clock.now() < clip["ready_at"]:
        return Refusal(400, f"clip_id '{clip_id}' is not ready yet: its task is still running.",
                       "precondition: clip not ready")
    if clip.get("failed"):
        return Refusal(400, f"clip_id '{clip_id}' failed to generate and has no audio.", "precondition: clip failed")
    return None


@action("musicapi.upload")
def upload(ctx: Context) -> Reply:
    url = str(ctx.req.json.get("url", ""))
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "upload"
    callback_url = ctx.req.json.get("callback_url")
    if not callback_url:  # sync mode: the clip exists when the call answers
        clip = _new_clip(ctx, title=name, source_url=url, duration=duration_for(url))
        return Reply({"code": 200, "message": "success", "clip_id": clip["id"]})
    # Async mode: a task id now; the clip is ready, and its id POSTed to callback_url, when the upload finishes.
    task_id = ctx.uuid()
    ready_at = ctx.clock.now() + ctx.config.durations.musicapi_upload
    failed = ctx.scenario == "callback_fails" or ctx.task_outcome == "failed"
    clip = _new_clip(ctx, title=name, source_url=url, duration=duration_for(url), ready_at=ready_at, failed=failed,
                     error_message="Invalid parameters." if failed else None)
    upload_task = {"id": task_id, "api_key": ctx.api_key, "kind": "upload", "created_at": ctx.clock.now(),
                   "ready_at": ready_at, "clip_id": clip["id"], "callback_url": callback_url,
                   "scenario": ctx.scenario, "failed": failed}
    ctx.store.put("upload", task_id, upload_task)
    ctx.scheduler.at(ready_at, "upload_done", task_id, label=f"musicapi upload {task_id}", owner=("upload", task_id))
    return Reply({"code": 200, "message": "success", "task_id": task_id})


def _new_task(ctx: Context, kind: str, duration: float, clips: list[dict[str, Any]]) -> dict[str, Any]:
    now = ctx.clock.now()
    task: dict[str, Any] = {
        "id": ctx.uuid(), "api_key": ctx.api_key, "kind": kind, "created_at": now, "ready_at": now + duration,
        "clips": [c["id"] for c in clips], "webhook_url": ctx.req.json.get("webhook_url"),
        "webhook_secret": ctx.req.json.get("webhook_secret"), "base_url": ctx.base_url, "scenario": ctx.scenario}
    if ctx.task_outcome == "failed":  # the task ends with every clip failed, as a callback_fails task does
        task["failed"] = True
    if ctx.scenario == "callback_fails" or ctx.task_outcome == "failed":
        for clip in clips:
            ctx.store.update("clip", clip["id"], {"failed": True, "error_message": "Generation failed."})
    ctx.store.put("task", task["id"], task)
    if task["webhook_url"]:
        ctx.scheduler.at(task["ready_at"], "musicapi_done", task["id"], label=f"musicapi task {task['id']}",
                         owner=("task", task["id"]))
    return task


@action("musicapi.create")
def create(ctx: Context) -> Reply:
    body = ctx.req.json
    ready_at = ctx.clock.now() + ctx.config.durations.musicapi_create
    shared = {"ready_at": ready_at, "title": str(body.get("title") or "Untitled"), "tags": str(body.get("tags") or ""),
              "lyrics": str(body.get("prompt") or body.get("lyrics") or ""), "mv": str(body.get("mv") or "sonic-v5"),
              "negative_tags": str(body.get("negative_tags") or ""), "style_weight": body.get("style_weight"),
              "gpt_description_prompt": body.get("gpt_description_prompt"),
              "weirdness_constraint": body.get("weirdness_constraint")}
    clips = [_new_clip(ctx, **shared) for _ in range(2)]
    task = _new_task(ctx, "create", ctx.config.durations.musicapi_create, clips)
    return Reply({"message": "success", "task_id": task["id"]})


def _stems(ctx: Context, kind: str) -> Reply:
    source = ctx.owned("clip", ctx.req.json["clip_id"])
    assert source is not None  # the precheck found it (and read it: this is that read)
    ready_at = ctx.clock.now() + ctx.config.durations.musicapi_stems
    clips = [_new_clip(ctx, ready_at=ready_at, title=f"{source['title']} — {stem}", stem_type=stem,
                       tags=source["tags"], mv=source["mv"], duration=source["duration"], source_clip_id=source["id"])
             for stem in STEMS[kind]]
    task = _new_task(ctx, f"stems_{kind}", ctx.config.durations.musicapi_stems, clips)
    return Reply({"message": "success", "task_id": task["id"]})


@action("musicapi.stems_basic", precheck=_ready_clip, reads=reads_field("clip", "json", "clip_id"))
def stems_basic(ctx: Context) -> Reply:
    return _stems(ctx, "basic")


@action("musicapi.stems_full", precheck=_ready_clip, reads=reads_field("clip", "json", "clip_id"))
def stems_full(ctx: Context) -> Reply:
    return _stems(ctx, "full")


def _known_task(ctx: Context) -> Refusal | None:
    if ctx.owned("task", ctx.req.path_params.get("task_id")) is None:
        return Refusal(404, "task not found.", "precondition: unknown task")
    return None


@action("musicapi.task", precheck=_known_task, reads=reads_field("task", "path", "task_id"))
def get_task(ctx: Context) -> Reply:
    task = ctx.owned("task", ctx.req.path_params["task_id"])
    assert task is not None  # the precheck found it (and read it: this is that read)
    now = ctx.clock.now()
    if now < task["ready_at"]:
        return Reply({"type": "not_ready"}, status=202)
    clips = [ctx.store.get("clip", cid) for cid in task["clips"]]
    return Reply({"code": 200, "message": "success", "data": [clip_view(c, now) for c in clips if c]})


def _vox_precheck(ctx: Context) -> Refusal | None:
    refusal = _ready_clip(ctx)
    if refusal is not None:
        return refusal
    clip = ctx.owned("clip", ctx.req.json["clip_id"])
    end = ctx.req.json.get("vocal_end_s")
    if clip is not None and isinstance(end, (int, float)) and end > clip["duration"]:
        return Refusal(400, f"vocal_end_s ({end:g}) is beyond the end of the clip ({clip['duration']:g} s).",
                       "precondition: range outside the clip")
    return None


@action("musicapi.vox", precheck=_vox_precheck, reads=reads_field("clip", "json", "clip_id"))
def vox(ctx: Context) -> Reply:
    body = ctx.req.json
    clip = ctx.owned("clip", body["clip_id"])
    assert clip is not None
    start = float(body.get("vocal_start_s", 0.0))
    end = float(body["vocal_end_s"]) if "vocal_end_s" in body else min(clip["duration"], 30.0)
    vox_id = ctx.uuid()
    url = ctx.base_url + audio.file_path(vox_id, f"{clip['title'] or 'clip'}_vox", end - start, ctx.clock.now_ms())
    data = {"vox_audio_id": vox_id, "status": "complete", "source_clip_id": clip["id"],
            "vocal_start_s": body.get("vocal_start_s", start), "vocal_end_s": body.get("vocal_end_s", end),
            "wave_response": waveform(clip["id"], start, end), "vocal_audio_url": url}
    return Reply({"code": 200, "message": "success", "data": data})


@action("musicapi.credits")
def credits(ctx: Context) -> Reply:
    balance = ctx.store.balance("musicapi", ctx.api_key)
    return Reply({"credits": _number(balance["credits"]), "extra_credits": _number(balance["extra_credits"])})


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# -- callbacks (built when the stage is reached, from the task record polling reads) ---------------------------
@job("musicapi_done")
async def _task_done(deliveries: Deliveries, task_id: str) -> None:
    task = deliveries.store.get("task", task_id)
    if task is None or not task.get("webhook_url"):
        return
    now = deliveries.clock.now()
    clips = [clip_view(c, now) for c in (deliveries.store.get("clip", cid) for cid in task["clips"]) if c]
    task_failed = failed(task)
    if task_failed:
        # The webhook must not show playable clips for a failed task, whatever the clip records say.
        message = task.get("error_message") or "Generation failed."
        clips = [{**c, "state": "failed", "audio_url": "", "duration": None, "error_message": message}
                 for c in clips]
    any_failed = task_failed or any(c["state"] == "failed" for c in clips)
    event = "song.failed" if any_failed else "song.completed"
    code = (task.get("error_code") or 500) if any_failed else 200
    message = (task.get("error_message") or "failed") if any_failed else "success"
    payload = {"code": code, "message": message, "task_id": task_id, "platform": "sonic", "event": event,
               "data": clips}
    await deliveries.open("musicapi", task, event, payload)


@job("upload_done")
async def _upload_done(deliveries: Deliveries, task_id: str) -> None:
    task = deliveries.store.get("upload", task_id)
    if task is None:
        return
    if failed(task):
        payload = {"code": 400, "message": "Invalid parameters.", "task_id": task_id}
        event = "upload.failed"
    else:
        payload = {"code": 200, "message": "success", "task_id": task_id, "clip_id": task["clip_id"]}
        event = "upload.completed"
    await deliveries.open("musicapi", task, event, payload)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "timestamp.raw body">`, as MusicAPI signs its webhooks."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _headers(delivery: dict[str, Any], body: bytes, timestamp: str, config: CallbackConfig) -> dict[str, str]:
    secret = delivery.get("secret") or config.webhook_secret
    return {"X-Webhook-Id": delivery["webhook_id"], "Idempotency-Key": delivery["webhook_id"],
            "X-Webhook-Event": delivery["event"], "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": signature(secret, timestamp, body)}


CALLBACKS["musicapi"] = Callbacks("task", _headers)

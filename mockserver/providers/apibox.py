"""api.box behaviours: music generation (the source of taskId/audioId), vocal separation, polling, credits.

A generation task moves PENDING -> TEXT_SUCCESS -> FIRST_SUCCESS -> SUCCESS at fixed offsets on the
mock's clock; a separation task moves PENDING -> SUCCESS. Polling derives the stage from the clock, and
the callbacks are built from the same record by the same functions, so both show the same ids and URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..files import audio, covers
from ..scenarios import Refusal
from .common import duration_for, failed
from .registry import CALLBACKS, Callbacks, Context, Reply, action, job, reads_field

if TYPE_CHECKING:
    from ..callbacks import Deliveries
    from ..clock import Scheduler
    from ..config import CallbackConfig

SUCCESS = {"code": 200, "msg": "success"}

# snake_case callback key, camelCase record-info key, file name suffix
STEM_KEYS = (
    ("vocal_url", "vocalUrl", "Vocals"), ("backing_vocals_url", "backingVocalsUrl", "Backing_Vocals"),
    ("drums_url", "drumsUrl", "Drums"), ("bass_url", "bassUrl", "Bass"), ("guitar_url", "guitarUrl", "Guitar"),
    ("keyboard_url", "keyboardUrl", "Keyboard"), ("percussion_url", "percussionUrl", "Percussion"),
    ("strings_url", "stringsUrl", "Strings"), ("synth_url", "synthUrl", "Synth"), ("fx_url", "fxUrl", "FX"),
    ("brass_url", "brassUrl", "Brass"), ("woodwinds_url", "woodwindsUrl", "Woodwinds"),
)
SEPARATE_KEYS = (("instrumental_url", "instrumentalUrl", "Instrumental"), ("vocal_url", "vocalUrl", "Vocals"))
CAMEL_KEYS = ("originUrl", "instrumentalUrl", *(camel for _s, camel, _n in STEM_KEYS))


# A task told to end in a failed status (`task_outcome`): the status, the stage from which it shows, the error
# code and message record-info and the failure callback carry. `created` is the instant of the call.
FAILURES = {
    "create_task_failed": ("CREATE_TASK_FAILED", "created", 400, "Failed to create the task."),
    "generate_audio_failed": ("GENERATE_AUDIO_FAILED", "complete", 500, "Audio generation failed."),
    "sensitive_word_error": ("SENSITIVE_WORD_ERROR", "text", 400, "The prompt contains sensitive words."),
}
SEPARATION_FAILURES = {"create_task_failed": ("CREATE_TASK_FAILED", 400, "Failed to create the task."),
                       "generate_audio_failed": ("GENERATE_AUDIO_FAILED", 500, "Vocal separation failed")}


def _fail_task(task: dict[str, Any], outcome: str | None, table: dict[str, tuple[Any, ...]]) -> None:
    """Mark a new task with the terminal status it was told to end in (`callback_exception`: its callbacks fail)."""
    if outcome == "callback_exception":
        task.update(outcome=outcome, scenario="callback_never")  # no callback reaches the client
    elif outcome in table:
        *_, code, message = table[outcome]
        task.update(outcome=outcome, failed=True, error_code=code, error_message=message)



def _start(ctx: Context, task: dict[str, Any], failed_message: str, failures: dict[str, tuple[Any, ...]],
           schedule: Callable[[Any, dict[str, Any]], None]) -> Reply:
    """Store a new task in the state it was told to end in, schedule its stages and answer its id."""
    if ctx.scenario == "callback_fails":
        task.update(failed=True, error_code=500, error_message=failed_message)
    _fail_task(task, ctx.task_outcome, failures)
    ctx.store.put("apibox_task", task["id"], task)
    schedule(ctx.scheduler, task)
    return Reply({**SUCCESS, "data": {"taskId": task["id"]}})

# -- generation -----------------------------------------------------------------------------------------
def generation_status(task: dict[str, Any], now: float) -> str:
    stages = task["stages"]
    outcome = task.get("outcome")
    since = task.get("outcome_at")  # set when an example put the task in its state
    if outcome == "callback_exception" and now >= (stages["complete"] if since is None else since):
        return "CALLBACK_EXCEPTION"
    if outcome in FAILURES:
        status, stage, _code, _message = FAILURES[outcome]
        if now >= (since if since is not None else task["created_at"] if stage == "created" else stages[stage]):
            return str(status)
    elif task.get("failed") and now >= stages["complete"]:
        return "GENERATE_AUDIO_FAILED"
    if task.get("callback_exception"):
        return "CALLBACK_EXCEPTION"
    if now >= stages["complete"]:
        return "SUCCESS"
    if now >= stages["first"]:
        return "FIRST_SUCCESS"
    if now >= stages["text"]:
        return "TEXT_SUCCESS"
    return "PENDING"


def _track_ready(task: dict[str, Any], index: int, now: float) -> bool:
    return bool(now >= (task["stages"]["first"] if index == 0 else task["stages"]["complete"]))


def _track_urls(task: dict[str, Any], index: int, now: float) -> dict[str, Any]:
    """The files of one track at `now`: the stream from the text stage, the MP3 and its JPEG cover once ready."""
    track = task["tracks"][index]
    text_ms = int(task["stages"]["text"] * 1000)
    stream = task["base_url"] + audio.file_path(track["id"], "stream", track["duration"], text_ms)
    if not _track_ready(task, index, now):
        return {"audio": "", "stream": stream, "image": "", "duration": None}
    ready_ms = int((task["stages"]["first"] if index == 0 else task["stages"]["complete"]) * 1000)
    name = track["title"] or "track"
    url = task["base_url"] + audio.file_path(track["id"], name, track["duration"], ready_ms)
    image = task["base_url"] + covers.file_path(track["id"], name, ready_ms)
    return {"audio": url, "stream": stream, "image": image, "duration": track["duration"]}


def _track_fields(task: dict[str, Any], index: int, now: float) -> dict[str, Any]:
    """One track with the real answer's full field set, keyed in record-info's camelCase.

    The `source*` URLs name the same files the mock serves (the real ones are the upstream CDN's copies)."""
    track, urls = task["tracks"][index], _track_urls(task, index, now)
    return {"id": track["id"], "audioUrl": urls["audio"], "sourceAudioUrl": urls["audio"],
            "streamAudioUrl": urls["stream"], "sourceStreamAudioUrl": urls["stream"], "imageUrl": urls["image"],
            "sourceImageUrl": urls["image"], "prompt": track["prompt"], "modelName": track["model_name"],
            "title": track["title"], "tags": track["tags"], "createTime": int(task["created_at"] * 1000),
            "duration": urls["duration"]}


# record-info's camelCase key -> the generation callback's snake_case key (createTime is camelCase in both)
_CALLBACK_KEYS = {"audioUrl": "audio_url", "sourceAudioUrl": "source_audio_url", "streamAudioUrl": "stream_audio_url",
                  "sourceStreamAudioUrl": "source_stream_audio_url", "imageUrl": "image_url",
                  "sourceImageUrl": "source_image_url", "modelName": "model_name"}


def generation_tracks(task: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The tracks as the generation callback shows them (snake_case)."""
    if now < task["stages"]["text"]:
        return []
    return [{_CALLBACK_KEYS.get(key, key): value for key, value in _track_fields(task, index, now).items()}
            for index in range(len(task["tracks"]))]


@action("apibox.generate")
def generate(ctx: Context) -> Reply:
    body = ctx.req.json
    now = ctx.clock.now()
    d = ctx.config.durations
    task_id = ctx.hex_id()
    model = str(body.get("model", "V4_5"))
    tracks = []
    for _ in range(2):
        audio_id = ctx.uuid()
        tracks.append({"id": audio_id, "duration": duration_for(audio_id), "title": str(body.get("title") or ""),
                       "tags": str(body.get("style") or ""), "prompt": str(body.get("prompt") or ""),
                       "model_name": f"chirp-{model.lower().replace('_', '-')}"})
    task = {"id": task_id, "api_key": ctx.api_key, "kind": "generate", "created_at": now, "base_url": ctx.base_url,
            "stages": {"text": now + d.generate_text, "first": now + d.generate_first,
                       "complete": now + d.generate_complete},
            "param": json.dumps(body, ensure_ascii=False, separators=(",", ":")), "tracks": tracks,
            "callback_url": body.get("callBackUrl"), "scenario": ctx.scenario}
    return _start(ctx, task, "Audio generation failed.", FAILURES, schedule_generation)


STATUS_OUTCOMES = {"CREATE_TASK_FAILED": "create_task_failed", "GENERATE_AUDIO_FAILED": "generate_audio_failed",
                   "SENSITIVE_WORD_ERROR": "sensitive_word_error", "CALLBACK_EXCEPTION": "callback_exception"}


def _polled_task(ctx: Context, kind: str, field: str, table: dict[str, tuple[Any, ...]]) -> dict[str, Any] | None:
    """The task of `kind` a record-info call asks for (None: unknown, expired or of another kind), put in the failed
    state of the example the call answers (from now on), if the example shows one in `field`."""
    task = ctx.owned("apibox_task", ctx.req.query.get("taskId"))
    if task is None or task.get("kind") != kind:
        return None
    shown = ((ctx.example or {}).get("data") or {}).get(field)
    outcome = STATUS_OUTCOMES.get(str(shown))
    if outcome is None or task.get("outcome"):
        return task
    changes: dict[str, Any] = {"outcome": outcome, "outcome_at": ctx.clock.now()}
    if outcome in table:
        changes.update(failed=True, error_code=table[outcome][-2], error_message=table[outcome][-1])
    ctx.store.update("apibox_task", task["id"], changes)
    return {**task, **changes}


@action("apibox.generate_record_info", reads=reads_field("apibox_task", "query", "taskId"))
def generate_record_info(ctx: Context) -> Reply:
    task = _polled_task(ctx, "generate", "status", FAILURES)
    if task is None:
        return Reply({**SUCCESS, "data": None})
    now = ctx.clock.now()
    tracks = [_track_fields(task, index, now) for index in range(len(task["tracks"]))]
    status = generation_status(task, now)
    failed = status in ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED", "SENSITIVE_WORD_ERROR")
    shown = now >= task["stages"]["text"] and status not in ("CREATE_TASK_FAILED", "SENSITIVE_WORD_ERROR")
    data = {"taskId": task["id"], "parentMusicId": "", "param": task["param"],
            "response": {"taskId": task["id"], "sunoData": tracks} if shown else None,
            "status": status, "type": "GENERATE", "operationType": "generate",
            "errorCode": task.get("error_code") if failed else None,
            "errorMessage": task.get("error_message") if failed else
            "Callback could not be delivered." if status == "CALLBACK_EXCEPTION" else None}
    return Reply({**SUCCESS, "data": data})


# -- vocal separation -----------------------------------------------------------------------------------
def _known_pair(ctx: Context) -> Refusal | None:
    body = ctx.req.json
    if "taskId" not in body and "audioId" not in body and isinstance(body.get("audioUrl"), str):
        return None  # a file named by its URL (sunoapi.org): nothing of this mock's to look up
    task = ctx.owned("apibox_task", body.get("taskId"))
    if task is None or task.get("kind") != "generate" or body.get("audioId") not in [t["id"] for t in task["tracks"]]:
        return Refusal(422, "Record does not exist", "precondition: unknown taskId/audioId pair")
    return None


def separation_files(task: dict[str, Any]) -> dict[str, str]:
    """snake_case key -> URL of every file the separation produces (fixed at creation, served from completion)."""
    keys = STEM_KEYS if task["type"] == "split_stem" else SEPARATE_KEYS
    done_ms = int(task["done_at"] * 1000)
    return {snake: task["base_url"] + audio.file_path(f"{task['id'][:16]}{i:02d}", f"{task['id'][:8]}_{name}",
                                                      task["duration"], done_ms)
            for i, (snake, _camel, name) in enumerate(keys)}


def separation_status(task: dict[str, Any], now: float) -> str:
    if task.get("outcome") == "create_task_failed":
        return "CREATE_TASK_FAILED"
    if now < (task["done_at"] if task.get("outcome_at") is None else min(task["done_at"], task["outcome_at"])):
        return "PENDING"
    if task.get("outcome") == "callback_exception":
        return "CALLBACK_EXCEPTION"
    if task.get("failed"):
        return "GENERATE_AUDIO_FAILED"
    return "CALLBACK_EXCEPTION" if task.get("callback_exception") else "SUCCESS"


@action("apibox.vocal_removal", precheck=_known_pair, reads=reads_field("apibox_task", "json", "taskId"))
def vocal_removal(ctx: Context) -> Reply:
    body = ctx.req.json
    if "taskId" in body or "audioId" in body:
        source = ctx.owned("apibox_task", body["taskId"])  # as the precheck read it: one read per call
        assert source is not None
        index = [t["id"] for t in source["tracks"]].index(body["audioId"])
        origin = {"source_task": source["id"], "music_id": body["audioId"], "music_index": index,
                  "duration": source["tracks"][index]["duration"]}
    else:  # by audioUrl: the file is not fetched, its length is derived from the URL
        origin = {"source_task": None, "music_id": "", "music_index": 0, "duration": duration_for(body["audioUrl"])}
    now = ctx.clock.now()
    task_id = ctx.hex_id()
    task = {"id": task_id, "api_key": ctx.api_key, "kind": "vocal_removal", "created_at": now,
            "done_at": now + ctx.config.durations.vocal_removal, "base_url": ctx.base_url,
            "type": body.get("type", "separate_vocal"), **origin,
            "callback_url": body.get("callBackUrl"), "scenario": ctx.scenario}
    return _start(ctx, task, "Vocal separation failed", SEPARATION_FAILURES, schedule_separation)


@action("apibox.vocal_removal_record_info", reads=reads_field("apibox_task", "query", "taskId"))
def vocal_removal_record_info(ctx: Context) -> Reply:
    task = _polled_task(ctx, "vocal_removal", "successFlag", SEPARATION_FAILURES)
    if task is None:
        return Reply({**SUCCESS, "data": None})
    now = ctx.clock.now()
    flag = separation_status(task, now)
    response = None
    if flag in ("SUCCESS", "CALLBACK_EXCEPTION"):
        files = separation_files(task)
        camel = {c: files.get(s) for s, c, _n in (*SEPARATE_KEYS, *STEM_KEYS)}
        response = {key: camel.get(key) for key in CAMEL_KEYS}
    failed = flag in ("GENERATE_AUDIO_FAILED", "CREATE_TASK_FAILED")
    data = {"taskId": task["id"], "musicId": task["music_id"], "callbackUrl": task["callback_url"],
            "musicIndex": task["music_index"], "createTime": int(task["created_at"] * 1000),
            "completeTime": int(task["done_at"] * 1000) if flag not in ("PENDING", "CREATE_TASK_FAILED") else None,
            "response": response,
            "successFlag": flag, "errorCode": task.get("error_code") if failed else None,
            "errorMessage": task.get("error_message") if failed else None}
    return Reply({**SUCCESS, "data": data})


@action("apibox.credit")
def credit(ctx: Context) -> Reply:
    balance = ctx.store.balance("apibox", ctx.api_key)
    total = balance["credits"] + balance["extra_credits"]
    return Reply({**SUCCESS, "data": int(total) if float(total).is_integer() else total})


# -- callbacks (built when the stage is reached, from the same task record polling reads) -----------------------
STAGE_MESSAGES = {"text": "Text generation completed.", "first": "First song generated successfully.",
                  "complete": "All generated successfully."}


def schedule_generation(scheduler: Scheduler, task: dict[str, Any]) -> None:
    """A job for each stage a generation with a callback URL reports, at the stage's instant."""
    if not task.get("callback_url"):
        return
    for stage in ("text", "first", "complete"):
        scheduler.at(task["stages"][stage], "generation_stage", task["id"], stage,
                     label=f"apibox generate {task['id']} {stage}", owner=("apibox_task", task["id"]))


def schedule_separation(scheduler: Scheduler, task: dict[str, Any]) -> None:
    """The job that reports a separation with a callback URL, at its `done_at`."""
    if task.get("callback_url"):
        scheduler.at(task["done_at"], "separation_done", task["id"], label=f"apibox vocal-removal {task['id']}",
                     owner=("apibox_task", task["id"]))


@job("generation_stage")
async def _generation_stage(deliveries: Deliveries, task_id: str, stage: str) -> None:
    task = deliveries.store.get("apibox_task", task_id)
    if task is None:
        return
    if failed(task):
        # A failed generation reports once, at its terminal instant, with the documented `error` stage.
        if stage != "complete":
            return
        payload = {"code": task.get("error_code") or 500,
                   "msg": task.get("error_message") or "Generation failed.",
                   "data": {"callbackType": "error", "task_id": task_id, "data": None}}
        await deliveries.open("apibox", task, "generate.error", payload)
        return
    payload = {"code": 200, "msg": STAGE_MESSAGES[stage],
               "data": {"callbackType": stage, "task_id": task_id,
                        "data": generation_tracks(task, deliveries.clock.now())}}
    await deliveries.open("apibox", task, f"generate.{stage}", payload)


@job("separation_done")
async def _separation_done(deliveries: Deliveries, task_id: str) -> None:
    task = deliveries.store.get("apibox_task", task_id)
    if task is None:
        return
    if failed(task):
        payload = {"code": task.get("error_code") or 500,
                   "msg": task.get("error_message") or "Vocal separation failed",
                   "data": {"task_id": task_id, "vocal_removal_info": None}}
        event = "vocal_removal.failed"
    else:
        info = {"origin_url": "", **separation_files(task)}
        payload = {"code": 200, "msg": "vocal Removal generated successfully.",
                   "data": {"task_id": task_id, "vocal_removal_info": info}}
        event = f"vocal_removal.{task['type']}"
    await deliveries.open("apibox", task, event, payload)


def signature(key: str, task_id: str, timestamp: str) -> str:
    """base64 HMAC-SHA256 of `taskId.timestamp` (the kie-style variant; the body is not covered)."""
    return base64.b64encode(hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()).decode()


def _headers(delivery: dict[str, Any], body: bytes, timestamp: str, config: CallbackConfig) -> dict[str, str]:
    if not config.apibox_hmac_key:
        return {}
    return {"X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": signature(config.apibox_hmac_key, delivery["task_id"], timestamp)}


CALLBACKS["apibox"] = Callbacks("apibox_task", _headers)

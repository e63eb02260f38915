"""Callback delivery through the real server: payloads, signatures, retries, delivery faults, volume, shutdown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Self

import httpx
import jsonschema_rs
import pytest
import yaml

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app
from mockserver.callbacks import Deliveries, host_allowed
from mockserver.config import CallbackConfig
from mockserver.providers import apibox
from mockserver.sender import HttpSender, SendError
from mockserver.spec import load, spec_path

APIBOX = load(spec_path("apibox"))
MUSICAPI = load(spec_path("musicapi"))
START = 1_767_225_600  # 2026-01-01T00:00:00Z
RETRIES = (60.0, 300.0, 900.0)
# The receiver path each test posts to names the operation whose callback schema the body must satisfy.
SCHEMA_BY_PATH = {"/gen": APIBOX.by_id["generateMusic"], "/sep": APIBOX.by_id["separateVocals"],
                  "/song": MUSICAPI.by_id["createMusic"], "/upload": MUSICAPI.by_id["uploadMusic"]}


def callback_errors(path: str, body: Any) -> list[str]:
    """Violations of the callback schema of the operation that the receiver path stands for."""
    callback = next(iter(SCHEMA_BY_PATH[path].callbacks.values()))
    return [e.message for e in callback.validator.iter_errors(body)]


@pytest.fixture(autouse=True)
def every_body_conforms(receiver: CallbackReceiver) -> Iterator[None]:
    """After each test, every body the receiver got validates against its operation's callback schema."""
    yield
    for delivery in receiver.deliveries:
        assert not callback_errors(delivery.path, delivery.json), (delivery.path, delivery.json)


def webhook_header_schemas() -> dict[str, Any]:
    """Validators of the documented song-webhook headers, read from the spec file itself."""
    raw = yaml.safe_load(spec_path("musicapi").read_text(encoding="utf-8"))
    callback = raw["paths"]["/api/v1/sonic/create"]["post"]["callbacks"]["songWebhook"]
    post = next(iter(callback.values()))["post"]
    return {p["name"].lower(): jsonschema_rs.validator_for(p["schema"]) for p in post["parameters"]}


# -- helpers ------------------------------------------------------------------------------------------------
def generated(client: httpx.Client, mock: Any, receiver: CallbackReceiver, **extra: Any) -> tuple[str, dict[str, Any]]:
    """A finished generation task and its first track; the receiver is cleared afterwards."""
    body = client.post("/api/v1/generate", json={
        "customMode": True, "instrumental": False, "model": "V4_5", "callBackUrl": receiver.endpoint("gen"),
        "prompt": "[Verse] neon rain", "style": "synthwave", "title": "Neon Rain"}, **extra).json()
    assert body["code"] == 200, body
    task_id = body["data"]["taskId"]
    mock.advance(10)
    track = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]["response"][
        "sunoData"][0]
    receiver.clear()
    return task_id, track


def separation(client: httpx.Client, source: tuple[str, dict[str, Any]], url: str, kind: str = "separate_vocal",
               **extra: Any) -> str:
    body = client.post("/api/v1/vocal-removal/generate", json={
        "taskId": source[0], "audioId": source[1]["id"], "type": kind, "callBackUrl": url}, **extra).json()
    assert body["code"] == 200, body
    return str(body["data"]["taskId"])


def record_info(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return dict(client.get("/api/v1/vocal-removal/record-info", params={"taskId": task_id}).json()["data"])


def deliveries_of(mock: Any, task_id: str) -> list[dict[str, Any]]:
    return [d for d in mock.callbacks() if d["task_id"] == task_id]


def prefer(scenario: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Prefer": f"scenario={scenario}"}}


def closed_port_url() -> str:
    """A loopback URL on which nothing listens, so a POST is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/sep"


class Silent:
    """A listening socket that never accepts: connections open (backlog) but no answer ever comes."""

    def __enter__(self) -> str:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/sep"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class Server:
    """A second mock on its own port, built from `callbacks`, with a client for its API and control plane."""

    def __init__(self, **callbacks: Any) -> None:
        self.live = LiveServer(create_app(MockConfig(clock="manual", clock_start=START,
                                                     callbacks=CallbackConfig(**callbacks))))

    def __enter__(self) -> Self:
        self.live.start()
        self.url = self.live.url
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": "Bearer test-key"}, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.live.stop()

    def advance(self, seconds: float) -> dict[str, Any]:
        return dict(self.client.post("/__mock/clock/advance", json={"seconds": seconds}).json())

    def callbacks(self) -> list[dict[str, Any]]:
        return list(self.client.get("/__mock/callbacks").json()["callbacks"])


# -- api.box delivery and retries ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["separate_vocal", "split_stem"])
def test_separation_callback_is_the_documented_body_once(client: httpx.Client, mock: Any,
                                                         receiver: CallbackReceiver, kind: str) -> None:
    """A finished separation posts one snake_case body with the type's URLs at its done instant, and records it."""
    sep_id = separation(client, generated(client, mock, receiver), receiver.endpoint("sep"), kind)
    mock.advance(4.9)
    assert receiver.deliveries == []
    mock.advance(0.1)
    [delivery] = receiver.deliveries
    assert delivery.json["code"] == 200 and delivery.json["data"]["task_id"] == sep_id
    info = delivery.json["data"]["vocal_removal_info"]
    assert len([k for k in info if k != "origin_url"]) == (2 if kind == "separate_vocal" else 12)
    assert delivery.headers["content-type"] == "application/json"
    assert "x-webhook-signature" not in delivery.headers  # api.box documents no signature unless configured
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "delivered" and record["url"] == receiver.endpoint("sep")
    assert record["event"] == f"vocal_removal.{kind}" and record["payload"] == delivery.json
    [attempt] = record["attempts"]
    assert attempt["status"] == 200 and attempt["error"] is None and attempt["latency_ms"] >= 0
    assert attempt["at"] == record["created_at"]


def test_generation_delivers_text_first_complete_at_their_instants(client: httpx.Client, mock: Any,
                                                                   receiver: CallbackReceiver) -> None:
    """Generation posts text, first and complete, each at its own stage instant, with the tracks ready by then."""
    created = mock.advance(0)["now"]
    task_id = client.post("/api/v1/generate", json={
        "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "rain on neon",
        "callBackUrl": receiver.endpoint("gen")}).json()["data"]["taskId"]
    mock.advance(10)
    bodies = [d.json["data"] for d in receiver.deliveries]
    assert [b["callbackType"] for b in bodies] == ["text", "first", "complete"]
    assert {b["task_id"] for b in bodies} == {task_id}
    assert [bool(t["audio_url"]) for t in bodies[1]["data"]] == [True, False]
    assert all(t["audio_url"] and t["duration"] for t in bodies[2]["data"])
    times = [r["attempts"][0]["at"] - created for r in deliveries_of(mock, task_id)]
    assert times == [2.0, 4.0, 6.0]


@pytest.mark.parametrize("fault", ["http_500", "refused"])
def test_failed_deliveries_retry_at_1_5_15_minutes_then_callback_exception(client: httpx.Client, mock: Any,
                                                                          receiver: CallbackReceiver,
                                                                          fault: str) -> None:
    """A receiver that never accepts gets attempts at 0, +1, +5 and +15 min, then the task shows CALLBACK_EXCEPTION."""
    source = generated(client, mock, receiver)
    url = receiver.endpoint("sep") if fault == "http_500" else closed_port_url()
    if fault == "http_500":
        receiver.fail_next(4)
    sep_id = separation(client, source, url)
    done = mock.advance(5)["now"]
    for gap in RETRIES[:-1]:
        mock.advance(gap)
    assert record_info(client, sep_id)["successFlag"] == "SUCCESS"  # one retry is still owed
    mock.advance(RETRIES[-1] - 1)
    assert record_info(client, sep_id)["successFlag"] == "SUCCESS"
    mock.advance(1)
    info = record_info(client, sep_id)
    assert info["successFlag"] == "CALLBACK_EXCEPTION" and info["response"]["vocalUrl"]
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "failed" and record["next_attempt_at"] is None
    assert [a["at"] - done for a in record["attempts"]] == [0, 60, 360, 1260]
    for attempt in record["attempts"]:
        assert attempt["latency_ms"] is not None and attempt["error"]
        if fault == "http_500":
            assert attempt["status"] == 500 and "500" in attempt["error"]
        else:
            assert attempt["status"] is None and "Connect" in attempt["error"]
    assert len(receiver.deliveries) == (4 if fault == "http_500" else 0)
    assert receiver.accepted() == []
    assert mock.advance(86400)["ran"] == 0  # nothing more is scheduled once a delivery is given up


def test_a_retry_that_succeeds_delivers_once_and_keeps_success(client: httpx.Client, mock: Any,
                                                               receiver: CallbackReceiver) -> None:
    """Two failed attempts then an accepted one: one accepted body, the same bytes each time, and SUCCESS."""
    source = generated(client, mock, receiver)
    receiver.fail_next(2)
    sep_id = separation(client, source, receiver.endpoint("sep"))
    mock.advance(5)
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "pending" and record["next_attempt_at"] == record["created_at"] + 60
    mock.advance(60 + 300)
    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert len({d.raw for d in receiver.deliveries}) == 1
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "delivered" and len(record["attempts"]) == 3
    assert record_info(client, sep_id)["successFlag"] == "SUCCESS"
    assert mock.advance(3600)["ran"] == 0


def test_an_attempt_with_no_answer_times_out_and_is_retried(receiver: CallbackReceiver) -> None:
    """A receiver that never answers costs one attempt its timeout; the error says so and a retry is scheduled."""
    with Server(timeout=0.3) as server, Silent() as silent:
        server.client.put("/__mock/credits/test-key", json={"credits": 1000})
        gen = server.client.post("/api/v1/generate", json={
            "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "x",
            "callBackUrl": silent}).json()["data"]["taskId"]
        server.advance(10)
        audio_id = server.client.get("/api/v1/generate/record-info", params={"taskId": gen}).json()[
            "data"]["response"]["sunoData"][0]["id"]
        sep = server.client.post("/api/v1/vocal-removal/generate", json={
            "taskId": gen, "audioId": audio_id, "callBackUrl": silent}).json()["data"]["taskId"]
        started = time.perf_counter()
        server.advance(5)
        assert time.perf_counter() - started < 5
        [record] = [d for d in server.callbacks() if d["task_id"] == sep]
        [attempt] = record["attempts"]
        assert attempt["status"] is None and attempt["error"] == "timeout after 0.3 s"
        assert 250 <= attempt["latency_ms"] < 3000
        assert record["state"] == "pending" and record["next_attempt_at"] == attempt["at"] + 60


# -- MusicAPI webhooks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret", ["whsec_3f9a1c7e2b", None])
def test_musicapi_webhook_is_signed_over_timestamp_and_raw_body(client: httpx.Client, mock: Any,
                                                                receiver: CallbackReceiver,
                                                                secret: str | None) -> None:
    """song.completed carries the documented headers and a signature a client can recompute from the raw body."""
    body: dict[str, Any] = {"task_type": "create_music", "custom_mode": True, "mv": "sonic-v5", "title": "Night",
                            "tags": "synthwave", "prompt": "[Verse] lights", "webhook_url": receiver.endpoint("song")}
    if secret:
        body["webhook_secret"] = secret
    task_id = client.post("/api/v1/sonic/create", json=body).json()["task_id"]
    now = mock.advance(60)["now"]
    [delivery] = receiver.deliveries
    headers = delivery.headers
    for name, validator in webhook_header_schemas().items():
        value = int(headers[name]) if name == "x-webhook-timestamp" else headers[name]
        assert validator.is_valid(value), (name, headers.get(name))
    key = (secret or CallbackConfig().webhook_secret).encode()
    expected = hmac.new(key, headers["x-webhook-timestamp"].encode() + b"." + delivery.raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-webhook-signature"], f"sha256={expected}")
    assert headers["x-webhook-id"] == headers["idempotency-key"]
    assert int(headers["x-webhook-timestamp"]) == int(now - 60 + 6)  # signed at the task's ready instant
    payload = delivery.json
    assert payload["event"] == headers["x-webhook-event"] == "song.completed"
    assert payload["task_id"] == task_id and payload["platform"] == "sonic"
    polled = client.get(f"/api/v1/sonic/task/{task_id}").json()["data"]
    assert payload["data"] == polled


def test_musicapi_webhook_with_a_wrong_secret_does_not_verify(client: httpx.Client, mock: Any,
                                                              receiver: CallbackReceiver) -> None:
    """The signature depends on the secret and the body: another secret or one changed byte fails verification."""
    client.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                              "gpt_description_prompt": "a song", "webhook_secret": "right",
                                              "webhook_url": receiver.endpoint("song")})
    mock.advance(60)
    [delivery] = receiver.deliveries
    stamp = delivery.headers["x-webhook-timestamp"].encode()

    def sign(key: bytes, raw: bytes) -> str:
        return "sha256=" + hmac.new(key, stamp + b"." + raw, hashlib.sha256).hexdigest()

    assert delivery.headers["x-webhook-signature"] == sign(b"right", delivery.raw)
    assert delivery.headers["x-webhook-signature"] != sign(b"wrong", delivery.raw)
    assert delivery.headers["x-webhook-signature"] != sign(b"right", delivery.raw.replace(b"sonic", b"Sonic"))


def test_async_upload_answers_a_task_id_then_posts_the_clip(client: httpx.Client, mock: Any,
                                                             receiver: CallbackReceiver) -> None:
    """With callback_url, upload answers a task_id at once; the clip is ready, and POSTed, when the upload ends."""
    answer = client.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/demo.wav",
                                                       "callback_url": receiver.endpoint("upload")})
    assert answer.status_code == 200
    doc = MUSICAPI.by_id["uploadMusic"].responses[200]
    assert doc.validator is not None and doc.validator.is_valid(answer.json())
    task_id = answer.json()["task_id"]
    assert "clip_id" not in answer.json()
    assert mock.advance(2.9)["ran"] == 0 and receiver.deliveries == []
    mock.advance(0.1)
    [delivery] = receiver.deliveries
    assert delivery.json["code"] == 200 and delivery.json["task_id"] == task_id
    assert delivery.headers["x-webhook-event"] == "upload.completed"
    vox = client.post("/api/v1/sonic/vox", json={"clip_id": delivery.json["clip_id"], "vocal_start_s": 0,
                                                 "vocal_end_s": 10})
    assert vox.status_code == 200, vox.text


def test_async_upload_that_fails_posts_the_failure_and_leaves_no_usable_clip(client: httpx.Client, mock: Any,
                                                                            receiver: CallbackReceiver) -> None:
    """`Prefer: scenario=callback_fails` makes the upload fail: the callback carries a non-200 code, no clip_id."""
    task_id = client.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/x.mp3",
                                                         "callback_url": receiver.endpoint("upload")},
                          **prefer("callback_fails")).json()["task_id"]
    mock.advance(5)
    [delivery] = receiver.deliveries
    assert delivery.json == {"code": 400, "message": "Invalid parameters.", "task_id": task_id}
    assert delivery.headers["x-webhook-event"] == "upload.failed"


# -- api.box kie-style signing ---------------------------------------------------------------------------------
def test_apibox_callbacks_are_signed_kie_style_when_a_key_is_configured(receiver: CallbackReceiver) -> None:
    """With callbacks.apibox_hmac_key every api.box callback carries base64 HMAC-SHA256 of "taskId.timestamp"."""
    with Server(apibox_hmac_key="k") as server:
        gen = server.client.post("/api/v1/generate", json={
            "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "x",
            "callBackUrl": receiver.endpoint("gen")}).json()["data"]["taskId"]
        server.advance(10)
        audio_id = server.client.get("/api/v1/generate/record-info", params={"taskId": gen}).json()[
            "data"]["response"]["sunoData"][0]["id"]
        server.client.post("/api/v1/vocal-removal/generate", json={
            "taskId": gen, "audioId": audio_id, "callBackUrl": receiver.endpoint("sep")})
        server.advance(10)
    assert [d.path for d in receiver.deliveries] == ["/gen", "/gen", "/gen", "/sep"]
    for delivery in receiver.deliveries:
        stamp = delivery.headers["x-webhook-timestamp"]
        assert stamp.isdigit() and START <= int(stamp) <= START + 20
        message = f"{delivery.json['data']['task_id']}.{stamp}".encode()
        expected = base64.b64encode(hmac.new(b"k", message, hashlib.sha256).digest()).decode()
        assert hmac.compare_digest(delivery.headers["x-webhook-signature"], expected)


# -- delivery faults ---------------------------------------------------------------------------------------------
def test_callback_fails_sends_the_failure_body_and_record_info_agrees(client: httpx.Client, mock: Any,
                                                                      receiver: CallbackReceiver) -> None:
    """scenario=callback_fails posts code 500 with null info, and record-info shows GENERATE_AUDIO_FAILED."""
    source = generated(client, mock, receiver)
    sep_id = separation(client, source, receiver.endpoint("sep"), **prefer("callback_fails"))
    mock.advance(5)
    [delivery] = receiver.deliveries
    assert delivery.json["code"] in (400, 451, 500)
    assert delivery.json["data"] == {"task_id": sep_id, "vocal_removal_info": None}
    info = record_info(client, sep_id)
    assert info["successFlag"] == "GENERATE_AUDIO_FAILED" and info["response"] is None
    assert info["errorCode"] == delivery.json["code"] and info["errorMessage"]
    [record] = deliveries_of(mock, sep_id)
    assert (record["event"], record["state"], record["scenario"]) == ("vocal_removal.failed", "delivered",
                                                                      "callback_fails")


def test_callback_fails_on_generation_reports_one_error_stage(client: httpx.Client, mock: Any,
                                                              receiver: CallbackReceiver) -> None:
    """scenario=callback_fails on a generation posts a single `error` callback at the terminal instant."""
    created = mock.advance(0)["now"]
    task_id = client.post("/api/v1/generate", json={
        "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "x",
        "callBackUrl": receiver.endpoint("gen")}, **prefer("callback_fails")).json()["data"]["taskId"]
    mock.advance(10)
    [delivery] = receiver.deliveries
    assert delivery.json["code"] != 200
    assert delivery.json["data"]["callbackType"] == "error" and delivery.json["data"]["task_id"] == task_id
    [record] = deliveries_of(mock, task_id)
    assert record["attempts"][0]["at"] == created + 6
    status = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]["status"]
    assert status == "GENERATE_AUDIO_FAILED"


def test_callback_fails_on_musicapi_sends_song_failed(client: httpx.Client, mock: Any,
                                                      receiver: CallbackReceiver) -> None:
    """scenario=callback_fails on a create job sends a signed song.failed with failed clips and no audio."""
    task_id = client.post("/api/v1/sonic/create", json={
        "task_type": "create_music", "custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "x",
        "webhook_url": receiver.endpoint("song")}, **prefer("callback_fails")).json()["task_id"]
    mock.advance(60)
    [delivery] = receiver.deliveries
    assert delivery.headers["x-webhook-event"] == delivery.json["event"] == "song.failed"
    assert delivery.json["code"] != 200
    assert {c["state"] for c in delivery.json["data"]} == {"failed"}
    assert all(c["audio_url"] == "" and c["error_message"] for c in delivery.json["data"])
    polled = client.get(f"/api/v1/sonic/task/{task_id}").json()["data"]
    assert [c["state"] for c in polled] == [c["state"] for c in delivery.json["data"]]


def test_callback_duplicate_delivers_the_same_webhook_twice(client: httpx.Client, mock: Any,
                                                            receiver: CallbackReceiver) -> None:
    """scenario=callback_duplicate posts the same body with the same X-Webhook-Id twice, listed as two deliveries."""
    task_id = client.post("/api/v1/sonic/create", json={
        "task_type": "create_music", "custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "x",
        "webhook_url": receiver.endpoint("song")}, **prefer("callback_duplicate")).json()["task_id"]
    mock.advance(60)
    first, second = receiver.accepted()
    assert first.raw == second.raw
    assert first.headers["x-webhook-id"] == second.headers["x-webhook-id"] == second.headers["idempotency-key"]
    assert first.headers["x-webhook-signature"] == second.headers["x-webhook-signature"]
    original, copy = deliveries_of(mock, task_id)
    assert original["state"] == copy["state"] == "delivered"
    assert copy["duplicate_of"] == original["id"] and copy["webhook_id"] == original["webhook_id"]
    assert len(original["attempts"]) == len(copy["attempts"]) == 1


def test_callback_duplicate_on_apibox_separation(client: httpx.Client, mock: Any, receiver: CallbackReceiver) -> None:
    """scenario=callback_duplicate on a separation posts the identical body twice."""
    sep_id = separation(client, generated(client, mock, receiver), receiver.endpoint("sep"),
                        **prefer("callback_duplicate"))
    mock.advance(5)
    first, second = receiver.accepted()
    assert first.raw == second.raw and first.json["data"]["task_id"] == sep_id
    assert [d["state"] for d in deliveries_of(mock, sep_id)] == ["delivered", "delivered"]


def test_callback_late_first_attempt_waits_late_delay(client: httpx.Client, mock: Any,
                                                      receiver: CallbackReceiver) -> None:
    """scenario=callback_late makes the first attempt late_delay seconds after the task is done, not before."""
    late = CallbackConfig().late_delay
    sep_id = separation(client, generated(client, mock, receiver), receiver.endpoint("sep"),
                        **prefer("callback_late"))
    done = mock.advance(5)["now"]
    assert record_info(client, sep_id)["successFlag"] == "SUCCESS"  # polling sees the result before the callback
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "pending" and record["attempts"] == [] and record["next_attempt_at"] == done + late
    mock.advance(late - 1)
    assert receiver.deliveries == []
    mock.advance(1)
    [delivery] = receiver.accepted()
    assert delivery.json["data"]["task_id"] == sep_id
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "delivered" and record["attempts"][0]["at"] == done + late


def test_callback_never_makes_no_request_but_lists_it_suppressed(client: httpx.Client, mock: Any,
                                                                 receiver: CallbackReceiver) -> None:
    """scenario=callback_never sends nothing, lists the delivery as suppressed with no attempts, and keeps SUCCESS."""
    sep_id = separation(client, generated(client, mock, receiver), receiver.endpoint("sep"),
                        **prefer("callback_never"))
    mock.advance(5 + sum(RETRIES) + 3600)
    assert receiver.deliveries == []
    [record] = deliveries_of(mock, sep_id)
    assert record["state"] == "suppressed" and record["attempts"] == []
    assert record["payload"]["data"]["task_id"] == sep_id and record["url"] == receiver.endpoint("sep")
    assert record_info(client, sep_id)["successFlag"] == "SUCCESS"


def test_allow_hosts_blocks_callbacks_to_other_hosts(receiver: CallbackReceiver) -> None:
    """With callbacks.allow_hosts set, a callback to another host is recorded as blocked and never sent."""
    allowed_url = receiver.endpoint("sep").replace("127.0.0.1", "localhost")

    async def run() -> list[dict[str, Any]]:
        app = create_app(MockConfig(clock="manual", clock_start=START,
                                    callbacks=CallbackConfig(allow_hosts=("localhost",))))
        mock = app.state.mock
        for task_id, url in (("a" * 32, receiver.endpoint("sep")), ("b" * 32, allowed_url)):
            task = {"id": task_id, "api_key": "k", "kind": "vocal_removal", "created_at": START, "done_at": START + 5,
                    "base_url": "http://mock", "type": "separate_vocal", "duration": 100.0, "callback_url": url}
            mock.store.put("apibox_task", task_id, task)
            apibox.schedule_separation(mock.scheduler, task)
        await mock.scheduler.advance(5)
        await mock.deliveries.close()
        return mock.deliveries.list()

    blocked, allowed = asyncio.run(run())
    assert blocked["state"] == "blocked" and blocked["attempts"] == [] and "allow_hosts" in blocked["error"]
    assert allowed["state"] == "delivered" and allowed["url"] == allowed_url
    [delivery] = receiver.deliveries
    assert delivery.json["data"]["task_id"] == "b" * 32
    assert host_allowed("https://a.hooks.example.com/x", ("*.hooks.example.com",))
    assert not host_allowed("https://evilhooks.example.com/x", ("*.hooks.example.com",))
    assert host_allowed("http://anything/", ())


# -- volume: nothing lost --------------------------------------------------------------------------------------
def test_a_thousand_separations_finishing_together_are_each_delivered_once(client: httpx.Client, mock: Any,
                                                                           receiver: CallbackReceiver) -> None:
    """1,000 tasks done at one instant, a third of first attempts refused: after the retries each is delivered once."""
    # api.box admits 20 work calls per 10 s per key, so 50 keys start 20 separations each at the same instant.
    keys = [f"bulk-{i:02d}" for i in range(50)]
    sources = {}
    for key in keys:
        auth = {"headers": {"Authorization": f"Bearer {key}"}}
        task_id = client.post("/api/v1/generate", json={
            "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "x",
            "callBackUrl": receiver.endpoint("gen")}, **auth).json()["data"]["taskId"]
        sources[key] = task_id
    mock.advance(11)  # the generations are done and their calls have left the rate window
    receiver.clear()
    url = receiver.endpoint("sep")
    ids = []
    for key in keys:
        auth = {"headers": {"Authorization": f"Bearer {key}"}}
        track = client.get("/api/v1/generate/record-info", params={"taskId": sources[key]}, **auth).json()[
            "data"]["response"]["sunoData"][0]
        ids += [separation(client, (sources[key], track), url, **auth) for _ in range(20)]
    assert len(set(ids)) == 1000
    receiver.fail_next(333)
    started = time.perf_counter()
    ran = mock.advance(5)["ran"]
    elapsed = time.perf_counter() - started
    assert ran == 1000 and len(receiver.deliveries) == 1000
    print(f"\nfirst attempts: 1000 callbacks in {elapsed:.2f} s = {1000 / elapsed:.0f} callbacks/s")
    wanted = set(ids)
    records = [r for r in mock.callbacks() if r["task_id"] in wanted]
    assert Counter(r["state"] for r in records) == {"delivered": 667, "pending": 333}
    started = time.perf_counter()
    mock.advance(60)
    elapsed = time.perf_counter() - started
    print(f"retries: 333 callbacks in {elapsed:.2f} s = {333 / elapsed:.0f} callbacks/s")
    accepted = Counter(d.json["data"]["task_id"] for d in receiver.accepted())
    assert set(accepted) == wanted and set(accepted.values()) == {1}
    records = [r for r in mock.callbacks() if r["task_id"] in wanted]
    assert len(records) == 1000 and {r["state"] for r in records} == {"delivered"}
    assert Counter(len(r["attempts"]) for r in records) == {1: 667, 2: 333}
    assert mock.advance(3600)["ran"] == 0


# -- shutdown flush ----------------------------------------------------------------------------------------------
async def _separation_in_process(app: Any, receiver: CallbackReceiver, callback_url: str, fail_first: int = 0,
                                 scenario: str | None = None) -> str:
    """Generate and separate through the app in this process; return the separation task id once it is done."""
    mock = app.state.mock
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock",
                                 headers={"Authorization": "Bearer k"}) as c:
        gen = (await c.post("/api/v1/generate", json={
            "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "x",
            "callBackUrl": receiver.endpoint("gen")})).json()["data"]["taskId"]
        await mock.scheduler.advance(10)
        receiver.clear()
        receiver.fail_next(fail_first)
        audio_id = (await c.get("/api/v1/generate/record-info", params={"taskId": gen})).json()[
            "data"]["response"]["sunoData"][0]["id"]
        sep = (await c.post("/api/v1/vocal-removal/generate", json={
            "taskId": gen, "audioId": audio_id, "callBackUrl": callback_url},
            headers={"Prefer": f"scenario={scenario}"} if scenario else {})).json()["data"]["taskId"]
    await mock.scheduler.advance(5)
    return str(sep)


def _in_process_app(**callbacks: Any) -> Any:
    return create_app(MockConfig(clock="manual", clock_start=START, callbacks=CallbackConfig(**callbacks)))


def test_flush_delivers_a_retry_scheduled_in_the_future(receiver: CallbackReceiver) -> None:
    """At shutdown a delivery waiting for its 1-minute retry is attempted at once and delivered."""

    async def run() -> tuple[str, list[str], Deliveries]:
        app = _in_process_app()
        sep = await _separation_in_process(app, receiver, receiver.endpoint("sep"), fail_first=1)
        owed = await app.state.mock.deliveries.flush(5.0)
        await app.state.mock.deliveries.close()
        return sep, owed, app.state.mock.deliveries

    sep, owed, deliveries = asyncio.run(run())
    assert owed == []
    assert [d.status for d in receiver.deliveries] == [500, 200]
    [record] = [d for d in deliveries.list() if d["task_id"] == sep]
    assert record["state"] == "delivered" and [a["at"] for a in record["attempts"]] == [START + 15, START + 15]


def test_flush_delivers_a_late_delivery_early(receiver: CallbackReceiver) -> None:
    """At shutdown a callback_late delivery that is not yet due is attempted within the grace period."""

    async def run() -> list[str]:
        app = _in_process_app()
        mock = app.state.mock
        await _separation_in_process(app, receiver, receiver.endpoint("sep"), scenario="callback_late")
        assert receiver.deliveries == []
        owed = await mock.deliveries.flush(5.0)
        await mock.deliveries.close()
        return owed

    assert asyncio.run(run()) == []
    assert len(receiver.accepted()) == 1


@pytest.mark.parametrize("fault", ["refused", "silent"])
def test_flush_logs_and_returns_the_tasks_still_owed(receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture,
                                                     fault: str) -> None:
    """What cannot be delivered within the grace period is returned and logged with its task id, on time."""

    async def run(url: str) -> tuple[str, list[str], float]:
        app = _in_process_app()
        sep = await _separation_in_process(app, receiver, closed_port_url())
        # The first attempt was refused at once; the flush now meets `url`, whose attempt outlasts the grace.
        [delivery] = [d for d in app.state.mock.deliveries.list() if d["task_id"] == sep]
        app.state.mock.store.update("delivery", delivery["id"], {"url": url})
        started = time.perf_counter()
        owed = await app.state.mock.deliveries.flush(0.5)
        elapsed = time.perf_counter() - started
        await app.state.mock.deliveries.close()
        return sep, owed, elapsed

    caplog.set_level(logging.WARNING, logger="stemmock.callbacks")
    if fault == "refused":
        sep, owed, elapsed = asyncio.run(run(closed_port_url()))
    else:
        with Silent() as url:
            sep, owed, elapsed = asyncio.run(run(url))
    assert owed == [sep]
    assert elapsed < 2.0  # the callbacks timeout is 15 s; the grace period bounds the flush
    assert any(sep in r.getMessage() and "not delivered" in r.getMessage() for r in caplog.records)


def test_callbacks_listing_shows_each_field_and_no_secret(client: httpx.Client, mock: Any,
                                                          receiver: CallbackReceiver) -> None:
    """GET /__mock/callbacks lists every field a client debugging a callback needs, and no secret."""
    client.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                              "gpt_description_prompt": "x", "webhook_secret": "hidden",
                                              "webhook_url": receiver.endpoint("song")})
    mock.advance(60)
    [record] = mock.callbacks()
    assert {"id", "provider", "task_id", "url", "event", "payload", "state", "attempts", "webhook_id", "scenario",
            "created_at", "next_attempt_at"} <= set(record)
    assert "hidden" not in json.dumps(record)
    assert set(record["attempts"][0]) == {"at", "status", "latency_ms", "error"}


# -- the HTTP sender -----------------------------------------------------------------------------------------------
class Scripted:
    """A raw HTTP server on loopback that answers each request with the next scripted bytes, then maybe hangs up."""

    def __init__(self, *answers: bytes, hang_up: bool = False) -> None:
        self.answers = list(answers)
        self.hang_up = hang_up
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook/a%20b?x=1"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append((head, await reader.readexactly(length)))
                writer.write(self.answers.pop(0))
                await writer.drain()
                if self.hang_up:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


def send_all(server: Scripted, *bodies: bytes) -> list[int | str]:
    """POST each body in turn through one sender; the status of each, or the SendError text."""

    async def run() -> list[int | str]:
        sender = HttpSender(max_connections=4)
        results: list[int | str] = []
        async with server as url:
            for body in bodies:
                try:
                    results.append(await sender.post(url, body, {"Content-Type": "application/json"}))
                except SendError as exc:
                    results.append(str(exc))
        await sender.close()
        return results

    return asyncio.run(run())


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_sender_keeps_a_connection_alive_and_sends_the_exact_request() -> None:
    """Two POSTs share one connection; each carries its body, Content-Length, Host and the encoded path."""
    server = Scripted(OK, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert send_all(server, b'{"a":1}', b"{}") == [200, 201]
    assert server.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /hook/a%20b?x=1 HTTP/1.1\r\n") and body == b'{"a":1}'
    assert b"\r\nContent-Length: 7\r\n" in head and b"\r\nHost: 127.0.0.1:" in head


def test_sender_opens_a_new_connection_after_close() -> None:
    """`Connection: close`, or a peer that drops a kept-alive connection, costs a reconnect, not a failed delivery."""
    closing = Scripted(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", OK)
    assert send_all(closing, b"1", b"2") == [200, 200]
    assert closing.connections == 2
    dropping = Scripted(OK, OK, OK, hang_up=True)
    assert send_all(dropping, b"1", b"2", b"3") == [200, 200, 200]
    assert dropping.connections == 3


def test_sender_reports_statuses_and_failures() -> None:
    """Interim 1xx answers are skipped, big bodies need not be read, and garbage or a bad URL is a SendError."""
    big = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000000\r\n\r\n" + bytes(100)
    server = Scripted(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", big, OK)
    assert send_all(server, b"1", b"2", b"3") == [204, 500, 200]
    [garbage] = send_all(Scripted(b"SSH-2.0-OpenSSH\r\n\r\n"), b"1")
    assert isinstance(garbage, str) and garbage.startswith("ProtocolError")

    async def bad_url() -> str:
        try:
            await HttpSender(1).post("ftp://example.com/x", b"", {})
        except SendError as exc:
            return str(exc)
        return "sent"

    assert asyncio.run(bad_url()).startswith("UnsupportedURL")


def test_allow_list_refuses_other_callback_hosts_at_request_time() -> None:
    """With allow_hosts set, a callBackUrl on another host is refused when the task is requested."""
    config = MockConfig(clock="manual", callbacks=CallbackConfig(allow_hosts=("127.0.0.1",)))
    with LiveServer(create_app(config)) as server, httpx.Client(base_url=server.url, headers={
            "Authorization": "Bearer k"}) as client:
        body = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "x"}
        refused = client.post("/api/v1/generate", json={**body, "callBackUrl": "https://hooks.example.com/cb"}).json()
        assert refused["code"] == 400 and "hooks.example.com" in refused["msg"] and "127.0.0.1" in refused["msg"]
        allowed = client.post("/api/v1/generate", json={**body, "callBackUrl": "http://127.0.0.1:9/cb"}).json()
        assert allowed["code"] == 200

"""api.box end to end through the real server: generate -> poll -> vocal-removal -> record-info -> callback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from contracts.receiver import CallbackReceiver
from mockserver.spec import load, spec_path

SPEC = load(spec_path("apibox"))
TASK_ID = r"^[0-9a-f]{32}$"


def conforms(operation_id: str, response: httpx.Response) -> dict[str, Any]:
    """HTTP 200 and a body valid against the operation's schema; returns the body."""
    assert response.status_code == 200, response.text
    validator = SPEC.by_id[operation_id].responses[200].validator
    errors = [e.message for e in validator.iter_errors(response.json())]
    assert not errors, f"{operation_id} body violates the spec: {errors}"
    return dict(response.json())


def callback_conforms(operation_id: str, body: Any) -> None:
    callback = next(iter(SPEC.by_id[operation_id].callbacks.values()))
    errors = [e.message for e in callback.validator.iter_errors(body)]
    assert not errors, f"{operation_id} callback violates the spec: {errors}"


def generate(client: httpx.Client, callback_url: str) -> str:
    body = conforms("generateMusic", client.post("/api/v1/generate", json={
        "customMode": True, "instrumental": False, "model": "V4_5", "callBackUrl": callback_url,
        "prompt": "[Verse] neon rain", "style": "synthwave", "title": "Neon Rain"}))
    assert body["code"] == 200
    return str(body["data"]["taskId"])


def test_generation_moves_through_its_stages(client: httpx.Client, mock, receiver: CallbackReceiver) -> None:  # type: ignore[no-untyped-def]
    """record-info moves PENDING -> TEXT_SUCCESS -> FIRST_SUCCESS -> SUCCESS and each stage is called back."""
    task_id = generate(client, receiver.endpoint("gen"))
    assert __import__("re").match(TASK_ID, task_id)
    seen = []
    for step in (0, 2, 2, 2):
        mock.advance(step)
        body = conforms("getMusicGenerationDetails", client.get("/api/v1/generate/record-info",
                                                               params={"taskId": task_id}))
        seen.append(body["data"]["status"])
    assert seen == ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
    stages = [d.json["data"]["callbackType"] for d in receiver.accepted()]
    assert stages == ["text", "first", "complete"]
    for delivery in receiver.accepted():
        callback_conforms("generateMusic", delivery.json)
        assert delivery.json["data"]["task_id"] == task_id
    final = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]
    complete = receiver.accepted()[-1].json["data"]["data"]
    assert [t["id"] for t in final["response"]["sunoData"]] == [t["id"] for t in complete]
    assert [t["audioUrl"] for t in final["response"]["sunoData"]] == [t["audio_url"] for t in complete]


@pytest.mark.parametrize("kind", ["separate_vocal", "split_stem"])
def test_vocal_removal_flow_delivers_the_same_urls_as_record_info(client: httpx.Client, mock,  # type: ignore[no-untyped-def]
                                                                  receiver: CallbackReceiver, kind: str) -> None:
    """A separation of a generated track calls back with the documented body, and record-info shows the same URLs."""
    task_id = generate(client, receiver.endpoint("gen"))
    mock.advance(10)
    tracks = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]["response"]
    audio_id = tracks["sunoData"][1]["id"]
    receiver.clear()
    started = conforms("separateVocals", client.post("/api/v1/vocal-removal/generate", json={
        "taskId": task_id, "audioId": audio_id, "type": kind, "callBackUrl": receiver.endpoint("sep")}))
    sep_id = started["data"]["taskId"]
    pending = conforms("getVocalSeparationDetails", client.get("/api/v1/vocal-removal/record-info",
                                                               params={"taskId": sep_id}))
    assert pending["data"]["successFlag"] == "PENDING" and pending["data"]["response"] is None
    assert receiver.deliveries == []
    mock.advance(30)
    [delivery] = receiver.accepted()
    callback_conforms("separateVocals", delivery.json)
    assert delivery.json["data"]["task_id"] == sep_id
    info = delivery.json["data"]["vocal_removal_info"]
    expected = {"instrumental_url", "vocal_url"} if kind == "separate_vocal" else {
        "vocal_url", "backing_vocals_url", "drums_url", "bass_url", "guitar_url", "keyboard_url", "percussion_url",
        "strings_url", "synth_url", "fx_url", "brass_url", "woodwinds_url"}
    assert {k for k, v in info.items() if v} == expected
    record = conforms("getVocalSeparationDetails", client.get("/api/v1/vocal-removal/record-info",
                                                              params={"taskId": sep_id}))["data"]
    assert record["successFlag"] == "SUCCESS"
    assert record["musicId"] == audio_id and record["musicIndex"] == 1
    assert record["response"]["vocalUrl"] == info["vocal_url"]
    if kind == "separate_vocal":
        assert record["response"]["instrumentalUrl"] == info["instrumental_url"]
    else:
        assert record["response"]["instrumentalUrl"] is None
        assert record["response"]["woodwindsUrl"] == info["woodwinds_url"]
    for url in (u for u in info.values() if u):
        assert client.head(url).status_code == 200


def test_seed_request_answers_in_the_documented_shape(client: httpx.Client, mock, receiver: CallbackReceiver) -> None:  # type: ignore[no-untyped-def]
    """The doc page's own example request, with a task and audio this mock made, answers code 200 with a taskId."""
    op = SPEC.by_id["separateVocals"]
    seed = dict(next(iter(op.body_examples.values())))
    task_id = generate(client, receiver.endpoint())
    mock.advance(10)
    seed["taskId"] = task_id
    seed["audioId"] = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()[
        "data"]["response"]["sunoData"][0]["id"]
    body = conforms("separateVocals", client.post("/api/v1/vocal-removal/generate", json=seed))
    assert body["code"] == 200 and body["msg"] == "success"
    assert set(body["data"]) == {"taskId"}


def test_unknown_pair_is_record_does_not_exist(client: httpx.Client, receiver: CallbackReceiver) -> None:
    """A taskId/audioId pair this mock did not produce answers body code 422 "Record does not exist"."""
    task_id = generate(client, receiver.endpoint())
    body = conforms("separateVocals", client.post("/api/v1/vocal-removal/generate", json={
        "taskId": task_id, "audioId": "e231b7a4-5c6d-4e8f-9a0b-1c2d8cadc7dc", "callBackUrl": receiver.endpoint()}))
    assert body == {"code": 422, "msg": "Record does not exist", "data": None}


@pytest.mark.parametrize("path", ["/api/v1/generate/record-info", "/api/v1/vocal-removal/record-info"])
def test_unknown_task_is_success_with_null_data(client: httpx.Client, path: str) -> None:
    """record-info of a task this mock never issued is code 200 with data null, as the provider answers."""
    body = conforms("getMusicGenerationDetails" if "generate" in path else "getVocalSeparationDetails",
                    client.get(path, params={"taskId": "0" * 32}))
    assert body == {"code": 200, "msg": "success", "data": None}


def test_missing_callback_url_is_422_please_enter(client: httpx.Client) -> None:
    """Generation without callBackUrl answers body code 422 "Please enter callBackUrl."."""
    body = conforms("generateMusic", client.post("/api/v1/generate", json={
        "customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a song"}))
    assert body == {"code": 422, "msg": "Please enter callBackUrl.", "data": None}


def test_invalid_request_is_body_code_400_naming_the_fields(client: httpx.Client) -> None:
    """Schema violations answer HTTP 200 with body code 400 naming each field and what was expected."""
    body = conforms("separateVocals", client.post("/api/v1/vocal-removal/generate", json={
        "taskId": "", "audioId": "a", "type": "karaoke", "callBackUrl": "https://x.example/cb"}))
    assert body["code"] == 400 and body["data"] is None
    assert "taskId" in body["msg"] and "type" in body["msg"] and "split_stem" in body["msg"]


def test_costs_and_balance(client: httpx.Client, mock, receiver: CallbackReceiver) -> None:  # type: ignore[no-untyped-def]
    """generate costs 10, separate_vocal 10, split_stem 50, and /generate/credit reports what is left."""
    mock.set_credits("test-key", 100, provider="apibox")
    task_id = generate(client, receiver.endpoint())
    mock.advance(10)
    audio_id = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()[
        "data"]["response"]["sunoData"][0]["id"]
    for kind in ("separate_vocal", "split_stem"):
        client.post("/api/v1/vocal-removal/generate", json={"taskId": task_id, "audioId": audio_id, "type": kind,
                                                            "callBackUrl": receiver.endpoint()})
    body = conforms("getRemainingCredits", client.get("/api/v1/generate/credit"))
    assert body["data"] == 100 - 10 - 10 - 50


def test_insufficient_credits_is_body_code_429(client: httpx.Client, mock, receiver: CallbackReceiver) -> None:  # type: ignore[no-untyped-def]
    """A call costing more than the balance answers HTTP 200, body code 429 with the provider's words."""
    mock.set_credits("test-key", 5, provider="apibox")
    body = conforms("generateMusic", client.post("/api/v1/generate", json={
        "customMode": False, "instrumental": False, "model": "V4_5", "prompt": "x",
        "callBackUrl": receiver.endpoint()}))
    assert body == {"code": 429, "msg": "The current credits are insufficient. Please top up.", "data": None}
    assert client.get("/api/v1/generate/credit").json()["data"] == 5


def test_auth_errors_are_body_code_401(mock) -> None:  # type: ignore[no-untyped-def]
    """A missing key answers HTTP 200 with body code 401, in api.box's transport."""
    response = httpx.get(f"{mock.url}/api/v1/generate/credit")
    assert response.status_code == 200
    assert response.json()["code"] == 401 and "Authorization" in response.json()["msg"]


def test_generation_tracks_are_downloadable_with_range(client: httpx.Client, mock, receiver: CallbackReceiver) -> None:  # type: ignore[no-untyped-def]
    """A finished track's audioUrl serves an MP3 with Content-Length, HEAD and byte ranges."""
    task_id = generate(client, receiver.endpoint())
    mock.advance(10)
    url = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()[
        "data"]["response"]["sunoData"][0]["audioUrl"]
    full = client.get(url)
    assert full.status_code == 200 and full.headers["content-type"] == "audio/mpeg"
    assert int(full.headers["content-length"]) == len(full.content)
    head = client.head(url)
    assert head.headers["content-length"] == full.headers["content-length"] and head.content == b""
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"

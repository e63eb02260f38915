"""One test per settled provider fact (provider-facts §5) and per reconciled spec field, through the real server.

Each asserts the mock's answer against the fact: the status, the envelope, the key set and the types. The
fidelity rule they hold the mock to: what any source shows the real API accepting is accepted; a value one
source frowns on gives the referee a note, never a violation.
"""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image

from contracts.referee import Referee
from mockserver.spec import PROVIDER_SPECS, load, spec_path

SPECS = {name: load(spec_path(name)) for name in PROVIDER_SPECS}
REFEREE = Referee(list(SPECS.values()))
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TASK_ID = re.compile(r"^[0-9a-f]{32}$")
APIBOX_JSON = "application/json;charset=UTF-8"
TASK_TYPES = ("create_music", "extend_music", "concat_music", "cover_music", "extend_upload_music",
              "cover_upload_music", "persona_music", "remaster", "add_instrumental", "add_vocals")
MODELS = ("V3_5", "V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5", "V6", "V6_WILD", "V6_MINI")
DEPRECATED = {"V3_5", "V4", "V4_5", "V4_5PLUS", "V5"}
SUNO_TRACK_KEYS = {"id", "audioUrl", "sourceAudioUrl", "streamAudioUrl", "sourceStreamAudioUrl", "imageUrl",
                   "sourceImageUrl", "prompt", "modelName", "title", "tags", "createTime", "duration"}
CALLBACK = "https://hooks.example.com/cb"


def documented(provider: str, operation_id: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's status is documented and its body validates against that status's schema; the body."""
    doc = SPECS[provider].by_id[operation_id].responses.get(response.status_code)
    assert doc is not None and doc.validator is not None, (response.status_code, response.text)
    errors = [e.message for e in doc.validator.iter_errors(response.json())]
    assert not errors, errors
    return dict(response.json())


def last_exchange(mock: Any) -> dict[str, Any]:
    return dict(mock.journal()[-1])


def upload(client: httpx.Client) -> str:
    return str(client.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/a.mp3"}).json()["clip_id"])


def generate(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"customMode": False, "instrumental": False, "model": "V4_5ALL", "callBackUrl": CALLBACK,
            "prompt": "a calm piano track", **fields}
    return client.post("/api/v1/generate", json=body)


# -- §5.1 MusicAPI sonic/create and ids --------------------------------------------------------------------------
def test_create_without_task_type_is_create_music(client: httpx.Client, mock: Any) -> None:
    """A create body with no task_type (as musicapi-sdk sends by default) answers exactly {message, task_id}."""
    response = client.post("/api/v1/sonic/create", json={"custom_mode": False, "gpt_description_prompt": "lofi"})
    body = documented("musicapi", "createMusic", response)
    assert response.status_code == 200 and set(body) == {"message", "task_id"}
    assert body["message"] == "success" and UUID.match(body["task_id"])
    assert REFEREE.review([last_exchange(mock)]) == []


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_vendor_task_type_is_accepted(client: httpx.Client, task_type: str) -> None:
    """Each of the ten task_type values of the vendor's description starts a task."""
    body: dict[str, Any] = {"task_type": task_type, "custom_mode": True, "prompt": "[Verse] x", "title": "T",
                            "tags": "pop", "continue_clip_id": upload(client), "persona_id": "persona_1"}
    response = client.post("/api/v1/sonic/create", json=body)
    assert response.status_code == 200, response.text
    assert set(documented("musicapi", "createMusic", response)) == {"message", "task_id"}


def test_create_refuses_a_task_type_no_source_lists(client: httpx.Client) -> None:
    """A task_type outside the vendor's ten is HTTP 400 naming the field."""
    response = client.post("/api/v1/sonic/create", json={"task_type": "make_it_pop"})
    assert response.status_code == 400 and "task_type" in response.json()["message"]


def test_create_accepts_every_field_the_vendor_documents(client: httpx.Client, mock: Any) -> None:
    """A body with all of the vendor's create fields is accepted, and the referee has nothing to say about it."""
    body = {"task_type": "cover_upload_music", "mv": "sonic-v5-5", "custom_mode": True, "lyrics": "[Verse] la",
            "title": "Cover", "tags": "indie", "negative_tags": "metal", "make_instrumental": False,
            "continue_clip_id": upload(client), "continue_at": 12.5, "style_weight": 0.4,
            "weirdness_constraint": 0.2, "vocal_gender": "f", "auto_lyrics": False, "audio_weight": 0.7,
            "variation_category": "subtle", "overpainting_start_s": 5, "overpainting_end_s": 25,
            "webhook_url": "https://hooks.example.com/songs", "webhook_secret": "s"}
    response = client.post("/api/v1/sonic/create", json=body)
    assert response.status_code == 200, response.text
    assert REFEREE.review([last_exchange(mock)]) == [] and REFEREE.notes([last_exchange(mock)]) == []


def test_lyrics_is_the_alias_of_prompt(client: httpx.Client, mock: Any) -> None:
    """The clips of a create sent with `lyrics` (and no `prompt`) carry those lyrics."""
    task_id = client.post("/api/v1/sonic/create", json={"custom_mode": True, "lyrics": "[Chorus] oh",
                                                        "title": "A", "tags": "b"}).json()["task_id"]
    mock.advance(60)
    clips = client.get(f"/api/v1/sonic/task/{task_id}").json()["data"]
    assert [clip["lyrics"] for clip in clips] == ["[Chorus] oh", "[Chorus] oh"]


@pytest.mark.parametrize(("field", "limit"), [("gpt_description_prompt", 400), ("title", 80), ("negative_tags", 200)])
def test_create_keeps_the_vendor_length_limits(client: httpx.Client, field: str, limit: int) -> None:
    """At the vendor's maxLength the field is accepted; one character more is HTTP 400 naming it."""
    assert client.post("/api/v1/sonic/create", json={field: "x" * limit}).status_code == 200
    over = client.post("/api/v1/sonic/create", json={field: "x" * (limit + 1)})
    assert over.status_code == 400 and field in over.json()["message"]


def test_create_documents_410_for_an_unsupported_task_type(client: httpx.Client) -> None:
    """410 is a documented outcome of create, in the Error shape."""
    response = client.post("/api/v1/sonic/create", json={"task_type": "remaster"}, headers={"Prefer": "code=410"})
    assert response.status_code == 410
    assert set(documented("musicapi", "createMusic", response)) == {"code", "message"}


@pytest.mark.parametrize("task_id", ["3f6c2a9e-8b1d-4e7a-9c5f-1a2b3c4d5e6f", "not-a-uuid", "12345", "a" * 64])
def test_an_unknown_task_of_any_shape_is_not_found(client: httpx.Client, mock: Any, task_id: str) -> None:
    """GET /sonic/task/{id} with an id the mock never gave answers 404 "task not found.", never a 400."""
    response = client.get(f"/api/v1/sonic/task/{task_id}")
    assert response.status_code == 404
    assert documented("musicapi", "getTask", response) == {"code": 404, "message": "task not found."}
    assert REFEREE.review([last_exchange(mock)]) == []


@pytest.mark.parametrize("path", ["/api/v1/sonic/stems/basic", "/api/v1/sonic/stems/full", "/api/v1/sonic/vox"])
@pytest.mark.parametrize("clip_id", ["5f1e0c3a-9b2d-4c8e-a7f6-1d2c3b4a5e6f", "clip_123", ""])
def test_an_unknown_clip_of_any_shape_is_not_found(client: httpx.Client, mock: Any, path: str, clip_id: str) -> None:
    """Stems and VOX on a clip the mock never made answer 404 "clip not found", whatever the id looks like."""
    response = client.post(path, json={"clip_id": clip_id})
    body = documented("musicapi", {"vox": "getVox", "basic": "stemsBasic", "full": "stemsFull"}[path.rsplit("/")[-1]],
                      response)
    assert response.status_code == 404 and body["code"] == 404 and body["message"].startswith("clip not found")
    assert "uuid" not in body["message"]
    assert REFEREE.review([last_exchange(mock)]) == []


def test_async_jobs_answer_exactly_message_and_task_id(client: httpx.Client) -> None:
    """Stems basic and full answer exactly {message, task_id}, as the vendor's typed client expects."""
    clip_id = upload(client)
    for path in ("/api/v1/sonic/stems/basic", "/api/v1/sonic/stems/full"):
        body = client.post(path, json={"clip_id": clip_id}).json()
        assert set(body) == {"message", "task_id"} and UUID.match(body["task_id"])


def test_vox_needs_only_clip_id_and_answers_a_filled_waveform(client: httpx.Client) -> None:
    """VOX with only clip_id is 200 with the six data keys (plus the vocal URL); wave_response is never empty."""
    clip_id = upload(client)
    response = client.post("/api/v1/sonic/vox", json={"clip_id": clip_id})
    body = documented("musicapi", "getVox", response)
    assert set(body) == {"code", "message", "data"}
    data = body["data"]
    assert set(data) == {"vox_audio_id", "status", "source_clip_id", "vocal_start_s", "vocal_end_s", "wave_response",
                         "vocal_audio_url"}
    (aggregate,) = data["wave_response"]["waveform_aggregates"]
    lows, highs = aggregate["data"]
    assert aggregate["mip_map_level"] == 11 and len(lows) == len(highs) == 60  # 30 s at one point per 0.5 s
    assert all(isinstance(v, int) and -32767 <= v <= 0 for v in lows)
    assert all(isinstance(v, int) and 0 <= v <= 32767 for v in highs)
    assert any(lows) and any(highs)


def test_vox_waveform_is_derived_from_the_clip(client: httpx.Client) -> None:
    """The same window gives the same waveform; overlapping windows agree; another clip differs."""
    clip_id, other = upload(client), upload(client)

    def wave(clip: str, start: float, end: float) -> list[list[int]]:
        body = client.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": start, "vocal_end_s": end})
        return list(body.json()["data"]["wave_response"]["waveform_aggregates"][0]["data"])

    first = wave(clip_id, 0, 20)
    assert wave(clip_id, 0, 20) == first
    later = wave(clip_id, 10, 30)
    assert [side[20:] for side in first] == [side[:20] for side in later]  # 10..20 s in both
    assert wave(other, 0, 20) != first


def test_musicapi_answers_keep_plain_application_json(client: httpx.Client) -> None:
    """MusicAPI answers (success and error) are labelled `application/json`, as before."""
    assert client.get("/api/v1/get-credits").headers["content-type"] == "application/json"
    assert client.get("/api/v1/sonic/task/x").headers["content-type"] == "application/json"


def test_clips_carry_a_served_jpeg_cover(client: httpx.Client, mock: Any) -> None:
    """A finished clip's image_url is a real JPEG the mock serves."""
    task_id = client.post("/api/v1/sonic/create", json={"gpt_description_prompt": "lofi"}).json()["task_id"]
    mock.advance(60)
    clip = client.get(f"/api/v1/sonic/task/{task_id}").json()["data"][0]
    cover = httpx.get(clip["image_url"])
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(cover.content)).size == (64, 64)


# -- §5.2 api.box models -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_every_documented_model_is_accepted(client: httpx.Client, mock: Any, model: str) -> None:
    """Each model of every doc generation starts a generation; deprecated ones get a note, none a violation."""
    response = generate(client, model=model)
    body = documented("apibox", "generateMusic", response)
    assert body["code"] == 200 and TASK_ID.match(body["data"]["taskId"])
    exchange = last_exchange(mock)
    assert REFEREE.review([exchange]) == []
    notes = REFEREE.notes([exchange])
    assert [n.pointer for n in notes] == (["/body/model"] if model in DEPRECATED else [])
    assert all("deprecated" in n.detail and model in n.detail for n in notes)


def test_an_unknown_model_is_still_refused(client: httpx.Client) -> None:
    """A model no source lists is body code 400 naming the field."""
    body = generate(client, model="V7").json()
    assert body["code"] == 400 and "model" in body["msg"] and body["data"] is None


@pytest.mark.parametrize(("fields", "limit_field", "limit"), [
    ({"customMode": False}, "prompt", 500),
    ({"customMode": True, "model": "V4", "style": "s", "title": "t"}, "prompt", 3000),
    ({"customMode": True, "model": "V4_5ALL", "style": "s", "title": "t"}, "prompt", 5000),
    ({"customMode": True, "model": "V6", "style": "s", "title": "t"}, "prompt", 5000),
    ({"customMode": True, "model": "V3_5", "prompt": "p", "title": "t"}, "style", 200),
    ({"customMode": True, "model": "V5_5", "prompt": "p", "title": "t"}, "style", 1000),
    ({"customMode": True, "model": "V6_MINI", "prompt": "p", "style": "s"}, "title", 80),
])
def test_per_model_length_limits(client: httpx.Client, fields: dict[str, Any], limit_field: str, limit: int) -> None:
    """At the documented limit of its model the field is accepted; one more character is body code 413."""
    assert generate(client, **fields, **{limit_field: "x" * limit}).json()["code"] == 200
    over = generate(client, **fields, **{limit_field: "x" * (limit + 1)}).json()
    assert over["code"] == 413 and limit_field in over["msg"] and str(limit) in over["msg"]


def test_custom_mode_accepts_empty_style_and_title(client: httpx.Client) -> None:
    """suno-easy's default custom-mode call (style and title empty strings) is accepted."""
    assert generate(client, customMode=True, prompt="[Verse] rain", style="", title="").json()["code"] == 200


def test_persona_model_is_a_documented_field(client: httpx.Client, mock: Any) -> None:
    """personaModel is accepted and not flagged as unknown; a value outside its enum is code 400."""
    fields = {"customMode": True, "style": "s", "title": "t", "personaId": "p1"}
    assert generate(client, **fields, personaModel="voice_persona").json()["code"] == 200
    assert REFEREE.review([last_exchange(mock)]) == []
    assert generate(client, **fields, personaModel="robot").json()["code"] == 400


# -- §5.3 api.box record-info sunoData ---------------------------------------------------------------------------
def test_record_info_tracks_carry_the_real_field_set(client: httpx.Client, mock: Any) -> None:
    """Finished tracks have exactly the 13 fields of a real answer: uuid id, epoch-ms createTime, number duration."""
    task_id = generate(client).json()["data"]["taskId"]
    mock.advance(60)
    body = documented("apibox", "getMusicGenerationDetails", client.get("/api/v1/generate/record-info",
                                                                         params={"taskId": task_id}))
    tracks = body["data"]["response"]["sunoData"]
    assert len(tracks) == 2
    for track in tracks:
        assert set(track) == SUNO_TRACK_KEYS
        assert UUID.match(track["id"])
        assert isinstance(track["createTime"], int) and track["createTime"] > 1_000_000_000_000
        assert isinstance(track["duration"], (int, float)) and not isinstance(track["duration"], bool)
        for key in SUNO_TRACK_KEYS - {"id", "prompt", "modelName", "title", "tags", "createTime", "duration"}:
            assert isinstance(track[key], str) and track[key].startswith(mock.url + "/files/"), (key, track[key])


def test_record_info_covers_are_served_jpegs(client: httpx.Client, mock: Any) -> None:
    """imageUrl and sourceImageUrl download as decodable JPEGs; the two tracks have different covers."""
    task_id = generate(client).json()["data"]["taskId"]
    mock.advance(60)
    tracks = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]["response"][
        "sunoData"]
    covers = []
    for track in tracks:
        for key in ("imageUrl", "sourceImageUrl"):
            image = httpx.get(track[key])
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
            assert int(image.headers["content-length"]) == len(image.content)
            decoded = Image.open(io.BytesIO(image.content))
            assert decoded.format == "JPEG" and decoded.size == (64, 64)
            covers.append(image.content)
    assert covers[0] == covers[1] and covers[0] != covers[2]
    assert httpx.head(tracks[0]["imageUrl"]).headers["content-length"] == str(len(covers[0]))


def test_covers_are_empty_until_the_track_is_ready(client: httpx.Client, mock: Any) -> None:
    """At TEXT_SUCCESS the tracks have a stream but no audio or cover yet, as the documented example shows."""
    task_id = generate(client).json()["data"]["taskId"]
    mock.advance(2)
    data = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]
    assert data["status"] == "TEXT_SUCCESS"
    for track in data["response"]["sunoData"]:
        assert set(track) == SUNO_TRACK_KEYS
        assert (track["audioUrl"], track["imageUrl"], track["sourceImageUrl"], track["duration"]) == ("", "", "", None)
        assert track["streamAudioUrl"] and track["sourceStreamAudioUrl"]


def test_generation_callbacks_carry_the_same_urls(client: httpx.Client, mock: Any, receiver: Any) -> None:
    """The `complete` callback's tracks carry the snake_case twins of record-info's URLs, covers included."""
    task_id = generate(client, callBackUrl=receiver.endpoint("gen")).json()["data"]["taskId"]
    mock.advance(60)
    complete = next(d.json for d in receiver.accepted() if d.json["data"]["callbackType"] == "complete")
    tracks = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]["response"][
        "sunoData"]
    for sent, polled in zip(complete["data"]["data"], tracks, strict=True):
        assert (sent["image_url"], sent["source_image_url"], sent["source_audio_url"]) == (
            polled["imageUrl"], polled["sourceImageUrl"], polled["sourceAudioUrl"])


# -- §5.4 transport ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("GET", "/api/v1/generate/credit", {}),
    ("GET", "/api/v1/generate/record-info", {"params": {"taskId": "0" * 32}}),
    ("GET", "/api/v1/vocal-removal/record-info", {"params": {"taskId": "0" * 32}}),
    ("POST", "/api/v1/vocal-removal/generate", {"json": {"taskId": "x", "audioId": "y", "callBackUrl": CALLBACK}}),
    ("POST", "/api/v1/generate", {"json": {}}),
    ("GET", "/api/v1/generate/credit", {"headers": {"Prefer": "code=455"}}),
    ("GET", "/api/v1/generate/nothing-here", {}),
])
def test_apibox_answers_are_json_with_utf8_charset(client: httpx.Client, method: str, path: str,
                                                   kwargs: dict[str, Any]) -> None:
    """Every api.box answer, success or error, is labelled `application/json;charset=UTF-8`."""
    response = client.request(method, path, **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"] == APIBOX_JSON
    assert set(response.json()) == {"code", "msg", "data"}


def test_apibox_server_error_has_the_business_error_shape(client: httpx.Client) -> None:
    """A body-500 answer is HTTP 200 `{code: 500, msg, data: null}`."""
    body = client.post("/api/v1/vocal-removal/generate", json={"taskId": "x", "audioId": "y", "callBackUrl": CALLBACK},
                       headers={"Prefer": "code=500"}).json()
    assert body["code"] == 500 and isinstance(body["msg"], str) and body["data"] is None


def test_unknown_records_read_as_recorded(client: httpx.Client) -> None:
    """Unknown taskId/audioId on vocal removal is code 422 "Record does not exist"; unknown record-info is data null."""
    body = client.post("/api/v1/vocal-removal/generate",
                       json={"taskId": "0" * 32, "audioId": "nope", "callBackUrl": CALLBACK}).json()
    assert body == {"code": 422, "msg": "Record does not exist", "data": None}
    assert client.get("/api/v1/vocal-removal/record-info", params={"taskId": "nope"}).json() == {
        "code": 200, "msg": "success", "data": None}


def test_a_failed_job_answer_of_the_vendor_shape_is_documented() -> None:
    """HTTP 200 `{type: failed, error}` (what musicapi-sdk reads as a failed job) validates as a getTask answer."""
    validator = SPECS["musicapi"].by_id["getTask"].responses[200].validator
    assert validator.is_valid({"type": "failed", "error": "Task failed due to timeout."})
    assert not validator.is_valid({"type": "exploded"})


def test_separation_by_audio_url_is_accepted(client: httpx.Client, mock: Any) -> None:
    """A vocal-removal call naming a file by `audioUrl` (no taskId/audioId) starts a task whose stems are served."""
    body = client.post("/api/v1/vocal-removal/generate",
                       json={"audioUrl": "https://files.example.com/a.mp3", "callBackUrl": CALLBACK}).json()
    assert body["code"] == 200 and TASK_ID.match(body["data"]["taskId"])
    assert REFEREE.review([last_exchange(mock)]) == []
    mock.advance(60)
    data = documented("apibox", "getVocalSeparationDetails", client.get(
        "/api/v1/vocal-removal/record-info", params={"taskId": body["data"]["taskId"]}))["data"]
    assert data["successFlag"] == "SUCCESS"
    for key in ("vocalUrl", "instrumentalUrl"):
        assert httpx.get(data["response"][key]).headers["content-type"] == "audio/mpeg"
    neither = client.post("/api/v1/vocal-removal/generate", json={"callBackUrl": CALLBACK}).json()
    assert neither["code"] == 400 and "taskId" in neither["msg"] and "audioId" in neither["msg"]


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_noted_value_is_accepted_and_sourced() -> None:
    """A value a spec notes (deprecated somewhere) is in its enum, so it is accepted, and the note has a source."""
    noted = [node for spec in SPECS.values() for node in _walk(spec.document) if "x-mock-notes" in node]
    assert noted
    for node in noted:
        assert set(node["x-mock-notes"]) <= set(node["enum"]) and node.get("x-mock-source")


@pytest.mark.parametrize(("provider", "schema", "field"), [
    ("musicapi", "CreateMusicRequest", None), ("musicapi", "CreateMusicRequest", "task_type"),
    ("musicapi", "CreateMusicRequest", "continue_clip_id"), ("musicapi", "VoxRequest", "clip_id"),
    ("musicapi", "StemsRequest", "clip_id"), ("musicapi", "VoxResult", "wave_response"),
    ("musicapi", "TaskFailed", None), ("apibox", "GenerateMusicRequest", "model"),
    ("apibox", "GenerateMusicRequest", "personaModel"), ("apibox", "SeparateVocalsRequest", "audioUrl"),
    ("apibox", "SunoTrack", None), ("apibox", "GenerationCallbackTrack", None),
])
def test_each_reconciled_field_names_its_source(provider: str, schema: str, field: str | None) -> None:
    """Every field the reconciliation changed carries `x-mock-source` in the spec."""
    node = SPECS[provider].document["components"]["schemas"][schema]
    node = node["properties"][field] if field else node
    assert str(node.get("x-mock-source", "")).strip()

"""MusicAPI end to end through the real server: upload/create -> poll -> VOX, stems, credits, errors."""

from __future__ import annotations

import httpx
import pytest

from mockserver.spec import load, spec_path

SPEC = load(spec_path("musicapi"))


def conforms(operation_id: str, response: httpx.Response) -> None:
    """The answer's status is documented for the operation and its body validates against that status's schema."""
    op = SPEC.by_id[operation_id]
    doc = op.responses.get(response.status_code)
    assert doc is not None, f"{operation_id} answered undocumented status {response.status_code}: {response.text}"
    assert doc.validator is not None
    errors = [e.message for e in doc.validator.iter_errors(response.json())]
    assert not errors, f"{operation_id} {response.status_code} body violates the spec: {errors}"


def upload(client: httpx.Client, url: str = "https://files.example.com/night-drive.mp3") -> str:
    response = client.post("/api/v1/sonic/upload", json={"url": url})
    conforms("uploadMusic", response)
    return str(response.json()["clip_id"])


def test_upload_then_vox_returns_the_requested_window(client: httpx.Client) -> None:
    """Extracts vocals from an uploaded clip and answers with the window and a downloadable file."""
    clip_id = upload(client)
    response = client.post("/api/v1/sonic/vox", json={"clip_id": clip_id, "vocal_start_s": 12.5, "vocal_end_s": 40})
    conforms("getVox", response)
    data = response.json()["data"]
    assert data["source_clip_id"] == clip_id
    assert (data["vocal_start_s"], data["vocal_end_s"]) == (12.5, 40)
    assert data["status"] == "complete"
    audio = client.get(data["vocal_audio_url"])
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/mpeg"


def test_seed_vox_example_answers_in_the_documented_shape(client: httpx.Client) -> None:
    """The doc page's own request, after its clip exists, answers like the doc page's response."""
    op = SPEC.by_id["getVox"]
    seed_request = dict(next(iter(op.body_examples.values())))
    seed_request["clip_id"] = upload(client)
    response = client.post("/api/v1/sonic/vox", json=seed_request)
    conforms("getVox", response)
    seed_response = op.responses[200].examples
    expected_keys = set(next(iter(seed_response.values()))["data"])
    assert expected_keys <= set(response.json()["data"])
    assert response.json()["data"]["vocal_end_s"] == seed_request["vocal_end_s"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"vocal_start_s": 5}, "vocal_end_s"),
        ({"vocal_end_s": 5}, "vocal_start_s"),
        ({"vocal_start_s": 10, "vocal_end_s": 10}, "vocal_end_s"),
        ({"vocal_start_s": 10, "vocal_end_s": 40.5}, "vocal_end_s"),
        ({"vocal_start_s": -1, "vocal_end_s": 5}, "vocal_start_s"),
    ],
)
def test_vox_range_rule_names_the_bad_bound(client: httpx.Client, body: dict[str, float], field: str) -> None:
    """Answers 400 naming the bound when the range is half-given, empty, negative or over 30 s."""
    clip_id = upload(client)
    response = client.post("/api/v1/sonic/vox", json={"clip_id": clip_id, **body})
    conforms("getVox", response)
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_vox_without_a_range_uses_the_first_30_seconds(client: httpx.Client) -> None:
    """Picks a window no longer than 30 s when no bounds are sent."""
    response = client.post("/api/v1/sonic/vox", json={"clip_id": upload(client)})
    data = response.json()["data"]
    assert data["vocal_start_s"] == 0 and 0 < data["vocal_end_s"] <= 30


def test_vox_on_a_clip_this_mock_did_not_create_is_refused(client: httpx.Client) -> None:
    """Refuses a well-formed clip id that no upload or create produced."""
    response = client.post("/api/v1/sonic/vox", json={"clip_id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5"})
    conforms("getVox", response)
    assert response.status_code == 404
    assert "26c9c592-0566-46cf-bb71-91ac1deaa7b5" in response.json()["message"]


def test_clips_belong_to_the_key_that_made_them(client: httpx.Client, mock: object) -> None:
    """Refuses VOX on another API key's clip."""
    clip_id = upload(client)
    other = client.post("/api/v1/sonic/vox", json={"clip_id": clip_id}, headers={"Authorization": "Bearer other"})
    assert other.status_code == 404


def test_create_polls_not_ready_until_done_then_clips_feed_vox(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """A created task answers 202 not_ready until its duration passes, then 200 with two usable clips."""
    created = client.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": True,
                                                        "mv": "sonic-v5", "title": "Night Drive",
                                                        "tags": "synthwave", "prompt": "[Verse] city lights"})
    conforms("createMusic", created)
    assert set(created.json()) == {"message", "task_id"}
    task_id = created.json()["task_id"]
    pending = client.get(f"/api/v1/sonic/task/{task_id}")
    conforms("getTask", pending)
    assert (pending.status_code, pending.json()) == (202, {"type": "not_ready"})
    mock.advance(60)
    done = client.get(f"/api/v1/sonic/task/{task_id}")
    conforms("getTask", done)
    clips = done.json()["data"]
    assert len(clips) == 2 and {c["state"] for c in clips} == {"succeeded"}
    assert clips[0]["title"] == "Night Drive"
    assert client.get(clips[0]["audio_url"]).status_code == 200
    vox = client.post("/api/v1/sonic/vox", json={"clip_id": clips[1]["clip_id"], "vocal_start_s": 0,
                                                 "vocal_end_s": 30})
    assert vox.status_code == 200


@pytest.mark.parametrize(("path", "count"), [("basic", 2), ("full", 12)])
def test_stems_task_returns_one_clip_per_stem(client: httpx.Client, mock, path: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """Stems basic gives 2 stem clips and full gives 12, each as long as the source clip."""
    clip_id = upload(client)
    created = client.post(f"/api/v1/sonic/stems/{path}", json={"clip_id": clip_id})
    conforms("stemsBasic" if path == "basic" else "stemsFull", created)
    task_id = created.json()["task_id"]
    assert client.get(f"/api/v1/sonic/task/{task_id}").status_code == 202
    mock.advance(60)
    done = client.get(f"/api/v1/sonic/task/{task_id}")
    conforms("getTask", done)
    stems = done.json()["data"]
    assert len(stems) == count
    assert len({s["clip_id"] for s in stems}) == count
    assert stems[0]["stem_type"] == "Vocals"
    assert len({s["duration"] for s in stems}) == 1


def test_unknown_task_is_404(client: httpx.Client) -> None:
    """Answers HTTP 404 for a task id this mock never issued."""
    response = client.get("/api/v1/sonic/task/6b1f7c8e-1d2a-4b3c-9d4e-5f6a7b8c9d0e")
    conforms("getTask", response)
    assert response.status_code == 404


def test_each_call_is_charged_its_documented_cost(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """Upload costs 2, VOX 1, stems basic 15, full 75, create 15, and get-credits reports the live balance."""
    mock.set_credits("test-key", 200, extra_credits=5)
    clip_id = upload(client)
    client.post("/api/v1/sonic/vox", json={"clip_id": clip_id})
    client.post("/api/v1/sonic/stems/basic", json={"clip_id": clip_id})
    client.post("/api/v1/sonic/stems/full", json={"clip_id": clip_id})
    client.post("/api/v1/sonic/create", json={"task_type": "create_music", "mv": "sonic-v5", "prompt": "x"})
    balance = client.get("/api/v1/get-credits")
    conforms("getCredits", balance)
    assert balance.json() == {"credits": 200 + 5 - (2 + 1 + 15 + 75 + 15), "extra_credits": 0}


def test_failed_calls_are_not_charged(client: httpx.Client) -> None:
    """A refused VOX leaves the balance as it was."""
    before = client.get("/api/v1/get-credits").json()
    client.post("/api/v1/sonic/vox", json={"clip_id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5"})
    assert client.get("/api/v1/get-credits").json() == before


def test_insufficient_credits_is_403_with_the_documented_message(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """Refuses a call that costs more than the balance with HTTP 403 and charges nothing."""
    clip_id = upload(client)
    mock.set_credits("test-key", 0)
    response = client.post("/api/v1/sonic/vox", json={"clip_id": clip_id})
    conforms("getVox", response)
    assert response.status_code == 403
    assert response.json()["message"] == SPEC.provider.messages[403]


def test_security_is_checked_before_the_body(mock) -> None:  # type: ignore[no-untyped-def]
    """Answers 401 for a missing or malformed key even when the body is also invalid."""
    missing = httpx.post(f"{mock.url}/api/v1/sonic/vox", json={"clip_id": 1})
    assert (missing.status_code, missing.json()["message"]) == (401, "Authorization header is missing.")
    malformed = httpx.post(f"{mock.url}/api/v1/sonic/vox", json={}, headers={"Authorization": "Token abc"})
    assert (malformed.status_code, malformed.json()["message"]) == (401, "Invalid authorization format.")


def test_validation_names_every_bad_field(client: httpx.Client) -> None:
    """Lists each violation with the field and what was expected."""
    response = client.post("/api/v1/sonic/vox", json={"clip_id": 7, "vocal_start_s": "zero", "vocal_end_s": 3})
    conforms("getVox", response)
    message = response.json()["message"]
    assert "clip_id" in message and "string" in message
    assert "vocal_start_s" in message and "number" in message


def test_unknown_path_and_wrong_method(client: httpx.Client) -> None:
    """Answers 404 for a path no operation has, and 405 with Allow for a wrong method."""
    assert client.get("/api/v1/sonic/nothing-here").status_code == 404
    wrong = client.get("/api/v1/sonic/vox")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"

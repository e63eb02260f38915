"""Task outcomes, named examples with known ids, and answers lost after the call took effect, on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import API_KEY, MockHandle

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver, parse_receiver
from mockserver import MockConfig, create_app
from mockserver.config import CallbackConfig

GENERATE = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a calm song"}
CREATE = {"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "calm"}


def generate(client: httpx.Client, callback_url: str = "https://example.com/cb") -> str:
    body = client.post("/api/v1/generate", json={**GENERATE, "callBackUrl": callback_url}).json()
    assert body["code"] == 200, body
    return str(body["data"]["taskId"])


def record(client: httpx.Client, task_id: str, path: str = "/api/v1/generate/record-info") -> Any:
    return client.get(path, params={"taskId": task_id}).json()["data"]


def fault(mock: MockHandle, **body: Any) -> httpx.Response:
    return mock.control.post("/__mock/faults", json=body)


@pytest.mark.parametrize(("outcome", "status", "at", "code"), [
    ("create_task_failed", "CREATE_TASK_FAILED", 0, 400),
    ("sensitive_word_error", "SENSITIVE_WORD_ERROR", 2, 400),
    ("generate_audio_failed", "GENERATE_AUDIO_FAILED", 6, 500),
])
def test_generation_ends_in_the_failed_status_asked_for(mock: MockHandle, client: httpx.Client, outcome: str,
                                                        status: str, at: float, code: int) -> None:
    """A task_outcome fault makes the generation show that status from its documented stage, with its error."""
    assert fault(mock, operation="generateMusic", task_outcome=outcome).status_code == 201
    task = generate(client)
    if at:
        assert record(client, task)["status"] == "PENDING"
        mock.advance(at)
    data = record(client, task)
    assert (data["status"], data["errorCode"]) == (status, code)
    assert data["errorMessage"] and (data["response"] is None or status == "GENERATE_AUDIO_FAILED")
    mock.advance(10)
    assert record(client, task)["status"] == status  # terminal: it stays


def test_failed_generation_calls_back_its_error(mock: MockHandle, client: httpx.Client,
                                                receiver: CallbackReceiver) -> None:
    """The failure reaches the callback URL as the documented `error` stage, with the status's message."""
    fault(mock, operation="generateMusic", task_outcome="sensitive_word_error")
    task = generate(client, receiver.endpoint())
    mock.advance(10)
    payloads = [d.json for d in receiver.deliveries]
    assert [(p["code"], p["data"]["callbackType"], p["data"]["task_id"]) for p in payloads] == [(400, "error", task)]
    assert payloads[0]["msg"] == "The prompt contains sensitive words."


def test_callback_exception_outcome_sends_no_callback(mock: MockHandle, client: httpx.Client,
                                                      receiver: CallbackReceiver) -> None:
    """callback_exception: the generation succeeds, its callbacks never arrive, record-info says so."""
    fault(mock, operation="generateMusic", task_outcome="callback_exception")
    task = generate(client, receiver.endpoint())
    mock.advance(10)
    data = record(client, task)
    assert data["status"] == "CALLBACK_EXCEPTION" and len(data["response"]["sunoData"]) == 2
    assert receiver.deliveries == []


def test_separation_outcomes(mock: MockHandle, client: httpx.Client) -> None:
    """Separation tasks end in CREATE_TASK_FAILED at once, or GENERATE_AUDIO_FAILED when done."""
    task = generate(client)
    mock.advance(10)
    audio = record(client, task)["response"]["sunoData"][0]["id"]
    ids = {}
    for outcome in ("create_task_failed", "generate_audio_failed"):
        fault(mock, operation="separateVocals", task_outcome=outcome)
        body = client.post("/api/v1/vocal-removal/generate",
                           json={"taskId": task, "audioId": audio, "callBackUrl": "https://example.com/cb"}).json()
        ids[outcome] = body["data"]["taskId"]
    path = "/api/v1/vocal-removal/record-info"
    assert record(client, ids["create_task_failed"], path)["successFlag"] == "CREATE_TASK_FAILED"
    assert record(client, ids["generate_audio_failed"], path)["successFlag"] == "PENDING"
    mock.advance(10)
    failed = record(client, ids["generate_audio_failed"], path)
    assert (failed["successFlag"], failed["errorCode"], failed["response"]) == ("GENERATE_AUDIO_FAILED", 500, None)


def test_musicapi_task_outcome_failed(mock: MockHandle, client: httpx.Client) -> None:
    """MusicAPI `failed`: the task's clips end failed, with an error message, through a script step."""
    mock.control.put("/__mock/script", json={"steps": [{"task_outcome": "failed"}]}).raise_for_status()
    task = client.post("/api/v1/sonic/create", json=CREATE).json()["task_id"]
    mock.advance(60)
    clips = client.get(f"/api/v1/sonic/task/{task}").json()["data"]
    assert [c["state"] for c in clips] == ["failed", "failed"] and all(c["error_message"] for c in clips)


def test_task_outcome_fault_is_refused_where_it_does_not_apply(mock: MockHandle) -> None:
    """An outcome the operation's task cannot end in is refused with the list of those it can."""
    refused = fault(mock, operation="generateMusic", task_outcome="failed")
    assert refused.status_code == 422
    assert "its task outcomes: create_task_failed, generate_audio_failed" in refused.json()["message"]
    assert fault(mock, operation="getCredits", task_outcome="failed").status_code == 422


def test_example_fault_hands_out_an_id_the_mock_knows(mock: MockHandle, client: httpx.Client) -> None:
    """`example: success` on generate answers the example's shape with a task that exists, and charges it."""
    before = client.get("/api/v1/generate/credit").json()["data"]
    assert fault(mock, operation="generateMusic", example="success").status_code == 201
    body = client.post("/api/v1/generate", json={**GENERATE, "callBackUrl": "https://example.com/cb"}).json()
    task = body["data"]["taskId"]
    assert body["code"] == 200 and task != "5c79a1e3d0b24f6e8a9c7d1b3e5fbe8e"
    assert record(client, task)["status"] == "PENDING"
    assert client.get("/api/v1/generate/credit").json()["data"] == before - 10
    assert mock.journal()[1]["outcome"]["kind"] == "example"


def test_example_fault_with_a_typo_is_refused(mock: MockHandle) -> None:
    """An unknown example name is refused with the operation's examples and the nearest one."""
    refused = fault(mock, operation="generateMusic", example="succes")
    assert refused.status_code == 422 and "Did you mean 'success'?" in refused.json()["message"]


def test_poll_example_puts_the_task_in_that_state(mock: MockHandle, client: httpx.Client) -> None:
    """A record-info example showing a failure answers with the asked task's id, which then stays in that state."""
    task = generate(client)
    mock.control.put("/__mock/script", json={"steps": [{"example": "sensitive_word_error"}]}).raise_for_status()
    shown = record(client, task)
    assert (shown["taskId"], shown["status"]) == (task, "SENSITIVE_WORD_ERROR")
    later = record(client, task)
    assert (later["status"], later["errorCode"]) == ("SENSITIVE_WORD_ERROR", 400)


def test_connection_reset_after_charges_and_creates(mock: MockHandle, client: httpx.Client) -> None:
    """The answer is lost after the call took effect: the task exists and its credits are gone."""
    before = client.get("/api/v1/generate/credit").json()["data"]
    fault(mock, operation="generateMusic", wire_fault="connection_reset_after")
    with pytest.raises(httpx.TransportError):
        client.post("/api/v1/generate", json={**GENERATE, "callBackUrl": "https://example.com/cb"})
    assert client.get("/api/v1/generate/credit").json()["data"] == before - 10
    lost = next(e for e in mock.journal() if e["operation"] == "generateMusic")
    assert lost["outcome"]["wire_fault"] == "connection_reset_after" and lost["outcome"]["cost"] == 10
    assert record(client, lost["response"]["body"]["data"]["taskId"])["status"] == "PENDING"


@pytest.fixture(scope="module")
def hanging() -> Iterator[str]:
    with LiveServer(create_app(MockConfig(clock="manual", hang_seconds=0.3))) as server:
        yield server.url


def test_timeout_after_holds_then_closes_unanswered(hanging: str) -> None:
    """timeout_after: no byte comes for hang_seconds, then the connection closes; the call was charged."""
    with httpx.Client(base_url=hanging, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5) as client:
        client.post("/__mock/reset")
        client.put("/__mock/script", json={"steps": [{"wire_fault": "timeout_after"}]})
        with pytest.raises(httpx.TransportError):
            client.post("/api/v1/sonic/create", json=CREATE)
        assert client.get("/api/v1/get-credits").json()["credits"] == 1000 - 15
        held = [e for e in client.get("/__mock/journal").json()["exchanges"] if e["operation"] == "createMusic"]
        assert held[0]["outcome"]["wire_fault"] == "timeout_after"


def test_receiver_behaviours() -> None:
    """refuse*N answers 503 and timeout*N answers late, for the next N deliveries only."""
    assert parse_receiver("refuse*3") == ("refuse", 3) and parse_receiver("timeout") == ("timeout", 1)
    with pytest.raises(ValueError, match="refuse\\*N or timeout\\*N"):
        parse_receiver("refuse*0")
    config = MockConfig(clock="manual", callbacks=CallbackConfig(timeout=0.3, retries=(1.0, 1.0)))
    with LiveServer(create_app(config)) as server, CallbackReceiver() as receiver, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as client:
        receiver.behave("refuse*1", 0.3)
        receiver.behave("timeout*1", 0.3)
        client.post("/api/v1/sonic/create", json={**CREATE, "webhook_url": receiver.endpoint()})
        for _ in range(3):
            client.post("/__mock/clock/advance", json={"seconds": 30})
        delivery = client.get("/__mock/callbacks").json()["callbacks"][0]
        # the hang is taken first, then the refusal, then the delivery goes through
        assert [a["status"] for a in delivery["attempts"]] == [None, 503, 200]
        assert delivery["state"] == "delivered" and len(receiver.accepted()) == 1

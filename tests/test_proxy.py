"""`stemmock proxy` against a fake upstream on loopback: forwarding, drift by kind, the callback relay,
recordings that become the mock's examples, and the command's report and exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from contracts.live import LiveServer
from contracts.proxy.server import RELAY_PATH, ProxyConfig, create_proxy_app
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app
from mockserver.cli import main
from tests.conftest import free_port
from tests.fake_upstream import DEFAULT_SECRET, SWITCHES, FakeUpstream

KEY = "real-key-never-committed"
AUTH = {"Authorization": f"Bearer {KEY}"}
VOX = {"clip_id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5", "vocal_start_s": 0, "vocal_end_s": 30}
TASK = "2fac7c3e9b1d4a5f8e6c0b7a1d3f9f72"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client_receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


@pytest.fixture
def proxy(upstream: FakeUpstream, client_receiver: CallbackReceiver, tmp_path: Path) -> Iterator[Any]:
    upstream.reset()
    client_receiver.clear()
    app = create_proxy_app(ProxyConfig({"musicapi": upstream.url, "apibox": upstream.url},
                                       record=str(tmp_path / "rec.jsonl"), relay_callbacks=True))
    with LiveServer(app) as server:
        app.state.proxy.config.public_url = server.url
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10, trust_env=False) as http:
            http.recording = tmp_path / "rec.jsonl"  # type: ignore[attr-defined]
            yield http


def separation(receiver: CallbackReceiver) -> dict[str, Any]:
    return {"taskId": TASK, "audioId": "e231b7a4-5c6d-4e8f-9a0b-1c2d8cadc7dc", "type": "separate_vocal",
            "callBackUrl": receiver.endpoint("sep")}


def every_call(http: httpx.Client, receiver: CallbackReceiver) -> list[httpx.Response]:
    """One valid call of each operation the fake upstream answers."""
    return [http.post("/api/v1/sonic/vox", json=VOX),
            http.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False,
                                                    "mv": "sonic-v5", "gpt_description_prompt": "a night drive"}),
            http.get("/api/v1/get-credits"),
            http.post("/api/v1/vocal-removal/generate", json=separation(receiver)),
            http.get("/api/v1/vocal-removal/record-info", params={"taskId": TASK}),
            http.get("/api/v1/generate/credit")]


def drift_report(http: httpx.Client) -> dict[str, Any]:
    answer = http.get("/__mock/drift")
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def test_a_faithful_upstream_gives_no_drift_and_answers_pass_unchanged(proxy: httpx.Client,
                                                                      upstream: FakeUpstream,
                                                                      client_receiver: CallbackReceiver) -> None:
    """Every call is forwarded with its key and body, answered byte for byte as upstream answered, with no drift."""
    answers = every_call(proxy, client_receiver)
    assert [a.status_code for a in answers] == [200] * 6
    assert answers[0].content == json.dumps(upstream.ops["getVox"].examples()["doc_example"][1]).encode()
    assert answers[3].headers["content-type"] == "application/json;charset=UTF-8"
    assert [r["operation"] for r in upstream.received] == ["getVox", "createMusic", "getCredits", "separateVocals",
                                                           "getVocalSeparationDetails", "getRemainingCredits"]
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in upstream.received)
    assert json.loads(upstream.received[0]["raw"]) == VOX
    assert upstream.received[4]["query"] == {"taskId": TASK}
    report = drift_report(proxy)
    assert report["drift_count"] == 0, report["drifts"]
    assert report["client_violations"] == []
    assert report["operations"]["POST /api/v1/sonic/vox"]["calls"] == 1
    assert len(report["operations"]) == 6


@pytest.mark.parametrize("switch", sorted(set(SWITCHES) - {"callback_extra_field"}))
def test_each_switch_gives_exactly_its_drift(proxy: httpx.Client, upstream: FakeUpstream,
                                            client_receiver: CallbackReceiver, switch: str) -> None:
    """A drifting answer is reported with its kind and pointer, and nothing else is."""
    expected = {
        "extra_key": [("undocumented_key", "/data/surprise")],
        "renamed_field": [("missing_required", "/data/vox_audio_id"), ("undocumented_key", "/data/voxAudioId")],
        "new_body_code": [("undocumented_code", "/code")],
        "number_as_string": [("type_mismatch", "/credits")],
        "new_enum_value": [("enum_value", "/data/successFlag")],
        "missing_required": [("missing_required", "/data/source_clip_id")],
        "content_type": [("content_type", "/header/Content-Type")],
        "id_shape": [("id_shape", "/data/taskId")],
        "undocumented_status": [("undocumented_status", "/status")],
        "envelope": [("envelope", "/msg"), ("undocumented_key", "/message")],
    }[switch]
    upstream.switch = switch
    answers = every_call(proxy, client_receiver)
    statuses = [200] * 6
    if switch == "undocumented_status":
        statuses[2] = 402  # get-credits, handed back as upstream answered
    assert [a.status_code for a in answers] == statuses
    report = drift_report(proxy)
    assert [(d["kind"], d["pointer"]) for d in report["drifts"]] == expected
    operation = report["drifts"][0]["operation"]
    assert operation.endswith(upstream.ops[SWITCHES[switch][0]].path)
    assert report["operations"][operation]["drifts"] == {kind: 1 for kind, _ in expected}
    assert report["operations"][operation]["samples"][expected[0][0]]["pointer"] == expected[0][1]
    assert report["client_violations"] == []


def test_a_drifting_answer_names_documented_and_received_values(proxy: httpx.Client, upstream: FakeUpstream) -> None:
    """A number sent as a string shows what the spec documents and the value that came."""
    upstream.switch = "number_as_string"
    proxy.get("/api/v1/get-credits")
    (drift,) = drift_report(proxy)["drifts"]
    assert drift["documented"] == "number"
    assert drift["received"] == "120"
    assert drift["message"] == 'type_mismatch at /credits: documented number; received "120".'


def test_client_violations_are_reported_apart_from_drift(proxy: httpx.Client, upstream: FakeUpstream) -> None:
    """A request that breaks the contract is still forwarded, and counted as the client's fault, not drift."""
    answer = proxy.post("/api/v1/vocal-removal/generate",
                        json={"taskId": TASK, "audioId": "e231b7a4-5c6d-4e8f-9a0b-1c2d8cadc7dc",
                              "type": "separate_vocal", "callBackURL": "http://127.0.0.1:9/x"})
    assert answer.status_code == 200
    assert upstream.received[-1]["operation"] == "separateVocals"
    report = drift_report(proxy)
    assert report["drift_count"] == 0
    pointers = [v["pointer"] for v in report["client_violations"]]
    assert "/body/callBackUrl" in pointers
    assert "/body/callBackURL" in pointers
    assert any("Did you mean 'callBackUrl'?" in v["detail"] for v in report["client_violations"])


def test_the_relay_validates_and_forwards_a_signed_musicapi_callback(proxy: httpx.Client, upstream: FakeUpstream,
                                                                     client_receiver: CallbackReceiver) -> None:
    """The provider calls the proxy back; the client's own URL then gets the same body and signature headers."""
    target = client_receiver.endpoint("songs")
    proxy.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                             "gpt_description_prompt": "a night drive", "webhook_url": target,
                                             "webhook_secret": "whsec_client"})
    sent = json.loads(upstream.received[-1]["raw"])
    assert sent["webhook_url"].startswith(proxy.base_url.join(RELAY_PATH).__str__())
    assert sent["webhook_secret"] == "whsec_client"
    assert upstream.fire() == [200]
    (delivery,) = client_receiver.deliveries
    assert delivery.path == "/songs"
    assert delivery.json["event"] == "song.completed"
    assert delivery.headers["x-webhook-signature"].startswith("sha256=")
    assert delivery.headers["x-webhook-id"] == "evt_1"
    report = drift_report(proxy)
    assert report["drift_count"] == 0, report["drifts"]
    assert report["operations"]["POST /api/v1/sonic/create"]["callbacks"] == 1


def test_the_relay_reports_a_signature_made_with_another_secret(upstream: FakeUpstream,
                                                                client_receiver: CallbackReceiver) -> None:
    """With the webhook secret known, a callback signed with another one is a signature drift."""
    upstream.reset()
    client_receiver.clear()
    app = create_proxy_app(ProxyConfig({"musicapi": upstream.url}, relay_callbacks=True,
                                       webhook_secret="not-" + DEFAULT_SECRET))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, trust_env=False) as http:
        http.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                                "gpt_description_prompt": "x", "webhook_url": client_receiver.url})
        assert upstream.fire() == [200]
        assert len(client_receiver.deliveries) == 1
        (drift,) = drift_report(http)["drifts"]
    assert (drift["kind"], drift["pointer"], drift["where"]) == ("signature", "/header/X-Webhook-Signature",
                                                                 "callback songWebhook")


def test_a_callback_with_an_extra_field_is_drift_and_still_reaches_the_client(
        proxy: httpx.Client, upstream: FakeUpstream, client_receiver: CallbackReceiver) -> None:
    """An undocumented key in an api.box callback is reported at its pointer; the client still gets the callback."""
    upstream.switch = "callback_extra_field"
    proxy.post("/api/v1/vocal-removal/generate", json=separation(client_receiver))
    assert upstream.fire() == [200]
    (delivery,) = client_receiver.deliveries
    assert delivery.json["data"]["vocal_removal_info"]["karaoke_url"]
    (drift,) = drift_report(proxy)["drifts"]
    assert (drift["kind"], drift["pointer"], drift["where"]) == (
        "undocumented_key", SWITCHES["callback_extra_field"][1], "callback vocalRemovalResult")


def test_the_relay_refuses_a_token_it_did_not_hand_out(proxy: httpx.Client,
                                                       client_receiver: CallbackReceiver) -> None:
    """A callback to an unknown relay token answers 404 and reaches no one."""
    answer = proxy.post(RELAY_PATH + "0" * 32, json={"code": 200})
    assert answer.status_code == 404
    assert client_receiver.deliveries == []


def test_the_mock_control_plane_is_never_forwarded(proxy: httpx.Client, upstream: FakeUpstream) -> None:
    """A `/__mock/` path other than the proxy's own answers 404 there and reaches no provider."""
    answer = proxy.post("/__mock/reset")
    assert answer.status_code == 404
    assert "GET /__mock/drift" in answer.json()["message"]
    assert upstream.received == []


def test_a_provider_without_upstream_is_refused_without_traffic(upstream: FakeUpstream) -> None:
    """A call for a provider not named with --upstream gets 502 and nothing is sent anywhere."""
    upstream.reset()
    app = create_proxy_app(ProxyConfig({"musicapi": upstream.url}))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, trust_env=False) as http:
        answer = http.get("/api/v1/generate/credit")
    assert answer.status_code == 502
    assert "--upstream" in answer.json()["message"]
    assert upstream.received == []


def test_an_unreachable_upstream_is_a_502_and_an_upstream_error() -> None:
    """A refused connection answers 502 and is listed apart from drift."""
    app = create_proxy_app(ProxyConfig({"apibox": f"http://127.0.0.1:{free_port()}"}))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, trust_env=False) as http:
        answer = http.get("/api/v1/generate/credit")
        report = drift_report(http)
    assert answer.status_code == 502
    assert report["drift_count"] == 0
    assert report["upstream_errors"][0]["operation"] == "GET /api/v1/generate/credit"


def test_the_recording_keeps_bodies_and_redacts_keys_and_secrets(proxy: httpx.Client, upstream: FakeUpstream,
                                                                 client_receiver: CallbackReceiver) -> None:
    """Each exchange and callback is one JSON line; the API key and the webhook secret never reach the file."""
    proxy.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                             "gpt_description_prompt": "x", "webhook_url": client_receiver.url,
                                             "webhook_secret": "whsec_very_secret"})
    upstream.fire()
    text = proxy.recording.read_text()  # type: ignore[attr-defined]
    assert KEY not in text
    assert "whsec_very_secret" not in text
    exchange, callback = [json.loads(line) for line in text.splitlines()]
    assert exchange["type"] == "exchange"
    assert exchange["request"]["headers"]["authorization"] == "Bearer <redacted>"
    assert exchange["request"]["body"]["gpt_description_prompt"] == "x"
    assert exchange["response"]["body"] == upstream.ops["createMusic"].examples()["accepted"][1]
    assert callback["type"] == "callback"
    assert callback["body"]["event"] == "song.completed"
    assert callback["forwarded"]["status"] == 200


def test_a_recording_becomes_an_overlay_the_mock_answers_from(proxy: httpx.Client, upstream: FakeUpstream,
                                                             client_receiver: CallbackReceiver,
                                                             tmp_path: Path) -> None:
    """`examples import` names each recorded answer; the mock then answers it with its own ids and file URLs."""
    upstream.switch = "extra_key"  # what the real provider said, drift and all, is what the example answers
    every_call(proxy, client_receiver)
    port = free_port()
    mock_url = f"http://127.0.0.1:{port}"
    overlay = tmp_path / "overlay.yaml"
    result = CliRunner().invoke(main, ["examples", "import", str(proxy.recording),  # type: ignore[attr-defined]
                                       "--out", str(overlay), "--mock-url", mock_url])
    assert result.exit_code == 0, result.output
    examples = yaml.safe_load(overlay.read_text())["examples"]
    assert sorted(examples) == ["createMusic", "getCredits", "getRemainingCredits", "getVocalSeparationDetails",
                                "getVox", "separateVocals"]
    recorded = examples["getVocalSeparationDetails"]["recorded_200"]["value"]
    original = upstream.ops["getVocalSeparationDetails"].examples()["success"][1]
    assert recorded["data"]["taskId"] != original["data"]["taskId"]
    assert len(recorded["data"]["taskId"]) == 32
    assert recorded["data"]["response"]["vocalUrl"].startswith(f"{mock_url}/files/")
    assert recorded["data"]["callbackUrl"] == original["data"]["callbackUrl"]

    app = create_app(MockConfig(examples=str(overlay)))
    with LiveServer(app, port=port), httpx.Client(base_url=mock_url, headers=AUTH, trust_env=False) as mock:
        credits = mock.get("/api/v1/generate/credit", headers={"Prefer": "example=recorded_200"})
        assert credits.json() == upstream.ops["getRemainingCredits"].examples()["success"][1]
        detail = mock.get("/api/v1/vocal-removal/record-info", params={"taskId": "f" * 32},
                          headers={"Prefer": "example=recorded_200"})
        assert detail.json() == recorded
        download = mock.get(recorded["data"]["response"]["vocalUrl"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "audio/mpeg"
        vox = mock.post("/api/v1/sonic/vox", json=VOX, headers={"Prefer": "example=recorded_200"})
        assert vox.json()["data"]["surprise"] is True


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, trust_env=False, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)  # waiting for a child process to bind its port, not for a callback
    raise AssertionError(f"{url} did not answer within 20 s")


@pytest.mark.parametrize(("switch", "code"), [(None, 0), ("new_enum_value", 1)])
def test_the_command_prints_its_report_and_exits_1_on_drift_under_strict(upstream: FakeUpstream, tmp_path: Path,
                                                                         switch: str | None, code: int) -> None:
    """`stemmock proxy --strict --json` reports per operation at exit and exits 1 only when it saw drift."""
    upstream.reset()
    upstream.switch = switch
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stemmock = str(Path(sys.executable).with_name("stemmock"))
    child = subprocess.Popen([stemmock, "proxy", "--upstream", f"apibox={upstream.url}",
                              "--port", str(port), "--strict", "--json", "--record", str(tmp_path / "r.jsonl")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _wait_for(f"http://127.0.0.1:{port}/__mock/drift")
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/vocal-removal/record-info", params={"taskId": TASK},
                           headers=AUTH, trust_env=False)
        assert answer.status_code == 200
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    assert child.returncode == code, err.decode()
    report = json.loads(out)
    entry = report["operations"]["GET /api/v1/vocal-removal/record-info"]
    assert entry["calls"] == 1
    assert entry["drifts"] == ({"enum_value": 1} if switch else {})
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1


def test_the_table_names_each_operation_and_the_first_sample(upstream: FakeUpstream) -> None:
    """The exit summary lists calls and drifts by kind per operation, then the first sample of each kind."""
    upstream.reset()
    upstream.switch = "renamed_field"
    app = create_proxy_app(ProxyConfig({"musicapi": upstream.url}))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, trust_env=False) as http:
        http.post("/api/v1/sonic/vox", json=VOX)
        http.get("/api/v1/get-credits")
    table = app.state.proxy.log.table()
    assert "  GET /api/v1/get-credits  1      0          none\n" in table
    assert "  POST /api/v1/sonic/vox   1      0          missing_required x1, undocumented_key x1\n" in table
    assert "missing_required at /data/vox_audio_id" in table
    assert table.endswith("DRIFT: 2 drift(s) from the spec.")


@pytest.mark.parametrize(("args", "says"), [
    (["--upstream", "suno=http://127.0.0.1:9"], "is not NAME=URL with NAME one of musicapi, apibox"),
    (["--upstream", "apibox=ftp://127.0.0.1:9"], "is not an http(s) URL"),
    (["--upstream", "apibox=http://127.0.0.1:9", "--relay-callbacks"], "--relay-callbacks needs --public-url"),
])
def test_the_command_refuses_bad_usage_with_exit_2(args: list[str], says: str) -> None:
    """A bad --upstream or a relay without a public URL stops before serving, naming what was expected."""
    result = CliRunner().invoke(main, ["proxy", *args])
    assert result.exit_code == 2
    assert says in result.output


def test_a_musicapi_callback_without_a_signature_is_drift_when_the_secret_is_known(
        proxy: httpx.Client, upstream: FakeUpstream, client_receiver: CallbackReceiver) -> None:
    """With a webhook secret given, an unsigned webhook is a signature drift; it is still forwarded."""
    proxy.post("/api/v1/sonic/create", json={"task_type": "create_music", "custom_mode": False, "mv": "sonic-v5",
                                             "gpt_description_prompt": "x", "webhook_url": client_receiver.url,
                                             "webhook_secret": "whsec_client"})
    url, raw, headers = upstream.owed.pop()
    del headers["x-webhook-signature"]
    upstream.owed.append((url, raw, headers))
    assert upstream.fire() == [200]
    assert len(client_receiver.deliveries) == 1
    (drift,) = drift_report(proxy)["drifts"]
    assert (drift["kind"], drift["received"]) == ("signature", None)


def test_the_mock_itself_as_upstream_shows_no_drift_and_its_callbacks_are_relayed(
        client_receiver: CallbackReceiver) -> None:
    """The mock's own answers and callbacks, created, polled and delivered through the proxy, keep the spec."""
    client_receiver.clear()
    with LiveServer(create_app(MockConfig(clock="manual"))) as mock:
        app = create_proxy_app(ProxyConfig({"musicapi": mock.url, "apibox": mock.url}, relay_callbacks=True))
        with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, trust_env=False) as http:
            app.state.proxy.config.public_url = server.url
            advance = f"{mock.url}/__mock/clock/advance"
            clip = http.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
            http.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30})
            song = http.post("/api/v1/sonic/create", json={
                "task_type": "create_music", "custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "x",
                "webhook_url": client_receiver.endpoint("songs")}).json()["task_id"]
            http.get("/api/v1/get-credits")
            http.post("/api/v1/sonic/upload", json={"url": "https://example.com/b.mp3",
                                                    "callback_url": client_receiver.endpoint("upload")})
            task = http.post("/api/v1/generate", json={"customMode": False, "instrumental": False, "model": "V4",
                                                       "prompt": "x", "callBackUrl": client_receiver.endpoint("gen")})
            task_id = task.json()["data"]["taskId"]
            http.get("/api/v1/generate/record-info", params={"taskId": "0" * 32})
            http.get("/api/v1/sonic/task/not-a-task")
            httpx.post(advance, json={"seconds": 600}, trust_env=False).raise_for_status()
            detail = http.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()
            audio_id = detail["data"]["response"]["sunoData"][0]["id"]
            split = http.post("/api/v1/vocal-removal/generate", json={
                "taskId": task_id, "audioId": audio_id, "type": "split_stem",
                "callBackUrl": client_receiver.endpoint("split")}).json()["data"]["taskId"]
            httpx.post(advance, json={"seconds": 600}, trust_env=False).raise_for_status()
            http.get("/api/v1/vocal-removal/record-info", params={"taskId": split})
            http.get(f"/api/v1/sonic/task/{song}")
            http.get("/api/v1/generate/credit")
            report = drift_report(http)
    assert report["drift_count"] == 0, report["drifts"]
    assert report["client_violations"] == []
    assert sorted(d.path for d in client_receiver.deliveries) == ["/gen", "/gen", "/gen", "/songs", "/split",
                                                                   "/upload"]
    assert report["operations"]["POST /api/v1/sonic/upload"]["callbacks"] == 1
    assert report["operations"]["POST /api/v1/generate"]["callbacks"] == 3
    assert len(report["operations"]) == 10

"""Hostile and sloppy input through the real server: client errors in the provider's shape, never the mock's own.

Each test is the regression test of one defect found by fuzzing the mock (lone surrogates, a poisoned journal,
deep nesting, huge numbers, file names, missing limits, callback targets, what the journal shows). Those that
use `mock` run once per store (memory and a real Redis).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from conftest import API_KEY, MockHandle

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app
from mockserver.clock import Scheduler
from mockserver.config import CallbackConfig, Limits
from mockserver.providers import apibox
from mockserver.spec import spec_path
from mockserver.store import MemoryStore

GENERATE = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "night drive",
            "callBackUrl": "https://example.com/cb"}
CREATE = {"task_type": "create_music", "custom_mode": False, "mv": "sonic-v4-5",
          "gpt_description_prompt": "a calm song", "webhook_url": "https://example.com/hook"}


def _raw(client: httpx.Client, method: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.request(method, path, content=body, headers={"Content-Type": "application/json", **headers})


def _apibox_credits(client: httpx.Client) -> float:
    return float(client.get("/api/v1/generate/credit").json()["data"])


def _musicapi_credits(client: httpx.Client) -> float:
    return float(client.get("/api/v1/get-credits").json()["credits"])


def _resources(mock: MockHandle) -> int:
    store = mock.app.state.mock.store
    return sum(len(store.all(kind)) for kind in ("clip", "task", "upload", "apibox_task"))


# -- 1. lone surrogates ---------------------------------------------------------------------------------------
def test_a_lone_surrogate_in_a_prompt_is_a_validation_error_that_charges_nothing(
        client: httpx.Client, mock: MockHandle) -> None:
    """Answers a prompt holding a lone surrogate with body code 400 naming `prompt`; nothing is charged or made."""
    before = _apibox_credits(client)
    body = json.dumps({**GENERATE, "prompt": "a\ud800"}).encode()  # json.dumps escapes it as \ud800
    answer = _raw(client, "POST", "/api/v1/generate", body)
    assert answer.status_code == 200 and answer.json()["code"] == 400 and answer.json()["data"] is None
    assert answer.json()["msg"].startswith("prompt is not valid Unicode text")
    assert _apibox_credits(client) == before and _resources(mock) == 0


def test_a_lone_surrogate_in_an_id_or_a_control_body_names_the_field(client: httpx.Client, mock: MockHandle) -> None:
    """Answers a lone surrogate in a MusicAPI id with HTTP 400 and in a control-plane body with 400, each named."""
    vox = _raw(client, "POST", "/api/v1/sonic/vox", b'{"clip_id": "\\ud800"}')
    assert vox.status_code == 400 and vox.json()["message"].startswith("clip_id is not valid Unicode text")
    maintenance = _raw(mock.control, "PUT", "/__mock/maintenance", b'{"on": "\\ud800"}')
    assert maintenance.status_code == 400 and maintenance.json()["message"].startswith("on is not valid Unicode")
    assert mock.control.get("/__mock/maintenance").json()["maintenance"] == {"musicapi": False, "apibox": False}


# -- 2. the journal cannot be poisoned --------------------------------------------------------------------------
def test_the_journal_reads_back_after_hostile_bodies(client: httpx.Client, mock: MockHandle) -> None:
    """Serves the journal (all of it and `?limit=1`) after calls whose bodies hold lone surrogates or deep nesting."""
    deep = b'{"extra": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert _raw(client, "GET", "/api/v1/get-credits", b'{"x": "\\ud800"}').status_code == 200
    assert _raw(client, "GET", "/api/v1/generate/credit", deep).json()["code"] == 200
    assert _raw(client, "POST", "/api/v1/sonic/vox", b'{"clip_id": "\\udfff", "k\\ud801": 1}').status_code == 400
    whole = mock.control.get("/__mock/journal")
    assert whole.status_code == 200 and whole.json()["count"] == 3
    last = mock.control.get("/__mock/journal", params={"limit": 1}).json()["exchanges"]
    assert len(last) == 1 and last[0]["operation"] == "getVox"
    assert [v["pointer"] for v in last[0]["violations"]] == ["/body/clip_id", "/body/k\ufffd"]
    only = mock.control.get("/__mock/journal", params={"operation": "getCredits", "limit": 5}).json()
    assert only["count"] == 1 and only["exchanges"][0]["request"]["body"] == "<invalid JSON>"


def test_the_journal_builds_only_the_records_asked_for() -> None:
    """Builds only the last `limit` records, and one record that cannot be built does not hide the others."""
    store = MemoryStore(journal_size=10)
    built: list[int] = []

    def entry(i: int) -> Any:
        def build() -> dict[str, Any]:
            built.append(i)
            if i == 1:
                raise ValueError("a record that cannot be built")
            return {"operation": "op", "i": i}
        return build

    for i in range(5):
        store.record(entry(i))
    assert [e["i"] for e in store.journal(limit=2)] == [3, 4] and built == [3, 4]
    whole = store.journal()
    assert [e.get("i") for e in whole] == [0, None, 2, 3, 4] and "cannot be read" in whole[1]["error"]


# -- 3. deep nesting ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [300, 1025, 100_000])
def test_deep_nesting_is_a_validation_error_naming_the_field(client: httpx.Client, mock: MockHandle,
                                                             levels: int) -> None:
    """Answers arrays nested `levels` deep in a field with each provider's validation error naming the field."""
    nested = b"[" * levels + b"]" * levels
    vox = _raw(client, "POST", "/api/v1/sonic/vox", b'{"clip_id": "x", "vocal_end_s": ' + nested + b"}")
    assert vox.status_code == 400
    assert vox.json()["message"] == ("vocal_end_s is nested more than 64 levels deep (expected at most 64 levels of "
                                     "arrays and objects).")
    gen = _raw(client, "POST", "/api/v1/generate", b'{"prompt": ' + nested + b"}")
    assert gen.status_code == 200 and gen.json()["code"] == 400 and gen.json()["msg"].startswith("prompt is nested")
    whole = _raw(client, "POST", "/api/v1/generate", nested)
    assert whole.json()["code"] == 400 and whole.json()["msg"].startswith("The body is nested more than 64")


# -- 4. huge numbers ------------------------------------------------------------------------------------------
def test_a_huge_prefer_code_is_refused_as_undocumented(client: httpx.Client, mock: MockHandle) -> None:
    """Answers `Prefer: code=<4,301 digits>` (and a non-ASCII digit) as an undocumented code, on every provider."""
    for prefer in ("code=" + "9" * 4301, "code=\u00b2".encode("latin-1")):
        vox = client.get("/api/v1/get-credits", headers={"Prefer": prefer})
        assert vox.status_code == 400 and "is not a documented outcome of GET /api/v1/get-credits" in \
            vox.json()["message"]
        credit = client.get("/api/v1/generate/credit", headers={"Prefer": prefer}).json()
        assert credit["code"] == 400 and "documented codes: " in credit["msg"]


def test_huge_numbers_in_a_body_are_out_of_range(client: httpx.Client, mock: MockHandle) -> None:
    """Answers a 5,000-digit integer, an overflowing float and NaN as validation errors naming each field; a
    40-digit integer in an ignored field is read as any JSON reader reads it."""
    body = b'{"clip_id": "x", "vocal_start_s": ' + b"9" * 5000 + b', "vocal_end_s": 1e400, "extra": NaN}'
    vox = _raw(client, "POST", "/api/v1/sonic/vox", body)
    assert vox.status_code == 400
    message = vox.json()["message"]
    assert "vocal_start_s is a number of 5000 digits, out of range (expected a number from -1.797" in message
    assert "vocal_end_s is a number out of range" in message and "extra is NaN" in message
    upload = _raw(client, "POST", "/api/v1/sonic/upload", b'{"url": "https://example.com/a.mp3", "n": ' +
                  b"9" * 40 + b"}")
    assert upload.status_code == 200 and upload.json()["clip_id"]
    clip = upload.json()["clip_id"]
    mock.advance(60)
    beyond_a_double = _raw(client, "POST", "/api/v1/sonic/vox", b'{"clip_id": "' + clip.encode() +
                           b'", "vocal_start_s": ' + b"9" * 400 + b', "vocal_end_s": ' + b"9" * 400 + b"}")
    assert beyond_a_double.status_code == 400 and "vocal_start_s is a number of 400 digits, out of range" in \
        beyond_a_double.json()["message"]


def test_a_file_url_with_a_huge_number_is_not_found(client: httpx.Client, mock: MockHandle) -> None:
    """Answers a file URL whose created-time segment has 4,301 digits with the files' 404."""
    answer = client.get("/files/" + "1" * 4301 + "-1000-abc/a.mp3")
    assert answer.status_code == 404 and answer.json() == {"code": 404, "message": "File not found or expired."}


# -- 5. file names --------------------------------------------------------------------------------------------
def _file(mock: MockHandle, name: str) -> str:
    now_ms = int(mock.control.get("/__mock/clock").json()["now"] * 1000)
    return f"/files/{now_ms}-1000-abc/{name}"


def test_file_names_cannot_break_the_content_disposition_header(client: httpx.Client, mock: MockHandle) -> None:
    """Serves a non-Latin-1 name and a quote-and-semicolon name with a safe Content-Disposition; a NUL is 404."""
    odd = client.get(_file(mock, "%c3%28.mp3"))
    assert odd.status_code == 200 and odd.headers["content-disposition"] == (
        "inline; filename=\"__.mp3\"; filename*=UTF-8''%EF%BF%BD%28.mp3")
    injected = client.get(_file(mock, 'a"%3b%20filename=evil.exe.mp3'))
    assert injected.status_code == 200
    disposition = injected.headers["content-disposition"]
    assert disposition.startswith('inline; filename="a___filename_evil.exe.mp3"; filename*=UTF-8\'\'')
    assert disposition.count("filename=") == 1 and disposition.count('"') == 2
    nul = client.get(_file(mock, "a%00.mp3"))
    assert nul.status_code == 404 and nul.json()["code"] == 404
    plain = client.get(_file(mock, "Night_Drive.mp3"))
    assert plain.headers["content-disposition"] == 'inline; filename="Night_Drive.mp3"'


# -- 6. limits ------------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_gets_the_providers_413_unread(client: httpx.Client, mock: MockHandle) -> None:
    """Answers a 2 MiB body with MusicAPI's HTTP 413 and api.box's body code 413, closing; nothing is charged."""
    before = _apibox_credits(client)
    big = b'{"prompt": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    vox = _raw(client, "POST", "/api/v1/sonic/vox", big)
    assert vox.status_code == 413 and vox.headers["connection"] == "close"
    assert vox.json() == {"code": 413, "message": f"The request body is {len(big)} bytes long; at most 1048576 bytes "
                                                  "are allowed."}
    gen = _raw(client, "POST", "/api/v1/generate", big)
    assert gen.status_code == 200 and gen.json()["code"] == 413 and gen.json()["data"] is None
    assert _apibox_credits(client) == before


def test_chunked_bodies_are_cut_at_the_limit(client: httpx.Client, mock: MockHandle) -> None:
    """Stops reading a chunked body once it passes the limit and answers the provider's 413."""
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"a" * 65536

    vox = client.post("/api/v1/sonic/vox", content=chunks(), headers={"Content-Type": "application/json"})
    assert vox.status_code == 413 and "more than 1048576 bytes long" in vox.json()["message"]


def test_headers_over_the_limit_are_a_validation_error(client: httpx.Client, mock: MockHandle) -> None:
    """Answers a 100 kB bearer key with the provider's validation error naming the longest header."""
    key = "k" * 100_000
    vox = client.post("/api/v1/sonic/vox", json={}, headers={"Authorization": f"Bearer {key}"})
    assert vox.status_code == 400 and "(authorization is the longest); at most 65536 bytes" in vox.json()["message"]
    gen = client.post("/api/v1/generate", json=GENERATE, headers={"X-Padding": key})
    assert gen.json()["code"] == 400 and "x-padding is the longest" in gen.json()["msg"]


@pytest.fixture()
def limited() -> Iterator[LiveServer]:
    """A mock with a short body timeout and small limits."""
    config = MockConfig(clock="manual", limits=Limits(body_timeout=0.5, max_body_bytes=1000, max_json_depth=3))
    with LiveServer(create_app(config)) as server:
        yield server


def test_a_body_that_never_comes_gets_408_and_the_connection_closes(limited: LiveServer) -> None:
    """Answers a body announced but never sent with 408 after limits.body_timeout, then closes the connection."""
    host, port = urlsplit(limited.url).hostname, urlsplit(limited.url).port
    for path, expected in (("/api/v1/sonic/vox", b'{"code":408,'), ("/api/v1/generate", b'{"code":408,')):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
            started = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert 0.4 < time.monotonic() - started < 5
        head, _, body = answer.partition(b"\r\n\r\n")
        status = b"408" if path.endswith("vox") else b"200"
        assert head.startswith(b"HTTP/1.1 " + status) and b"connection: close" in head.lower()
        assert body.startswith(expected) and b"did not arrive within 0.5 s" in body


def test_configured_limits_apply(limited: LiveServer) -> None:
    """Applies a configured max_body_bytes and max_json_depth."""
    with httpx.Client(base_url=limited.url, headers={"Authorization": "Bearer k"}) as c:
        assert _raw(c, "POST", "/api/v1/sonic/vox", b" " * 1001).status_code == 413
        deep = _raw(c, "POST", "/api/v1/sonic/vox", b'{"clip_id": [[[[1]]]]}')
        assert deep.status_code == 400 and deep.json()["message"].startswith("clip_id is nested more than 3 levels")
        shallow = _raw(c, "POST", "/api/v1/sonic/vox", b'{"clip_id": [[1]]}')
        assert shallow.status_code == 400 and 'clip_id: [[1]] is not of type "string"' in shallow.json()["message"]


# -- 8. callback targets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["gopher://127.0.0.1:6379/_FLUSHALL", "ftp://example.com/x", "file:///etc/passwd",
                                 "http:///nohost"])
def test_callback_urls_must_be_http(client: httpx.Client, mock: MockHandle, url: str) -> None:
    """Refuses a callback URL of another scheme at request time, in each provider's validation shape, uncharged."""
    before = _apibox_credits(client), _musicapi_credits(client)
    gen = client.post("/api/v1/generate", json={**GENERATE, "callBackUrl": url}).json()
    assert gen["code"] == 400 and gen["msg"] == f"callBackUrl: {url!r} is not an http or https URL; expected a " \
                                                 "callback URL such as https://example.com/hook."
    create = client.post("/api/v1/sonic/create", json={**CREATE, "webhook_url": url})
    assert create.status_code == 400 and create.json()["message"].startswith(f"webhook_url: {url!r} is not an http")
    assert (_apibox_credits(client), _musicapi_credits(client)) == before and _resources(mock) == 0


def test_allow_hosts_entries_may_name_a_port(receiver: CallbackReceiver) -> None:
    """Accepts only the listed port of a `host:port` entry; another port of the same host is refused at once."""
    port = urlsplit(receiver.url).port
    config = MockConfig(clock="manual", callbacks=CallbackConfig(allow_hosts=(f"127.0.0.1:{port}", "[::1]:9")))
    with LiveServer(create_app(config)) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        refused = c.post("/api/v1/generate", json={**GENERATE, "callBackUrl": "http://127.0.0.1:6379/"}).json()
        assert refused["code"] == 400 and refused["msg"] == (
            f"callBackUrl: the host of 'http://127.0.0.1:6379/' is not allowed; expected one of 127.0.0.1:{port}, "
            "[::1]:9.")
        accepted = c.post("/api/v1/generate", json={**GENERATE, "callBackUrl": receiver.endpoint("gen")}).json()
        assert accepted["code"] == 200
        c.post("/__mock/clock/advance", json={"seconds": 60}).raise_for_status()
        assert len(receiver.deliveries) == 3


# -- 9. what the journal shows; the safety net ------------------------------------------------------------------
def test_the_journal_shows_keys_redacted_and_stably(client: httpx.Client, mock: MockHandle) -> None:
    """Shows an API key as a prefix and a short stable hash: one key's calls group together, the key is not shown."""
    client.get("/api/v1/get-credits")
    client.get("/api/v1/generate/credit")
    client.get("/api/v1/get-credits", headers={"Authorization": "Bearer other-key"})
    keys = [e["api_key"] for e in mock.journal()]
    assert keys[0] == keys[1] != keys[2] and API_KEY not in json.dumps(mock.journal())
    assert keys[0].startswith("test…") and len(keys[0]) == len("test…") + 8


def _break_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(scheduler: Scheduler, task: dict[str, Any]) -> None:
        raise RuntimeError(f"a bug of the mock's, after task {task['id']} was stored")

    monkeypatch.setattr(apibox, "schedule_generation", broken)


def test_a_bug_in_the_pipeline_answers_500_and_rolls_back(client: httpx.Client, mock: MockHandle,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Answers a failure inside an action with api.box's body code 500, charges nothing, keeps no half task,
    logs the traceback in the server log and keeps it out of the answer and the journal."""
    before = _apibox_credits(client)
    _break_generation(monkeypatch)
    with caplog.at_level(logging.INFO, logger="stemmock"):
        answer = client.post("/api/v1/generate", json=GENERATE)
    assert answer.status_code == 200
    assert answer.json() == {"code": 500, "msg": "Server error, please try again later", "data": None}
    assert _apibox_credits(client) == before and _resources(mock) == 0 and mock.advance(60)["ran"] == 0
    assert "RuntimeError: a bug of the mock's" in caplog.text and "Traceback" in caplog.text
    failed = mock.control.get("/__mock/journal", params={"operation": "generateMusic"}).json()["exchanges"][-1]
    assert failed["outcome"] == {"kind": "error", "code": 500, "reason": "mock error: RuntimeError",
                                 "message": "Server error, please try again later"}
    assert "error" not in failed and "Traceback" not in json.dumps(failed) and failed["api_key"].startswith("test…")


def test_the_journal_shows_tracebacks_only_at_debug_level(client: httpx.Client, mock: MockHandle,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Journals the traceback of the mock's own failure when its log level is debug."""
    _break_generation(monkeypatch)
    logger = logging.getLogger("stemmock")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        client.post("/api/v1/generate", json=GENERATE)
    finally:
        logger.setLevel(level)
    failed = mock.control.get("/__mock/journal", params={"limit": 1}).json()["exchanges"][0]
    assert failed["error"].startswith("Traceback") and "RuntimeError: a bug of the mock's" in failed["error"]


# -- 10. control.yaml documents the blocked state ---------------------------------------------------------------
def test_a_blocked_delivery_conforms_to_control_yaml(receiver: CallbackReceiver) -> None:
    """Lists a delivery blocked by a changed allow-list as control.yaml documents it (Schemathesis validates)."""
    app = create_app(MockConfig(clock="manual"))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as c:
        assert c.post("/api/v1/generate", json={**GENERATE, "callBackUrl": receiver.endpoint()}).json()["code"] == 200
        deliveries = app.state.mock.deliveries  # the allow-list changes before the stage (a restart, on Redis)
        deliveries.config = deliveries.config.replace(callbacks=CallbackConfig(allow_hosts=("example.com",)))
        c.post("/__mock/clock/advance", json={"seconds": 60}).raise_for_status()
        listed = c.get("/__mock/callbacks")
    assert {d["state"] for d in listed.json()["callbacks"]} == {"blocked"} and receiver.deliveries == []
    operation = schemathesis.openapi.from_path(str(spec_path("control")))["/__mock/callbacks"]["GET"]
    operation.validate_response(listed)


# -- the limits' configuration ----------------------------------------------------------------------------------
def test_limits_come_from_the_file_the_environment_and_their_checks(tmp_path: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads `limits` from the config file and STEMMOCK_LIMITS, names a misspelt key, and refuses a limit of 0."""
    from mockserver.config import ConfigError, load_config

    path = tmp_path / "stemmock.yaml"
    path.write_text("limits: {max_body_bytes: 2048, body_timeout: 2.5}\n")
    loaded = load_config(path)
    assert loaded.limits == Limits(max_body_bytes=2048, body_timeout=2.5)
    monkeypatch.setenv("STEMMOCK_LIMITS", "{max_json_depth: 8}")
    assert load_config().limits == Limits(max_json_depth=8)
    monkeypatch.delenv("STEMMOCK_LIMITS")
    path.write_text("limits: {max_body_byte: 10}\n")
    with pytest.raises(ConfigError, match=r"limits.max_body_byte is not a known setting. Did you mean 'max_body_"):
        load_config(path)
    path.write_text("limits: {body_timeout: 0}\n")
    with pytest.raises(ConfigError, match=r"limits.body_timeout is 0.0; expected a number above 0."):
        load_config(path)


def test_serve_flags_and_their_environment_variables_set_the_limits() -> None:
    """`stemmock serve --max-body-bytes 100` and STEMMOCK_MAX_JSON_DEPTH=2 bound what the served mock reads."""
    import os
    import subprocess
    import sys

    from conftest import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mockserver", "--port", str(port), "--clock", "manual",
                                "--max-body-bytes", "100", "--log-level", "warning"],
                               env={**os.environ, "STEMMOCK_MAX_JSON_DEPTH": "2"}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer k"}) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.get("/__mock/clock")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "stemmock serve did not start"
                    time.sleep(0.05)
            assert _raw(c, "POST", "/api/v1/sonic/vox", b" " * 101).status_code == 413
            deep = _raw(c, "POST", "/api/v1/sonic/vox", b'{"clip_id": [[1]]}')
            assert deep.status_code == 400 and "nested more than 2 levels" in deep.json()["message"]
            # A head far over limits.max_header_bytes is refused as it arrives, before it is parsed.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                try:
                    sock.sendall(b"GET /api/v1/get-credits HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " +
                                 b"k" * (10 * 1024 * 1024) + b"\r\n\r\n")
                except OSError:
                    pass  # closed under the sender: the rest is never read
                answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in answer
            assert b'"The request head is more than 1048576 bytes long' in answer
            assert c.get("/api/v1/get-credits").status_code == 200
    finally:
        process.terminate()
        process.wait(15)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_commit_charges_and_stores_as_one_step(kind: str, request: pytest.FixtureRequest) -> None:
    """Charges and stores a call's records and jobs together, or (balance short) none of them, in both stores."""
    from mockserver.store.redis import RedisStore

    store = MemoryStore() if kind == "memory" else RedisStore(request.getfixturevalue("redis_url"))
    try:
        store.set_balance("apibox", "k", 15)
        job = {"kind": "separation_done", "args": ["t1"], "label": "apibox vocal-removal t1"}
        made = store.commit("apibox", "k", 10, [("apibox_task", "t1", {"id": "t1", "n": 1})], [(5.0, job)])
        assert made == {"credits": 5.0, "extra_credits": 0.0}
        assert store.get("apibox_task", "t1") == {"id": "t1", "n": 1} and store.pending_jobs() == [(5.0, job["label"])]
        short = store.commit("apibox", "k", 10, [("apibox_task", "t2", {"id": "t2"})], [(6.0, job)])
        assert short is None and store.get("apibox_task", "t2") is None and store.job_count() == 1
        assert store.balance("apibox", "k") == {"credits": 5.0, "extra_credits": 0.0}
        assert [j["args"] for _id, _due, j in store.claim_due(10.0, 10)] == [["t1"]]
    finally:
        store.close()


def test_a_stage_job_that_runs_again_sends_nothing_twice(client: httpx.Client, mock: MockHandle,
                                                         receiver: CallbackReceiver) -> None:
    """Runs a generation's stage jobs a second time (as a claim reclaimed from a dead worker would): the deliveries
    already made keep their one record each and nothing is POSTed again."""
    task_id = client.post("/api/v1/generate", json={**GENERATE, "callBackUrl": receiver.endpoint("gen")}).json()[
        "data"]["taskId"]
    mock.advance(60)
    first = mock.callbacks()
    assert [d["state"] for d in first] == ["delivered"] * 3 and len(receiver.deliveries) == 3
    scheduler = mock.app.state.mock.scheduler
    now = mock.control.get("/__mock/clock").json()["now"]
    for stage in ("text", "first", "complete"):
        scheduler.at(now, "generation_stage", task_id, stage, label=f"again {stage}")
    assert mock.advance(1)["ran"] == 3
    assert mock.callbacks() == first and len(receiver.deliveries) == 3

"""The control plane and the config file, through the real server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

from contracts.live import LiveServer
from mockserver import MockConfig, create_app
from mockserver.config import MaintenanceWindow, config_from_dict

README = Path(__file__).resolve().parent.parent / "README.md"
AUTH = {"Authorization": "Bearer test-key"}


def test_journal_records_violations_outcome_and_reason(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """Each exchange carries its violations (with pointers), the outcome and why it was chosen."""
    client.post("/api/v1/sonic/vox", json={"clip_id": 7})
    client.get("/api/v1/generate/credit", headers={"Prefer": "code=455"})
    bad, forced = mock.journal()[-2:]
    assert bad["operation"] == "getVox" and bad["outcome"]["kind"] == "rejected"
    assert bad["violations"][0]["pointer"] == "/body/clip_id" and "string" in bad["violations"][0]["expected"]
    assert forced["outcome"] == {"kind": "error", "code": 455, "reason": "Prefer: code=455",
                                 "message": "System maintenance"}
    only = mock.control.get("/__mock/journal", params={"operation": "getVox"}).json()
    assert only["count"] == 1


def test_journal_is_a_bounded_ring() -> None:
    """The journal keeps only the last journal_size exchanges."""
    with LiveServer(create_app(MockConfig(journal_size=5))) as server:
        for _ in range(12):
            httpx.get(f"{server.url}/api/v1/get-credits", headers=AUTH)
        journal = httpx.get(f"{server.url}/__mock/journal").json()
        assert journal["count"] == 5 and [e["seq"] for e in journal["exchanges"]] == list(range(8, 13))


def test_journal_keeps_each_exchange_as_two_objects_for_the_collector() -> None:
    """A journaled call leaves at most two objects for the garbage collector to walk, yet reads back whole.

    Under load every collection walks what the journal holds; a score of objects per call made pauses of
    several ms in the p99.
    """
    import asyncio
    import gc

    async def calls(count: int) -> int:
        app = create_app(MockConfig(clock="manual", journal_size=10_000))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock",
                                     headers=AUTH) as c:
            clip = (await c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"})).json()[
                "clip_id"]
            await c.post("/__mock/clock/advance", json={"seconds": 60})
            body = {"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 5}
            last = await c.post("/api/v1/sonic/vox", json=body)  # warm: every lazy part of the path is built
            gc.collect()
            before = len(gc.get_objects())
            for _ in range(count):
                last = await c.post("/api/v1/sonic/vox", json=body)
            gc.collect()
            grown = len(gc.get_objects()) - before
            journal = (await c.get("/__mock/journal", params={"limit": 2})).json()["exchanges"]
        assert journal[-1]["response"] == {"status": 200, "headers": {}, "body": last.json()} and last.json()["code"] == 200
        assert [e["request"]["body"] for e in journal] == [body, body] and journal[0]["outcome"]["kind"] == "success"
        return grown

    calls_made = 400
    grown = asyncio.run(calls(calls_made))
    assert grown <= 2 * calls_made + 20, f"{grown} objects kept for {calls_made} calls"


def test_reset_restarts_ids_from_the_seed(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """After a reset the same requests get the same ids, and old resources are gone."""
    first = client.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
    mock.reset()
    again = client.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
    assert first == again
    mock.reset()
    assert client.post("/api/v1/sonic/vox", json={"clip_id": first}).status_code == 404


def test_credits_endpoint_sets_one_provider_or_both(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """PUT /__mock/credits sets both providers without `provider`, one with it; bad values are named."""
    both = mock.control.put("/__mock/credits/test-key", json={"credits": 7}).json()
    assert set(both["balances"]) == {"musicapi", "apibox"}
    mock.control.put("/__mock/credits/test-key", json={"credits": 3, "extra_credits": 2, "provider": "musicapi"})
    assert client.get("/api/v1/get-credits").json() == {"credits": 3, "extra_credits": 2}
    assert client.get("/api/v1/generate/credit").json()["data"] == 7
    bad = mock.control.put("/__mock/credits/test-key", json={"credits": -1})
    assert bad.status_code == 400 and "credits" in bad.json()["message"]


def test_clock_endpoint_reports_mode_and_time(mock) -> None:  # type: ignore[no-untyped-def]
    """GET /__mock/clock tells the mode and reading; advance moves it by exactly the seconds asked."""
    before = mock.control.get("/__mock/clock").json()
    assert before["mode"] == "manual"
    assert mock.advance(90)["now"] == before["now"] + 90
    assert mock.control.post("/__mock/clock/advance", json={"seconds": -5}).status_code == 400


def test_admin_token_guards_the_control_plane() -> None:
    """With admin_token set, /__mock/* answers 401 without it and works with it; provider calls are unaffected."""
    with LiveServer(create_app(MockConfig(admin_token="s3cret"))) as server:
        assert httpx.post(f"{server.url}/__mock/reset").status_code == 401
        ok = httpx.post(f"{server.url}/__mock/reset", headers={"Authorization": "Bearer s3cret"})
        assert ok.json() == {"reset": True}
        assert httpx.get(f"{server.url}/api/v1/get-credits", headers=AUTH).status_code == 200


def test_maintenance_window_from_config_follows_the_clock() -> None:
    """A configured window answers 455 while the clock is inside it, and success before and after."""
    start = 1_767_225_600
    config = MockConfig(clock="manual", clock_start=start, maintenance=(
        MaintenanceWindow(start="2026-01-01T00:10:00Z", end=start + 1200, provider="apibox"),))
    with LiveServer(create_app(config)) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        codes = []
        for _ in range(3):
            codes.append(client.get("/api/v1/generate/credit").json()["code"])
            client.post("/__mock/clock/advance", json={"seconds": 660})
        assert codes == [200, 455, 200]
        assert client.get("/api/v1/get-credits").status_code == 200


def test_unknown_apibox_path_is_its_404_shape(client: httpx.Client) -> None:
    """A path near api.box's answers HTTP 200 with body code 404, as api.box reports a bad path."""
    body = client.get("/api/v1/generate/nothing").json()
    assert body["code"] == 404 and body["data"] is None


def test_readme_config_example_loads() -> None:
    """The complete config example in the README is valid and sets what its comments say."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Configuration.*?```yaml\n(.*?)```", text, re.S)
    assert block is not None
    config = config_from_dict(yaml.safe_load(block.group(1)))
    assert config.keys is not None and config.keys["my-key"].credits == 500
    assert config.rate_limits["apibox"]["work"] is not None and config.faults and config.maintenance
    create_app(config)  # the mock starts with it


def test_script_gives_each_coming_call_one_behaviour(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """Each provider call takes the next step; a code the operation lacks plays as normal; then calls are normal."""
    steps = [{"code": 430}, {}, {"code": 403}, {"wire_fault": "empty_200"}]
    assert mock.control.put("/__mock/script", json={"steps": steps}).json()["steps"] == steps
    assert client.get("/api/v1/generate/credit").json()["code"] == 430
    assert client.get("/api/v1/generate/credit").json()["code"] == 200
    assert client.get("/api/v1/generate/credit").json()["code"] == 200  # 403 is not an api.box code
    assert client.get("/api/v1/get-credits").content == b""
    assert client.get("/api/v1/get-credits").status_code == 200
    assert mock.control.get("/__mock/script").json() == {"steps": []}


def test_the_journal_says_whether_a_scenario_came_from_the_script_or_a_header(client: httpx.Client,  # type: ignore[no-untyped-def]
                                                                             mock) -> None:
    """A delivery scenario a script step chose is journaled as the script's, one a `Prefer:` chose as the header's."""
    upload = {"url": "https://example.com/a.mp3", "callback_url": "http://127.0.0.1:9/cb"}
    mock.control.put("/__mock/script", json={"steps": [{"scenario": "callback_fails"}]})
    client.post("/api/v1/sonic/upload", json=upload)
    client.post("/api/v1/sonic/upload", json=upload, headers={"Prefer": "scenario=callback_never"})
    scripted, preferred = mock.journal()[-2:]
    assert (scripted["outcome"]["scenario"], scripted["outcome"]["reason"]) == (
        "callback_fails", "script step: scenario=callback_fails")
    assert (preferred["outcome"]["scenario"], preferred["outcome"]["reason"]) == (
        "callback_never", "Prefer: scenario=callback_never")

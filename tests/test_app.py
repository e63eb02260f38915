"""The app and the command: routes come from the specs, and `stemmock serve` starts a working mock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app
from mockserver.spec import load

HERE = Path(__file__).parent
AUTH = {"Authorization": "Bearer k"}


def test_an_operation_added_to_a_spec_is_served_from_its_examples() -> None:
    """A spec operation without any Python behaviour answers its first example, validated and journaled."""
    app = create_app(MockConfig(), specs=[load(HERE / "specs" / "extra_operation.yaml")])
    with LiveServer(app) as server:
        ok = httpx.post(f"{server.url}/api/v1/sonic/bpm", json={"clip_id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5"},
                        headers=AUTH)
        assert (ok.status_code, ok.json()["data"]) == (200, {"bpm": 120.5})
        chosen = httpx.post(f"{server.url}/api/v1/sonic/bpm", json={"clip_id": "26c9c592-0566-46cf-bb71-91ac1deaa7b5"},
                            headers={**AUTH, "Prefer": "example=slow"})
        assert chosen.json()["data"] == {"bpm": 60}
        bad = httpx.post(f"{server.url}/api/v1/sonic/bpm", json={}, headers=AUTH)
        assert bad.status_code == 400 and "clip_id" in bad.json()["message"]
        journal = httpx.get(f"{server.url}/__mock/journal").json()["exchanges"]
        assert [e["operation"] for e in journal] == ["getBpm"] * 3
        assert journal[2]["violations"][0]["pointer"] == "/body/clip_id"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [["-m", "mockserver"], ["-c", "from mockserver.cli import main; main()", "serve"]])
def test_the_command_serves_both_providers(command: list[str]) -> None:
    """`python -m mockserver` and `stemmock serve` start a server that answers both providers."""
    port = _free_port()
    env = {**os.environ, "STEMMOCK_PORT": str(port)}
    process = subprocess.Popen([sys.executable, *command, "--log-level", "warning"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/get-credits", headers=AUTH)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the server did not start in 20 s"
                time.sleep(0.05)  # polling for the port to open, not waiting on the mock's clock
        assert response.json() == {"credits": 1000, "extra_credits": 0}
        box = httpx.get(f"http://127.0.0.1:{port}/api/v1/generate/credit", headers=AUTH)
        assert box.json() == {"code": 200, "msg": "success", "data": 1000}
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    """An unknown config key stops start-up with exit code 2 and a suggestion."""
    config = tmp_path / "stemmock.yaml"
    config.write_text("duratons:\n  vocal_removal: 1\n")
    result = subprocess.run([sys.executable, "-m", "mockserver", "--config", str(config)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "duratons" in result.stderr and "Did you mean 'durations'?" in result.stderr


@pytest.mark.parametrize("served", [True, False])
def test_serve_moves_the_start_up_heap_out_of_the_collectors_sight(served: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`stemmock serve` freezes everything built by start-up once the server runs; an app used in-process
    (a test suite's fixture) leaves its host's garbage collector alone."""
    import gc

    from mockserver import cli

    app = create_app(MockConfig(clock="manual"))
    if served:  # the app as `stemmock serve` hands it to uvicorn
        handed: list[object] = []
        monkeypatch.setattr(cli.uvicorn, "run", lambda app, **_options: handed.append(app))
        cli.run(MockConfig(), "warning", app)
        assert handed == [app]
    gc.unfreeze()
    try:
        with LiveServer(app) as server, CallbackReceiver() as receiver:
            assert httpx.get(f"{server.url}/api/v1/get-credits", headers=AUTH).status_code == 200
            frozen = gc.get_freeze_count()
            # The first callback loads the HTTP client; what that built is frozen as well.
            httpx.post(f"{server.url}/api/v1/sonic/upload", headers=AUTH, json={
                "url": "https://example.com/a.mp3", "callback_url": receiver.endpoint("upload")})
            httpx.post(f"{server.url}/__mock/clock/advance", json={"seconds": 60})
            assert len(receiver.deliveries) == 1
            refrozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    if served:
        assert frozen > 10_000 and refrozen > frozen, (frozen, refrozen)
    else:
        assert frozen == refrozen == 0, (frozen, refrozen)


def test_a_served_provider_call_leaves_nothing_for_the_garbage_collector() -> None:
    """Through the real server, provider calls are freed as soon as they end: no reference cycle through the
    server's request objects is left for the collector (under load its passes cost several % and the p99)."""
    import gc

    with LiveServer(create_app(MockConfig())) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        assert client.get("/api/v1/get-credits").status_code == 200
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept in gc.garbage to be looked at
        try:
            for _ in range(100):
                assert client.get("/api/v1/get-credits").status_code == 200
                assert client.post("/api/v1/sonic/vox", json={"clip_id": 7}).status_code == 400
            gc.collect()
            cycles = [o for o in gc.garbage if type(o).__name__ == "RequestResponseCycle"]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert cycles == []

"""Operability: packaging, the CLI's conveniences, the verification API, health and the served specs."""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from packaging.requirements import Requirement

from tests.conftest import MockHandle, free_port

SCRIPT = Path(sys.executable).with_name("stemmock")
STEMMOCK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mockserver"]


def test_package_metadata_pins_jsonschema_rs_and_names_an_spdx_license() -> None:
    """The installed metadata requires jsonschema-rs 0.41..1, plain uvicorn with uvloop and httptools, and MIT."""
    meta = importlib.metadata.metadata("stemmock")
    requires = {Requirement(r).name: Requirement(r) for r in meta.get_all("Requires-Dist") or [] if "extra" not in r}
    assert str(requires["jsonschema-rs"].specifier) in ("<1,>=0.41", ">=0.41,<1")
    assert not requires["uvicorn"].extras
    assert {"uvloop", "httptools"} <= set(requires)
    assert meta.get("License-Expression") == "MIT"


def test_violation_pointer_and_did_you_mean_survive_the_validator(client: httpx.Client, mock: MockHandle) -> None:
    """A misspelled enum value reaches the journal with its JSON pointer and the nearest valid name."""
    body = {"taskId": "t", "audioId": "a", "callBackUrl": "http://127.0.0.1:9/cb", "type": "separate_vocals"}
    answer = client.post("/api/v1/vocal-removal/generate", json=body)
    assert answer.status_code == 200 and answer.json()["code"] in (400, 422)
    violations = mock.journal()[-1]["violations"]
    pointers = {v["pointer"]: v for v in violations}
    assert "/body/type" in pointers, violations
    assert re.search(r"Did you mean 'separate_vocal'\?", pointers["/body/type"]["message"])


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           config: str = "") -> tuple[subprocess.Popen[str], str]:
    """A real `stemmock serve` on a free port (manual clock), once it answers; its output merged into stdout."""
    port = free_port()
    cfg = tmp_path / "stemmock.yaml"
    cfg.write_text(config or "{}\n")
    proc = subprocess.Popen([*STEMMOCK, "serve", "--port", str(port), "--clock", "manual", "--config", str(cfg),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):  # start-up, bounded: at most 30 s
        try:
            if httpx.get(f"{url}/__mock/clock", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"stemmock serve did not start: {proc.communicate()[0]}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_serve_help_lists_every_env_var_and_version_prints_it() -> None:
    """`serve --help` names STEMMOCK_<FLAG> for every flag, and `--version` prints the package's version."""
    helptext = subprocess.run([*STEMMOCK, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    flags = re.findall(r"^\s+--([a-z-]+)", helptext, re.M)
    assert len(flags) >= 15
    flat = " ".join(helptext.split())
    for flag in flags:
        env = "STEMMOCK_" + flag.upper().replace("-", "_")
        assert env in flat.replace("STEMMOCK_ ", "STEMMOCK_"), flag
    version = subprocess.run([*STEMMOCK, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.strip() == f"stemmock {importlib.metadata.version('stemmock')}"


def test_serve_prints_one_banner_reads_env_vars_and_logs_calls_and_failed_attempts(tmp_path: Path) -> None:
    """The banner names both providers, control plane, clock and store once; each call and failed attempt logs."""
    proc, url = _serve(tmp_path, "--access-log", env={"STEMMOCK_LOG_LEVEL": "warning", "STEMMOCK_SEED": "7"},
                       config="callbacks: {retries: [1]}\n")
    try:
        closed = f"http://127.0.0.1:{free_port()}/cb"
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k"}, timeout=10) as http:
            created = http.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                                            "callBackUrl": closed, "prompt": "rain"})
            assert created.json()["code"] == 200
            http.post("/__mock/clock/advance", json={"seconds": 2}).raise_for_status()
            http.post("/__mock/clock/advance", json={"seconds": 1}).raise_for_status()
    finally:
        out = _stop(proc)
    assert out.count("stemmock 0.1.0") == 1, out
    assert f"MusicAPI       {url}" in out and f"api.box        {url}" in out and f"{url}/__mock/" in out
    assert "clock manual, store memory, seed 7" in out and str(tmp_path / "stemmock.yaml") in out
    assert "Uvicorn running" not in out  # STEMMOCK_LOG_LEVEL=warning reached the server
    assert re.search(r'127\.0\.0\.1:\d+ - "POST /api/v1/generate HTTP/1.1" 200 generateMusic success 200', out), out
    attempts = [line for line in out.splitlines() if "attempt" in line and closed in line]
    assert len(attempts) == 2, out
    assert "attempt 1" in attempts[0] and "next retry at t=" in attempts[0] and "in 1 s" in attempts[0]
    assert "attempt 2" in attempts[1] and "given up after 2 attempts" in attempts[1]

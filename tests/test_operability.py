"""Operability: packaging, the CLI's conveniences, the verification API, health and the served specs."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree
from typing import Any

import httpx
import pytest
import xmlschema
import yaml
from openapi_spec_validator import validate
from packaging.requirements import Requirement

from contracts.live import LiveServer
from mockserver import MockConfig, create_app, load_config
from mockserver.config import KeyConfig
from mockserver.spec import spec_path
from tests.conftest import MockHandle, RedisServer, free_port

pytest_plugins = ["pytester"]

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
    assert f"inspector      {url}/__mock/ui\n" in out  # no admin token: the page does not ask for one
    assert "clock manual, store memory, seed 7" in out and str(tmp_path / "stemmock.yaml") in out
    assert "Uvicorn running" not in out  # STEMMOCK_LOG_LEVEL=warning reached the server
    assert re.search(r'127\.0\.0\.1:\d+ - "POST /api/v1/generate HTTP/1.1" 200 generateMusic success 200', out), out
    attempts = [line for line in out.splitlines() if "attempt" in line and closed in line]
    assert len(attempts) == 2, out
    assert "attempt 1" in attempts[0] and "next retry at t=" in attempts[0] and "in 1 s" in attempts[0]
    assert "attempt 2" in attempts[1] and "given up after 2 attempts" in attempts[1]


def test_journal_records_headers_with_the_key_redacted_and_filters_by_each_field(client: httpx.Client,
                                                                                  mock: MockHandle) -> None:
    """Each filter narrows the journal and `journal/count` answers the same number; Authorization is redacted."""
    client.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}, headers={"X-Trace": "one"})
    mock.advance(10)
    since = mock.control.get("/__mock/clock").json()["now"]
    client.post("/api/v1/sonic/upload", json={"url": "https://example.com/b.mp3"},
                headers={"Authorization": "Bearer other-key"})
    client.get("/api/v1/sonic/task/nope")
    client.post("/api/v1/sonic/upload", json={})  # invalid: rejected
    [first, *_rest] = mock.journal()
    headers = first["request"]["headers"]
    assert headers["x-trace"] == "one" and "test-key" not in str(first)
    assert headers["authorization"] == f"Bearer {first['api_key']}" and "…" in first["api_key"]

    def count(**query: Any) -> int:
        listed = mock.control.get("/__mock/journal", params=query).json()
        counted = mock.control.get("/__mock/journal/count", params=query).json()["count"]
        assert listed["count"] == counted == len(listed["exchanges"]), query
        return counted

    assert count() == 4
    assert count(operation="uploadMusic") == count(operation="POST /api/v1/sonic/upload") == 3
    assert count(api_key="test-key") == 3 and count(api_key=first["api_key"]) == 3 and count(api_key="other-key") == 1
    assert count(outcome="rejected") == 1 and count(outcome="success") == 2
    assert count(status=404) == 1 and count(status=200, operation="uploadMusic") == 2
    assert count(since=since) == 3
    assert count(path="/api/v1/sonic/task/nope") == 1 and count(path="/api/v1/sonic/*") == 4
    assert count(path="/api/v1/sonic/*", api_key="test-key", outcome="success") == 1
    bad = mock.control.get("/__mock/journal/count", params={"outcome": "sucess"})
    assert bad.status_code == 400 and "outcome" in bad.json()["message"]


def test_health_answers_version_store_and_uptime(client: httpx.Client, mock: MockHandle) -> None:
    """`/__mock/health` is 200 with the version, a reachable store and a growing uptime."""
    first = mock.control.get("/__mock/health")
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "ok" and body["version"] == importlib.metadata.version("stemmock")
    assert body["store"]["reachable"] is True and body["store"]["kind"] in ("memory", "redis")
    assert mock.control.get("/__mock/health").json()["uptime_s"] >= body["uptime_s"] > 0


def test_health_is_503_when_the_redis_store_is_unreachable(redis_server: RedisServer) -> None:
    """A mock whose Redis went away answers 503 with the store's error instead of a 500 or a hang."""
    own = RedisServer(str(shutil.which("redis-server")))  # one this test may stop; the session's stays up
    try:
        app = create_app(MockConfig(clock="manual", store=own.url(0)))
        with LiveServer(app) as live:
            assert httpx.get(f"{live.url}/__mock/health").status_code == 200
            own.stop()
            down = httpx.get(f"{live.url}/__mock/health", timeout=30)
            assert down.status_code == 503, down.text
            assert down.json()["status"] == "unavailable" and down.json()["store"]["reachable"] is False
            assert str(own.port) in down.json()["store"]["error"]
    finally:
        own.stop()


@pytest.mark.parametrize("name", ["musicapi", "apibox", "control"])
def test_specs_are_served_as_json_and_yaml_with_the_mocks_own_server(mock: MockHandle, name: str) -> None:
    """Each spec is served as valid OpenAPI 3.1 in both forms, its servers pointing at the mock that serves it."""
    as_json = mock.control.get(f"/__mock/specs/{name}.json")
    as_yaml = mock.control.get(f"/__mock/specs/{name}.yaml")
    assert as_json.status_code == as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    document = as_json.json()
    assert yaml.safe_load(as_yaml.text) == document
    assert document["servers"] == [{"url": mock.url, "description": "this stemmock"}]
    validate(document)
    source = yaml.safe_load(spec_path(name).read_text(encoding="utf-8"))
    assert set(document["paths"]) == set(source["paths"])
    assert mock.control.get(f"/__mock/specs/{name}.xml").status_code == 400


VERIFY = '''
import httpx
import pytest


def _calls(stemmock):
    with httpx.Client(base_url=stemmock.url, headers={"Authorization": "Bearer test-key"}) as http:
        http.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"})
        http.post("/api/v1/sonic/upload", json={"url": "https://example.com/b.mp3"},
                  headers={"Authorization": "Bearer other-key"})


def test_verified(stemmock):
    _calls(stemmock)
    stemmock.assert_called("uploadMusic", times=2)
    stemmock.assert_called("uploadMusic", times=1, api_key="other-key", status=200)
    stemmock.assert_called("POST /api/v1/sonic/upload", times=1, api_key="test-key", path="/api/v1/sonic/*")
    assert [c["api_key"].startswith("othe") for c in stemmock.calls("uploadMusic", outcome="success")] == [
        False, True]
    assert stemmock.calls("getVox") == []


def test_near_misses(stemmock):
    _calls(stemmock)
    stemmock.assert_called("uploadMusic", times=1, api_key="third-key")
'''


def test_fixture_verifies_calls_and_lists_near_misses(pytester: pytest.Pytester) -> None:
    """`stemmock.assert_called` passes on the right count and otherwise lists each near miss and what differs."""
    pytester.makepyfile(test_verify=VERIFY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "expected uploadMusic with api_key='third-key' to be called 1 time(s); it was called 0 time(s)." in text
    assert "Near misses (newest last):" in text
    # The failure as pytest shows it ("E" lines); with CI set, the short summary repeats it in full.
    misses = [line for line in text.splitlines() if line.startswith("E ") and "POST /api/v1/sonic/upload -> HTTP 200"
              in line]
    assert len(misses) == 2 and all("(differs: api_key)" in line for line in misses), text


BROKEN_CLIENT = """
import os, httpx
httpx.post(os.environ["STEMMOCK_URL"] + "/api/v1/vocal-removal/generate",
           headers={"Authorization": "Bearer " + os.environ["STEMMOCK_API_KEY"]},
           json={"taskId": "t", "audioId": "a", "callBackURL": os.environ["STEMMOCK_CALLBACK_URL"]})
"""


def test_check_client_writes_junit_xml_that_the_schema_accepts(tmp_path: Path) -> None:
    """`--junit FILE` writes valid JUnit XML: a case per check and per documented code, failures with the text."""
    out = tmp_path / "report.xml"
    done = subprocess.run([*STEMMOCK, "check-client", "--time-scale", "0.01", "--timeout", "30", "--junit", str(out),
                           "--", sys.executable, "-c", BROKEN_CLIENT], capture_output=True, text=True, timeout=90,
                          env={k: v for k, v in os.environ.items() if not k.startswith("STEMMOCK_")})
    assert done.returncode == 1, done.stdout + done.stderr
    xmlschema.XMLSchema(str(Path(__file__).with_name("junit.xsd"))).validate(str(out))
    root = ElementTree.parse(out).getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    fields = cases[("stemmock.checks", "request has only documented fields")].find("failure")
    assert fields is not None and "Did you mean 'callBackUrl'?" in (fields.text or "")
    assert "/body/callBackURL" in fields.get("message", "")
    assert cases[("stemmock.checks", "a duplicate callback is not processed twice")].find("failure") is None
    op = "POST /api/v1/vocal-removal/generate"
    met, unmet = cases[(op, f"{op} meets documented code 422")], cases[(op, f"{op} meets documented code 200")]
    assert met.find("skipped") is None and unmet.find("skipped") is not None
    assert cases[("stemmock.command", "the command ends successfully")].find("failure") is None
    failures = sum(1 for c in root.iter("testcase") if c.find("failure") is not None)
    assert int(root.get("failures", "-1")) == failures >= 2 and int(root.get("tests", "0")) == len(cases)


@pytest.mark.parametrize(("config", "message"), [
    ("rate_limits: {apibox: {work: {limit: 1}}}", "rate_limits.apibox.work.window is missing; expected a number."),
    ("faults: [{rate: 0.5, codes: [500]}]", "faults[0].operation is missing; expected a string."),
    ("maintenance: [{start: 0}]", "maintenance[0].end is missing; expected a number or a string."),
    ("latency: [{operation: nope}]", "latency[0].operation is 'nope', which names no provider operation."),
    ("faults: [{operation: getVoxx, rate: 1, codes: [500]}]", "Did you mean 'getVox'?"),
    ("costs: {voxx: 2}", "costs.voxx is not a cost key of the specs. Did you mean 'vox'?"),
    ("maintenance: [{start: 0, end: 1, provider: apibx}]", "maintenance[0].provider is 'apibx'; expected one of"),
    ("port: [1,\n", "is not valid YAML: "),
])
def test_serve_refuses_a_bad_config_with_exit_2_and_the_keys_path(tmp_path: Path, config: str, message: str) -> None:
    """Each bad config stops `stemmock serve` with exit 2 and one line naming the key, never a traceback."""
    path = tmp_path / "stemmock.yaml"
    path.write_text(config + "\n", encoding="utf-8")
    done = subprocess.run([*STEMMOCK, "serve", "--port", "0", "--config", str(path)], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("STEMMOCK_")})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("STEMMOCK_LIMITS", "{max_json_depth: deep}",
     "STEMMOCK_LIMITS: limits.max_json_depth is 'deep'; expected an integer."),
    ("STEMMOCK_RETENTION", '{"max_task": 5}', "STEMMOCK_RETENTION: retention.max_task is not a known setting. "
                                              "Did you mean 'max_tasks'?"),
    ("STEMMOCK_DRIBBLE_SECONDS", "soon", "STEMMOCK_DRIBBLE_SECONDS: dribble_seconds is 'soon'; expected a number."),
])
def test_serve_refuses_a_bad_environment_value_with_exit_2_naming_the_variable(name: str, raw: str,
                                                                               message: str) -> None:
    """A bad `STEMMOCK_*` value stops `stemmock serve` with exit 2 and one line naming the variable and the key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMMOCK_")}
    done = subprocess.run([*STEMMOCK, "serve", "--port", "0"], capture_output=True, text=True, timeout=60,
                          env={**env, name: raw})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"stemmock: {message}"


def test_serve_says_a_missing_config_file_does_not_exist(tmp_path: Path) -> None:
    """A config path that does not exist is reported as such, with exit 2."""
    done = subprocess.run([*STEMMOCK, "serve", "--config", str(tmp_path / "nope.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "nope.yaml does not exist; expected a YAML config file." in done.stderr


@pytest.mark.parametrize(("name", "raw", "field", "value"), [
    ("STEMMOCK_ADMIN_TOKEN", "0123", "admin_token", "0123"),
    ("STEMMOCK_ADMIN_TOKEN", "yes", "admin_token", "yes"),
    ("STEMMOCK_PUBLIC_URL", "null", "public_url", "null"),
    ("STEMMOCK_SEED", " 7 ", "seed", 7),
    ("STEMMOCK_JOURNAL_SIZE", "5", "journal_size", 5),
    ("STEMMOCK_HANG_SECONDS", "1.5", "hang_seconds", 1.5),
    ("STEMMOCK_COSTS", '{"vox": 3}', "costs", {"vox": 3.0}),
    ("STEMMOCK_KEYS", "{k: {credits: 5}}", "keys", {"k": KeyConfig(credits=5)}),
    ("STEMMOCK_ACCESS_LOG", "yes", "access_log", True),
])
def test_environment_values_are_parsed_by_the_fields_type(monkeypatch: pytest.MonkeyPatch, name: str, raw: str,
                                                           field: str, value: Any) -> None:
    """A string field keeps the text as given; numbers parse as numbers and structures as JSON, never YAML."""
    for key in list(os.environ):
        if key.startswith("STEMMOCK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(name, raw)
    assert getattr(load_config(), field) == value


def test_serve_admin_token_from_the_environment_keeps_its_leading_zero(tmp_path: Path) -> None:
    """`STEMMOCK_ADMIN_TOKEN=0123` guards the control plane with the token '0123', not the number 83."""
    proc, url = _serve_guarded(tmp_path)
    try:
        assert httpx.get(f"{url}/__mock/clock", headers={"Authorization": "Bearer 83"}).status_code == 401
        assert httpx.get(f"{url}/__mock/clock", headers={"Authorization": "Bearer 0123"}).status_code == 200
    finally:
        _stop(proc)


def _serve_guarded(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([*STEMMOCK, "serve", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "STEMMOCK_ADMIN_TOKEN": "0123"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):  # start-up, bounded: at most 30 s
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/__mock/clock", timeout=1).status_code == 401:
                return proc, url
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"stemmock serve did not start: {proc.communicate()[0]}")

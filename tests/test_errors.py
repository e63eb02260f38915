"""Errors from real causes and on demand, each in the provider's own transport, through the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contracts.live import LiveServer
from mockserver import MockConfig, create_app
from mockserver.config import FaultRule, KeyConfig, LatencyRule, RateLimit
from mockserver.spec import load, spec_path

SPECS = {name: load(spec_path(name)) for name in ("musicapi", "apibox")}
AUTH = {"Authorization": "Bearer test-key"}
CLIP = "26c9c592-0566-46cf-bb71-91ac1deaa7b5"
SAMPLE = {  # a valid request per operation (resources need not exist: a forced outcome comes first)
    "getVox": {"json": {"clip_id": CLIP}},
    "uploadMusic": {"json": {"url": "https://example.com/a.mp3"}},
    "createMusic": {"json": {"task_type": "create_music", "mv": "sonic-v5", "prompt": "x"}},
    "getTask": {},
    "stemsBasic": {"json": {"clip_id": CLIP}},
    "stemsFull": {"json": {"clip_id": CLIP}},
    "getCredits": {},
    "separateVocals": {"json": {"taskId": "a" * 32, "audioId": "b", "callBackUrl": "https://example.com/cb"}},
    "getVocalSeparationDetails": {"params": {"taskId": "a" * 32}},
    "generateMusic": {"json": {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "x",
                               "callBackUrl": "https://example.com/cb"}},
    "getMusicGenerationDetails": {"params": {"taskId": "a" * 32}},
    "getRemainingCredits": {},
}
CASES = [(name, op.operation_id, code) for name, spec in SPECS.items() for op in spec.operations
         for code in op.documented_codes]


def call(client: httpx.Client, provider: str, operation_id: str, **extra: Any) -> httpx.Response:
    op = SPECS[provider].by_id[operation_id]
    path = op.path.replace("{task_id}", "6b1f7c8e-1d2a-4b3c-9d4e-5f6a7b8c9d0e")
    kwargs = {**SAMPLE[operation_id], **extra}
    return client.request(op.method, path, **kwargs)


def assert_outcome(provider: str, operation_id: str, response: httpx.Response, code: int) -> dict[str, Any]:
    """The response carries `code` in the provider's transport and validates against the spec."""
    op = SPECS[provider].by_id[operation_id]
    body = response.json()
    if op.provider.body_transport:
        assert response.status_code == 200
        assert body["code"] == code, body
        doc = op.responses[200]
    else:
        assert response.status_code == code, response.text
        doc = op.responses[code]
    if doc.validator is not None:
        assert not [e.message for e in doc.validator.iter_errors(body)]
    return dict(body)


@pytest.mark.parametrize(("provider", "operation_id", "code"), CASES)
def test_prefer_code_forces_every_documented_outcome(client: httpx.Client, provider: str, operation_id: str,
                                                     code: int) -> None:
    """`Prefer: code=<n>` answers each documented code of each operation in the provider's transport."""
    response = call(client, provider, operation_id, headers={"Prefer": f"code={code}"})
    if code == 200 and operation_id in ("getVox", "stemsBasic", "stemsFull", "getTask", "separateVocals"):
        return  # code=200 is the ordinary path, which needs a real resource: covered by the flow tests
    assert_outcome(provider, operation_id, response, code)


def test_prefer_undocumented_code_lists_the_documented_ones(client: httpx.Client) -> None:
    """An undocumented code is refused with a message listing every documented code."""
    body = client.get("/api/v1/generate/credit", headers={"Prefer": "code=418"}).json()
    assert body["code"] == 400 and "418" in body["msg"] and "430, 455, 500" in body["msg"]
    music = client.get("/api/v1/get-credits", headers={"Prefer": "code=418"})
    assert music.status_code == 400 and "403" in music.json()["message"]


def test_prefer_example_answers_the_named_example(client: httpx.Client) -> None:
    """`Prefer: example=<name>` answers that example verbatim; an unknown name lists the known ones."""
    body = client.post("/api/v1/generate", json=SAMPLE["generateMusic"]["json"],
                       headers={"Prefer": "example=call_frequency_too_high"}).json()
    assert body == SPECS["apibox"].by_id["generateMusic"].examples()["call_frequency_too_high"][1]
    unknown = client.get("/api/v1/generate/credit", headers={"Prefer": "example=nope"}).json()
    assert unknown["code"] == 400 and "success" in unknown["msg"]


def test_musicapi_forced_429_has_retry_after(client: httpx.Client) -> None:
    """A forced MusicAPI 429 carries a Retry-After header in whole seconds."""
    response = client.get("/api/v1/get-credits", headers={"Prefer": "code=429"})
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1


def test_apibox_rate_window_answers_430_then_recovers(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """The 21st generate within 10 s of the clock answers body code 430; 10 s later calls work again."""
    codes = [call(client, "apibox", "generateMusic").json()["code"] for _ in range(21)]
    assert codes == [200] * 20 + [430]
    assert call(client, "apibox", "getRemainingCredits").json()["code"] == 200  # polling has its own limit
    mock.advance(10)
    assert call(client, "apibox", "generateMusic").json()["code"] == 200


def test_maintenance_toggle_is_455_and_503(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """Maintenance answers api.box body code 455 and MusicAPI HTTP 503 on every call, until turned off."""
    state = mock.control.put("/__mock/maintenance", json={"on": True}).json()
    assert state == {"maintenance": {"musicapi": True, "apibox": True}}
    for operation_id in ("generateMusic", "getRemainingCredits", "getMusicGenerationDetails"):
        assert_outcome("apibox", operation_id, call(client, "apibox", operation_id), 455)
    for operation_id in ("getVox", "getCredits", "uploadMusic"):
        assert_outcome("musicapi", operation_id, call(client, "musicapi", operation_id), 503)
    mock.control.put("/__mock/maintenance", json={"on": False, "provider": "apibox"})
    assert call(client, "apibox", "getRemainingCredits").json()["code"] == 200
    assert call(client, "musicapi", "getCredits").status_code == 503


def test_prompt_too_long_is_413(client: httpx.Client) -> None:
    """A non-custom prompt over 500 characters answers body code 413 naming the field and the limit."""
    body = call(client, "apibox", "generateMusic", json={**SAMPLE["generateMusic"]["json"], "prompt": "x" * 501})
    assert_outcome("apibox", "generateMusic", body, 413)
    assert "prompt" in body.json()["msg"] and "500" in body.json()["msg"]
    ok = call(client, "apibox", "generateMusic", json={**SAMPLE["generateMusic"]["json"], "prompt": "x" * 500})
    assert ok.json()["code"] == 200


def test_scripted_fault_fails_twice_then_succeeds(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """A fault for "POST /api/v1/generate" with times=2 fails the next two calls with 430, then calls work."""
    added = mock.control.post("/__mock/faults", json={"operation": "POST /api/v1/generate", "code": 430, "times": 2})
    assert added.status_code == 201 and added.json()["operation"] == "generateMusic"
    codes = [call(client, "apibox", "generateMusic").json()["code"] for _ in range(3)]
    assert codes == [430, 430, 200]
    assert mock.control.get("/__mock/faults").json()["faults"][0]["used"] == 2


def test_scripted_fault_can_target_one_api_key(client: httpx.Client, mock) -> None:  # type: ignore[no-untyped-def]
    """A fault with api_key fails only that key's calls."""
    mock.control.post("/__mock/faults", json={"operation": "getCredits", "code": 500, "api_key": "other"})
    assert call(client, "musicapi", "getCredits").status_code == 200
    other = call(client, "musicapi", "getCredits", headers={"Authorization": "Bearer other"})
    assert_outcome("musicapi", "getCredits", other, 500)


def test_scripted_fault_refuses_undocumented_codes_and_unknown_operations(mock) -> None:  # type: ignore[no-untyped-def]
    """The faults endpoint names what is wrong: an undocumented code, or an operation that does not exist."""
    bad_code = mock.control.post("/__mock/faults", json={"operation": "getCredits", "code": 430})
    assert bad_code.status_code == 422 and "documented codes" in bad_code.json()["message"]
    typo = mock.control.post("/__mock/faults", json={"operation": "generateMusik", "code": 500})
    assert typo.status_code == 404 and "Did you mean 'generateMusic'?" in typo.json()["message"]
    both = mock.control.post("/__mock/faults", json={"operation": "getCredits", "code": 500,
                                                     "wire_fault": "empty_200"})
    assert both.status_code == 400


@pytest.mark.parametrize("fault", ["connection_reset", "truncated_body", "malformed_json", "empty_200"])
def test_wire_faults_break_the_answer(client: httpx.Client, mock, fault: str) -> None:  # type: ignore[no-untyped-def]
    """Each wire fault reaches a real client as the broken answer it names, and the next call is whole."""
    mock.control.post("/__mock/faults", json={"operation": "getCredits", "wire_fault": fault})
    if fault in ("connection_reset", "truncated_body"):
        with pytest.raises(httpx.TransportError):
            call(client, "musicapi", "getCredits")
    else:
        response = call(client, "musicapi", "getCredits")
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
        if fault == "empty_200":
            assert response.content == b""
    assert call(client, "musicapi", "getCredits").json() == {"credits": 1000, "extra_credits": 0}
    assert mock.journal()[-2]["outcome"]["wire_fault"] == fault


@pytest.fixture()
def tuned() -> Iterator[LiveServer]:
    """A mock with MusicAPI rate limits, latency, a short dribble and configured keys."""
    config = MockConfig(clock="manual", dribble_seconds=0.3, keys={"test-key": KeyConfig(credits=50)},
                        rate_limits={"musicapi": {"work": RateLimit(1, 3.0), "poll": None},
                                     "apibox": {"work": None, "poll": RateLimit(2, 1.0)}},
                        latency=(LatencyRule(operation="getCredits", fixed=0.25),))
    with LiveServer(create_app(config)) as server:
        yield server


def test_configured_limits_latency_and_dribble(tuned: LiveServer) -> None:
    """MusicAPI answers 429 with Retry-After past its window, api.box polling 405, latency and dribble delay."""
    with httpx.Client(base_url=tuned.url, headers=AUTH, timeout=30) as client:
        first = call(client, "musicapi", "uploadMusic")
        second = call(client, "musicapi", "uploadMusic")
        assert first.status_code == 200
        assert_outcome("musicapi", "uploadMusic", second, 429)
        assert second.headers["retry-after"] == "3"
        polls = [call(client, "apibox", "getRemainingCredits").json()["code"] for _ in range(3)]
        assert polls == [200, 200, 405]
        slow = call(client, "musicapi", "getCredits")
        assert slow.elapsed.total_seconds() >= 0.25
        httpx.post(f"{tuned.url}/__mock/faults", json={"operation": "getRemainingCredits",
                                                        "wire_fault": "slow_dribble"})
        httpx.post(f"{tuned.url}/__mock/clock/advance", json={"seconds": 5})
        dribbled = call(client, "apibox", "getRemainingCredits")
        assert dribbled.json()["code"] == 200 and dribbled.elapsed.total_seconds() >= 0.25
        unknown = call(client, "musicapi", "getCredits", headers={"Authorization": "Bearer someone-else"})
        assert_outcome("musicapi", "getCredits", unknown, 401)


def _seeded_session(seed: int) -> list[dict[str, Any]]:
    config = MockConfig(clock="manual", clock_start=1_767_225_600, seed=seed, rate_limits={"apibox": {"work": None}},
                        faults=(FaultRule(operation="*", rate=0.4, codes=(500, 430, 403),
                                          wire_faults=("malformed_json",)),))
    with LiveServer(create_app(config)) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        for _ in range(12):
            call(client, "apibox", "generateMusic")
            call(client, "musicapi", "uploadMusic")
            call(client, "musicapi", "getCredits")
        exchanges = list(httpx.get(f"{server.url}/__mock/journal").json()["exchanges"])
    for exchange in exchanges:  # the Host header names each session's own port
        exchange["request"]["headers"].pop("host")
    return exchanges


def test_seeded_faults_are_reproducible() -> None:
    """Two sessions with the same seed and requests have identical journals; another seed differs."""
    first, again, other = _seeded_session(7), _seeded_session(7), _seeded_session(8)
    assert first == again
    kinds = [e["outcome"]["kind"] for e in first]
    assert "success" in kinds and {"error", "wire"} & set(kinds)
    assert [e["outcome"] for e in first] != [e["outcome"] for e in other]


def test_a_fault_another_worker_used_up_is_decided_again_on_a_fresh_read() -> None:
    """When the fault decide chose has no turn left by the time it is taken (another worker took it), the call
    is decided again from the store, not from what it read before: it succeeds, and is not refused forever."""
    import asyncio

    from mockserver.app import Mock
    from mockserver.store import MemoryStore

    class RacedStore(MemoryStore):
        takes = 0

        def take_fault(self, fault_id: str) -> bool:
            self.takes += 1
            if self.takes == 1:  # the other worker takes the last turn just before this one
                super().take_fault(fault_id)
                return False
            if self.takes > 3:  # decided again and again from what was read before: the call would spin
                raise RuntimeError("the fault was chosen again from a stale read")
            return super().take_fault(fault_id)

    async def calls() -> list[int]:
        mock = Mock(MockConfig(), store=RacedStore())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mock), base_url="http://mock",
                                     headers=AUTH) as c:
            added = await c.post("/__mock/faults", json={"operation": "getCredits", "code": 500, "times": 1})
            assert added.status_code == 201
            answers = [await c.get("/api/v1/get-credits") for _ in range(2)]
            faults = (await c.get("/__mock/faults")).json()["faults"]
        assert [f["used"] for f in faults] == [1]
        return [r.status_code for r in answers]

    assert asyncio.run(calls()) == [200, 200]


def test_the_backoff_check_holds_a_client_to_the_answers_retry_after(tuned: LiveServer) -> None:
    """The journal keeps the answer's headers, so the kit's backoff check asks for the Retry-After the mock sent,
    not only its one-second floor: a retry 1.5 s after `Retry-After: 3` is reported, one after 2 s of
    `Retry-After: 2` is not."""
    from contracts.checks import CHECKS, Run
    from contracts.referee import Referee
    from mockserver.spec import PROVIDER_SPECS

    def advance(seconds: float) -> None:
        httpx.post(f"{tuned.url}/__mock/clock/advance", json={"seconds": seconds}).raise_for_status()

    with httpx.Client(base_url=tuned.url, headers=AUTH, timeout=30) as client:
        assert call(client, "musicapi", "uploadMusic").status_code == 200
        first = call(client, "musicapi", "uploadMusic")
        advance(1.5)
        second = call(client, "musicapi", "uploadMusic")
        advance(2)
        assert call(client, "musicapi", "uploadMusic").status_code == 200
        journal = client.get("/__mock/journal", params={"operation": "uploadMusic"}).json()["exchanges"]
    assert (first.headers["retry-after"], second.headers["retry-after"]) == ("3", "2")
    assert [e["response"]["headers"] for e in journal] == [{}, {"Retry-After": "3"}, {"Retry-After": "2"}, {}]
    run = Run(Referee([load(spec_path(name)) for name in PROVIDER_SPECS]), journal)
    found = CHECKS["waits after a call-frequency error before retrying"](run)
    assert [v.detail for v in found] == [
        "retried 1.500 s after code 429 (call frequency too high); wait at least 3 s (the answer's Retry-After: 3)"]


@pytest.mark.parametrize(("rules", "expected"), [
    ((("getCredits", 0.3), ("*", 0.05)), {"getCredits": 0.3, "getRemainingCredits": 0.05}),
    ((("*", 0.05), ("getCredits", 0.3)), {"getCredits": 0.05, "getRemainingCredits": 0.05}),
    ((("GET /api/v1/get-credits", 0.2),), {"getCredits": 0.2, "getRemainingCredits": 0.0}),
])
def test_the_first_latency_rule_that_names_an_operation_applies(rules: tuple[tuple[str, float], ...],
                                                                 expected: dict[str, float]) -> None:
    """Latency rules are matched in the order written: the first naming the operation (by id, key or `*`) wins."""
    app = create_app(MockConfig(latency=tuple(LatencyRule(operation=name, fixed=s) for name, s in rules)))
    mock = app.state.mock
    ops = {op.operation_id: op for spec in mock.specs for op in spec.operations}
    assert {name: mock.policy.latency(ops[name]) for name in expected} == expected

"""The pytest plugin, used from a separate test project as a user would (pytester, a fresh pytest process)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFORMING = '''
import httpx

def test_vox_flow(stemmock):
    """A client that keeps the contract passes."""
    with httpx.Client(base_url=stemmock.url, headers={"Authorization": "Bearer test-key"}) as c:
        clip = c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
        vox = c.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30})
        assert vox.status_code == 200
    assert [e["operation"] for e in stemmock.journal] == ["uploadMusic", "getVox"]
'''

BROKEN = '''
import httpx

def test_typo_in_a_field(stemmock):
    """A client that misspells callBackUrl and sends a bad enum value."""
    with httpx.Client(base_url=stemmock.url, headers={"Authorization": "Bearer test-key"}) as c:
        c.post("/api/v1/vocal-removal/generate", json={"taskId": "a" * 32, "audioId": "b",
                                                       "callbackUrl": "https://example.com/cb",
                                                       "type": "split_stems"})
        c.get("/api/v1/sonic/tasks")
'''


def test_a_conforming_client_passes(pytester: pytest.Pytester) -> None:
    """The `stemmock` fixture comes from the installed plugin and a valid flow passes."""
    pytester.makepyfile(CONFORMING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_referee_fails_the_test_with_every_violation(pytester: pytest.Pytester) -> None:
    """Teardown lists each violation with operation, pointer, expectation and a suggestion."""
    pytester.makepyfile(BROKEN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    text = result.stdout.str()
    assert "POST /api/v1/vocal-removal/generate" in text
    assert "/body/callbackUrl" in text and "Did you mean 'callBackUrl'?" in text
    assert "Did you mean 'split_stem'?" in text
    assert "no provider has GET /api/v1/sonic/tasks" in text


def test_strict_can_be_turned_off(pytester: pytest.Pytester) -> None:
    """`@pytest.mark.stemmock(strict=False)` lets a test send invalid requests on purpose."""
    pytester.makepyfile("import pytest\n" + BROKEN.replace("def test_typo", "@pytest.mark.stemmock(strict=False)\n"
                                                                         "def test_typo"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_marker_sets_credits_and_scenario_and_fixtures_drive_the_mock(pytester: pytest.Pytester) -> None:
    """credits and scenario from the marker apply; clock, fault, maintenance and the receiver work."""
    pytester.makepyfile('''
import httpx, pytest

@pytest.mark.stemmock(credits=12, scenario="callback_duplicate")
def test_flow(stemmock, callback_receiver):
    h = {"Authorization": "Bearer test-key"}
    with httpx.Client(base_url=stemmock.url, headers=h) as c:
        assert c.get("/api/v1/generate/credit").json()["data"] == 12
        task = c.post("/api/v1/generate", json={"customMode": False, "instrumental": False, "model": "V4_5",
                      "prompt": "x", "callBackUrl": callback_receiver.endpoint()}).json()["data"]["taskId"]
        callback_receiver.fail_next(1)
        stemmock.clock.advance(10)
        stemmock.clock.advance(60)
        stages = [d.json["data"]["callbackType"] for d in callback_receiver.accepted()]
        assert stages.count("complete") == 2  # duplicated, and the failed first attempt was retried
        stemmock.fault("getRemainingCredits", 500, times=1)
        assert c.get("/api/v1/generate/credit").json()["code"] == 500
        stemmock.maintenance(True, provider="apibox")
        assert c.get("/api/v1/generate/credit").json()["code"] == 455
        assert c.get("/api/v1/generate/credit").json()["code"] == 455
        stemmock.set_credits("test-key", 0)
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_in_process_app_fixture(pytester: pytest.Pytester) -> None:
    """`stemmock_app` serves an httpx client with no socket and shares the control methods."""
    pytester.makepyfile('''
import asyncio, httpx

def test_in_process(stemmock_app):
    async def flow():
        async with httpx.AsyncClient(transport=stemmock_app.transport, base_url="http://stemmock",
                                     headers={"Authorization": "Bearer test-key"}) as c:
            created = await c.post("/api/v1/sonic/create", json={"task_type": "create_music", "mv": "sonic-v5",
                                                                  "prompt": "x"})
            return created.json()["task_id"]
    task = asyncio.run(flow())
    assert stemmock_app.clock.advance(60)["now"] > 0
    assert [e["operation"] for e in stemmock_app.journal] == ["createMusic"]
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


OUTCOMES = '''
import httpx
import pytest

GENERATE = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a song",
            "callBackUrl": "https://example.com/cb"}


@pytest.mark.stemmock(task_outcome={"generateMusic": "sensitive_word_error"}, faults=["getCredits=500"])
def test_marker_sets_task_outcomes_and_faults(stemmock):
    """The marker's task_outcome and faults are in place when the test starts."""
    with httpx.Client(base_url=stemmock.url, headers={"Authorization": "Bearer test-key"}) as c:
        assert c.get("/api/v1/get-credits").status_code == 500
        task = c.post("/api/v1/generate", json=GENERATE).json()["data"]["taskId"]
        stemmock.clock.advance(10)
        data = c.get("/api/v1/generate/record-info", params={"taskId": task}).json()["data"]
        assert data["status"] == "SENSITIVE_WORD_ERROR"


@pytest.mark.stemmock(script=[{"example": "unknown_task"}])
def test_marker_queues_a_script(stemmock):
    """The marker's script answers the first call with the named example."""
    with httpx.Client(base_url=stemmock.url, headers={"Authorization": "Bearer test-key"}) as c:
        body = c.get("/api/v1/generate/record-info", params={"taskId": "a" * 32}).json()
        assert body == {"code": 200, "msg": "success", "data": None}


@pytest.mark.stemmock(receiver="refuse*1")
def test_marker_makes_the_receiver_refuse(callback_receiver):
    """receiver='refuse*1': the receiver answers the first delivery 503, the next 200."""
    statuses = [httpx.post(callback_receiver.endpoint(), json={}).status_code for _ in range(2)]
    assert statuses == [503, 200]
'''


def test_marker_provokes_outcomes(pytester: pytest.Pytester) -> None:
    """task_outcome, faults, script and receiver on the marker set up the mock and the receiver."""
    pytester.makepyfile(OUTCOMES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)

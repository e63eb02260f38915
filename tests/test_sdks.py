"""The two published SDKs through the kit, on their defaults: their real weaknesses are reported, their correct
behaviour (musicapi-sdk's retries of a 500 with backoff, suno-easy's handling of a failed separation) is not."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from musicapi import MusicAPIError
from suno_easy.exceptions import SunoError

from contracts.check_client import CheckOptions, check_client
from contracts.conformance import Harness, Result, describe
from examples import sdks

EXPECTED = (SunoError, MusicAPIError, TimeoutError)  # even a declared client timeout does not hide a failed task
SDKS = str(Path(__file__).resolve().parent.parent / "examples" / "sdks.py")
STOPS = "stops on a terminal failure and surfaces it"
POLLING = "never polls faster than documented"


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    shared = Harness()
    yield shared
    shared.close()


def titles(result: Result) -> set[str]:
    return {v.title for v in result.violations}


@pytest.mark.parametrize("outcome", ["generate_audio_failed", "sensitive_word_error", "callback_exception",
                                     "create_task_failed"])
def test_suno_easy_polls_a_failed_generation_until_its_timeout(harness: Harness, outcome: str) -> None:
    """suno-easy does not read these statuses as terminal: the report names the task, its status and the polls."""
    result = harness.run(sdks.suno_easy_generate, [{"task_outcome": outcome}], EXPECTED)
    assert isinstance(result.run.error, TimeoutError)  # its own 300 s, on the mock's clock
    stop = next(v for v in result.violations if v.title == STOPS)
    status = outcome.upper()
    assert f"has been {status} since t=" in stop.detail and "more times" in stop.detail


def test_suno_easy_crash_on_an_unknown_task_names_its_cause(harness: Harness) -> None:
    """`data: null` (the real answer for an unknown task) crashes it; the report shows that answer."""
    result = harness.run(sdks.suno_easy_generate, [{}, {"example": "unknown_task"}], EXPECTED)
    assert "no crash with an unexpected exception" in titles(result)
    assert "AttributeError" in str(result.violations)
    text = describe(result, 0, sdks.suno_easy_generate)
    assert "GET /api/v1/generate/record-info: HTTP 200, code 200, data null" in text


def test_suno_easy_polls_every_three_seconds(harness: Harness) -> None:
    """A normal generation is fetched correctly; only its fixed 3 s polling breaks the documented 30 s."""
    result = harness.run(sdks.suno_easy_generate, [], EXPECTED)
    assert result.run.error is None and titles(result) == {POLLING}
    assert "polled 3.000 s after" in str(result.violations[0])


def test_suno_easy_gives_up_on_a_poll_500(harness: Harness) -> None:
    """A single server error on a poll ends its wait: a recommendation, a violation with require_retries."""
    result = harness.run(sdks.suno_easy_generate, [{}, {"code": 500}], EXPECTED)
    assert [v.title for v in result.recommendations] == ["retries transient errors with backoff"]
    assert "retries transient errors with backoff" not in titles(result)


def test_suno_easy_stops_on_a_failed_separation(harness: Harness) -> None:
    """Its `successFlag` check does catch GENERATE_AUDIO_FAILED: no terminal-failure violation for separation."""
    steps = [{}, {}, {}, {}, {"task_outcome": "generate_audio_failed"}]  # generate, three polls, then separate
    result = harness.run(sdks.suno_easy_separate, steps, EXPECTED)
    assert type(result.run.error).__name__ == "TaskFailed"
    assert STOPS not in titles(result)


def test_musicapi_sdk_returns_failed_clips_as_success(harness: Harness) -> None:
    """musicapi-sdk takes `code: 200` for done: failed clips (callback_fails, or task outcome failed) come back."""
    for step in ({"task_outcome": "failed"}, {"scenario": "callback_fails"}):
        result = harness.run(sdks.musicapi_generate_politely, [step], EXPECTED)
        assert result.run.error is None
        stop = next(v for v in result.violations if v.title == STOPS)
        assert "ended failed" in stop.detail and "returned as a success" in stop.detail


def test_musicapi_sdk_resends_create_after_a_lost_answer(harness: Harness) -> None:
    """It retries network errors on POST too: a create whose answer was lost is paid twice, and the report says so."""
    result = harness.run(sdks.musicapi_generate_politely, [{"wire_fault": "connection_reset_after"}], EXPECTED)
    paid = next(v for v in result.violations if v.title == "no paid work is done twice")
    assert "duplicates it, 15 credit(s) paid twice" in paid.detail


def test_musicapi_sdk_retries_a_500_correctly(harness: Harness) -> None:
    """Its retry of a poll 500 after 1 s (backoff) is neither "polled faster" nor a retry recommendation."""
    result = harness.run(sdks.musicapi_generate_politely, [{}, {"code": 500}], EXPECTED)
    polls = [e for e in result.run.calls() if e["operation"] == "getTask"]
    assert polls[0]["outcome"]["code"] == 500 and 1.0 <= polls[1]["time"] - polls[0]["time"] < 2.0
    assert result.violations == [] and result.recommendations == []


def test_musicapi_sdk_default_polling_is_five_seconds(harness: Harness) -> None:
    """On its defaults it polls every 5 s, against the documented 15-25 s."""
    result = harness.run(sdks.musicapi_generate, [], EXPECTED)
    assert titles(result) == {POLLING} and "polled 5.000 s after" in str(result.violations[0])


def test_suno_easy_command_under_check_client() -> None:
    """As a command: a failed generation keeps it polling past --timeout, and the scale probe shows its fixed
    3 s interval, which passes at the default scale."""
    report = check_client(CheckOptions((sys.executable, SDKS, "suno-easy"), timeout=6,
                                       task_outcomes=("generateMusic=generate_audio_failed",)))
    found = {f.violation.title: f.violation.detail for f in report.findings}
    assert report.exit_code == 4 and "yet the command was still running at --timeout" in found[STOPS]
    assert "did not follow STEMMOCK_TIME_SCALE" in found[POLLING]
    assert any("GENERATE_AUDIO_FAILED since" in t["text"] for t in report.tasks)
    as_json = report.as_dict()  # --json carries the same explanation
    assert as_json["tasks"][0]["terminal_status"] == "GENERATE_AUDIO_FAILED" and as_json["tasks"][0]["polls"] >= 2
    assert "task GENERATE_AUDIO_FAILED" in as_json["last_answers"]["GET /api/v1/generate/record-info"][-1]


def test_suno_easy_command_crash_on_a_poll_500() -> None:
    """An uncaught SunoAPIError traceback is a crash, not a surfaced error, and the report names the answer."""
    report = check_client(CheckOptions((sys.executable, SDKS, "suno-easy"), timeout=20, time_scale=0.01,
                                       script=({}, {"code": 500}), scale_probe=False))
    crash = next(f.violation.detail for f in report.findings if f.violation.title == "errors reach the user")
    assert "crashed (Python traceback: suno_easy.exceptions.SunoAPIError" in crash
    assert "GET /api/v1/generate/record-info -> HTTP 200, code 500" in crash

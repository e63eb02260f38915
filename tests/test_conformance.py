"""The conformance driver catches each bug planted in examples/broken_client.py, with a readable message."""

from __future__ import annotations

import json

import pytest

from contracts.conformance import ConformanceFailure, check_client, replay
from contracts.examples.apibox_client import ApiboxError, separate_vocals
from examples.broken_client import flow

EXPECTED = {
    "field_name": ("request has only documented fields", "Did you mean 'callBackUrl'?"),
    "no_callback": ("every request is valid", "/body/callBackUrl: callBackUrl is required"),
    "no_backoff": ("waits after a call-frequency error before retrying", "call frequency too high"),
    "null_crash": ("no crash with an unexpected exception", "TypeError"),
    "double_process": ("a duplicate callback is not processed twice", "processed again"),
}


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_each_planted_bug_is_caught(bug: str) -> None:
    """The failure names the check, says what went wrong, and prints the minimal script, seed and replay."""
    with pytest.raises(ConformanceFailure) as caught:
        check_client(flow(bug), expected_errors=(ApiboxError,), max_examples=300)
    message = str(caught.value)
    title, detail = EXPECTED[bug]
    assert title in message and detail in message, message
    assert "Seed: 0" in message and "Replay: python -m contracts.conformance" in message


def test_reference_client_passes_a_replayed_hard_script() -> None:
    """Replaying a script of errors, a reset and a repeated callback finds nothing wrong with the reference."""
    steps = [{"code": 430}, {"wire_fault": "connection_reset"}, {}, {"code": 455}, {"scenario": "callback_duplicate"}]
    assert replay(separate_vocals, steps, (ApiboxError,)) == []


def test_failure_shrinks_to_a_short_script() -> None:
    """The reported script is the shortest Hypothesis found: one call-frequency error shows no_backoff."""
    with pytest.raises(ConformanceFailure) as caught:
        check_client(flow("no_backoff"), expected_errors=(ApiboxError,), max_examples=60)
    script = json.loads(str(caught.value).rsplit(" '", 1)[1].rstrip("'"))
    assert len(script) == 1 and script[0]["code"] in (405, 430)  # api.box's two call-frequency codes

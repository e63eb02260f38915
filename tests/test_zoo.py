"""The bug zoo: the kit names every planted client mistake under its check's title; the careful clients pass clean."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.check_client import CheckOptions, check_client
from contracts.conformance import Harness
from examples import zoo
from contracts.examples.apibox_client import ApiboxError, separate_vocals
from contracts.examples.musicapi_client import MusicApiError, extract_vocals
from examples.zoo import flows

CLIENTS = Path(__file__).resolve().parent.parent / "examples" / "clients"
EXPECTED = (ApiboxError, MusicApiError)
FLOWS = [bug for bug in zoo.BUGS if not bug.command]
COMMANDS = [bug for bug in zoo.BUGS if bug.command]
RUNNERS = {"python": sys.executable, "node": shutil.which("node"), "bash": shutil.which("bash")}


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    shared = Harness()
    yield shared
    shared.close()


def test_the_zoo_has_fifteen_bugs_across_both_providers_and_interfaces() -> None:
    """At least 15 planted bugs with the older ones; both providers, Python flows and commands in three languages."""
    older = 5 + 4  # examples/broken_client.py and the planted variants in examples/test_musicapi_conformance.py
    assert len(zoo.BUGS) + older >= 15
    assert {b.provider for b in FLOWS} == {b.provider for b in COMMANDS} == {"apibox", "musicapi"}
    assert {Path(b.target).suffix for b in COMMANDS} == {".py", ".mjs", ".sh"}


@pytest.mark.parametrize("bug", FLOWS, ids=lambda b: b.name)
def test_flow_bug_is_caught_under_its_title(harness: Harness, bug: zoo.Bug) -> None:
    """The script that exposes the bug yields a finding under the check named for it."""
    result = harness.run(getattr(flows, bug.target), bug.script, EXPECTED)
    found = result.recommendations if bug.recommendation else result.violations
    assert bug.title in [v.title for v in found], [str(v) for v in result.violations + result.recommendations]
    if bug.recommendation:  # advice, unless retries are required
        assert bug.title not in [v.title for v in result.violations]
        strict = harness.run(getattr(flows, bug.target), bug.script, EXPECTED, require_retries=True)
        assert bug.title in [v.title for v in strict.violations]


@pytest.mark.parametrize("bug", COMMANDS, ids=lambda b: b.name)
def test_command_bug_is_caught_under_its_title(bug: zoo.Bug) -> None:
    """check-client, given the flags that expose the bug, reports it under the check named for it."""
    argv = bug.argv()
    if RUNNERS[argv[0]] is None:
        pytest.skip(f"needs {argv[0]} on PATH")
    argv[0] = str(RUNNERS[argv[0]])
    from contracts.check_client import parse_fault, parse_script, parse_task_outcome

    flags = dict(zip(bug.flags[::2], bug.flags[1::2], strict=True))
    options = CheckOptions(tuple(argv), timeout=20, time_scale=float(flags.get("--time-scale", 0.01)),
                           faults=(flags["--fault"],) if "--fault" in flags else (),
                           task_outcomes=(flags["--task-outcome"],) if "--task-outcome" in flags else (),
                           script=parse_script(flags["--script"]) if "--script" in flags else None)
    for text in options.faults:
        parse_fault(text)
    for text in options.task_outcomes:
        parse_task_outcome(text)
    report = check_client(options)
    titles = [f.violation.title for f in report.findings]
    assert bug.title in titles, "\n".join(f.describe() for f in report.findings)


@pytest.mark.parametrize(("flow", "provider"), [(separate_vocals, "apibox"), (extract_vocals, "musicapi")])
@pytest.mark.parametrize("script", [[], [{"code": 500}], [{"wire_fault": "connection_reset_after"}]],
                         ids=["normal", "server-error", "lost-answer"])
def test_careful_flows_pass_clean(harness: Harness, flow: object, provider: str, script: list[dict[str, int]]) -> None:
    """The reference flows keep every check and earn no recommendation, under normal and rough answers."""
    result = harness.run(flow, script, EXPECTED)  # type: ignore[arg-type]
    assert result.violations == [] and result.recommendations == [], [str(v) for v in result.recommendations]


@pytest.mark.parametrize("command", ["curl_client.sh", "node_client.mjs"])
def test_careful_commands_pass_clean(command: str) -> None:
    """The bash and Node reference clients pass check-client with no violation and no recommendation."""
    runner = "bash" if command.endswith(".sh") else "node"
    if RUNNERS[runner] is None:
        pytest.skip(f"needs {runner} on PATH")
    report = check_client(CheckOptions((str(RUNNERS[runner]), str(CLIENTS / command)), timeout=30, time_scale=0.01))
    assert report.exit_code == 0, "\n".join(f.describe() for f in report.findings)
    assert report.findings == [] and report.recommendations == []


@pytest.mark.parametrize(("command", "outcome"), [("curl_client.sh", "generateMusic=generate_audio_failed"),
                                                  ("curl_client.sh", "generateMusic=callback_exception"),
                                                  ("node_client.mjs", "createMusic=failed")])
def test_careful_commands_surface_a_failed_task(command: str, outcome: str) -> None:
    """A failed task ends the reference clients with its status or message and exit 1 (declared with --error-exit),
    CALLBACK_EXCEPTION is read as done; either way no violation."""
    runner = "bash" if command.endswith(".sh") else "node"
    if RUNNERS[runner] is None:
        pytest.skip(f"needs {runner} on PATH")
    report = check_client(CheckOptions((str(RUNNERS[runner]), str(CLIENTS / command)), timeout=30, time_scale=0.01,
                                       task_outcomes=(outcome,), error_exit=(1,), scale_probe=False))
    assert report.findings == [], "\n".join(f.describe() for f in report.findings)
    assert report.exit_code == 0 and report.surfaced == (not outcome.endswith("callback_exception"))

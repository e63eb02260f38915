"""`stemmock check-client`: clients in other languages, run as real subprocesses against a fresh mock."""

from __future__ import annotations

import json
import os
import shutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from contracts.check_client import (
    EXIT_COMMAND_FAILED,
    EXIT_NOT_STARTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    EXIT_VIOLATIONS,
    CheckClientError,
    CheckOptions,
    CommandResult,
    build_report,
    check_client,
    command,
    format_report,
    parse_fault,
    parse_script,
)
from contracts.referee import Referee
from mockserver.spec import PROVIDER_SPECS, load, spec_path

CLIENTS = Path(__file__).resolve().parent.parent / "examples" / "clients"
SCRIPT = Path(sys.executable).with_name("stemmock")
STEMMOCK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from mockserver.cli import main; main()"]
FAST = ["--time-scale", "0.01", "--timeout", "30"]  # stages in tens of milliseconds; polls every 0.15-0.3 s

needs_curl = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("bash")), reason="needs bash and curl")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Node.js 20) on PATH")


def stemmock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STEMMOCK, "check-client", *args], capture_output=True, text=True, timeout=90, check=False,
                          env={k: v for k, v in os.environ.items() if not k.startswith("STEMMOCK_")})


def quick(*argv: str, timeout: float = 30) -> Any:
    return check_client(CheckOptions(argv, timeout=timeout))


@needs_curl
def test_curl_client_keeps_the_contract() -> None:
    """The bash + curl api.box client passes, and the report shows its calls, codes and callbacks."""
    done = stemmock(*FAST, "--", "bash", str(CLIENTS / "curl_client.sh"))
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    report = done.stdout
    for operation in ("POST /api/v1/generate", "GET /api/v1/generate/record-info",
                      "POST /api/v1/vocal-removal/generate", "GET /api/v1/vocal-removal/record-info"):
        assert f"  {operation}  " in report
    assert "coverage: met 1 of 11 documented codes (200)" in report
    assert "musicGenerationResult: complete x1, first x1, text x1" in report
    assert "vocalRemovalResult: separate_vocal x1" in report
    assert "not met: split_stem, failure, failure_bad_source" in report
    assert "vocal_removal.separate_vocal -> the check-client receiver: delivered (HTTP 200)" in report
    assert "Contract violations: none" in report and "PASS" in report
    assert "separating" in done.stderr  # the client's own output goes to stderr


@needs_node
def test_node_client_keeps_the_contract_json() -> None:
    """The Node MusicAPI client passes; the JSON report counts its calls and the codes it met."""
    done = stemmock(*FAST, "--json", "--", "node", str(CLIENTS / "node_client.mjs"))
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == EXIT_OK and report["violations"] == []
    called = {o["operation"]: o for o in report["operations"] if o["calls"]}
    assert set(called) == {"POST /api/v1/sonic/upload", "POST /api/v1/sonic/vox", "POST /api/v1/sonic/create",
                           "GET /api/v1/sonic/task/{task_id}", "POST /api/v1/sonic/stems/basic",
                           "GET /api/v1/get-credits"}
    assert called["GET /api/v1/sonic/task/{task_id}"]["met"] == [200, 202]
    assert 404 in called["GET /api/v1/sonic/task/{task_id}"]["not_met"]
    webhook = next(c for c in report["callbacks"] if c["callback"] == "songWebhook")
    assert webhook["sent"] == {"song_completed": 1}
    assert [d["state"] for d in report["deliveries"]] == ["delivered"]


BAD_CLIENT = """
import json, os, urllib.request
body = {"taskId": "0" * 32, "audioId": "x", "callBackURL": os.environ["STEMMOCK_CALLBACK_URL"]}
request = urllib.request.Request(os.environ["STEMMOCK_APIBOX_URL"] + "/api/v1/vocal-removal/generate",
                                 json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + os.environ["STEMMOCK_API_KEY"],
                                          "Content-Type": "application/json"})
print(urllib.request.urlopen(request).read().decode())
"""


def test_misspelled_field_fails_the_run() -> None:
    """A client that misspells callBackUrl exits 0 but fails the check, the field named with a did-you-mean."""
    done = stemmock("--", sys.executable, "-c", BAD_CLIENT)
    assert done.returncode == EXIT_VIOLATIONS, done.stdout + done.stderr
    assert "POST /api/v1/vocal-removal/generate  1 call: 422 x1" in done.stdout
    assert "#1 request has only documented fields: POST /api/v1/vocal-removal/generate /body/callBackURL" in done.stdout
    assert "Did you mean 'callBackUrl'?" in done.stdout
    assert "/body/callBackUrl: callBackUrl is required; expected a uri string." in done.stdout
    assert "FAIL: 2 contract violation(s) (exit 1)." in done.stdout


def test_no_strict_reports_but_passes() -> None:
    """--no-strict lists the violations and exits 0."""
    referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])
    exchange = {"operation": "getCredits", "method": "GET", "path": "/api/v1/get-credits", "time": 0.0, "seq": 1,
                "request": {"query": {"verbose": "1"}, "body": None}, "violations": [],
                "outcome": {"kind": "success", "code": 200}, "response": {"status": 200, "body": {}}}
    report = build_report(referee, [exchange], [], CommandResult(("client",), 0, 0.1), strict=False)
    assert report.exit_code == EXIT_OK and len(report.findings) == 1
    text = format_report(report)
    assert "#1 request has only documented fields: GET /api/v1/get-credits /query/verbose" in text
    assert "PASS: the client kept the contract (1 violation(s) reported, --no-strict)" in text


def test_hanging_command_is_killed_at_the_timeout(tmp_path: Path) -> None:
    """A command still running at --timeout is killed with its whole process group, and reported."""
    pid_file = tmp_path / "child.pid"
    hang = (f"import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
            f"time.sleep(60)']); open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    report = quick(sys.executable, "-c", hang, timeout=1)
    assert report.exit_code == EXIT_TIMEOUT and report.command.timed_out
    # The time shown is the time measured until the kill: at least the timeout, a little more on a busy machine.
    shown = re.search(r"was still running after (\d+\.\d) s and was killed \(--timeout\)", format_report(report))
    assert shown is not None and 1.0 <= float(shown.group(1)) < 3.0
    stat = Path(f"/proc/{pid_file.read_text()}/stat")
    if stat.exists():  # killed but perhaps not reaped: no init reaps orphans in some containers
        assert stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_failing_command_is_reported() -> None:
    """A command that exits non-zero gives its own exit code in the report and exit code 3."""
    report = quick(sys.executable, "-c", "import sys; sys.exit(7)")
    assert report.exit_code == EXIT_COMMAND_FAILED and report.command.returncode == 7
    assert "exited 7 after" in format_report(report)


def test_missing_command_is_reported() -> None:
    """A command that cannot be started is reported with exit code 5."""
    report = quick("./no-such-client")
    assert report.exit_code == EXIT_NOT_STARTED
    assert "could not be started: No such file or directory" in format_report(report)


def test_bad_options_name_the_problem() -> None:
    """An unknown operation in --fault stops the run with exit 2 and the nearest operation name."""
    runner = CliRunner()
    result = runner.invoke(command, ["--fault", "generateMusik=430", "--", "true"])
    assert result.exit_code == EXIT_USAGE
    assert "--fault 'generateMusik=430': operation 'generateMusik' names no provider operation. " \
           "Did you mean 'generateMusic'?" in result.output
    result = runner.invoke(command, [])
    assert result.exit_code == EXIT_USAGE and "no command given" in result.output


def test_fault_and_script_parsing() -> None:
    """--fault and --script read their short forms and refuse what they cannot use, saying why."""
    assert parse_fault("POST /api/v1/generate=430*2") == {"operation": "POST /api/v1/generate", "code": 430,
                                                           "times": 2}
    assert parse_fault("getVox=connection_reset") == {"operation": "getVox", "wire_fault": "connection_reset"}
    with pytest.raises(CheckClientError, match="Did you mean 'callback_fails'"):
        parse_fault("generateMusic=callback_fail")
    with pytest.raises(CheckClientError, match="expected a whole number"):
        parse_fault("generateMusic=430*x")
    assert parse_script('{"steps": [{"code": 430}, {}]}') == ({"code": 430}, {})
    with pytest.raises(CheckClientError, match="expected a list of steps"):
        parse_script('[1, 2]')
    with pytest.raises(CheckClientError, match="neither inline JSON nor a readable file"):
        parse_script("no-such-script.json")


def test_scripted_fault_shows_in_coverage() -> None:
    """A client whose first call is failed by --script meets that code, and the report counts it."""
    client = ("import os, urllib.request; urllib.request.urlopen(urllib.request.Request("
              "os.environ['STEMMOCK_APIBOX_URL'] + '/api/v1/generate/credit', "
              "headers={'Authorization': 'Bearer ' + os.environ['STEMMOCK_API_KEY']})).read()")
    report = check_client(CheckOptions((sys.executable, "-c", client), script=({"code": 455},)))
    usage = next(o for o in report.operations if o.operation == "GET /api/v1/generate/credit")
    assert usage.codes == {455: 1} and usage.met == [455]


def test_report_builds_from_records_alone() -> None:
    """build_report needs only journal and delivery records: codes, unknown paths and callbacks are classified."""
    referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])
    generate = referee.operations["generateMusic"]
    examples = next(iter(generate.callbacks.values())).examples
    exchanges = [
        {"operation": "generateMusic", "method": "POST", "path": "/api/v1/generate", "time": 0.0,
         "request": {"query": {}, "body": {"customMode": False, "instrumental": False, "model": "V4_5",
                                           "callBackUrl": "http://cb/x", "prompt": "p"}},
         "violations": [], "outcome": {"kind": "error", "code": 430},
         "response": {"status": 200, "body": {"code": 430, "msg": "Call frequency too high.", "data": None}}},
        {"operation": None, "method": "GET", "path": "/api/v2/nothing", "time": 1.0,
         "outcome": {"kind": "unrouted", "code": 404}},
    ]
    deliveries = [{"id": "dlv_000001", "provider": "apibox", "event": "generate.error", "url": "http://cb/x",
                   "payload": examples["failure"], "state": "failed",
                   "attempts": [{"status": 500, "error": "receiver answered HTTP 500"}]}]
    report = build_report(referee, exchanges, deliveries, CommandResult(("client",), 0, 0.5))
    assert report.operations[0].operation == "POST /api/v1/generate" and report.operations[0].met == [430]
    assert report.unknown == ["GET /api/v2/nothing -> 404"]
    # the 430 was the last answer of its operation and the command printed nothing about it
    assert [f.violation.title for f in report.findings] == ["request to an operation that exists",
                                                            "errors reach the user"]
    assert report.callbacks[0].sent == {"failure": 1}
    assert report.exit_code == EXIT_VIOLATIONS
    text = format_report(report)
    assert "dlv_000001 generate.error -> http://cb/x: failed after 1 attempt: receiver answered HTTP 500" in text
    assert json.loads(json.dumps(report.as_dict()))["operations"][0]["codes"] == {"430": 1}


def test_polling_interval_scales_with_task_time() -> None:
    """At --time-scale 0.1 the documented 30 s polling interval is 3 s: 4 s apart passes, 1 s apart does not."""
    referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])

    def poll(at: float) -> dict[str, Any]:
        return {"operation": "getMusicGenerationDetails", "method": "GET", "path": "/api/v1/generate/record-info",
                "api_key": "k", "time": at, "request": {"query": {"taskId": "a" * 32}, "body": None},
                "violations": [], "outcome": {"kind": "success", "code": 200},
                "response": {"status": 200, "body": {"code": 200, "msg": "success", "data": {"status": "PENDING"}}}}

    command_result = CommandResult(("client",), 0, 1.0)
    calm = build_report(referee, [poll(0), poll(4)], [], command_result, time_scale=0.1)
    assert calm.findings == [] and calm.exit_code == EXIT_OK
    eager = build_report(referee, [poll(0), poll(1)], [], command_result, time_scale=0.1)
    assert [f.violation.title for f in eager.findings] == ["never polls faster than documented"]
    assert "the documented interval is 3.0 s (the spec's, x0.1" in eager.findings[0].violation.detail


def test_outcome_flags_parse() -> None:
    """--task-outcome, --fault example:NAME and --receiver read into control-plane bodies, typos refused."""
    from contracts.check_client import check_receiver, parse_exit_codes, parse_task_outcome

    assert parse_task_outcome("generateMusic=sensitive_word_error") == {
        "operation": "generateMusic", "task_outcome": "sensitive_word_error", "times": 1_000_000}
    assert parse_task_outcome("createMusic=failed*2")["times"] == 2
    with pytest.raises(CheckClientError, match="Did you mean 'generate_audio_failed'"):
        parse_task_outcome("generateMusic=generate_audio_fail")
    assert parse_fault("generateMusic=example:success") == {"operation": "generateMusic", "example": "success"}
    assert parse_fault("separateVocals=task_outcome:create_task_failed*1") == {
        "operation": "separateVocals", "task_outcome": "create_task_failed", "times": 1}
    assert check_receiver("timeout*2") == "timeout*2"
    with pytest.raises(CheckClientError, match="--receiver"):
        check_receiver("drop*2")
    assert parse_exit_codes("1, 3") == (1, 3)
    with pytest.raises(CheckClientError, match="--error-exit"):
        parse_exit_codes("one")


@needs_curl
def test_task_outcome_flag_reaches_the_client() -> None:
    """--task-outcome fails every generation: the curl client sees GENERATE_AUDIO_FAILED and says so."""
    done = stemmock(*FAST, "--task-outcome", "generateMusic=generate_audio_failed", "--no-scale-probe", "--",
                    "bash", str(CLIENTS / "curl_client.sh"))
    assert done.returncode == EXIT_COMMAND_FAILED, done.stdout + done.stderr
    assert "generation GENERATE_AUDIO_FAILED" in done.stderr


def test_unknown_example_fault_is_a_usage_error() -> None:
    """--fault OPERATION=example:NAME with an unknown name stops before the command runs, naming the examples."""
    done = stemmock("--fault", "generateMusic=example:sucess", "--", sys.executable, "-c", "pass")
    assert done.returncode == EXIT_USAGE
    assert "names no example of POST /api/v1/generate" in done.stderr and "Did you mean 'success'?" in done.stderr


SURFACING_CLIENT = """
import json, os, sys, urllib.request
body = {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "a song",
        "callBackUrl": os.environ["STEMMOCK_CALLBACK_URL"]}
request = urllib.request.Request(os.environ["STEMMOCK_APIBOX_URL"] + "/api/v1/generate", json.dumps(body).encode(),
                                 method="POST", headers={"Authorization": "Bearer " + os.environ["STEMMOCK_API_KEY"],
                                                         "Content-Type": "application/json"})
answer = json.loads(urllib.request.urlopen(request).read())
if answer["code"] != 200:
    print(f"api.box error {answer['code']}: {answer['msg']}", file=sys.stderr)
    sys.exit(3)
"""


def test_error_exit_declares_a_surfaced_error() -> None:
    """With --error-exit, a client that exits 3 naming the provider's code passes; other exits count as crashes."""
    argv = (sys.executable, "-c", SURFACING_CLIENT)
    faults = ("generateMusic=455*9",)
    plain = check_client(CheckOptions(argv, timeout=20, faults=faults, scale_probe=False))
    assert plain.exit_code == EXIT_COMMAND_FAILED and plain.findings == [] and not plain.surfaced
    declared = check_client(CheckOptions(argv, timeout=20, faults=faults, error_exit=(3,), scale_probe=False))
    assert declared.exit_code == EXIT_OK and declared.surfaced, format_report(declared)
    assert "it surfaced a documented error (exit 3, declared by --error-exit)" in format_report(declared)
    other = check_client(CheckOptions(argv, timeout=20, faults=faults, error_exit=(2,), scale_probe=False))
    crash = [f.violation.detail for f in other.findings if f.violation.title == "errors reach the user"]
    assert crash and "exit 3, not one of the declared error exits (2)" in crash[0]


def test_receiver_flag_refuses_deliveries() -> None:
    """--receiver refuse*2: the first two deliveries to the kit's receiver are answered 503 and retried."""
    script = (
        "import json, os, time, urllib.request\n"
        "body = {'custom_mode': False, 'mv': 'sonic-v5', 'gpt_description_prompt': 'x',"
        " 'webhook_url': os.environ['STEMMOCK_CALLBACK_URL']}\n"
        "r = urllib.request.Request(os.environ['STEMMOCK_URL'] + '/api/v1/sonic/create', json.dumps(body).encode(),"
        " method='POST', headers={'Authorization': 'Bearer k', 'Content-Type': 'application/json'})\n"
        "urllib.request.urlopen(r)\n"
        "time.sleep(4.5)\n")  # the retries come 0.6 s and 3 s (60 s and 300 s, scaled) after
    report = check_client(CheckOptions((sys.executable, "-c", script), timeout=20, time_scale=0.01,
                                       receiver="refuse*2", scale_probe=False))
    [delivery] = report.deliveries
    assert [a.get("status") for a in delivery.attempts] == [503, 503, 200] and delivery.state == "delivered"


def test_retry_recommendation_honours_retry_after() -> None:
    """A retry sooner than the answer's Retry-After is advice; a transient error never retried is too."""
    referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])

    def call(at: float, code: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
        kind = "success" if code == 200 else "error"
        return {"operation": "getCredits", "method": "GET", "path": "/api/v1/get-credits", "api_key": "k",
                "time": at, "request": {"query": {}, "body": None}, "violations": [],
                "outcome": {"kind": kind, "code": code, "message": "Service unavailable."},
                "response": {"status": code, "headers": headers or {}, "body": {"credits": 1, "extra_credits": 0}}}

    hasty = build_report(referee, [call(0, 503, {"Retry-After": "5"}), call(2, 200)], [],
                         CommandResult(("client",), 0, 3.0, output="HTTP 503"))
    assert [f.violation.detail for f in hasty.recommendations] == [
        "retried GET /api/v1/get-credits 2.000 s after code 503; back off first (the answer's Retry-After: 5 s)"]
    patient = build_report(referee, [call(0, 503, {"Retry-After": "5"}), call(6, 200)], [],
                           CommandResult(("client",), 0, 7.0))
    assert patient.recommendations == []
    never = build_report(referee, [call(0, 503)], [], CommandResult(("client",), 1, 1.0, output="503"),
                         require_retries=True)
    assert [f.violation.title for f in never.findings] == ["retries transient errors with backoff"]

"""`stemmock check-client -- <command>`: judge a client written in any language against a fresh mock.

    stemmock check-client --timeout 60 -- node my_client.mjs

A fresh mock (a real uvicorn server on a free loopback port) and a callback receiver start; the command
runs as a subprocess, in its own process group, with the mock's address in its environment:

    STEMMOCK_URL, STEMMOCK_MUSICAPI_URL, STEMMOCK_APIBOX_URL   base URL of the mock (both providers)
    STEMMOCK_API_KEY                                           the key to send as `Authorization: Bearer`
    STEMMOCK_CALLBACK_URL                                      a real receiver, for callBackUrl / webhook_url
    STEMMOCK_CONTROL_URL                                       the control plane (`/__mock`)
    STEMMOCK_TIME_SCALE                                        how fast task time runs (0.1: ten times faster)

When the command ends (or is killed at `--timeout`), the report lists the requests per operation, every
contract violation the referee and the behavioural checks found, and the client's coverage of the contract:
the documented codes it met per operation and the callbacks the mock sent. `build_report` and
`format_report` (in `contracts.coverage`) work on plain journal and delivery records, without running anything.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import httpx

from mockserver import MockConfig, create_app, load_config
from mockserver.config import ConfigError
from mockserver.scenarios import SCENARIOS, TASK_OUTCOMES, WIRE_FAULTS
from mockserver.spec import PROVIDER_SPECS, Spec, SpecError, load, spec_path
from mockserver.validation import did_you_mean

from .checks import CHECKS, Run
from .coverage import (
    EXIT_COMMAND_FAILED,
    EXIT_NOT_STARTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    EXIT_VIOLATIONS,
    POLLING_CHECK,
    CommandResult,
    Finding,
    Report,
    _scaled_referee,
    build_report,
    format_report,
)
from .forged import first_callback_call, send_forged
from .live import LiveServer
from .receiver import CallbackReceiver, parse_receiver
from .referee import Referee
from .tasks import PENDING, poll_status

DEFAULT_KEY = "stemmock-client"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_TIME_SCALE = 0.1
KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL of the command's process group
SETTLE_S = 2.0  # at most this long, after the command ends, for callbacks already due to go out
JOURNAL_SIZE = 100_000
SHUTDOWN_GRACE_S = 0.5  # the report is taken before shutdown; the last delivery tries need not be long
MIN_CALLBACK_TIMEOUT_S = 1.0  # a callback attempt's timeout shrinks with the time scale, but not below this
PROBE_FACTOR = 5.0  # the scale probe runs task time this many times slower (at most real time)
PROBE_TIMEOUT_S = 30.0  # the scale probe stops at this, if the client's polling cannot be judged sooner
STOP_POLL_S = 0.1  # how often a run that can stop early looks at the journal
FORGE_LOOKBACK = 200  # the latest journal entries looked at for a callback URL of the client's own
FORGE_EVERY = 3  # ... every this many STOP_POLL_S
EVERY_CALL = 1_000_000  # "every call": the times of a fault that applies to the whole run


class CheckClientError(Exception):
    """A setting cannot be used; the message names it and what was expected."""


# -- running ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckOptions:
    """Everything `stemmock check-client` can be told; each field is one option."""

    command: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT_S
    api_key: str = DEFAULT_KEY
    time_scale: float = DEFAULT_TIME_SCALE
    clock: str = "real"
    seed: int | None = None
    config_path: str | None = None
    credits: float | None = None
    scenario: str | None = None
    faults: tuple[str, ...] = ()  # "OPERATION=OUTCOME[*TIMES]"
    script: tuple[dict[str, Any], ...] | None = None
    strict: bool = True
    task_outcomes: tuple[str, ...] = ()  # "OPERATION=OUTCOME[*TIMES]"
    receiver: str | None = None  # "refuse*N" | "timeout*N"
    error_exit: tuple[int, ...] | None = None  # exit codes that mean "a documented error, surfaced"
    require_retries: bool = False  # transient errors left unretried are violations, not recommendations
    scale_probe: bool = True  # a second, short run at another time scale, to catch fixed-interval polling


def mock_config(options: CheckOptions) -> MockConfig:
    """The mock's config: the file (if any), durations and callback delays scaled, a journal that keeps the run."""
    config = load_config(options.config_path, seed=options.seed, clock=options.clock)
    factor = options.time_scale
    durations = dataclasses.replace(config.durations, **{
        f.name: getattr(config.durations, f.name) * factor for f in dataclasses.fields(config.durations)})
    callbacks = dataclasses.replace(config.callbacks, retries=tuple(r * factor for r in config.callbacks.retries),
                                    late_delay=config.callbacks.late_delay * factor,
                                    timeout=max(MIN_CALLBACK_TIMEOUT_S, config.callbacks.timeout * factor),
                                    grace=min(config.callbacks.grace, SHUTDOWN_GRACE_S))
    # A call held by `timeout_after` stays unanswered longer than a client's usual timeout only in scaled time.
    return config.replace(durations=durations, callbacks=callbacks, hang_seconds=config.hang_seconds * factor,
                          journal_size=max(config.journal_size, JOURNAL_SIZE))


def client_env(base_url: str, callback_url: str, options: CheckOptions,
               environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: ours, plus where the mock is; loopback never goes through a proxy."""
    env = dict(os.environ if environ is None else environ)
    env.update({"STEMMOCK_URL": base_url, "STEMMOCK_MUSICAPI_URL": base_url, "STEMMOCK_APIBOX_URL": base_url,
                "STEMMOCK_API_KEY": options.api_key, "STEMMOCK_CALLBACK_URL": callback_url,
                "STEMMOCK_CONTROL_URL": f"{base_url}/__mock", "STEMMOCK_TIME_SCALE": f"{options.time_scale:g}"})
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(p for p in (env.get(name), "127.0.0.1", "localhost") if p)
    return env


def parse_fault(text: str) -> dict[str, Any]:
    """`generateMusic=430*2` -> the body of `POST /__mock/faults`."""
    operation, sep, outcome = text.rpartition("=")
    if not sep or not operation.strip() or not outcome.strip():
        raise CheckClientError(f"--fault {text!r} is not OPERATION=OUTCOME[*TIMES]; e.g. 'generateMusic=430*2' "
                               "or 'POST /api/v1/sonic/vox=connection_reset'.")
    outcome, _, times = outcome.partition("*")
    body: dict[str, Any] = {"operation": operation.strip()}
    if times:
        if not times.strip().isdigit() or int(times) < 1:
            raise CheckClientError(f"--fault {text!r}: times is {times!r}; expected a whole number >= 1.")
        body["times"] = int(times)
    outcome = outcome.strip()
    kind, colon, name = outcome.partition(":")
    if outcome.isdigit():
        body["code"] = int(outcome)
    elif outcome in WIRE_FAULTS:
        body["wire_fault"] = outcome
    elif outcome in SCENARIOS:
        body["scenario"] = outcome
    elif colon and kind.strip() == "example" and name.strip():
        body["example"] = name.strip()
    elif colon and kind.strip() == "task_outcome" and name.strip() in TASK_OUTCOMES:
        body["task_outcome"] = name.strip()
    else:
        known = [*WIRE_FAULTS, *SCENARIOS]
        raise CheckClientError(f"--fault {text!r}: {outcome!r} is not a code, a wire fault, a scenario, "
                               f"example:NAME or task_outcome:NAME; expected a documented code or one of "
                               f"{', '.join(known)}.{did_you_mean(outcome, known)}")
    return body


def parse_task_outcome(text: str) -> dict[str, Any]:
    """`generateMusic=sensitive_word_error` -> the body of `POST /__mock/faults` (every call, unless `*TIMES`)."""
    operation, sep, outcome = text.rpartition("=")
    name, _, times = outcome.partition("*")
    if not sep or not operation.strip() or name.strip() not in TASK_OUTCOMES:
        raise CheckClientError(f"--task-outcome {text!r} is not OPERATION=OUTCOME[*TIMES] with OUTCOME one of "
                               f"{', '.join(TASK_OUTCOMES)}; e.g. 'generateMusic=generate_audio_failed'."
                               f"{did_you_mean(name.strip(), TASK_OUTCOMES)}")
    if times and (not times.strip().isdigit() or int(times) < 1):
        raise CheckClientError(f"--task-outcome {text!r}: times is {times!r}; expected a whole number >= 1.")
    return {"operation": operation.strip(), "task_outcome": name.strip(),
            "times": int(times) if times else EVERY_CALL}


def parse_exit_codes(text: str | None) -> tuple[int, ...] | None:
    """`--error-exit 1,3` -> (1, 3)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and 0 < int(p) < 256 for p in parts):
        raise CheckClientError(f"--error-exit {text!r} is not a list of exit codes; expected numbers from 1 to 255 "
                               "separated by commas, e.g. '1,3'.")
    return tuple(int(p) for p in parts)


def check_receiver(text: str) -> str:
    """`--receiver` checked: refuse*N or timeout*N."""
    try:
        parse_receiver(text)
    except ValueError as exc:
        raise CheckClientError(f"--receiver: {exc}") from None
    return text


def parse_script(text: str) -> tuple[dict[str, Any], ...]:
    """`--script` as inline JSON or a JSON file: a list of steps, or `{"steps": [...]}`."""
    source = "--script"
    if not text.lstrip().startswith(("[", "{")):
        try:
            text, source = Path(text).read_text(encoding="utf-8"), f"--script {text}"
        except OSError as exc:
            raise CheckClientError(f"--script {text!r} is neither inline JSON nor a readable file: "
                                   f"{exc.strerror or exc}.") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CheckClientError(f"{source} is not valid JSON: {exc}.") from None
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise CheckClientError(f"{source} is {json.dumps(data)[:80]}; expected a list of steps such as "
                               '[{"code": 430}, {}, {"wire_fault": "connection_reset"}] or {"steps": [...]}.')
    return tuple(steps)


def _control(client: httpx.Client, method: str, path: str, what: str, body: Any) -> None:
    response = client.request(method, path, json=body)
    if response.status_code >= 400:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        raise CheckClientError(f"{what}: {message}")


def prepare(client: httpx.Client, referee: Referee, options: CheckOptions) -> None:
    """Set the balance, the callback scenario, the faults and the script before the command starts."""
    if options.credits is not None:
        _control(client, "PUT", f"/__mock/credits/{options.api_key}", f"--credits {options.credits:g}",
                 {"credits": options.credits})
    if options.scenario:
        for op in referee.operations.values():
            if op.callbacks:
                _control(client, "POST", "/__mock/faults", f"--scenario {options.scenario}",
                         {"operation": op.operation_id, "scenario": options.scenario, "times": 1_000_000})
    for text in options.faults:
        _control(client, "POST", "/__mock/faults", f"--fault {text!r}", parse_fault(text))
    for text in options.task_outcomes:
        _control(client, "POST", "/__mock/faults", f"--task-outcome {text!r}", parse_task_outcome(text))
    if options.script is not None:
        _control(client, "PUT", "/__mock/script", "--script", {"steps": list(options.script)})


def _output() -> IO[str] | None:
    """The command's output goes to our stderr, so that stdout carries only the report."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return sys.stderr


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group (0 only asks whether it exists); False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group exists, but its members now run as another user
        return True
    return True


def _group_running(pgid: int) -> bool:
    """Whether a process of the group is still running; zombies nobody reaps (no init in a container) do not count."""
    proc = Path("/proc")
    if not proc.is_dir():
        return _signal_group(pgid, 0)
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # it ended while we looked
        if group == str(pgid) and state != "Z":
            return True
    return False


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL whatever is left after KILL_GRACE_S, reap the command.

    After a normal exit this ends the background children the command left behind.
    """
    if _signal_group(process.pid, signal.SIGTERM):
        _signal_group(process.pid, signal.SIGCONT)  # a stopped member acts on SIGTERM only once continued
        deadline = time.monotonic() + KILL_GRACE_S
        while True:
            process.poll()  # reap the leader, so that an exited one no longer counts as a member
            if not _group_running(process.pid):
                break
            if time.monotonic() >= deadline:
                _signal_group(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    process.wait()


OUTPUT_KEPT = 64 * 1024  # the tail of the command's output kept for the report (errors, tracebacks)


def _tee(pipe: IO[bytes], kept: bytearray) -> None:
    """Copy the command's output to our stderr as it comes, keeping its tail for the checks."""
    out = _output()
    for chunk in iter(lambda: pipe.read1(4096), b""):  # type: ignore[attr-defined]
        kept.extend(chunk)
        del kept[:-OUTPUT_KEPT]
        if out is not None:
            try:
                out.write(chunk.decode("utf-8", "replace"))
                out.flush()
            except (OSError, ValueError):  # our stderr went away; keep reading so the command never blocks
                out = None
    pipe.close()


def run_command(argv: Sequence[str], env: Mapping[str, str], timeout: float,
                until: Callable[[], bool] | None = None) -> CommandResult:
    """Run `argv` in its own process group; kill the group at `timeout` (or once `until()` holds: asked every
    STOP_POLL_S). Never waits longer than that + grace."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return CommandResult(tuple(argv), None, 0.0, error=f"{exc.strerror or exc} ({argv[0]!r})")
    kept = bytearray()
    assert process.stdout is not None
    reader = threading.Thread(target=_tee, args=(process.stdout, kept), name="stemmock-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        if until is None:
            process.wait(timeout)
        else:
            deadline = started + timeout
            while process.poll() is None and not until():
                if time.monotonic() >= deadline:
                    raise subprocess.TimeoutExpired(list(argv), timeout)
                time.sleep(STOP_POLL_S)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on Ctrl-C
        seconds = time.monotonic() - started
        _end_group(process)
        reader.join(KILL_GRACE_S)  # a grandchild outside the group may hold the pipe: do not wait for it
    return CommandResult(tuple(argv), process.returncode, seconds, timed_out,
                         output=bytes(kept).decode("utf-8", "replace"))


def settle(client: httpx.Client, app: Any, seconds: float = SETTLE_S) -> None:
    """Wait (at most `seconds`) until nothing that already fell due is still to run or to be sent."""
    mock = app.state.mock
    if mock.clock.mode != "real":
        return  # a manual clock runs everything due before `advance` answers
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = mock.clock.now()
        due = mock.scheduler.next_due()
        deliveries = client.get("/__mock/callbacks").json()["callbacks"]
        busy = any(d["state"] == "pending" and (d.get("next_attempt_at") or 0) <= now for d in deliveries)
        if not busy and (due is None or due > now):
            return
        time.sleep(0.02)


@functools.cache
def _specs() -> tuple[Spec, ...]:
    return tuple(load(spec_path(name)) for name in PROVIDER_SPECS)


def provider_specs() -> list[Spec]:
    """Both providers' specs, loaded once per process (they are read-only)."""
    return list(_specs())


def _stop_together(*servers: LiveServer | CallbackReceiver) -> None:
    """Stop servers concurrently: each takes a tick of uvicorn's main loop to notice."""
    threads = [threading.Thread(target=server.stop, name="stemmock-stop") for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Forger:
    """Sends one forged callback (`contracts.forged`) to the first callback URL of the client's own, once it asks
    for one: a client that hands the mock its own webhook endpoint must drop a callback it cannot trust."""

    def __init__(self, client: httpx.Client, base_url: str, receiver_url: str) -> None:
        self.client, self.base_url, self.receiver_url = client, base_url, receiver_url
        self.sent = False
        self._ticks = 0

    def __call__(self) -> None:
        self._ticks += 1
        if self.sent or (self._ticks - 1) % FORGE_EVERY:  # the first look is at once
            return
        recent = self.client.get("/__mock/journal", params={"limit": FORGE_LOOKBACK}).json()["exchanges"]
        made = first_callback_call(recent, skip_prefix=self.receiver_url)
        if made is not None:
            now_ms = int(self.client.get("/__mock/clock").json()["now"] * 1000)
            self.sent = send_forged(made, self.base_url, now_ms)


def _run_once(options: CheckOptions, referee: Referee, specs: list[Spec],
              stop: Callable[[list[dict[str, Any]]], bool] | None = None) -> tuple[
        CommandResult, list[dict[str, Any]], list[dict[str, Any]], str, int, bool]:
    """One run of the command against a fresh mock: (result, journal, deliveries, receiver URL, journal size,
    whether a forged callback was sent)."""
    config = mock_config(options)
    app = create_app(config, specs=specs)
    receiver, server = CallbackReceiver().start(), LiveServer(app)
    if options.receiver:
        receiver.behave(check_receiver(options.receiver), config.callbacks.timeout)
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
            prepare(client, referee, options)
            env = client_env(server.url, receiver.endpoint("callback"), options)
            forger = Forger(client, server.url, receiver.url)

            def until() -> bool:
                forger()
                return stop is not None and stop(client.get("/__mock/journal").json()["exchanges"])

            result = run_command(options.command, env, options.timeout, until)
            settle(client, app)
            exchanges = client.get("/__mock/journal").json()["exchanges"]
            deliveries = client.get("/__mock/callbacks").json()["callbacks"]
    finally:
        _stop_together(server, receiver)
    return result, exchanges, deliveries, receiver.url, config.journal_size, forger.sent


def _polls(referee: Referee, exchanges: list[dict[str, Any]]) -> list[tuple[tuple[Any, ...], str | None]]:
    """(task key, status shown) of each poll of a task, in order."""
    found = []
    for exchange in exchanges:
        op = referee.operations.get(str(exchange.get("operation")))
        if op is not None and op.x_mock.get("poll_task"):
            key = (op.operation_id, exchange.get("path"), json.dumps((exchange.get("request") or {}).get("query")))
            found.append((key, poll_status(op, exchange)[0]))
    return found


def polling_judged(referee: Referee, exchanges: list[dict[str, Any]]) -> bool:
    """Whether the client's polling can be judged: a poll came after one that showed the task pending, or the
    first poll of a task found it finished (the client waited long enough)."""
    pending: set[tuple[Any, ...]] = set()
    for key, status in _polls(referee, exchanges):
        if key in pending:
            return True
        if status in PENDING:
            pending.add(key)
        elif status is not None:
            return True
    return False


def scale_probe(options: CheckOptions, referee: Referee, specs: list[Spec]) -> list[Finding]:
    """Run the command again, at PROBE_FACTOR times the time scale, until its polling can be judged.

    A client that reads STEMMOCK_TIME_SCALE polls proportionally slower; one that polls at a fixed interval
    keeps it, and at the probe's scale that interval is shorter than the documented one."""
    scale = min(1.0, options.time_scale * PROBE_FACTOR)
    probe = dataclasses.replace(options, time_scale=scale, timeout=min(options.timeout, PROBE_TIMEOUT_S))
    exchanges = _run_once(probe, referee, specs, lambda journal: polling_judged(referee, journal))[1]
    run = Run(_scaled_referee(referee, scale), exchanges)
    note = (f" (in a second, short run at --time-scale {scale:g}, where the documented interval is "
            f"x{scale:g}: the client's polling interval did not follow STEMMOCK_TIME_SCALE)")
    return [Finding(dataclasses.replace(v, detail=v.detail + note)) for v in CHECKS[POLLING_CHECK](run)][:1]


def check_client(options: CheckOptions) -> Report:
    """Run the command against a fresh mock and judge it. Raises CheckClientError, ConfigError or SpecError."""
    if not options.command:
        raise CheckClientError("no command given; expected `stemmock check-client [options] -- <command> [args]`.")
    specs = provider_specs()
    referee = Referee(specs)
    result, exchanges, deliveries, receiver_url, journal_size, forged = _run_once(options, referee, specs)
    probe: list[Finding] = []
    first = build_report(referee, exchanges, deliveries, result, time_scale=options.time_scale)
    fast = any(f.violation.title == POLLING_CHECK for f in first.findings)
    if options.scale_probe and options.time_scale < 1.0 and not fast and not result.error and \
            _polls(referee, exchanges):
        probe = scale_probe(options, referee, specs)
    return build_report(referee, exchanges, deliveries, result, strict=options.strict, receiver_url=receiver_url,
                        time_scale=options.time_scale, journal_size=journal_size, error_exit=options.error_exit,
                        require_retries=options.require_retries, probe=probe, forged=forged)


# -- the command --------------------------------------------------------------------------------------------
EPILOG = f"""\b
The command gets, in its environment:
  STEMMOCK_URL, STEMMOCK_MUSICAPI_URL, STEMMOCK_APIBOX_URL  the mock's base URL
  STEMMOCK_API_KEY       the key to send (Authorization: Bearer)
  STEMMOCK_CALLBACK_URL  a receiver to pass as callBackUrl / webhook_url
  STEMMOCK_CONTROL_URL   the control plane (/__mock), e.g. to advance a manual clock
  STEMMOCK_TIME_SCALE    how fast task time runs (0.1: stages come ten times sooner)
Its stdout and stderr go to stderr; stdout carries only the report.

\b
Exit codes:
  {EXIT_OK}  the command succeeded and kept the contract
  {EXIT_VIOLATIONS}  contract violations (with --strict, the default)
  {EXIT_USAGE}  bad options, config or script; nothing was run
  {EXIT_COMMAND_FAILED}  the command exited non-zero or was killed by a signal
  {EXIT_TIMEOUT}  the command was still running at --timeout; its process group was killed
  {EXIT_NOT_STARTED}  the command could not be started
"""


@click.command("check-client", epilog=EPILOG, short_help="Judge a client in any language against a fresh mock.",
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Seconds before the command's process group is killed.")
@click.option("--api-key", default=DEFAULT_KEY, show_default=True, help="The key handed to the command.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIME_SCALE,
              show_default=True, help="Multiplies task durations, callback delays and documented poll intervals.")
@click.option("--clock", type=click.Choice(["real", "manual"]), default="real", show_default=True,
              help="manual: time moves only when the command calls $STEMMOCK_CONTROL_URL/clock/advance.")
@click.option("--seed", type=int, default=None, help="Seed for ids and random faults (default 0).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="A stemmock YAML config (keys, costs, rate limits, faults, ...).")
@click.option("--credits", type=float, default=None, help="Opening balance of the command's key.")
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default=None,
              help="How every task's callbacks behave.")
@click.option("--fault", "faults", multiple=True, metavar="OPERATION=OUTCOME[*TIMES]",
              help="Fail the next calls of an operation: a documented code, a wire fault or a scenario, "
                   "e.g. 'generateMusic=430*2'. Repeatable.")
@click.option("--script", "script_text", default=None, metavar="JSON|FILE",
              help='One behaviour per coming provider call, e.g. \'[{"code": 430}, {}]\' (PUT /__mock/script).')
@click.option("--task-outcome", "task_outcomes", multiple=True, metavar="OPERATION=OUTCOME[*TIMES]",
              help="End the tasks an operation creates in a terminal status: " + "|".join(TASK_OUTCOMES) +
                   ", e.g. 'generateMusic=generate_audio_failed' (every call unless *TIMES). Repeatable.")
@click.option("--receiver", "receiver", default=None, metavar="refuse*N|timeout*N",
              help="The callback receiver refuses (HTTP 503) or times out the next N deliveries.")
@click.option("--error-exit", "error_exit", default=None, metavar="CODES",
              help="Exit codes (comma-separated) with which the command reports a documented error, e.g. '1,3'.")
@click.option("--require-retries", is_flag=True,
              help="A transient error the client does not retry with backoff is a violation, not a recommendation.")
@click.option("--scale-probe/--no-scale-probe", default=True, show_default=True,
              help="Run the command a second time, briefly, at another time scale, to catch fixed-interval polling.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE",
              help="Also write the report as JUnit XML: a test case per check and per documented code.")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="Whether contract violations fail the run (they are reported either way).")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]...")
def command(timeout: float, api_key: str, time_scale: float, clock: str, seed: int | None, config_path: str | None,
            credits: float | None, scenario: str | None, faults: tuple[str, ...], script_text: str | None,
            task_outcomes: tuple[str, ...], receiver: str | None, error_exit: str | None, require_retries: bool,
            scale_probe: bool, as_json: bool, junit_path: str | None, strict: bool, argv: tuple[str, ...]) -> None:
    """Run a client, in any language, against a fresh mock and report how it kept the contract."""
    logger = logging.getLogger("stemmock")
    level = logger.level
    logger.setLevel(logging.ERROR)  # callbacks still owed at shutdown are in the report already
    try:
        options = CheckOptions(argv, timeout, api_key, time_scale, clock, seed, config_path, credits,
                               scenario, tuple(faults), parse_script(script_text) if script_text else None, strict,
                               tuple(task_outcomes), receiver, parse_exit_codes(error_exit), require_retries,
                               scale_probe)
        for text in options.faults:
            parse_fault(text)  # a typo stops here, before anything starts
        for text in options.task_outcomes:
            parse_task_outcome(text)
        if receiver:
            check_receiver(receiver)
        report = check_client(options)
    except (CheckClientError, ConfigError, SpecError) as exc:
        click.echo(f"stemmock check-client: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    finally:
        logger.setLevel(level)
    if junit_path:
        from .junit import write_junit

        write_junit(report, junit_path)
    click.echo(json.dumps(report.as_dict(), indent=2, default=str) if as_json else format_report(report))
    sys.exit(report.exit_code)

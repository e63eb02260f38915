"""Client conformance, property-based: Hypothesis chooses the provider's behaviour call by call.

    from contracts.conformance import check_client

    def my_flow(env):                      # drives the client under test
        client = MyClient(env.url, env.api_key, sleep=env.sleep)
        client.separate(callback_url=env.callback_url)

    check_client(my_flow, expected_errors=(MyClientError,), providers=["apibox"])

Each example queues a script of behaviours (normal, a documented error code, a wire fault, a callback
scenario) for the coming provider calls, runs the client against a fresh mock with a manual clock
(`env.sleep` moves that clock, so waits cost no time), then runs every check. A failure shrinks to the
shortest script and is reported with the seed and a one-line replay.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from mockserver import MockConfig, create_app
from mockserver.config import CallbackConfig
from mockserver.scenarios import SCENARIOS, WIRE_FAULTS, task_outcomes
from mockserver.spec import PROVIDER_SPECS, load, spec_path
from mockserver.validation import did_you_mean

from . import behaviour
from .checks import Run, run_checks, run_recommendations
from .forged import FORGED_MARKS, first_callback_call, send_forged
from .live import LiveServer
from .receiver import CallbackReceiver, Delivery
from .referee import ContractViolation, Referee

Step = dict[str, Any]
HANG_S = 0.2  # how long `timeout_after` holds an answer in the harness (real time)
CALLBACK_TIMEOUT_S = 0.5  # the harness mock's timeout per callback attempt (real time)


class ConformanceFailure(AssertionError):
    """The client broke the contract under some provider behaviour."""


def _provider_names(providers: Sequence[str] | None) -> tuple[str, ...]:
    """`providers` checked against the bundled specs; every provider when None."""
    if providers is None:
        return PROVIDER_SPECS
    if isinstance(providers, str):  # a lone name would otherwise be read letter by letter
        providers = [providers]
    for name in providers:
        if name not in PROVIDER_SPECS:
            raise ValueError(f"provider {name!r} is unknown; expected one of {', '.join(PROVIDER_SPECS)}."
                             f"{did_you_mean(name, PROVIDER_SPECS)}")
    return tuple(providers)


def step_strategy(providers: Sequence[str] | None = None) -> st.SearchStrategy[Step]:
    """One provider behaviour for one call; shrinks toward a normal answer.

    Codes and examples are drawn from the operations of `providers` (default: every provider), so a client
    of one provider is not handed another provider's codes, which would play as normal answers.
    """
    operations = [op for name in _provider_names(providers) for op in load(spec_path(name)).operations]
    codes = sorted({c for op in operations for c in op.documented_codes if c >= 400})
    examples = sorted({name for op in operations for name, (status, _body) in op.examples().items()
                       if 200 <= status < 300})
    outcomes = sorted({o for op in operations for o in task_outcomes(op)})
    return st.one_of(
        st.just({}),
        st.sampled_from(codes).map(lambda c: {"code": c}),
        st.sampled_from(examples).map(lambda e: {"example": e}),
        st.sampled_from(WIRE_FAULTS).map(lambda w: {"wire_fault": w}),
        st.sampled_from(SCENARIOS).map(lambda s: {"scenario": s}),
        *([st.sampled_from(outcomes).map(lambda o: {"task_outcome": o})] if outcomes else []),
    )


@dataclass
class ClientEnv:
    """What the client under test is given: where the mock is, a key, a callback URL, and the mock's sleep."""

    url: str
    api_key: str
    callback_url: str
    _control: httpx.Client
    _receiver: CallbackReceiver
    _seen: int = 0
    slept: float = field(default=0.0)
    forge: bool = True  # send one forged callback once the client has created a task that calls back
    forged: list[str] = field(default_factory=list)  # the providers a forged callback was sent for

    @property
    def musicapi_url(self) -> str:
        return self.url

    @property
    def apibox_url(self) -> str:
        return self.url

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` on the mock's clock: stages, callbacks and retries due meanwhile happen now."""
        self.slept += seconds
        self._control.post("/__mock/clock/advance", json={"seconds": max(0.0, seconds)}).raise_for_status()

    def callbacks(self) -> list[Delivery]:
        """Callbacks delivered to `callback_url` since the last call, in arrival order.

        Once the client has created a task that calls back here, one forged callback comes too: for a task it
        never created (api.box), or with a wrong signature (MusicAPI). A careful client drops it."""
        if self.forge and not self.forged:
            self._send_forged()
        deliveries = self._receiver.accepted()
        new, self._seen = deliveries[self._seen:], len(deliveries)
        return new


    def _send_forged(self) -> None:
        made = first_callback_call(self._control.get("/__mock/journal").json()["exchanges"], self.callback_url)
        if made is not None:
            now_ms = int(self._control.get("/__mock/clock").json()["now"] * 1000)
            if send_forged(made, self.url, now_ms):
                self.forged.append(str(made.get("provider")))


@dataclass
class Result:
    steps: list[Step]
    violations: list[ContractViolation]
    run: Run
    recommendations: list[ContractViolation] = field(default_factory=list)


class Harness:
    """A mock (manual clock) and a callback receiver, reused across examples and reset for each."""

    def __init__(self, api_key: str = "conformance-key", credits: float = 1_000_000) -> None:
        self.api_key = api_key
        self.credits = credits
        # Short real-time waits: a held answer (timeout_after) and a callback attempt that times out cost little.
        config = MockConfig(clock="manual", journal_size=100_000, dribble_seconds=0.05, hang_seconds=HANG_S,
                            callbacks=CallbackConfig(timeout=CALLBACK_TIMEOUT_S))
        self.callback_timeout = CALLBACK_TIMEOUT_S
        self.server = LiveServer(create_app(config)).start()
        self.receiver = CallbackReceiver().start()
        self.control = httpx.Client(base_url=self.server.url, timeout=60)
        self.referee = Referee([load(spec_path(name)) for name in PROVIDER_SPECS])

    def run(self, client: Callable[[ClientEnv], Any], steps: Sequence[Step],
            expected_errors: tuple[type[BaseException], ...], checks: list[str] | None = None,
            receiver: str | None = None, *, forge: bool = True, require_retries: bool = False) -> Result:
        self.control.post("/__mock/reset").raise_for_status()
        self.receiver.clear()
        if receiver:
            self.receiver.behave(receiver, self.callback_timeout)
        self.control.put(f"/__mock/credits/{self.api_key}", json={"credits": self.credits}).raise_for_status()
        self.control.put("/__mock/script", json={"steps": list(steps)}).raise_for_status()
        env = ClientEnv(self.server.url, self.api_key, self.receiver.endpoint("callback"), self.control,
                        self.receiver, forge=forge)
        error: BaseException | None = None
        try:
            client(env)
        except Exception as exc:  # judged by the checks: an expected error type, or a crash
            error = exc
        run = Run(self.referee, self.control.get("/__mock/journal").json()["exchanges"],
                  self.control.get("/__mock/callbacks").json()["callbacks"], error, expected_errors,
                  forged=FORGED_MARKS if env.forged else ())
        advice = run_recommendations(run)
        if require_retries:
            return Result(list(steps), run_checks(run, checks) + advice, run)
        return Result(list(steps), run_checks(run, checks), run, advice)

    def close(self) -> None:
        self.control.close()
        self.receiver.stop()
        self.server.stop()


def describe(result: Result, seed: int | None, client: Callable[..., Any]) -> str:
    lines = [f"The client broke the contract when the provider behaved like this, call by call "
             f"({len(result.steps)} step(s); {{}} = a normal answer):",
             f"  {json.dumps(result.steps)}"]
    lines += [f"  - {v}" for v in result.violations]
    zero = min((float(e.get("time") or 0.0) for e in result.run.exchanges), default=0.0)
    tasks = behaviour.tasks_of(result.run)
    if tasks:
        lines.append("Tasks the client created:")
        lines += [f"  - {t.describe(zero)}" for t in tasks]
    answers = behaviour.last_answers(result.run)
    if answers:
        lines.append("Last answers per operation (oldest first):")
        lines += [f"  {name}: {'; '.join(shown)}" for name, shown in answers.items()]
    name = f"{getattr(client, '__module__', '?')}:{getattr(client, '__qualname__', '?')}"
    lines.append(f"Seed: {seed}")
    lines.append(f"Replay: python -m contracts.conformance {name} '{json.dumps(result.steps)}'")
    return "\n".join(lines)


def check_client(client: Callable[[ClientEnv], Any], *, expected_errors: tuple[type[BaseException], ...] = (),
                 max_examples: int = 30, max_steps: int = 6, seed: int | None = 0, checks: list[str] | None = None,
                 steps: st.SearchStrategy[Step] | None = None, providers: Sequence[str] | None = None,
                 script: Sequence[Step] | None = None, receiver: str | None = None,
                 require_retries: bool = False, forge: bool = True) -> None:
    """Drive `client` under Hypothesis-chosen provider behaviour; raise ConformanceFailure with a minimal script.

    `providers` (say `["musicapi"]`) limits the behaviours drawn to those the named providers document.
    `script` runs exactly those steps once instead (e.g. `[{}, {"task_outcome": "generate_audio_failed"}]`);
    `receiver` (`refuse*N`, `timeout*N`) makes the callback receiver refuse or time out the next N deliveries.
    `require_retries` makes the retry recommendations violations; `forge=False` sends no forged callback.
    """
    if script is not None:
        harness = Harness()
        try:
            result = harness.run(client, script, expected_errors, checks, receiver, forge=forge,
                                 require_retries=require_retries)
        finally:
            harness.close()
        if result.violations:
            raise ConformanceFailure(describe(result, seed, client))
        return
    strategy = st.lists(steps or step_strategy(providers), max_size=max_steps)
    harness = Harness()
    failure: list[Result] = []

    @settings(max_examples=max_examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def examine(drawn: list[Step]) -> None:
        result = harness.run(client, drawn, expected_errors, checks, receiver, forge=forge,
                             require_retries=require_retries)
        if result.violations:
            failure[:] = [result]
            raise ConformanceFailure(describe(result, seed, client))

    if seed is not None:
        examine = hypothesis_seed(seed)(examine)
    try:
        examine()
    except ConformanceFailure:
        raise ConformanceFailure(describe(failure[-1], seed, client)) from None
    finally:
        harness.close()


def replay(client: Callable[[ClientEnv], Any], steps: Sequence[Step],
           expected_errors: tuple[type[BaseException], ...] = (), receiver: str | None = None) -> list[ContractViolation]:
    """Run `client` once under exactly `steps`; return the violations."""
    harness = Harness()
    try:
        return harness.run(client, steps, expected_errors, receiver=receiver).violations
    finally:
        harness.close()


def _main(argv: list[str]) -> int:
    import importlib

    target, script = argv[0], json.loads(argv[1]) if len(argv) > 1 else []
    module, _, name = target.partition(":")
    client = importlib.import_module(module)
    for part in name.split("."):
        client = getattr(client, part)
    found = replay(client, script)  # type: ignore[arg-type]
    for violation in found:
        print(f"- {violation}")
    print(f"{len(found)} violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))

"""The bug zoo: client mistakes found in published clients, one per example, each with what exposes it.

Python flows live in `flows.py` (run by `contracts.conformance`); commands in any language sit next to this file
(run by `stemmock check-client`). `BUGS` says, per bug, how to provoke it and which check must name it; the tests
in `tests/test_zoo.py` hold the kit to that. `examples/broken_client.py` and the planted variants in
`examples/test_musicapi_conformance.py` hold the older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bug:
    name: str
    provider: str  # apibox | musicapi
    target: str  # a flow's name in flows.py, or a command file next to this one
    title: str  # the check (or recommendation) that must name it
    script: tuple[dict[str, Any], ...] = ()  # flows: the provider behaviour that exposes it
    flags: tuple[str, ...] = ()  # commands: the check-client options that expose it
    recommendation: bool = False  # caught as a recommendation (a violation with --require-retries)

    @property
    def command(self) -> bool:
        return not self.target.isidentifier()

    def argv(self) -> list[str]:
        runner = {".py": "python", ".mjs": "node", ".sh": "bash"}[Path(self.target).suffix]
        return [runner, str(HERE / self.target)]


STOPS = "stops on a terminal failure and surfaces it"
USER = "errors reach the user"
RETRIES = "retries transient errors with backoff"
FORGED = "does not act on a forged callback"
PAID = "no paid work is done twice"
POLLING = "never polls faster than documented"

BUGS = (
    Bug("apibox_polls_failed_task", "apibox", "apibox_polls_failed_task", STOPS,
        script=({"task_outcome": "generate_audio_failed"},)),
    Bug("apibox_failed_as_success", "apibox", "apibox_failed_as_success", STOPS,
        script=({"task_outcome": "sensitive_word_error"},)),
    Bug("apibox_resends_paid_call", "apibox", "apibox_resends_paid_call", PAID,
        script=({"wire_fault": "connection_reset_after"},)),
    Bug("apibox_trusts_any_callback", "apibox", "apibox_trusts_any_callback", FORGED),
    Bug("apibox_gives_up_on_500", "apibox", "apibox_gives_up_on_500", RETRIES, script=({}, {"code": 500}),
        recommendation=True),
    Bug("musicapi_failed_clips_as_success", "musicapi", "musicapi_failed_clips_as_success", STOPS,
        script=({"task_outcome": "failed"},)),
    Bug("musicapi_skips_signature", "musicapi", "musicapi_skips_signature", FORGED,
        script=({"scenario": "callback_never"},)),
    Bug("musicapi_retries_at_once", "musicapi", "musicapi_retries_at_once", RETRIES, script=({}, {"code": 500}),
        recommendation=True),
    Bug("crash_on_null", "apibox", "crash_on_null.py", USER, flags=("--script", '[{}, {"example": "unknown_task"}]')),
    Bug("swallow_error", "musicapi", "swallow_error.mjs", USER, flags=("--fault", "createMusic=429*9")),
    Bug("crash_on_not_ready", "musicapi", "crash_on_not_ready.mjs", USER),
    # At the default time scale, as its command line runs it: at a far smaller one the whole task can end before
    # curl's first poll on a busy machine, leaving no interval to judge.
    Bug("fixed_poll", "apibox", "fixed_poll.sh", POLLING, flags=("--time-scale", "0.1")),
    Bug("ignores_failed", "apibox", "ignores_failed.sh", STOPS,
        flags=("--task-outcome", "generateMusic=sensitive_word_error")),
    Bug("resend_create", "musicapi", "resend_create.py", PAID, flags=("--fault", "createMusic=connection_reset_after")),
    Bug("own_webhook", "musicapi", "own_webhook.py", FORGED),
)

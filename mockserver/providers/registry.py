"""The registry of what providers bring: the behaviours a spec operation names in `x-mock.action`, the stage
jobs that open their callbacks, and how their callbacks are signed. A provider module registers itself here.

An action has two steps: `precheck(ctx)` (read-only: does the resource the call needs exist?) and
`run(ctx)` (mutates the store through `ctx.store` and returns the reply body). Operations without
an action are served from their examples, so a spec can grow without Python changes.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..scenarios import Refusal

if TYPE_CHECKING:
    from ..clock import Clock, Scheduler
    from ..config import CallbackConfig, MockConfig
    from ..request import MockRequest
    from ..spec import Operation
    from ..store import Store

# The version (4) and variant (RFC 4122) bits uuid.UUID(version=4) sets.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


@dataclass
class Context:
    """Everything an action may read or change while it handles one request."""

    op: Operation
    req: MockRequest
    store: Store
    clock: Clock
    scheduler: Scheduler
    config: MockConfig
    rng: random.Random
    base_url: str
    scenario: str | None = None  # the delivery behaviour decided for the task this call creates
    task_outcome: str | None = None  # the terminal status decided for the task this call creates
    example: dict[str, Any] | None = None  # a named example the call answers: a poll puts its task in that state
    reads: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)  # what `owned` has read

    @property
    def api_key(self) -> str:
        return self.req.api_key or ""

    @property
    def provider(self) -> str:
        return self.op.provider.name

    def uuid(self) -> str:
        """A version-4 UUID from the seeded rng: `str(uuid.UUID(int=bits, version=4))`, without the object."""
        bits = self.rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def hex_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def owned(self, kind: str, rid: Any) -> dict[str, Any] | None:
        """The resource `kind/rid` if it exists and belongs to this request's API key."""
        if not isinstance(rid, str) or not rid:
            return None
        key = (kind, rid)
        if key not in self.reads:  # a call reads a resource once, however many of its steps look at it
            self.reads[key] = self.store.get(kind, rid)
        record = self.reads[key]
        if record is None or record.get("api_key") != self.api_key:
            return None
        made = record.get("created_at")
        if isinstance(made, (int, float)) and self.clock.now() - made > self.config.retention.tasks:
            return None  # past the retention: answered as the provider answers an unknown one
        return record


@dataclass(slots=True)
class Reply:
    """An action's answer. A value (see scenarios.Outcome)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Reads = Callable[["Context"], list[tuple[str, str]]]


def _no_reads(ctx: Context) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True, slots=True)
class Action:
    run: Callable[[Context], Reply]
    precheck: Callable[[Context], Refusal | None] = lambda ctx: None
    #: The resources (kind, id) the call names in its request and reads: read with the call's state, in the
    #: same round trip on a shared store, and kept in `Context.reads`.
    reads: Reads = _no_reads


ACTIONS: dict[str, Action] = {}


def action(name: str, precheck: Callable[[Context], Refusal | None] | None = None,
           reads: Reads | None = None) -> Callable[[Callable[[Context], Reply]], Callable[[Context], Reply]]:
    """Register `run` as the behaviour named `name` (as written in a spec's `x-mock.action`)."""

    def register(run: Callable[[Context], Reply]) -> Callable[[Context], Reply]:
        ACTIONS[name] = Action(run, precheck or (lambda ctx: None), reads or _no_reads)
        return run

    return register


def reads_field(kind: str, where: str, name: str) -> Reads:
    """The resource of `kind` whose id the request carries in its `where` ('json', 'query' or 'path') `name`."""

    def named(ctx: Context) -> list[tuple[str, str]]:
        part = ctx.req.json if where == "json" else ctx.req.query if where == "query" else ctx.req.path_params
        rid = part.get(name) if isinstance(part, dict) else None
        return [(kind, rid)] if isinstance(rid, str) and rid else []

    return named


# A stage job: run on the scheduler when a task reaches a stage; it builds the callback payload and opens it.
Job = Callable[..., Awaitable[None]]
JOBS: dict[str, Job] = {}


def job(kind: str) -> Callable[[Job], Job]:
    """Register `run(deliveries, *args)` as the scheduler job `kind` (the name is stored with queued jobs)."""

    def register(run: Job) -> Job:
        JOBS[kind] = run
        return run

    return register


@dataclass(frozen=True, slots=True)
class Callbacks:
    """How a provider's callbacks go out: its task records' kind, and the headers that sign one attempt."""

    task_kind: str
    headers: Callable[[dict[str, Any], bytes, str, CallbackConfig], dict[str, str]]


CALLBACKS: dict[str, Callbacks] = {}

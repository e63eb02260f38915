"""Step 5 of a call, apply: what the decided outcome does to the state, stored in one step.

A successful call runs its provider action against a `CallStore` that holds what the action writes; the writes,
the charge and the callback jobs then reach the store together (`Store.commit`), so a call is charged only if
its resource was made, and a call that fails half-way (a bug of the mock's) leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from .clock import Scheduler
from .providers import Action, Context
from .responses import encode
from .scenarios import Outcome, cost_key, error
from .spec import Operation
from .store import Record, Store, codec


class CallStore:
    """The store as one call's action sees it: what the action writes is held until the call commits."""

    __slots__ = ("_store", "writes")

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes: dict[tuple[str, str], Record] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put(self, kind: str, rid: str, record: Record) -> None:
        # Kept as given until the commit, which follows the action at once (an action does not change a record
        # after storing it); reads get a copy, as from the store.
        self.writes[(kind, rid)] = record

    def get(self, kind: str, rid: str) -> Record | None:
        held = self.writes.get((kind, rid))
        return codec.loads(codec.pack(held)) if held is not None else self._store.get(kind, rid)

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        record = self.get(kind, rid)
        if record is None:
            return None
        record.update(changes)
        self.put(kind, rid, record)
        return record

    def records(self) -> list[tuple[str, str, Record]]:
        return [(kind, rid, record) for (kind, rid), record in self.writes.items()]


@dataclass(slots=True)
class Commit:
    """What a call still has to store, charged in one step with its journal entry (`Effects.commit`)."""

    provider: str
    api_key: str
    cost: float
    records: list[tuple[str, str, Record]]
    jobs: list[tuple[float, Record]]
    generation: int | None = None  # of the block the call's ids came from (a shared store's ids)


@dataclass(slots=True)
class Effect:
    """What applying an outcome did: the outcome as it stands now, the answer it made (None: the outcome's own
    error answer is rendered), whether it queued callback jobs, and what it still has to commit (None: nothing,
    or committed already)."""

    outcome: Outcome
    answer: tuple[int, Any, dict[str, str]] | None = None
    jobs: bool = False
    pending: Commit | None = None


class Effects:
    """Applies decided outcomes to the store: charges, resources, callback jobs."""

    def __init__(self, store: Store, scheduler: Scheduler, costs: dict[str, dict[str, float]]) -> None:
        self.store, self.scheduler, self.costs = store, scheduler, costs

    def apply(self, op: Operation, outcome: Outcome, action: Action | None, ctx: Context) -> Effect:
        """Charge and create what a successful call makes; an example or wire answer, or nothing for an error."""
        if outcome.kind == "wire":  # an answer that looks like success until it breaks
            return Effect(outcome, (200, first_example(op)[1], {}))
        if outcome.kind == "example" and action is not None:
            adopted = self._example_with_ids(op, outcome, action, ctx)
            if adopted is not None:
                return adopted
        if outcome.kind != "success":
            return Effect(outcome)
        if action is None:
            status, body = first_example(op)
            pending = Commit(op.provider.name, ctx.api_key, outcome.cost, [], []) if outcome.cost else None
            return Effect(outcome, (status, body, {}), pending=pending)
        ctx.scenario, ctx.task_outcome = outcome.scenario, outcome.task_outcome
        reply, raw, pending = self._run(action, ctx, outcome.cost)
        return Effect(outcome, (reply.status, raw, dict(reply.headers)), bool(pending and pending.jobs), pending)

    async def commit(self, pending: Commit, journal: Any) -> bool:
        """Store what the call made, its charge and its journal entry in one step; False: the balance was spent
        by a concurrent call, and nothing was stored or journaled."""
        return await self.store.acommit(pending.provider, pending.api_key, pending.cost, pending.records,
                                        pending.jobs, journal, pending.generation) is not None

    def commit_now(self, pending: Commit, journal: Any) -> bool:
        """`commit`, from within a step that cannot wait (an example answered with real ids)."""
        return self.store.commit(pending.provider, pending.api_key, pending.cost, pending.records, pending.jobs,
                                 journal, pending.generation) is not None

    def _run(self, action: Action, ctx: Context, cost: float) -> tuple[Any, bytes, Commit | None]:
        """(reply, encoded body, what to commit: None when the call wrote, queued and cost nothing) of the action,
        which runs against a store that holds its writes."""
        real = ctx.store
        held = CallStore(self.store)
        ctx.store = cast(Store, held)
        jobs = self.scheduler.hold()
        try:
            reply = action.run(ctx)
            raw = encode(reply.body)  # an answer that cannot be sent must not be paid for
        finally:
            self.scheduler.release()
            ctx.store = real
        if not (held.writes or jobs or cost):
            return reply, raw, None
        return reply, raw, Commit(ctx.op.provider.name, ctx.api_key, cost, held.records() if held.writes else [],
                                  jobs, getattr(ctx.rng, "generation", None))

    @staticmethod
    def spent(op: Operation) -> Effect:
        """The balance changed between decide and charge (another worker spent it): refuse, charge nothing."""
        return Effect(error(op, "credits", 403, "credits: spent by a concurrent call"))

    def _example_with_ids(self, op: Operation, outcome: Outcome, action: Action, ctx: Context) -> Effect | None:
        """A success example answered with the ids of what the call made or asked about, so the mock knows them.

        A call that creates (it has a cost) creates and is charged as usual; a poll puts the task it asks about
        in the example's state (`ctx.example`). None: the example is an error, or the call could not take effect
        (unknown resource, credits short), so it is answered as written.
        """
        status, body = op.examples()[str(outcome.example)]
        if not 200 <= status < 300 or not isinstance(body, dict) or (
                op.provider.body_transport and body.get(op.provider.code_field) != 200):
            return None
        if action.precheck(ctx) is not None:
            return None
        key = cost_key(op, ctx.req)
        cost = float(self.costs[op.provider.name].get(key, 0)) if key else 0.0
        ctx.example = body
        reply, _raw, pending = self._run(action, ctx, cost)
        if pending is not None and not self.commit_now(pending, None):  # answered as written, journaled apart
            return None
        outcome.cost = cost
        return Effect(outcome, (status, adopt_ids(body, reply.body), {}), bool(pending and pending.jobs))


def first_example(op: Operation) -> tuple[int, Any]:
    """The operation's success status and its first example (an empty object without one)."""
    status = op.success_status()
    doc = op.responses.get(status)
    if doc and doc.examples:
        return status, next(iter(doc.examples.values()))
    return status, {}


def adopt_ids(example: Any, real: Any, key: str = "") -> Any:
    """`example` with each id (a string under a key ending in `id`) taken from `real` at the same place, if any."""
    if isinstance(example, dict) and isinstance(real, dict):
        return {k: adopt_ids(v, real.get(k), k) if k in real else v for k, v in example.items()}
    if isinstance(example, list) and isinstance(real, list):
        return [adopt_ids(v, real[i], key) if i < len(real) else v for i, v in enumerate(example)]
    if isinstance(example, str) and isinstance(real, str) and key.lower().endswith("id") and real:
        return real
    return example

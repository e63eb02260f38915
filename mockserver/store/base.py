"""The store's interface: resources (clips, tasks, deliveries), the credit ledger and the journal.

`Store` is what the mock needs of its state; `memory.MemoryStore` the default implementation,
`redis.RedisStore` the shared one (many workers, survives restarts). Records are plain JSON-compatible dicts,
and a record handed out is a copy: a change reaches the store only through `put` or `update`. Each method is
one atomic step (a charge either happens whole or not at all, a job is claimed by one worker only), whatever
the number of workers sharing the store.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
Job = tuple[str, float, Record]  # (job id, due instant, {"kind", "args", "label"})


@dataclass(slots=True)
class CallState:
    """What deciding one provider call reads of the state, read together (see `Store.call_state`). A value."""

    script_step: Record | None  # taken from the script: this call plays it
    maintenance: dict[str, bool]
    faults: list[Record]
    balance: Record  # the calling key's, on the call's provider
    clock: float | None = None  # a shared manual clock's instant, read in the same step (None: not read)
    records: dict[tuple[str, str], Record | None] | None = None  # the resources asked for, read in the same step
    generation: int = 0  # how many resets the store has seen (a block of ids from an older one is stale)


class StaleIds(Exception):
    """The call drew ids from a block reserved before a reset of the store: nothing was stored."""


class Store(ABC):
    """What the mock needs from its state, whatever holds it."""

    #: True when other processes see the same state and it outlives this process (deliveries then stay
    #: owed across a restart instead of being flushed at shutdown).
    shared = False

    def close(self) -> None:
        """Release connections; the state itself stays where it is."""

    async def aclose(self) -> None:
        """`close`, from the event loop (a store with event-loop connections closes them too)."""
        self.close()

    # -- resources ------------------------------------------------------------------------------------
    @abstractmethod
    def put(self, kind: str, rid: str, record: Record) -> None: ...

    @abstractmethod
    def get(self, kind: str, rid: str) -> Record | None: ...

    @abstractmethod
    def update(self, kind: str, rid: str, changes: Record) -> Record | None: ...

    @abstractmethod
    def all(self, kind: str) -> list[Record]: ...

    # -- credits ----------------------------------------------------------------------------------------
    @abstractmethod
    def balance(self, provider: str, api_key: str) -> Record:
        """`{credits, extra_credits}` for the key, opening the account with the defaults if new."""

    @abstractmethod
    def set_balance(self, provider: str, api_key: str, credits: float, extra_credits: float = 0) -> Record: ...

    @abstractmethod
    def charge(self, provider: str, api_key: str, cost: float) -> Record | None:
        """Take `cost` (extra credits first); return the new balance, or None and charge nothing if short."""

    @abstractmethod
    def commit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
               jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
               generation: int | None = None) -> Record | None:
        """Charge `cost`, store what the call made (records, jobs) and journal the call's exchange, as one step;
        the new balance.

        None, and nothing charged, stored or journaled, when the balance is short: a call is charged only if what
        it made exists, and what it made exists only if it was paid for. A shared store raises `StaleIds`, storing
        nothing, when `generation` (that of the block the call's ids came from) is not the store's own.
        """

    async def acommit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
                      jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
                      generation: int | None = None) -> Record | None:
        """`commit` from the event loop: a store on a server sends the steps of calls that overlap together."""
        return self.commit(provider, api_key, cost, records, jobs, journal, generation)

    # -- rate windows, scripted faults, maintenance ----------------------------------------------------------
    @abstractmethod
    def rate_retry_after(self, key: str, now: float, limit: int, window: float) -> float | None:
        """Seconds until the sliding window `key` admits another call, or None if it admits one now."""

    @abstractmethod
    def rate_hit(self, key: str, now: float, limit: int, window: float) -> bool:
        """Count an admitted call in the window `key`; False, counting nothing, if the window is full."""

    # -- counters and the shared clock ------------------------------------------------------------------------
    @abstractmethod
    def next_id(self, name: str) -> int:
        """1, 2, 3, ... per `name`, unique across every worker; restarts after `reset`."""

    def reserve_ids(self, name: str, count: int) -> tuple[int, int]:
        """(reset generation, first) of `count` ids of `name` (first .. first + count - 1) for this worker alone.

        The generation counts the store's resets: ids drawn from a block of an older generation can never equal
        ids of a newer one, so a reset by one worker never lets another hand out an id twice.
        """
        first = self.next_id(name)
        for _ in range(count - 1):
            self.next_id(name)
        return 0, first

    @abstractmethod
    def clock_value(self, name: str, default: float | None = None) -> float | None:
        """A clock setting (`manual` instant, `offset`); `default` is stored first if none is set yet."""

    @abstractmethod
    def set_clock_value(self, name: str, value: float) -> None:
        """Store a clock setting; the `manual` instant only moves forward (concurrent advances cannot rewind it)."""

    # -- jobs (what the scheduler runs when it falls due) -------------------------------------------------------
    @abstractmethod
    def schedule(self, due: float, job: Record) -> str:
        """Queue `job` for instant `due`; its id."""

    @abstractmethod
    def claim_due(self, now: float, limit: int) -> list[Job]:
        """Take up to `limit` jobs due at or before `now`, earliest first, for this worker alone.

        A claimed job stays owed until `finish`; on a shared store a claim that is not finished within its
        lease (the worker died) is handed out again.
        """

    @abstractmethod
    def finish(self, job_id: str) -> None: ...

    @abstractmethod
    def next_due(self) -> float | None: ...

    @abstractmethod
    def pending_jobs(self) -> list[tuple[float, str]]:
        """(due, label) of every job not yet claimed, earliest first."""

    @abstractmethod
    def job_count(self) -> int: ...

    @abstractmethod
    def add_fault(self, fault: Record) -> Record: ...

    @abstractmethod
    def faults(self) -> list[Record]: ...

    @abstractmethod
    def take_fault(self, fault_id: str) -> bool:
        """Use one of the fault's remaining `times`; False if it has none left."""

    @abstractmethod
    def clear_faults(self) -> None: ...

    @abstractmethod
    def set_script(self, steps: list[Record]) -> None:
        """Queue one behaviour per coming provider call, in order (the contract kit's driver)."""

    @abstractmethod
    def pop_script(self) -> Record | None:
        """The next queued behaviour, or None when the script is empty."""

    @abstractmethod
    def script(self) -> list[Record]: ...

    @abstractmethod
    def maintenance(self) -> dict[str, bool]: ...

    def call_state(self, provider: str, api_key: str, reads: list[tuple[str, str]] | None = None) -> CallState:
        """Take the next script step and read maintenance, the faults, the key's balance and the resources
        `reads` names (kind, id), for one call.

        Deciding a call reads all of them; a store on a server answers them in one round trip.
        """
        return CallState(self.pop_script(), self.maintenance(), self.faults(), self.balance(provider, api_key),
                         None, {(kind, rid): self.get(kind, rid) for kind, rid in reads or ()})

    def quiet_call(self, provider: str, api_key: str | None) -> float | None:
        """A call answered without reading the state (refused before it was decided) is about to be journaled: the
        shared manual clock's instant as this worker last read it (None: read the clock as usual). A store on a
        server then checks, in the journal's own step, that the instant is still current (one round trip)."""
        return None

    def end_call(self) -> None:
        """The call `call_state` read for is answered: what it relied on is no longer checked (a shared store)."""

    @abstractmethod
    def set_maintenance(self, provider: str, on: bool) -> None: ...

    # -- journal ----------------------------------------------------------------------------------------
    @abstractmethod
    def record(self, exchange: Record | Callable[[], Record]) -> None:
        """Journal one exchange: the record, or a function that builds it (a store may call it later).

        The builder must capture its values when it is made (time included): it may run long after.
        """

    async def arecord(self, exchange: Record | Callable[[], Record]) -> None:
        """`record` from the event loop (see `acommit`)."""
        self.record(exchange)

    @abstractmethod
    def journal(self, limit: int | None = None, operation: str | None = None) -> list[Record]:
        """The last `limit` exchanges (all kept when None), of `operation` only when given, oldest first."""

    HEARTBEAT_EVERY = 1.0  # seconds between a worker's signs of life (a shared store)

    def heartbeat(self) -> None:
        """Tell the other workers sharing the store that this one lives (a shared store)."""

    def reclaim(self) -> int:
        """Queue again the claimed jobs whose worker is gone (a shared store); how many."""
        return 0

    def claimed_count(self) -> int:
        """Jobs claimed by a worker and not finished yet."""
        return 0

    @abstractmethod
    def reset(self) -> None: ...


class CountedRandom(random.Random):
    """Ids for workers that share a store: bits derived from the seed and a block of the store's `ids` counter.

    Two workers with one seed would otherwise draw the same ids; this way ids stay unique across workers,
    and a session replayed against a fresh store from the same seed by one worker gets the same ids in the
    same order. Each worker reserves `BLOCK` numbers at a time, so an id costs no round trip of its own. A block
    is tagged with the store's reset generation: a call reads the generation with its state (`observe` drops a
    stale block before the call draws), and its commit stores nothing when the generation moved on meanwhile, so
    a block reserved before a reset never repeats an id drawn after it.
    """

    BLOCK = 1000

    def __init__(self, store: Store, seed: int) -> None:
        super().__init__(seed)
        self._store = store
        self._seed = seed
        self._generation, self._next, self._end = 0, 0, 0

    @property
    def generation(self) -> int:
        return self._generation

    def observe(self, generation: int) -> None:
        """The store's generation as a call read it: a block of an older one is dropped."""
        if generation != self._generation:
            self._generation, self._next, self._end = generation, 0, 0

    def getrandbits(self, k: int) -> int:
        if self._next >= self._end:
            self._generation, self._next = self._store.reserve_ids("ids", self.BLOCK)
            self._end = self._next + self.BLOCK
        n, self._next = self._next, self._next + 1
        digest = hashlib.blake2b(f"{self._seed}/{n}".encode(), digest_size=64).digest()
        return int.from_bytes(digest) >> (512 - k) if k <= 512 else super().getrandbits(k)

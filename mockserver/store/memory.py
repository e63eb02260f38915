"""The default store: the state in this process's memory, gone when it ends."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from .base import Job, Record, Store
from .codec import loads
from .codec import pack as dumps


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends."""

    def __init__(self, default_balance: Record | None = None, journal_size: int = 1000,
                 opening: dict[str, Record] | None = None, max_records: int | None = None) -> None:
        self._max_records = max_records  # per kind: beyond it the oldest records go (None: no bound)
        self._default = dict(default_balance or {"credits": 1000, "extra_credits": 0})
        self._opening = dict(opening or {})  # api_key -> starting balance for configured keys
        self._journal_size = journal_size
        self._clock_values: dict[str, float] = {}  # the clock's state outlives a reset
        self.reset()

    def reset(self) -> None:
        self._counters: dict[str, int] = {}
        self._jobs: dict[str, bytes] = {}
        self._due: list[tuple[float, int, str]] = []
        self._job_seq = itertools.count()
        self._dropped = 0  # heap entries of jobs dropped with their owner (removed from the heap now and then)
        self._resources: dict[str, dict[str, bytes]] = {}
        self._ledger: dict[tuple[str, str], Record] = {}
        self._journal: deque[Record | Callable[[], Record]] = deque(maxlen=self._journal_size)
        self._seq = 0
        self._windows: dict[str, deque[float]] = {}
        self._faults: list[Record] = []
        self._script: deque[Record] = deque()
        self._maintenance: dict[str, bool] = {}

    # Records and jobs are kept as encoded JSON, as the Redis store keeps them: a record handed out is a
    # fresh copy, only JSON survives the round trip on either store, and a million stored tasks are a
    # million byte strings the garbage collector never has to walk (full collections stay short).
    def put(self, kind: str, rid: str, record: Record) -> None:
        self._store(kind, rid, dumps(record))

    def _store(self, kind: str, rid: str, raw: bytes) -> None:
        records = self._resources.setdefault(kind, {})
        records[rid] = raw  # a record stored again keeps its place: the order is the order of creation
        if self._max_records is not None:
            while len(records) > self._max_records:
                del records[next(iter(records))]

    def get(self, kind: str, rid: str) -> Record | None:
        raw = self._resources.get(kind, {}).get(rid)
        return None if raw is None else loads(raw)

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        record = self.get(kind, rid)
        if record is None:
            return None
        record.update(changes)
        self._resources[kind][rid] = dumps(record)
        return record

    def all(self, kind: str) -> list[Record]:
        return [loads(raw) for raw in self._resources.get(kind, {}).values()]

    def _account(self, provider: str, api_key: str) -> Record:
        account = self._ledger.get((provider, api_key))
        if account is None:
            opening = self._opening.get(api_key, self._default)
            account = {"credits": float(opening["credits"]), "extra_credits": float(opening.get("extra_credits", 0))}
            self._ledger[(provider, api_key)] = account
        return account

    def balance(self, provider: str, api_key: str) -> Record:
        return dict(self._account(provider, api_key))

    def set_balance(self, provider: str, api_key: str, credits: float, extra_credits: float = 0) -> Record:
        self._ledger[(provider, api_key)] = {"credits": float(credits), "extra_credits": float(extra_credits)}
        return dict(self._ledger[(provider, api_key)])

    def charge(self, provider: str, api_key: str, cost: float) -> Record | None:
        account = self._account(provider, api_key)
        if cost <= 0:
            return dict(account)
        if account["credits"] + account["extra_credits"] < cost:
            return None
        from_extra = min(account["extra_credits"], cost)
        account["extra_credits"] -= from_extra
        account["credits"] -= cost - from_extra
        return dict(account)

    def commit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
               jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
               generation: int | None = None) -> Record | None:
        # One step: nothing here awaits, so no other call runs between the check, the charge and the writes.
        account = self._account(provider, api_key)
        if cost > 0 and account["credits"] + account["extra_credits"] < cost:
            return None
        encoded = [(kind, rid, dumps(record)) for kind, rid, record in records] if records else ()  # may fail: first
        if cost > 0:
            from_extra = min(account["extra_credits"], cost)
            account["extra_credits"] -= from_extra
            account["credits"] -= cost - from_extra
        for kind, rid, raw in encoded:
            self._store(kind, rid, raw)
        for due, job in jobs:
            self.schedule(due, job)
        if journal is not None:
            self.record(journal)
        return dict(account)

    def _window(self, key: str, now: float, window: float) -> deque[float]:
        hits = self._windows.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        return hits

    def rate_retry_after(self, key: str, now: float, limit: int, window: float) -> float | None:
        hits = self._window(key, now, window)
        if len(hits) < limit:
            return None
        return max(0.0, hits[-limit] + window - now)

    def rate_hit(self, key: str, now: float, limit: int, window: float) -> bool:
        hits = self._window(key, now, window)
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True

    def next_id(self, name: str) -> int:
        self._counters[name] = self._counters.get(name, 0) + 1
        return self._counters[name]

    def clock_value(self, name: str, default: float | None = None) -> float | None:
        if name not in self._clock_values and default is not None:
            self._clock_values[name] = default
        return self._clock_values.get(name)

    def set_clock_value(self, name: str, value: float) -> None:
        if name == "manual":  # the manual instant only moves forward, whoever moves it
            value = max(value, self._clock_values.get(name, value))
        self._clock_values[name] = value

    SWEEP = 4  # queued jobs looked at for each owned job queued (see `_sweep`)

    def schedule(self, due: float, job: Record) -> str:
        seq = next(self._job_seq)
        job_id = f"job_{seq}"
        self._jobs[job_id] = dumps(job)
        heapq.heappush(self._due, (due, seq, job_id))
        if "owner" in job:
            self._sweep(self.SWEEP)
        return job_id

    def _sweep(self, count: int) -> None:
        """Look at the `count` jobs longest in the queue: one whose owner record is gone (retention dropped it)
        is dropped too, the others go to the back. Looking at more jobs than are queued keeps the queue within a
        few jobs per record kept, whatever the load (a manual clock that never moves included)."""
        for _ in range(min(count, len(self._jobs))):
            job_id, raw = next(iter(self._jobs.items()))
            del self._jobs[job_id]
            owner = _owner(raw)
            if owner is None or owner[1] in self._resources.get(owner[0], ()):
                self._jobs[job_id] = raw
            else:
                self._dropped += 1
        if self._dropped > max(1000, len(self._jobs)):
            self._due = [entry for entry in self._due if entry[2] in self._jobs]
            heapq.heapify(self._due)
            self._dropped = 0

    def claim_due(self, now: float, limit: int) -> list[Job]:
        claimed: list[Job] = []
        while self._due and self._due[0][0] <= now and len(claimed) < limit:
            due, _seq, job_id = heapq.heappop(self._due)
            raw = self._jobs.get(job_id)
            if raw is not None:  # else dropped with its owner
                claimed.append((job_id, due, loads(raw)))
        return claimed

    def finish(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def pending_jobs(self) -> list[tuple[float, str]]:
        return sorted((due, loads(self._jobs[job_id]).get("label", "")) for due, _seq, job_id in self._due
                      if job_id in self._jobs)

    def job_count(self) -> int:
        return sum(1 for _due, _seq, job_id in self._due if job_id in self._jobs)

    def add_fault(self, fault: Record) -> Record:
        stored = {**fault, "id": f"fault_{self.next_id('fault')}", "used": 0}
        self._faults.append(stored)
        return dict(stored)

    def faults(self) -> list[Record]:
        return [dict(f) for f in self._faults]

    def take_fault(self, fault_id: str) -> bool:
        for fault in self._faults:
            if fault["id"] == fault_id and fault["used"] < fault["times"]:
                fault["used"] += 1
                return True
        return False

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_script(self, steps: list[Record]) -> None:
        self._script = deque(dict(step) for step in steps)

    def pop_script(self) -> Record | None:
        return self._script.popleft() if self._script else None

    def script(self) -> list[Record]:
        return [dict(step) for step in self._script]

    def maintenance(self) -> dict[str, bool]:
        return dict(self._maintenance)

    def set_maintenance(self, provider: str, on: bool) -> None:
        self._maintenance[provider] = on

    def record(self, exchange: Record | Callable[[], Record]) -> None:
        # Built only when the journal is read: most exchanges are never looked at. The entries are numbered
        # in a row, so the number of each follows from the last one's (no pair per entry to keep).
        self._seq += 1
        self._journal.append(exchange)

    def journal(self, limit: int | None = None, operation: str | None = None) -> list[Record]:
        items = list(self._journal)
        first = self._seq - len(items) + 1
        numbered = list(enumerate(items, first))
        if operation is not None:
            numbered = [(seq, entry) for seq, entry in numbered if _operation_of(entry) == operation]
        # Only the entries asked for are built, and one that cannot be shows why instead of breaking the rest.
        return [_built(seq, entry) for seq, entry in (numbered[-limit:] if limit else numbered)]


def _operation_of(entry: Record | Callable[[], Record]) -> Any:
    """The operationId of a journal entry, without building it."""
    operation = getattr(entry, "operation_id", None)
    if operation is not None or callable(entry):
        return operation
    return entry.get("operation")


def _built(seq: int, entry: Record | Callable[[], Record]) -> Record:
    try:
        return loads(dumps({**(entry() if callable(entry) else entry), "seq": seq}))  # a copy the caller owns
    except Exception as exc:  # the entries are made safe when written; this keeps a bug in one from hiding all
        return {"seq": seq, "operation": _operation_of(entry), "error": f"the record cannot be read: "
                f"{type(exc).__name__}"}


def _owner(raw: bytes) -> tuple[str, str] | None:
    """The (kind, id) of the record a stored job reports on, if it names one."""
    if b'"owner"' not in raw:
        return None
    owner = loads(raw).get("owner")
    return (str(owner[0]), str(owner[1])) if isinstance(owner, list) and len(owner) == 2 else None

"""The store: resources (clips, tasks, deliveries), the credit ledger and the journal.

This is the only code that mutates mock state. `Store` is the interface; `MemoryStore` the default
implementation. Records are plain JSON-compatible dicts so that a shared backend can hold them too.
Each method is one atomic step (a charge either happens whole or not at all).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

Record = dict[str, Any]


class Store(ABC):
    """What the mock needs from its state, whatever holds it."""

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

    # -- rate windows, scripted faults, maintenance ----------------------------------------------------------
    @abstractmethod
    def rate_retry_after(self, key: str, now: float, limit: int, window: float) -> float | None:
        """Seconds until the sliding window `key` admits another call, or None if it admits one now."""

    @abstractmethod
    def rate_hit(self, key: str, now: float, window: float) -> None:
        """Count an admitted call in the window `key`."""

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

    @abstractmethod
    def set_maintenance(self, provider: str, on: bool) -> None: ...

    # -- journal ----------------------------------------------------------------------------------------
    @abstractmethod
    def record(self, exchange: Record) -> None: ...

    @abstractmethod
    def journal(self, limit: int | None = None) -> list[Record]: ...

    @abstractmethod
    def reset(self) -> None: ...


class MemoryStore(Store):
    """State in this process's memory: fast, and gone when the process ends."""

    def __init__(self, default_balance: Record | None = None, journal_size: int = 1000,
                 opening: dict[str, Record] | None = None) -> None:
        self._default = dict(default_balance or {"credits": 1000, "extra_credits": 0})
        self._opening = dict(opening or {})  # api_key -> starting balance for configured keys
        self._journal_size = journal_size
        self.reset()

    def reset(self) -> None:
        self._resources: dict[str, dict[str, Record]] = {}
        self._ledger: dict[tuple[str, str], Record] = {}
        self._journal: deque[Record] = deque(maxlen=self._journal_size)
        self._seq = 0
        self._windows: dict[str, deque[float]] = {}
        self._faults: list[Record] = []
        self._script: deque[Record] = deque()
        self._fault_seq = 0
        self._maintenance: dict[str, bool] = {}

    def put(self, kind: str, rid: str, record: Record) -> None:
        self._resources.setdefault(kind, {})[rid] = record

    def get(self, kind: str, rid: str) -> Record | None:
        return self._resources.get(kind, {}).get(rid)

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        record = self._resources.get(kind, {}).get(rid)
        if record is not None:
            record.update(changes)
        return record

    def all(self, kind: str) -> list[Record]:
        return list(self._resources.get(kind, {}).values())

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

    def rate_hit(self, key: str, now: float, window: float) -> None:
        self._window(key, now, window).append(now)

    def add_fault(self, fault: Record) -> Record:
        self._fault_seq += 1
        stored = {**fault, "id": f"fault_{self._fault_seq}", "used": 0}
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

    def record(self, exchange: Record) -> None:
        self._seq += 1
        exchange["seq"] = self._seq
        self._journal.append(exchange)

    def journal(self, limit: int | None = None) -> list[Record]:
        items = list(self._journal)
        return copy.deepcopy(items[-limit:] if limit else items)

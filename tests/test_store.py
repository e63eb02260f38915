"""Unit tests for the stores: resources, the credit ledger and the journal, in memory and on Redis alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mockserver.store.redis import RedisStore
from mockserver.store import MemoryStore, Store

MakeStore = Callable[..., Store]


@pytest.fixture(name="make_store", params=["memory", "redis"])
def store_factory(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """Builds stores of one kind (keyword arguments as MemoryStore takes them), each on an empty state."""
    made: list[Store] = []

    def make(**kwargs: Any) -> Store:
        if request.param == "memory":
            store: Store = MemoryStore(**kwargs)
        else:
            store = RedisStore(request.getfixturevalue("redis_url"), **kwargs)
            store.reset()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_new_key_opens_with_the_default_balance(make_store: MakeStore) -> None:
    """Opens an unseen key's account with 1000 credits and no extra credits."""
    store = make_store()
    assert store.balance("musicapi", "k") == {"credits": 1000.0, "extra_credits": 0.0}


def test_default_balance_is_configurable(make_store: MakeStore) -> None:
    """Opens unseen keys with the configured default balance."""
    store = make_store(default_balance={"credits": 7, "extra_credits": 3})
    assert store.balance("apibox", "k") == {"credits": 7.0, "extra_credits": 3.0}
    assert make_store(default_balance={"credits": 7}).balance("apibox", "k") == {"credits": 7.0,
                                                                                  "extra_credits": 0.0}


def test_configured_key_opens_with_its_own_balance(make_store: MakeStore) -> None:
    """Opens a configured key with its opening balance, and other keys with the default."""
    store = make_store(default_balance={"credits": 100, "extra_credits": 0},
                        opening={"vip": {"credits": 5, "extra_credits": 2}})
    assert store.balance("musicapi", "vip") == {"credits": 5.0, "extra_credits": 2.0}
    assert store.balance("musicapi", "other") == {"credits": 100.0, "extra_credits": 0.0}


def test_accounts_are_per_provider_and_key(make_store: MakeStore) -> None:
    """Keeps a separate account for each (provider, key) pair."""
    store = make_store()
    store.charge("musicapi", "k", 10)
    assert store.balance("musicapi", "k")["credits"] == 990.0
    assert store.balance("apibox", "k")["credits"] == 1000.0
    assert store.balance("musicapi", "k2")["credits"] == 1000.0


def test_balance_returns_a_copy(make_store: MakeStore) -> None:
    """Returns a balance that the caller cannot use to change the ledger."""
    store = make_store()
    view = store.balance("p", "k")
    view["credits"] = 0
    assert store.balance("p", "k")["credits"] == 1000.0


def test_charge_spends_extra_credits_first(make_store: MakeStore) -> None:
    """Takes the cost from extra credits first and the rest from credits."""
    store = make_store(default_balance={"credits": 10, "extra_credits": 4})
    assert store.charge("p", "k", 3) == {"credits": 10.0, "extra_credits": 1.0}
    assert store.charge("p", "k", 5) == {"credits": 6.0, "extra_credits": 0.0}
    assert store.balance("p", "k") == {"credits": 6.0, "extra_credits": 0.0}


def test_charge_can_spend_everything(make_store: MakeStore) -> None:
    """Allows a charge equal to the whole balance, leaving zero."""
    store = make_store(default_balance={"credits": 2, "extra_credits": 1.5})
    assert store.charge("p", "k", 3.5) == {"credits": 0.0, "extra_credits": 0.0}


def test_short_charge_returns_none_and_changes_nothing(make_store: MakeStore) -> None:
    """Refuses a charge larger than credits + extra credits, leaving the balance as it was."""
    store = make_store(default_balance={"credits": 2, "extra_credits": 1})
    assert store.charge("p", "k", 3.01) is None
    assert store.balance("p", "k") == {"credits": 2.0, "extra_credits": 1.0}


def test_zero_cost_charge(make_store: MakeStore) -> None:
    """Charges nothing for a zero (or negative) cost and returns the unchanged balance."""
    store = make_store(default_balance={"credits": 0, "extra_credits": 0})
    assert store.charge("p", "k", 0) == {"credits": 0.0, "extra_credits": 0.0}
    assert store.charge("p", "k", -5) == {"credits": 0.0, "extra_credits": 0.0}
    assert store.balance("p", "k") == {"credits": 0.0, "extra_credits": 0.0}


def test_set_balance(make_store: MakeStore) -> None:
    """Replaces an account's balance, and later charges start from it."""
    store = make_store()
    store.charge("p", "k", 100)
    assert store.set_balance("p", "k", 3, 1) == {"credits": 3.0, "extra_credits": 1.0}
    assert store.balance("p", "k") == {"credits": 3.0, "extra_credits": 1.0}
    assert store.charge("p", "k", 5) is None
    assert store.charge("p", "k", 2) == {"credits": 2.0, "extra_credits": 0.0}
    assert store.set_balance("p", "fresh", 9) == {"credits": 9.0, "extra_credits": 0.0}


def test_journal_has_increasing_seq(make_store: MakeStore) -> None:
    """Numbers exchanges 1, 2, 3... in the order they are recorded."""
    store = make_store()
    for i in range(3):
        store.record({"i": i})
    entries = store.journal()
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["i"] for e in entries] == [0, 1, 2]


def test_journal_is_a_bounded_ring(make_store: MakeStore) -> None:
    """Keeps only the newest journal_size exchanges, with their original seq."""
    store = make_store(journal_size=3)
    for i in range(5):
        store.record({"i": i})
    assert [e["seq"] for e in store.journal()] == [3, 4, 5]
    assert [e["i"] for e in store.journal()] == [2, 3, 4]


def test_journal_limit_returns_the_newest(make_store: MakeStore) -> None:
    """Returns the last `limit` exchanges when a limit is given."""
    store = make_store()
    for i in range(5):
        store.record({"i": i})
    assert [e["seq"] for e in store.journal(2)] == [4, 5]


def test_journal_returns_copies(make_store: MakeStore) -> None:
    """Returns exchanges that the caller cannot use to change the journal."""
    store = make_store()
    store.record({"response": {"code": 200}})
    store.journal()[0]["response"]["code"] = 500
    assert store.journal()[0]["response"]["code"] == 200


def test_reset_clears_everything(make_store: MakeStore) -> None:
    """Drops resources, balances and the journal, and restarts seq at 1."""
    store = make_store(default_balance={"credits": 10, "extra_credits": 0})
    store.put("clip", "c1", {"id": "c1"})
    store.charge("p", "k", 4)
    store.record({"i": 0})
    store.record({"i": 1})

    store.reset()

    assert store.get("clip", "c1") is None and store.all("clip") == []
    assert store.balance("p", "k") == {"credits": 10.0, "extra_credits": 0.0}
    assert store.journal() == []
    store.record({"i": 2})
    assert [e["seq"] for e in store.journal()] == [1]


def test_reset_keeps_the_journal_bound(make_store: MakeStore) -> None:
    """Keeps journal_size after a reset."""
    store = make_store(journal_size=2)
    store.reset()
    for i in range(4):
        store.record({"i": i})
    assert len(store.journal()) == 2


def test_put_get_update_all(make_store: MakeStore) -> None:
    """Stores records per kind and id, merges updates, and lists a kind's records."""
    store = make_store()
    store.put("clip", "c1", {"id": "c1", "status": "queued"})
    store.put("clip", "c2", {"id": "c2", "status": "queued"})
    store.put("task", "c1", {"id": "task-c1"})

    assert store.get("clip", "c1") == {"id": "c1", "status": "queued"}
    assert store.get("task", "c1") == {"id": "task-c1"}
    assert store.get("clip", "missing") is None
    assert store.get("nothing", "c1") is None

    assert store.update("clip", "c1", {"status": "done", "url": "u"}) == {"id": "c1", "status": "done", "url": "u"}
    assert store.get("clip", "c1") == {"id": "c1", "status": "done", "url": "u"}
    assert store.update("clip", "missing", {"status": "done"}) is None
    assert store.get("clip", "missing") is None

    assert sorted(r["id"] for r in store.all("clip")) == ["c1", "c2"]
    assert store.all("nothing") == []


def test_put_replaces_a_record(make_store: MakeStore) -> None:
    """Replaces, rather than merges, a record put again under the same id."""
    store = make_store()
    store.put("clip", "c1", {"id": "c1", "old": True})
    store.put("clip", "c1", {"id": "c1"})
    assert store.get("clip", "c1") == {"id": "c1"}
    assert len(store.all("clip")) == 1


def test_records_handed_out_are_copies(make_store: MakeStore) -> None:
    """Changes a record only through put/update: editing a record read or stored earlier changes nothing."""
    store = make_store()
    record = {"id": "c1", "state": "queued"}
    store.put("clip", "c1", record)
    record["state"] = "edited"
    read = store.get("clip", "c1")
    assert read is not None
    read["state"] = "edited too"
    assert store.get("clip", "c1") == {"id": "c1", "state": "queued"}


def test_records_keep_json_types(make_store: MakeStore) -> None:
    """Gives back nested lists, dicts, floats, nulls and booleans as they were stored."""
    store = make_store()
    record = {"id": "t1", "attempts": [], "stages": {"text": 1.5, "complete": 6.25}, "error": None, "ok": True,
              "clips": ["a", "b"], "n": 3}
    store.put("task", "t1", record)
    assert store.get("task", "t1") == record
    assert store.update("task", "t1", {"attempts": [{"status": 200}], "error": "x"}) == {
        **record, "attempts": [{"status": 200}], "error": "x"}


def test_counters_are_per_name_and_restart_after_reset(make_store: MakeStore) -> None:
    """Hands out 1, 2, 3 per counter name, and starts again from 1 after a reset."""
    store = make_store()
    assert [store.next_id("a"), store.next_id("a"), store.next_id("b"), store.next_id("a")] == [1, 2, 1, 3]
    store.reset()
    assert store.next_id("a") == 1


def test_rate_hit_counts_only_while_the_window_has_room(make_store: MakeStore) -> None:
    """Counts calls up to the limit, refuses (counting nothing) when full, and frees room as calls age out."""
    store = make_store()
    assert [store.rate_hit("w", 100.0 + i, 3, 10) for i in range(4)] == [True, True, True, False]
    assert store.rate_retry_after("w", 103.0, 3, 10) == pytest.approx(7.0)
    assert store.rate_retry_after("w", 110.0, 3, 10) is None  # the call at 100 left the window
    assert store.rate_hit("w", 110.0, 3, 10) is True
    assert store.rate_hit("w", 110.5, 3, 10) is False


def test_a_fault_is_used_at_most_times(make_store: MakeStore) -> None:
    """Uses a scripted fault `times` times, counting its uses, then refuses."""
    store = make_store()
    fault = store.add_fault({"operation": "getVox", "times": 2, "code": 429})
    assert fault["id"] == "fault_1" and fault["used"] == 0
    assert [store.take_fault("fault_1") for _ in range(3)] == [True, True, False]
    assert store.faults() == [{"operation": "getVox", "times": 2, "code": 429, "id": "fault_1", "used": 2}]
    assert store.take_fault("fault_9") is False
    store.clear_faults()
    assert store.faults() == []


def test_script_steps_pop_in_order(make_store: MakeStore) -> None:
    """Pops queued behaviours first in, first out, and None when the script is empty."""
    store = make_store()
    store.set_script([{"code": 430}, {}, {"wire_fault": "empty_200"}])
    assert store.script() == [{"code": 430}, {}, {"wire_fault": "empty_200"}]
    assert [store.pop_script(), store.pop_script()] == [{"code": 430}, {}]
    assert store.script() == [{"wire_fault": "empty_200"}]
    store.set_script([])
    assert store.pop_script() is None


def test_maintenance_flags(make_store: MakeStore) -> None:
    """Keeps a maintenance flag per provider."""
    store = make_store()
    store.set_maintenance("apibox", True)
    store.set_maintenance("musicapi", False)
    assert store.maintenance() == {"apibox": True, "musicapi": False}


def test_jobs_are_claimed_once_in_due_order(make_store: MakeStore) -> None:
    """Claims due jobs earliest first, up to the limit, each once; finish removes them for good."""
    store = make_store()
    for due, label in ((30.0, "c"), (10.0, "a"), (20.0, "b"), (99.0, "later")):
        store.schedule(due, {"kind": "k", "args": [label], "label": label})
    assert store.next_due() == 10.0 and store.job_count() == 4
    assert [label for _due, label in store.pending_jobs()] == ["a", "b", "c", "later"]
    first = store.claim_due(50.0, 2)
    assert [(due, job["args"]) for _id, due, job in first] == [(10.0, ["a"]), (20.0, ["b"])]
    rest = store.claim_due(50.0, 10)
    assert [job["label"] for _id, _due, job in rest] == ["c"]
    assert store.claim_due(50.0, 10) == []
    for job_id, _due, _job in first + rest:
        store.finish(job_id)
    assert store.job_count() == 1 and store.next_due() == 99.0


def test_clock_values_survive_a_reset(make_store: MakeStore) -> None:
    """Keeps clock settings across a reset; a default is stored only when none is set."""
    store = make_store()
    assert store.clock_value("manual", 5.0) == 5.0
    assert store.clock_value("manual", 7.0) == 5.0
    store.set_clock_value("manual", 9.5)
    store.reset()
    assert store.clock_value("manual") == 9.5

"""Unit tests for mockserver.state.MemoryStore: resources, the credit ledger and the journal."""

from __future__ import annotations

from mockserver.state import MemoryStore


def test_new_key_opens_with_the_default_balance() -> None:
    """Opens an unseen key's account with 1000 credits and no extra credits."""
    store = MemoryStore()
    assert store.balance("musicapi", "k") == {"credits": 1000.0, "extra_credits": 0.0}


def test_default_balance_is_configurable() -> None:
    """Opens unseen keys with the configured default balance."""
    store = MemoryStore(default_balance={"credits": 7, "extra_credits": 3})
    assert store.balance("apibox", "k") == {"credits": 7.0, "extra_credits": 3.0}
    assert MemoryStore(default_balance={"credits": 7}).balance("apibox", "k") == {"credits": 7.0,
                                                                                  "extra_credits": 0.0}


def test_configured_key_opens_with_its_own_balance() -> None:
    """Opens a configured key with its opening balance, and other keys with the default."""
    store = MemoryStore(default_balance={"credits": 100, "extra_credits": 0},
                        opening={"vip": {"credits": 5, "extra_credits": 2}})
    assert store.balance("musicapi", "vip") == {"credits": 5.0, "extra_credits": 2.0}
    assert store.balance("musicapi", "other") == {"credits": 100.0, "extra_credits": 0.0}


def test_accounts_are_per_provider_and_key() -> None:
    """Keeps a separate account for each (provider, key) pair."""
    store = MemoryStore()
    store.charge("musicapi", "k", 10)
    assert store.balance("musicapi", "k")["credits"] == 990.0
    assert store.balance("apibox", "k")["credits"] == 1000.0
    assert store.balance("musicapi", "k2")["credits"] == 1000.0


def test_balance_returns_a_copy() -> None:
    """Returns a balance that the caller cannot use to change the ledger."""
    store = MemoryStore()
    view = store.balance("p", "k")
    view["credits"] = 0
    assert store.balance("p", "k")["credits"] == 1000.0


def test_charge_spends_extra_credits_first() -> None:
    """Takes the cost from extra credits first and the rest from credits."""
    store = MemoryStore(default_balance={"credits": 10, "extra_credits": 4})
    assert store.charge("p", "k", 3) == {"credits": 10.0, "extra_credits": 1.0}
    assert store.charge("p", "k", 5) == {"credits": 6.0, "extra_credits": 0.0}
    assert store.balance("p", "k") == {"credits": 6.0, "extra_credits": 0.0}


def test_charge_can_spend_everything() -> None:
    """Allows a charge equal to the whole balance, leaving zero."""
    store = MemoryStore(default_balance={"credits": 2, "extra_credits": 1.5})
    assert store.charge("p", "k", 3.5) == {"credits": 0.0, "extra_credits": 0.0}


def test_short_charge_returns_none_and_changes_nothing() -> None:
    """Refuses a charge larger than credits + extra credits, leaving the balance as it was."""
    store = MemoryStore(default_balance={"credits": 2, "extra_credits": 1})
    assert store.charge("p", "k", 3.01) is None
    assert store.balance("p", "k") == {"credits": 2.0, "extra_credits": 1.0}


def test_zero_cost_charge() -> None:
    """Charges nothing for a zero (or negative) cost and returns the unchanged balance."""
    store = MemoryStore(default_balance={"credits": 0, "extra_credits": 0})
    assert store.charge("p", "k", 0) == {"credits": 0.0, "extra_credits": 0.0}
    assert store.charge("p", "k", -5) == {"credits": 0.0, "extra_credits": 0.0}
    assert store.balance("p", "k") == {"credits": 0.0, "extra_credits": 0.0}


def test_set_balance() -> None:
    """Replaces an account's balance, and later charges start from it."""
    store = MemoryStore()
    store.charge("p", "k", 100)
    assert store.set_balance("p", "k", 3, 1) == {"credits": 3.0, "extra_credits": 1.0}
    assert store.balance("p", "k") == {"credits": 3.0, "extra_credits": 1.0}
    assert store.charge("p", "k", 5) is None
    assert store.charge("p", "k", 2) == {"credits": 2.0, "extra_credits": 0.0}
    assert store.set_balance("p", "fresh", 9) == {"credits": 9.0, "extra_credits": 0.0}


def test_journal_has_increasing_seq() -> None:
    """Numbers exchanges 1, 2, 3... in the order they are recorded."""
    store = MemoryStore()
    for i in range(3):
        store.record({"i": i})
    entries = store.journal()
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["i"] for e in entries] == [0, 1, 2]


def test_journal_is_a_bounded_ring() -> None:
    """Keeps only the newest journal_size exchanges, with their original seq."""
    store = MemoryStore(journal_size=3)
    for i in range(5):
        store.record({"i": i})
    assert [e["seq"] for e in store.journal()] == [3, 4, 5]
    assert [e["i"] for e in store.journal()] == [2, 3, 4]


def test_journal_limit_returns_the_newest() -> None:
    """Returns the last `limit` exchanges when a limit is given."""
    store = MemoryStore()
    for i in range(5):
        store.record({"i": i})
    assert [e["seq"] for e in store.journal(2)] == [4, 5]


def test_journal_returns_copies() -> None:
    """Returns exchanges that the caller cannot use to change the journal."""
    store = MemoryStore()
    store.record({"response": {"code": 200}})
    store.journal()[0]["response"]["code"] = 500
    assert store.journal()[0]["response"]["code"] == 200


def test_reset_clears_everything() -> None:
    """Drops resources, balances and the journal, and restarts seq at 1."""
    store = MemoryStore(default_balance={"credits": 10, "extra_credits": 0})
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


def test_reset_keeps_the_journal_bound() -> None:
    """Keeps journal_size after a reset."""
    store = MemoryStore(journal_size=2)
    store.reset()
    for i in range(4):
        store.record({"i": i})
    assert len(store.journal()) == 2


def test_put_get_update_all() -> None:
    """Stores records per kind and id, merges updates, and lists a kind's records."""
    store = MemoryStore()
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


def test_put_replaces_a_record() -> None:
    """Replaces, rather than merges, a record put again under the same id."""
    store = MemoryStore()
    store.put("clip", "c1", {"id": "c1", "old": True})
    store.put("clip", "c1", {"id": "c1"})
    assert store.get("clip", "c1") == {"id": "c1"}
    assert len(store.all("clip")) == 1

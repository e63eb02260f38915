"""Unit tests for mockserver.clock: manual and real clocks, and the Scheduler driven by advance()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from mockserver.clock import Clock, Scheduler
from mockserver.store.redis import RedisStore
from mockserver.store import MemoryStore, Store

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Timeline:
    """A manual clock and a scheduler on one store, with a `record` job that logs (name, instant)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = Clock("manual", start=START, store=store)
        self.scheduler = Scheduler(self.clock, store)
        self.log: list[tuple[str, float]] = []

        async def record(name: str) -> None:
            self.log.append((name, self.clock.now()))

        self.scheduler.register("record", record)

    def after(self, delay: float, name: str) -> None:
        self.scheduler.after(delay, "record", name, label=name)

    def at(self, due: float, name: str) -> None:
        self.scheduler.at(due, "record", name, label=name)


@pytest.fixture(params=["memory", "redis"])
def timeline(request: pytest.FixtureRequest) -> Iterator[Timeline]:
    """A fresh timeline on each store the scheduler can keep its jobs in."""
    store: Store = MemoryStore() if request.param == "memory" else RedisStore(request.getfixturevalue("redis_url"))
    yield Timeline(store)
    store.close()


# -- Clock ------------------------------------------------------------------------------------------


def test_manual_clock_stands_still() -> None:
    """Reads the start instant until it is set, in seconds and in milliseconds."""
    clock = Clock("manual", start=START)
    assert clock.now() == START
    assert clock.now() == START
    assert clock.now_ms() == int(START * 1000)
    clock.set(START + 1.5)
    assert clock.now() == START + 1.5
    assert clock.now_ms() == int(START * 1000) + 1500


def test_manual_clock_defaults_to_the_current_whole_second() -> None:
    """Starts a manual clock without a start at the current wall-clock second."""
    before = int(time.time())
    now = Clock("manual").now()
    assert before <= now <= time.time() and now == int(now)


def test_real_clock_follows_the_wall_clock() -> None:
    """Reads the wall clock in real mode."""
    before = time.time()
    now = Clock("real").now()
    assert before <= now <= time.time()


def test_real_clock_set_shifts_the_reading() -> None:
    """Shifts a real clock so that it reads the instant set, and keeps running from there."""
    clock = Clock("real")
    clock.set(START)
    assert START - 0.001 <= clock.now() < START + 5


def test_unknown_clock_mode() -> None:
    """Rejects a mode other than 'real' or 'manual'."""
    with pytest.raises(ValueError, match="'fast'"):
        Clock("fast")


# -- Scheduler.advance ------------------------------------------------------------------------------


def test_advance_runs_jobs_in_due_order_at_their_instants(timeline: Timeline) -> None:
    """Runs due jobs in time order (not insertion order), each while the clock reads its due instant."""
    clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.after(5, "c")
    timeline.after(1, "a")
    timeline.at(START + 3, "b")

    ran = asyncio.run(scheduler.advance(10))

    assert ran == 3
    assert log == [("a", START + 1), ("b", START + 3), ("c", START + 5)]
    assert clock.now() == START + 10
    assert len(scheduler) == 0


def test_advance_keeps_insertion_order_for_equal_due_times(timeline: Timeline) -> None:
    """Starts jobs due at the same instant in the order they were scheduled."""
    _clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    for name in ("first", "second", "third"):
        timeline.after(2, name)
    assert asyncio.run(scheduler.advance(2)) == 3
    assert [name for name, _ in log] == ["first", "second", "third"]
    assert {at for _, at in log} == {START + 2}


def test_advance_runs_jobs_scheduled_by_jobs_inside_the_step(timeline: Timeline) -> None:
    """Runs a job that a job schedules when it falls due within the step, at its own instant."""
    clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log

    async def parent() -> None:
        log.append(("parent", clock.now()))
        timeline.after(3, "child")
        timeline.after(0, "now")
        timeline.after(100, "late")

    scheduler.register("parent", parent)
    scheduler.after(2, "parent", label="parent")
    ran = asyncio.run(scheduler.advance(10))

    assert ran == 3
    assert log == [("parent", START + 2), ("now", START + 2), ("child", START + 5)]
    assert scheduler.pending() == [(START + 102, "late")]


def test_advance_leaves_later_jobs_pending(timeline: Timeline) -> None:
    """Runs only jobs due within the step and keeps later ones, which a later advance runs."""
    clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.after(5, "soon")
    timeline.after(20, "later")

    assert asyncio.run(scheduler.advance(10)) == 1
    assert log == [("soon", START + 5)]
    assert scheduler.pending() == [(START + 20, "later")]
    assert scheduler.next_due() == START + 20
    assert clock.now() == START + 10

    assert asyncio.run(scheduler.advance(10)) == 1
    assert log[-1] == ("later", START + 20)
    assert scheduler.next_due() is None


def test_advance_runs_a_job_due_exactly_at_the_end_of_the_step(timeline: Timeline) -> None:
    """Counts a job due exactly at the target instant as inside the step."""
    _clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.after(10, "edge")
    assert asyncio.run(scheduler.advance(10)) == 1
    assert log == [("edge", START + 10)]


def test_advance_runs_overdue_jobs_at_the_current_instant(timeline: Timeline) -> None:
    """Runs a job scheduled in the past at the current instant; the clock never moves back."""
    clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.at(START - 50, "overdue")
    assert asyncio.run(scheduler.advance(0)) == 1
    assert log == [("overdue", START)]
    assert clock.now() == START


def test_advance_survives_a_failing_job(timeline: Timeline) -> None:
    """Counts a failing job as run and keeps running the jobs after it."""
    _clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log

    async def boom() -> None:
        raise RuntimeError("boom")

    scheduler.register("boom", boom)
    scheduler.after(1, "boom", label="boom")
    timeline.after(2, "after")
    assert asyncio.run(scheduler.advance(5)) == 2
    assert log == [("after", START + 2)]


def test_advance_rejects_negative_seconds(timeline: Timeline) -> None:
    """Refuses to move the clock backwards and leaves it unchanged."""
    clock, scheduler, _log = timeline.clock, timeline.scheduler, timeline.log
    with pytest.raises(ValueError, match="only moves forward"):
        asyncio.run(scheduler.advance(-1))
    assert clock.now() == START


def test_advance_without_jobs_moves_the_clock(timeline: Timeline) -> None:
    """Moves the clock by the step when nothing is scheduled, and reports that nothing ran."""
    clock, scheduler, _log = timeline.clock, timeline.scheduler, timeline.log
    assert asyncio.run(scheduler.advance(2.5)) == 0
    assert clock.now() == START + 2.5


# -- run_due, pending, reset ------------------------------------------------------------------------


def test_run_due_runs_only_what_is_due_now(timeline: Timeline) -> None:
    """Runs jobs due at or before now, without moving the clock, and returns how many ran."""
    clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.at(START - 1, "past")
    timeline.at(START, "now")
    timeline.at(START + 1, "future")

    assert asyncio.run(scheduler.run_due()) == 2
    assert sorted(name for name, _ in log) == ["now", "past"]
    assert clock.now() == START
    assert scheduler.pending() == [(START + 1, "future")]
    assert asyncio.run(scheduler.run_due()) == 0


def test_pending_is_sorted_and_reset_empties_it(timeline: Timeline) -> None:
    """Lists pending jobs by due time with their labels, and a store reset drops them all."""
    _clock, scheduler, log = timeline.clock, timeline.scheduler, timeline.log
    timeline.after(9, "b")
    timeline.after(4, "a")
    assert scheduler.pending() == [(START + 4, "a"), (START + 9, "b")]
    assert len(scheduler) == 2
    timeline.store.reset()
    assert scheduler.pending() == [] and scheduler.next_due() is None
    assert asyncio.run(scheduler.advance(60)) == 0
    assert log == []


def test_unknown_job_kind_is_refused(timeline: Timeline) -> None:
    """Refuses to queue a job whose kind has no handler, naming the kinds that have one."""
    with pytest.raises(ValueError, match="'nope' has no handler; registered: record"):
        timeline.scheduler.after(1, "nope")
    assert len(timeline.scheduler) == 0


def test_a_pinned_shared_clock_is_read_once(redis_url: str) -> None:
    """Inside `pinned()` a shared manual clock keeps the instant first read; outside it reads the store."""
    store = RedisStore(redis_url)
    clock, other = Clock("manual", start=START, store=store), Clock("manual", start=START, store=store)
    with clock.pinned():
        assert clock.now() == START
        other.set(START + 5)  # another worker advances meanwhile
        assert clock.now() == START
    assert clock.now() == START + 5
    store.close()

"""Unit tests for mockserver.clock: manual and real clocks, and the Scheduler driven by advance()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from mockserver.clock import Clock, Scheduler

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _recorder(clock: Clock, log: list[tuple[str, float]], name: str) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        log.append((name, clock.now()))

    return job


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


def test_advance_runs_jobs_in_due_order_at_their_instants() -> None:
    """Runs due jobs in time order (not insertion order), each while the clock reads its due instant."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.after(5, _recorder(clock, log, "c"), "c")
    scheduler.after(1, _recorder(clock, log, "a"), "a")
    scheduler.at(START + 3, _recorder(clock, log, "b"), "b")

    ran = asyncio.run(scheduler.advance(10))

    assert ran == 3
    assert log == [("a", START + 1), ("b", START + 3), ("c", START + 5)]
    assert clock.now() == START + 10
    assert len(scheduler) == 0


def test_advance_keeps_insertion_order_for_equal_due_times() -> None:
    """Starts jobs due at the same instant in the order they were scheduled."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    for name in ("first", "second", "third"):
        scheduler.after(2, _recorder(clock, log, name), name)
    assert asyncio.run(scheduler.advance(2)) == 3
    assert [name for name, _ in log] == ["first", "second", "third"]
    assert {at for _, at in log} == {START + 2}


def test_advance_runs_jobs_scheduled_by_jobs_inside_the_step() -> None:
    """Runs a job that a job schedules when it falls due within the step, at its own instant."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []

    async def parent() -> None:
        log.append(("parent", clock.now()))
        scheduler.after(3, _recorder(clock, log, "child"), "child")
        scheduler.after(0, _recorder(clock, log, "now"), "now")
        scheduler.after(100, _recorder(clock, log, "late"), "late")

    scheduler.after(2, parent, "parent")
    ran = asyncio.run(scheduler.advance(10))

    assert ran == 3
    assert log == [("parent", START + 2), ("now", START + 2), ("child", START + 5)]
    assert scheduler.pending() == [(START + 102, "late")]


def test_advance_leaves_later_jobs_pending() -> None:
    """Runs only jobs due within the step and keeps later ones, which a later advance runs."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.after(5, _recorder(clock, log, "soon"), "soon")
    scheduler.after(20, _recorder(clock, log, "later"), "later")

    assert asyncio.run(scheduler.advance(10)) == 1
    assert log == [("soon", START + 5)]
    assert scheduler.pending() == [(START + 20, "later")]
    assert scheduler.next_due() == START + 20
    assert clock.now() == START + 10

    assert asyncio.run(scheduler.advance(10)) == 1
    assert log[-1] == ("later", START + 20)
    assert scheduler.next_due() is None


def test_advance_runs_a_job_due_exactly_at_the_end_of_the_step() -> None:
    """Counts a job due exactly at the target instant as inside the step."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.after(10, _recorder(clock, log, "edge"), "edge")
    assert asyncio.run(scheduler.advance(10)) == 1
    assert log == [("edge", START + 10)]


def test_advance_runs_overdue_jobs_at_the_current_instant() -> None:
    """Runs a job scheduled in the past at the current instant; the clock never moves back."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.at(START - 50, _recorder(clock, log, "overdue"), "overdue")
    assert asyncio.run(scheduler.advance(0)) == 1
    assert log == [("overdue", START)]
    assert clock.now() == START


def test_advance_survives_a_failing_job() -> None:
    """Counts a failing job as run and keeps running the jobs after it."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []

    async def boom() -> None:
        raise RuntimeError("boom")

    scheduler.after(1, boom, "boom")
    scheduler.after(2, _recorder(clock, log, "after"), "after")
    assert asyncio.run(scheduler.advance(5)) == 2
    assert log == [("after", START + 2)]


def test_advance_rejects_negative_seconds() -> None:
    """Refuses to move the clock backwards and leaves it unchanged."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    with pytest.raises(ValueError, match="only moves forward"):
        asyncio.run(scheduler.advance(-1))
    assert clock.now() == START


def test_advance_without_jobs_moves_the_clock() -> None:
    """Moves the clock by the step when nothing is scheduled, and reports that nothing ran."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    assert asyncio.run(scheduler.advance(2.5)) == 0
    assert clock.now() == START + 2.5


# -- run_due, pending, clear ------------------------------------------------------------------------


def test_run_due_runs_only_what_is_due_now() -> None:
    """Runs jobs due at or before now, without moving the clock, and returns how many ran."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.at(START - 1, _recorder(clock, log, "past"), "past")
    scheduler.at(START, _recorder(clock, log, "now"), "now")
    scheduler.at(START + 1, _recorder(clock, log, "future"), "future")

    assert asyncio.run(scheduler.run_due()) == 2
    assert sorted(name for name, _ in log) == ["now", "past"]
    assert clock.now() == START
    assert scheduler.pending() == [(START + 1, "future")]
    assert asyncio.run(scheduler.run_due()) == 0


def test_pending_is_sorted_and_clear_empties_it() -> None:
    """Lists pending jobs by due time with their labels, and clear drops them all."""
    clock = Clock("manual", start=START)
    scheduler = Scheduler(clock)
    log: list[tuple[str, float]] = []
    scheduler.after(9, _recorder(clock, log, "b"), "b")
    scheduler.after(4, _recorder(clock, log, "a"), "a")
    assert scheduler.pending() == [(START + 4, "a"), (START + 9, "b")]
    assert len(scheduler) == 2
    scheduler.clear()
    assert scheduler.pending() == [] and scheduler.next_due() is None
    assert asyncio.run(scheduler.advance(60)) == 0
    assert log == []

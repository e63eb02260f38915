"""Real or manual time, and the scheduler that runs what falls due.

Everything time-based in the mock (task stages, callback delays and retries, rate windows,
maintenance windows, file retention) reads `Clock.now()` and schedules through `Scheduler`, so a
test can move a manual clock forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("stemmock.clock")

Job = Callable[[], Awaitable[None]]


class Clock:
    """Seconds since the epoch, from the wall clock (`real`) or only moved by `advance` (`manual`)."""

    def __init__(self, mode: str = "real", start: float | None = None) -> None:
        if mode not in ("real", "manual"):
            raise ValueError(f"clock mode {mode!r} is unknown; expected 'real' or 'manual'.")
        self.mode = mode
        self._offset = 0.0
        self._manual = float(start if start is not None else int(time.time()))

    def now(self) -> float:
        if self.mode == "manual":
            return self._manual
        return time.time() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def set(self, instant: float) -> None:
        """Jump to `instant` (manual) or shift the real clock so that it reads `instant` now."""
        if self.mode == "manual":
            self._manual = instant
        else:
            self._offset = instant - time.time()


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    job: Job = field(compare=False)
    label: str = field(compare=False, default="")


class Scheduler:
    """A heap of jobs keyed by due time on `clock`.

    With a real clock a background task runs jobs as they fall due; with a manual clock `advance`
    runs, in time order, every job that falls due within the step (jobs due at the same instant run
    concurrently), including jobs those jobs schedule, and returns when they have finished.
    """

    def __init__(self, clock: Clock, concurrency: int = 200) -> None:
        self.clock = clock
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(concurrency)

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, due: float, job: Job, label: str = "") -> None:
        heapq.heappush(self._heap, _Entry(due, next(self._seq), job, label))
        if self._wake is not None:
            self._wake.set()

    def after(self, delay: float, job: Job, label: str = "") -> None:
        self.at(self.clock.now() + delay, job, label)

    def pending(self) -> list[tuple[float, str]]:
        return sorted((e.due, e.label) for e in self._heap)

    def clear(self) -> None:
        self._heap.clear()

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    async def _run(self, entry: _Entry) -> None:
        async with self._limit:
            try:
                await entry.job()
            except Exception:  # a failing job must not stop the clock; it is logged and dropped
                log.exception("scheduled job %s failed", entry.label or entry.seq)

    def _pop_due(self, instant: float) -> list[_Entry]:
        batch = []
        while self._heap and self._heap[0].due <= instant:
            batch.append(heapq.heappop(self._heap))
        return batch

    async def run_due(self) -> int:
        """Run every job already due now and wait for them; return how many ran."""
        batch = self._pop_due(self.clock.now())
        if batch:
            await asyncio.gather(*(self._run(e) for e in batch))
        return len(batch)

    async def advance(self, seconds: float) -> int:
        """Move the clock by `seconds`, running each job at its own due instant; return how many ran."""
        if seconds < 0:
            raise ValueError(f"seconds is {seconds}; the clock only moves forward.")
        target = self.clock.now() + seconds
        ran = 0
        while self._heap and self._heap[0].due <= target:
            instant = max(self._heap[0].due, self.clock.now())
            self.clock.set(instant)
            batch = self._pop_due(instant)
            await asyncio.gather(*(self._run(e) for e in batch))
            ran += len(batch)
        self.clock.set(max(target, self.clock.now()))
        if self._wake is not None:
            self._wake.set()
        return ran

    # -- real-time runner -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background runner (real clock only; a manual clock moves only by `advance`)."""
        if self.clock.mode == "real" and self._runner is None:
            self._wake = asyncio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            for entry in self._pop_due(self.clock.now()):
                task = asyncio.get_running_loop().create_task(self._run(entry))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - self.clock.now())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def stop(self, grace: float = 5.0) -> list[str]:
        """Stop the runner, give running jobs `grace` seconds, and return the labels still pending."""
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
            self._runner = None
        if self._running:
            _done, still = await asyncio.wait(set(self._running), timeout=grace)
            for task in still:
                task.cancel()
        return [label for _due, label in self.pending()]

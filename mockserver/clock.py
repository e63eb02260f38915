"""Real or manual time, and the scheduler that runs what falls due.

Everything time-based in the mock (task stages, callback delays and retries, rate windows,
maintenance windows, file retention) reads `Clock.now()` and schedules through `Scheduler`, so a
test can move a manual clock forward instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from .store import MemoryStore, Store

log = logging.getLogger("stemmock.clock")

# The instant a shared manual clock read inside `Clock.pinned()` (empty until the first read there).
_PINNED: ContextVar[list[float] | None] = ContextVar("stemmock_pinned_instant", default=None)


class Clock:
    """Seconds since the epoch, from the wall clock (`real`) or only moved by `advance` (`manual`).

    With a store, the clock's state (the manual instant, the real clock's offset) lives in the store, so
    that every worker sharing it reads the same time; a manual clock keeps its instant across restarts.
    """

    OFFSET_REFRESH = 0.5  # seconds a real clock's shared offset is cached (a manual clock is read every time)

    def __init__(self, mode: str = "real", start: float | None = None, store: Store | None = None) -> None:
        if mode not in ("real", "manual"):
            raise ValueError(f"clock mode {mode!r} is unknown; expected 'real' or 'manual'.")
        self.mode = mode
        self._store = store if store is not None and store.shared else None
        self._offset = 0.0
        self._offset_read = float("-inf")
        self._manual = float(start if start is not None else int(time.time()))
        if self._store is not None and mode == "manual":
            self._manual = float(self._store.clock_value("manual", self._manual) or self._manual)

    def now(self) -> float:
        if self.mode == "manual":
            if self._store is None:
                return self._manual
            pinned = _PINNED.get()
            if pinned:
                return pinned[0]
            instant = float(self._store.clock_value("manual", self._manual) or self._manual)
            if pinned is not None:
                pinned.append(instant)
            return instant
        wall = time.time()
        if self._store is not None and wall - self._offset_read > self.OFFSET_REFRESH:
            self._offset = float(self._store.clock_value("offset", 0.0) or 0.0)
            self._offset_read = wall
        return wall + self._offset

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Within the block, a shared manual clock is read from the store once (one request is one instant)."""
        token = _PINNED.set([])
        try:
            yield
        finally:
            _PINNED.reset(token)

    def pin(self, instant: float | None) -> None:
        """Inside `pinned()`, take `instant` (a shared manual clock read with other state) as the call's instant,
        unless one was read already: the clock then costs no round trip of its own."""
        pinned = _PINNED.get()
        if instant is not None and self.mode == "manual" and self._store is not None and pinned == []:
            pinned.append(instant)

    def unpinned(self) -> bool:
        """Inside `pinned()`, whether a shared manual clock has not been read for the call yet."""
        return self.mode == "manual" and self._store is not None and _PINNED.get() == []

    def unpin(self) -> None:
        """Inside `pinned()`, forget the call's instant: the call is decided again on a fresh read of the state."""
        pinned = _PINNED.get()
        if pinned:
            pinned.clear()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def set(self, instant: float) -> None:
        """Jump to `instant` (manual) or shift the real clock so that it reads `instant` now."""
        if self.mode == "manual":
            self._manual = instant
            if self._store is not None:
                self._store.set_clock_value("manual", instant)
        else:
            self._offset = instant - time.time()
            if self._store is not None:
                self._store.set_clock_value("offset", self._offset)
                self._offset_read = time.time()


Handler = Callable[..., Awaitable[None]]


class Scheduler:
    """Jobs keyed by due time on `clock`, kept in the store so that any worker (or a restarted one) runs them.

    A job is data: a registered `kind` and its JSON arguments. With a real clock a background task claims
    and runs jobs as they fall due (on a shared store it also looks every `poll` seconds, for jobs other
    workers queued); with a manual clock `advance` runs, in time order, every job that falls due within the
    step (jobs due at the same instant run concurrently), including jobs those jobs schedule, and returns
    when they have finished. Claims are atomic, so each job runs once whatever the number of workers.
    """

    def __init__(self, clock: Clock, store: Store | None = None, concurrency: int = 200, poll: float = 0.1) -> None:
        self.clock = clock
        self.store: Store = store if store is not None else MemoryStore()
        self.concurrency = concurrency
        self.poll = poll
        self._handlers: dict[str, Handler] = {}
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self._held: list[tuple[float, dict[str, Any]]] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def register(self, kind: str, handler: Handler) -> None:
        """Run `handler(*args)` for each job of `kind`."""
        self._handlers[kind] = handler

    def __len__(self) -> int:
        """Jobs still owed: queued, or claimed and not finished (running, or left by a worker that died)."""
        return self.store.job_count() + self.store.claimed_count()

    def at(self, due: float, kind: str, *args: Any, label: str = "", owner: tuple[str, str] | None = None) -> None:
        """Run the job of `kind` with `args` at `due`. `owner` (kind, id) is the record the job reports on: once the
        store has dropped that record (retention), the job is dropped too, so a queue never outgrows the records."""
        if kind not in self._handlers:
            raise ValueError(f"job kind {kind!r} has no handler; registered: {', '.join(sorted(self._handlers))}.")
        job: dict[str, Any] = {"kind": kind, "args": list(args), "label": label}
        if owner is not None:
            job["owner"] = list(owner)
        if self._held is not None:
            self._held.append((due, job))
            return
        self.store.schedule(due, job)
        self.wake()

    def wake(self) -> None:
        """Tell the runner that jobs were queued (it looks at the queue again)."""
        if self._wake is not None:
            self._wake.set()

    def hold(self) -> list[tuple[float, dict[str, Any]]]:
        """From now until `release`, jobs are collected in the list returned instead of queued: the caller stores
        them together with what the call made (`Store.commit`), or drops them when the call fails. For one
        synchronous step only (nothing else runs in between)."""
        self._held = []
        return self._held

    def release(self) -> None:
        """Queue jobs again as they come (see `hold`)."""
        self._held = None

    def after(self, delay: float, kind: str, *args: Any, label: str = "", owner: tuple[str, str] | None = None) -> None:
        self.at(self.clock.now() + delay, kind, *args, label=label, owner=owner)

    def pending(self) -> list[tuple[float, str]]:
        return self.store.pending_jobs()

    def next_due(self) -> float | None:
        return self.store.next_due()

    async def _run(self, job_id: str, job: dict[str, Any]) -> None:
        async with self._limit:
            handler = self._handlers.get(job.get("kind", ""))
            try:
                if handler is None:
                    log.error("job %s (%s) has no handler; dropped", job_id, job.get("kind"))
                else:
                    await handler(*job.get("args", ()))
            except Exception:  # a failing job must not stop the clock; it is logged and dropped
                log.exception("scheduled job %s failed", job.get("label") or job_id)
            # Cancelled (shutdown) jobs are not finished: on a shared store their claim lapses and they run again.
            self.store.finish(job_id)

    async def _run_batch(self, instant: float) -> int:
        ran = 0
        while batch := self.store.claim_due(instant, self.concurrency):
            await asyncio.gather(*(self._run(job_id, job) for job_id, _due, job in batch))
            ran += len(batch)
        return ran

    async def run_due(self) -> int:
        """Run every job already due now and wait for them; return how many ran."""
        return await self._run_batch(self.clock.now())

    async def advance(self, seconds: float) -> int:
        """Move the clock by `seconds`, running each job at its own due instant; return how many ran."""
        if seconds < 0:
            raise ValueError(f"seconds is {seconds}; the clock only moves forward.")
        target = self.clock.now() + seconds
        ran = 0
        self.store.reclaim()  # jobs a dead worker had claimed are owed: they run in this step too
        # A manual clock's worker holds claims only while it advances: it beats only then (an idle mock does
        # nothing in the background).
        beat = asyncio.get_running_loop().create_task(self._beat()) if self.store.shared and \
            self._heartbeat is None else None
        try:
            while (due := self.store.next_due()) is not None and due <= target:
                instant = max(due, self.clock.now())
                self.clock.set(instant)
                ran += await self._run_batch(instant)
        finally:
            if beat is not None:
                beat.cancel()
        self.clock.set(max(target, self.clock.now()))
        if self._wake is not None:
            self._wake.set()
        return ran

    # -- real-time runner -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background runner (real clock only; a manual clock moves only by `advance`)."""
        if self.clock.mode == "real" and self.store.shared and self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        if self.clock.mode == "real" and self._runner is None:
            self._wake = asyncio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._loop())

    async def _beat(self) -> None:
        """Tell the other workers sharing the store that this one lives (its claims are not reclaimed)."""
        while True:
            try:
                self.store.heartbeat()
            except Exception:  # a store that is briefly unreachable must not stop the beat
                log.warning("the store could not be told that this worker lives", exc_info=True)
            await asyncio.sleep(self.store.HEARTBEAT_EVERY)

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            room = self.concurrency - len(self._running)
            if room <= 0:  # a full worker claims nothing, but the jobs of dead workers go back to the queue
                self.store.reclaim()
            for job_id, _due, job in self.store.claim_due(self.clock.now(), room) if room > 0 else []:
                task = loop.create_task(self._run(job_id, job))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - self.clock.now())
            if self.store.shared or room <= 0:  # other workers queue jobs too; a full worker looks again soon
                timeout = self.poll if timeout is None else min(timeout, self.poll)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def stop(self, grace: float = 5.0) -> list[str]:
        """Stop the runner, give running jobs `grace` seconds, and return the labels still pending.

        On a shared store the jobs stay queued for the other workers (or the next start); none are listed.
        """
        for task in (self._runner, self._heartbeat):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._runner = self._heartbeat = None
        if self._running:
            _done, still = await asyncio.wait(set(self._running), timeout=grace)
            for task in still:
                task.cancel()
        return [] if self.store.shared else [label for _due, label in self.pending()]

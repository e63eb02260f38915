"""The inspector's event stream: what changed in the store since the page last looked, as server-sent events.

Nothing here runs while no page is connected: a page's stream reads the store (the journal's newest entries, the
tasks, the deliveries, the balances it follows, the clock and the controls' state) every `POLL` seconds and sends
what differs from its last reading. The store is the one every worker shares, so on the Redis store each page
sees the exchanges, stages and attempts of every worker. A call's own path does no work for the inspector.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..store import codec
from .views import State, read_state

POLL = 0.2  # seconds between two readings of the store while a page is connected
JOURNAL_WINDOW = 200  # the newest journal entries read per look (the ring holds more; a page shows the newest)


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; the JSON is on one line, so one `data:` field carries it."""
    return b"event: " + event.encode() + b"\ndata: " + codec.dumps(data) + b"\n\n"


class EventHub:
    """Counts the pages connected, and makes each its stream of changes."""

    def __init__(self, read: Callable[[list[str]], State]) -> None:
        self.read = read
        self.pages = 0  # streams open now
        self.readings = 0  # looks at the store since start (none while no page is connected)

    async def stream(self, keys: list[str], max_seconds: float) -> AsyncIterator[bytes]:
        """A `snapshot`, then the events of each change, for at most `max_seconds` (the browser reconnects)."""
        self.pages += 1
        try:
            loop = asyncio.get_running_loop()
            ends = loop.time() + max_seconds
            last = self._read(keys)
            yield b"retry: 300\n\n" + sse("snapshot", last.as_dict())
            while loop.time() < ends:
                await asyncio.sleep(min(POLL, max(0.0, ends - loop.time())))
                now = self._read(keys)
                changes = list(last.changes(now))
                if changes:
                    yield b"".join(sse(event, data) for event, data in changes)
                else:
                    yield b": idle\n\n"  # a comment: finds a closed connection, and keeps proxies from timing out
                last = now
        finally:
            self.pages -= 1

    def _read(self, keys: list[str]) -> State:
        self.readings += 1
        return self.read(keys)


def reader(mock: Any) -> Callable[[list[str]], State]:
    return lambda keys: read_state(mock, keys, JOURNAL_WINDOW)

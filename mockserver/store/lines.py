"""The connections a worker's provider calls reach Redis through.

Every provider call makes one step in Redis (a Lua script, see `redis.py`). redis-py's general command path (the
pool, the command table, encoding each argument) costs more CPU than the round trip itself, so the step is written
as one packed buffer in Redis' wire protocol (RESP) and its answer read by redis-py's parser (hiredis when
installed):

- `Line` is the blocking connection, for a step made while the worker does nothing else (a first look at the
  state, a control-plane change, a call made outside the event loop).
- `Pipe` is the event loop's connection: steps of calls in flight at once are written together in one buffer and
  their answers read back in order (pipelining). Under load a worker then pays the system calls of one round trip
  for many calls, and redis-server reads many steps per wake-up. Each step stays atomic on its own: Redis runs
  the scripts one after the other, as if each had come alone.

An answer lost to a broken connection is never asked again (the step may have run: a charge must not be taken
twice): the call is answered with the provider's server error, and the next one connects again.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
from typing import Any

import redis
import redis.exceptions
from redis.connection import parse_url

try:
    import hiredis
except ImportError:  # the pipe needs hiredis' parser (the redis extra installs it); without it steps block
    hiredis = None

_LOST = (redis.ConnectionError, redis.TimeoutError, OSError)


def bulk(arg: Any) -> bytes:
    """One RESP bulk string."""
    raw = arg if isinstance(arg, bytes) else str(arg).encode("utf-8", "surrogatepass")
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class Packer:
    """EVALSHA commands packed in RESP; the part made of the script and its keys is packed once per key set."""

    MAX_HEADS = 10_000  # key sets differ by account: bounded, so a stream of new keys cannot grow it

    def __init__(self) -> None:
        self._heads: dict[tuple[str, ...], tuple[bytes, int]] = {}

    def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> bytes:
        found = self._heads.get((script.sha, *keys))
        if found is None:
            found = (b"".join(map(bulk, ["EVALSHA", script.sha, len(keys), *keys])), 3 + len(keys))
            if len(self._heads) < self.MAX_HEADS:
                self._heads[(script.sha, *keys)] = found
        head, count = found
        parts = [b"*%d\r\n" % (count + len(args)), head]
        for arg in args:  # `bulk`, inlined: a call per argument was a measurable share of a provider call's CPU
            raw = arg if type(arg) is bytes else str(arg).encode("utf-8", "surrogatepass")
            parts.append(b"$%d\r\n" % len(raw))
            parts.append(raw)
            parts.append(b"\r\n")
        return b"".join(parts)


class Line:
    """A blocking connection kept for steps (see the module's text)."""

    def __init__(self, client: redis.Redis, packer: Packer) -> None:
        self._client = client
        self._packer = packer
        self._conn: Any = None
        self._lock = threading.Lock()

    def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        packed = self._packer.evalsha(script, keys, args)
        with self._lock:
            for attempt in range(3):
                if self._conn is None:
                    self._conn = self._client.connection_pool.make_connection()
                else:
                    self._drop_if_closed()
                try:
                    self._conn.send_packed_command([packed])  # (re)connects when closed
                except _LOST:
                    self._conn.disconnect()  # not sent: safe to send again on a new connection
                    if attempt == 2:
                        raise
                    continue
                try:
                    return self._conn.read_response()  # a lost answer is not asked again: the step may have run
                except redis.exceptions.NoScriptError:  # the server was restarted or its scripts flushed
                    if attempt == 2:
                        raise
                    self._client.script_load(script.script)
        raise AssertionError("unreachable")

    def _drop_if_closed(self) -> None:
        """Nothing is owed to this connection between steps: if it can be read, the server closed it (a restart,
        `CLIENT KILL`), and it is closed here too, so that the step goes out on a new one instead of being lost."""
        try:
            if self._conn.can_read(timeout=0):
                self._conn.disconnect()
        except _LOST:
            self._conn.disconnect()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.disconnect()
                self._conn = None


class Pipe:
    """The event loop's connection (see the module's text): a step is queued on the connection at once and the
    queue is written on the loop's next turn, so the steps of every call that reached its step in one turn go out in
    one write, and their answers are read back in order as they come. Reached only for `redis://` and `unix://`
    URLs; a TLS store (`rediss://`) makes its steps on the blocking `Line`."""

    def __init__(self, url: str, client: redis.Redis, line: Line, packer: Packer) -> None:
        self._options = parse_url(url)
        self._client = client  # the blocking client: loads a script the server lost
        self._line = line
        self._packer = packer
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None  # one connection attempt at a time, per event loop
        self._connecting_loop: asyncio.AbstractEventLoop | None = None
        self.usable = url.startswith(("redis://", "unix://")) and hiredis is not None

    async def evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if not self.usable:
            return self._line.evalsha(script, keys, args)
        proto = self._proto
        if proto is None or proto.closed or proto.loop is not asyncio.get_running_loop():
            proto = await self._connect()
        return await proto.send(script, self._packer.evalsha(script, keys, args))

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting_loop is not loop:
            self._connecting, self._connecting_loop = asyncio.Lock(), loop
        async with self._connecting:
            proto = self._proto
            if proto is not None and not proto.closed and proto.loop is loop:
                return proto  # another call connected meanwhile
            if proto is not None and proto.loop is not loop:
                proto.abort()  # a connection of an event loop that ended (a test's asyncio.run)
            options = self._options
            made = _Protocol(loop, self._client)
            timeout = options.get("socket_connect_timeout") or 10
            if options.get("path"):
                await asyncio.wait_for(loop.create_unix_connection(lambda: made, options["path"]), timeout)
            else:
                await asyncio.wait_for(loop.create_connection(lambda: made, options.get("host", "localhost"),
                                                              int(options.get("port", 6379))), timeout)
            if options.get("password"):
                user = [options["username"]] if options.get("username") else []
                await made.send(None, _command("AUTH", *user, options["password"]))
            if options.get("db"):
                await made.send(None, _command("SELECT", options["db"]))
            self._proto = made
            return made

    @property
    def writes(self) -> tuple[int, int]:
        """(writes made, steps sent in them) on the current connection: steps per write shows the batching."""
        return (self._proto.writes, self._proto.steps) if self._proto is not None else (0, 0)

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.abort()


def _command(*args: Any) -> bytes:
    return b"".join([b"*%d\r\n" % len(args), *map(bulk, args)])


class _Protocol(asyncio.Protocol):
    """One pipelined connection: commands written in batches, answers matched to them in order."""

    MAX_TRIES = 3  # sends of one step whose script the server lost (it is loaded again before each)

    def __init__(self, loop: asyncio.AbstractEventLoop, client: redis.Redis) -> None:
        self.loop = loop
        self._client = client
        self._reader = hiredis.Reader(encoding="utf-8")
        self._transport: asyncio.Transport | None = None
        self._waiting: collections.deque[tuple[Any, bytes, asyncio.Future[Any], int]] = collections.deque()
        self._out: list[bytes] = []
        self.closed = False
        self.writes = 0
        self.steps = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, script: Any, packed: bytes, tries: int = 1) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._queue(script, packed, future, tries)
        return future

    def _queue(self, script: Any, packed: bytes, future: asyncio.Future[Any], tries: int) -> None:
        if self.closed:
            future.set_exception(redis.ConnectionError("the connection to the store was lost"))
            return
        self._waiting.append((script, packed, future, tries))
        if not self._out:
            self.loop.call_soon(self._write)
        self._out.append(packed)

    def _write(self) -> None:
        if self._out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._out))
            self.writes += 1
            self.steps += len(self._out)
        self._out = []

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                answer = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(redis.ConnectionError(f"the store answered something unreadable: {exc}"))
                return
            if answer is False:
                return
            script, packed, future, tries = self._waiting.popleft()
            if isinstance(answer, hiredis.ReplyError):
                message = str(answer)
                if message.startswith("NOSCRIPT") and script is not None and tries < self.MAX_TRIES:
                    self._client.script_load(script.script)  # the server lost its scripts: load, send again
                    self._queue(script, packed, future, tries + 1)
                    continue
                if not future.done():
                    future.set_exception(redis.exceptions.NoScriptError(message) if message.startswith("NOSCRIPT")
                                         else redis.exceptions.ResponseError(message))
            elif not future.done():
                future.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(redis.ConnectionError(f"the connection to the store was lost: {exc or 'closed'}"))

    def abort(self, exc: Exception | None = None) -> None:
        """Close, failing every step still waiting for its answer (never sent again: it may have run)."""
        self.closed = True
        waiting, self._waiting = self._waiting, collections.deque()
        for _script, _packed, future, _tries in waiting:
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(exc or redis.ConnectionError("the connection to the store was closed"))
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                transport.abort()
            except RuntimeError:  # its event loop has ended (a test's asyncio.run): the socket went with it
                pass

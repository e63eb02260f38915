"""The HTTP protocol `stemmock serve` runs: uvicorn's httptools protocol, with a bound on a request's head and a
lingering close.

httptools gathers a header however long it is before the app sees it (a 10 MB key costs tens of MB of memory per
request). This protocol counts the bytes of each request's head as they arrive and, past `max_head_bytes`,
answers 431 and closes the connection, parsing no further. Below that bound the app answers a head over
`limits.max_header_bytes` itself, in the provider's shape.

A connection the server closes while the client is still sending (a 413 for a body over the limit, a 431) would
otherwise be reset by the kernel, which can destroy the answer before the client reads it. So a close lingers,
as nginx's `lingering_close` does: the answer is flushed and the write side shut, what still comes is read and
dropped unparsed, and the socket is closed when the client closes its side or after `LINGER` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("stemmock")
MIN_HEAD_BYTES = 1024 * 1024  # above one read of the socket (256 KiB), which may hold the start of a body
LINGER = 2.0  # seconds a closing connection keeps dropping what the client still sends


class _LingeringTransport:
    """The connection's transport, whose `close` lingers (see the module docstring); everything else is its own."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport, protocol = self._transport, self._protocol
        if protocol.lingering or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        protocol.lingering = True
        try:
            transport.write_eof()  # after the answer already written
        except (OSError, RuntimeError):
            transport.close()
            return
        protocol.linger_timer = asyncio.get_running_loop().call_later(LINGER, transport.close)


def head_bound(max_header_bytes: int) -> int:
    """The protocol's bound for a given `limits.max_header_bytes`: well above it, so that the app answers first."""
    return max(16 * max_header_bytes, MIN_HEAD_BYTES)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head longer than `max_head_bytes` before parsing more of it."""

    max_head_bytes = MIN_HEAD_BYTES  # set from the config by `stemmock serve` (every worker sets its own)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._head_bytes = 0
        self._in_head = True
        self.lingering = False
        self.linger_timer: asyncio.TimerHandle | None = None
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self.lingering:  # the client has sent all it will: close now (returning None lets the transport close)
            return
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the answer is out: what still comes is dropped unparsed
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next is the next request's head
        super().on_message_complete()

    def _refuse(self) -> None:
        message = (f"The request head is more than {self.max_head_bytes} bytes long; expected headers of at most "
                   f"{self.max_head_bytes} bytes.")
        log.warning("refused a request head of more than %d bytes from %s", self.max_head_bytes, self.client)
        body = json.dumps({"code": 431, "message": message}).encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()
        self._in_head = False

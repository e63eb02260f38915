"""The HTTP protocol `stemmock serve` runs: uvicorn's httptools protocol, with a bound on a request's head.

httptools gathers a header however long it is before the app sees it (a 10 MB key costs tens of MB of memory per
request). This protocol counts the bytes of each request's head as they arrive and, past `max_head_bytes`,
answers 431 and closes the connection, reading no further. Below that bound the app answers a head over
`limits.max_header_bytes` itself, in the provider's shape.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("stemmock")
MIN_HEAD_BYTES = 1024 * 1024  # above one read of the socket (256 KiB), which may hold the start of a body


def head_bound(max_header_bytes: int) -> int:
    """The protocol's bound for a given `limits.max_header_bytes`: well above it, so that the app answers first."""
    return max(16 * max_header_bytes, MIN_HEAD_BYTES)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head longer than `max_head_bytes` before parsing more of it."""

    max_head_bytes = MIN_HEAD_BYTES  # set from the config by `stemmock serve` (every worker sets its own)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._head_bytes = 0
        self._in_head = True
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
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

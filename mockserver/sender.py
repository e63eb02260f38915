"""The HTTP client that POSTs callbacks: pooled, reading only the answer's status."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp


class SendError(Exception):
    """A POST that produced no HTTP status; the message starts with the failure class (ConnectError, ...)."""


class HttpSender:
    """Callback POSTs through aiohttp's pooled client; only the answer's status is read.

    aiohttp rather than httpx here: httpx's async pool caps a burst of deliveries at a few hundred per
    second on this kind of machine, aiohttp sends thousands.
    """

    def __init__(self, max_connections: int) -> None:
        import aiohttp  # noqa: F401  (imported when the first delivery is made: start-up does not pay for it)

        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            # Idle connections are dropped after 2 s: receivers commonly close them after 5 s (uvicorn's
            # default), and a connection reused just as the peer closes it fails a delivery for no reason.
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=2.0)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url`; the answer's status code. Raises SendError when there is none."""
        import aiohttp

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SendError(f"UnsupportedURL: {url!r} is not an http(s) URL")
        try:
            return await self._post(url, body, headers)
        except aiohttp.ClientOSError as exc:
            if "request body" not in str(exc):
                raise SendError(f"ClientOSError: {exc}") from exc
            # The request never left (a kept-alive connection closed under it): once more, on a new connection.
            try:
                return await self._post(url, body, {**headers, "Connection": "close"})
            except aiohttp.ClientError as again:
                raise SendError(f"{type(again).__name__}: {again}") from again

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import aiohttp

        try:
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status
        except aiohttp.ClientConnectorError as exc:
            raise SendError(f"ConnectError: {exc}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise SendError("ReadError: the connection closed before an answer") from exc
        except aiohttp.ClientResponseError as exc:  # the peer answered something that is not HTTP
            raise SendError(f"ProtocolError: {exc.message}") from exc
        except aiohttp.ClientOSError:
            raise
        except aiohttp.ClientError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a URL aiohttp cannot use
            raise SendError(f"UnsupportedURL: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

"""`/files/*`: the MP3 audio and JPEG covers a client downloads, made again from the URL, with byte ranges."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from ..clock import Clock
from ..config import MockConfig
from ..request import printable
from ..responses import JsonResponse, json_response
from ..store import Store
from . import audio, covers

log = logging.getLogger("stemmock")


class FileServer:
    """Serves `/files/*` for as long as the config keeps a file, and journals each download."""

    def __init__(self, store: Store, clock: Clock, config: MockConfig) -> None:
        self.store, self.clock, self.config = store, clock, config

    async def serve(self, request: Request) -> Response | JsonResponse:
        try:
            return self._file(request)
        except Exception as exc:  # the mock's own bug: a JSON 500 (logged), never a dropped connection
            log.exception("serving %r failed", request.url.path)
            self.store.record({"time": self.clock.now(), "operation": "download", "provider": "files",
                               "method": request.method, "path": printable(request.url.path),
                               "outcome": {"kind": "error", "code": 500,
                                           "reason": f"mock error: {type(exc).__name__}"}})
            return json_response(500, {"code": 500, "message": "The file could not be served; see the mock's log."},
                                 {"Connection": "close"})

    def _file(self, request: Request) -> Response | JsonResponse:
        ref = audio.parse_file_path(request.url.path)
        if ref is None or self.clock.now_ms() - ref.created_ms > self.config.file_retention * 1000:
            return json_response(404, {"code": 404, "message": "File not found or expired."})
        cover = covers.jpeg_bytes(ref.file_id) if ref.is_cover else None
        size = len(cover) if cover is not None else audio.mp3_size(ref.duration_ms)
        headers = {"Accept-Ranges": "bytes", "Content-Type": covers.CONTENT_TYPE if cover else audio.CONTENT_TYPE,
                   "Content-Disposition": content_disposition(ref.name),
                   "Cache-Control": "public, max-age=1209600"}
        span = audio.byte_range(request.headers.get("range"), size)
        if span is False:
            return Response(b"", 416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status, start, end = (206, span[0], span[1]) if isinstance(span, tuple) else (200, 0, size - 1)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        content = b"" if request.method == "HEAD" else cover[start:end + 1] if cover is not None else \
            audio.mp3_slice(ref.duration_ms, start, end)
        response = Response(content, status, headers=headers)
        response.headers["Content-Length"] = str(end - start + 1)
        # Downloads are journaled too, so the contract kit can tell a result processed twice.
        self.store.record({"time": self.clock.now(), "operation": "download", "provider": "files",
                           "method": request.method, "path": printable(request.url.path),
                           "outcome": {"kind": "file", "code": status, "reason": "file served"}})
        return response


_TOKEN_CHARS = re.compile(r"[^0-9A-Za-z!#$&+.^_`|~-]")  # what a quoted-string fallback may not hold, made `_`


def content_disposition(name: str) -> str:
    """`inline` with the file's name: an ASCII `filename` that cannot break out of its quotes, and the name itself
    as RFC 6266 `filename*` when it is not plain ASCII (no header parameter can be injected either way)."""
    fallback = _TOKEN_CHARS.sub("_", name)
    if fallback == name:
        return f'inline; filename="{name}"'
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(printable(name), safe='')}"


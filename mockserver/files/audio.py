"""Real, decodable MP3 files of any duration, and the URLs that name them.

A file is a run of silent MPEG-1 Layer III frames (48 kHz, 32 kbit/s, mono: 96 bytes and 24 ms each),
so making one is a byte repetition, with no audio work. A file URL carries everything needed to serve
it again (when it was made, how long it lasts), so the mock keeps no per-file state:

    {base}/files/{created_ms}-{duration_ms}-{id}/{name}.mp3

Cover images (`covers.py`) share the scheme with a duration of 0 and a `.jpeg` name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAME_SECONDS = 1152 / 48000  # 24 ms
# 0xFFFB: MPEG-1 Layer III, no CRC; 0x14: 32 kbit/s at 48 kHz, no padding; 0xC0: mono.
_FRAME = bytes([0xFF, 0xFB, 0x14, 0xC0]) + bytes(92)
CONTENT_TYPE = "audio/mpeg"
# Anyone can write a file URL by hand; a bound keeps a made-up duration from allocating gigabytes.
MAX_DURATION_MS = 20 * 60 * 1000
# Bounded digit runs: a made-up 4,301-digit instant is a file that does not exist, not a number to convert. A name
# holds no control character (a NUL or a line break cannot go into the Content-Disposition header).
_PATH = re.compile(r"^/files/(?P<created>[0-9]{1,15})-(?P<duration>[0-9]{1,12})-(?P<id>[0-9A-Za-z_-]{1,200})/"
                   r"(?P<name>[^/\x00-\x1f\x7f]{1,200}\.(?:mp3|jpeg))$")
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_.-]")


def frame_count(duration_ms: int) -> int:
    """Frames in the file for `duration_ms`: the nearest whole number of 24 ms frames, at least one."""
    return max(1, round(duration_ms / 1000 / FRAME_SECONDS))


def mp3_size(duration_ms: int) -> int:
    """Bytes in the file for `duration_ms`, without building it."""
    return frame_count(duration_ms) * len(_FRAME)


def mp3_bytes(duration_ms: int) -> bytes:
    """An MP3 whose decoded duration is `duration_ms` rounded to the nearest 24 ms frame (at least one)."""
    # Not cached: a repetition is a memcpy, and caching up to ~1 MB per distinct duration would only grow memory.
    return _FRAME * frame_count(duration_ms)


def mp3_slice(duration_ms: int, start: int, end: int) -> bytes:
    """Bytes `start..end` (inclusive, clamped to the file) of the file for `duration_ms`, built without the rest."""
    end = min(end, mp3_size(duration_ms) - 1)
    if end < start:
        return b""
    first, offset = divmod(start, len(_FRAME))
    last = end // len(_FRAME)
    return (_FRAME * (last - first + 1))[offset:offset + end - start + 1]


def file_path(file_id: str, name: str, duration_s: float, created_ms: int) -> str:
    """The path (under the mock's origin) of a file lasting `duration_s` that was handed out at `created_ms`."""
    safe = _UNSAFE_NAME.sub("_", name)
    return f"/files/{created_ms}-{round(duration_s * 1000)}-{file_id}/{safe}.mp3"


@dataclass(frozen=True, slots=True)
class FileRef:
    created_ms: int
    duration_ms: int
    file_id: str
    name: str

    @property
    def is_cover(self) -> bool:
        return self.name.endswith(".jpeg")


def parse_file_path(path: str) -> FileRef | None:
    match = _PATH.match(path)
    if not match or int(match["duration"]) > MAX_DURATION_MS:
        return None
    return FileRef(int(match["created"]), int(match["duration"]), match["id"], match["name"])


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """Parse a single `Range: bytes=a-b`: (start, end inclusive), None for no/ignored range, False if unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multi-range requests get the whole file, as RFC 9110 allows
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return False
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)

"""Unit tests for mockserver.files.audio: decodable silent MP3s, file URLs and Range headers."""

from __future__ import annotations

import pytest

from mockserver.files.audio import (
    FRAME_SECONDS,
    FileRef,
    byte_range,
    file_path,
    mp3_bytes,
    mp3_size,
    mp3_slice,
    parse_file_path,
)

try:
    import miniaudio

    def _decoded_seconds(data: bytes) -> float:
        sound = miniaudio.decode(data)
        return sound.num_frames / sound.sample_rate

except ImportError:  # pragma: no cover - fallback when miniaudio is absent
    import io

    from mutagen.mp3 import MP3

    def _decoded_seconds(data: bytes) -> float:
        return float(MP3(io.BytesIO(data)).info.length)


@pytest.mark.parametrize("seconds", [0.5, 30.0, 187.33])
def test_mp3_decodes_to_the_requested_duration(seconds: float) -> None:
    """Produces an MP3 that decodes to within one 24 ms frame of the requested duration."""
    data = mp3_bytes(round(seconds * 1000))
    assert abs(_decoded_seconds(data) - seconds) <= FRAME_SECONDS


def test_mp3_is_whole_frames() -> None:
    """Builds the file from whole 96-byte frames starting with an MPEG-1 Layer III sync word."""
    data = mp3_bytes(30_000)
    assert len(data) % 96 == 0
    assert len(data) // 96 == 1250  # 30 s / 24 ms
    assert data[:2] == b"\xff\xfb"


def test_mp3_has_at_least_one_frame() -> None:
    """Produces one frame for a zero or very short duration."""
    assert len(mp3_bytes(0)) == 96
    assert len(mp3_bytes(5)) == 96


@pytest.mark.parametrize(("start", "end"), [(0, 0), (0, 95), (95, 96), (10, 500), (1000, 10**9), (200, 100)])
def test_mp3_slice_matches_the_whole_file(start: int, end: int) -> None:
    """Builds any inclusive byte slice equal to the same slice of the whole file, clamped to its size."""
    whole = mp3_bytes(1_000)
    assert mp3_size(1_000) == len(whole)
    assert mp3_slice(1_000, start, end) == whole[start:end + 1]


def test_file_path_round_trip() -> None:
    """Parses a file path back into its creation time, duration, id and name."""
    path = file_path("abc_123-X", "vocals", 187.33, 1_767_225_600_000)
    assert path == "/files/1767225600000-187330-abc_123-X/vocals.mp3"
    assert parse_file_path(path) == FileRef(1_767_225_600_000, 187_330, "abc_123-X", "vocals.mp3")


def test_file_path_makes_the_name_safe() -> None:
    """Replaces characters outside [0-9A-Za-z_.-] in the name, so the path still parses."""
    path = file_path("id1", "my song/2 (live)", 1.0, 5)
    assert path == "/files/5-1000-id1/my_song_2__live_.mp3"
    ref = parse_file_path(path)
    assert ref is not None and ref.name == "my_song_2__live_.mp3" and ref.duration_ms == 1000


@pytest.mark.parametrize(
    "path",
    ["/files/1-2-id/x.wav", "/files/1-2/x.mp3", "/files/a-2-id/x.mp3", "/other/1-2-id/x.mp3",
     "/files/1-2-id/sub/x.mp3", "/files/1-2-i.d/x.mp3"],
)
def test_parse_file_path_rejects_other_paths(path: str) -> None:
    """Returns None for a path that is not a mock file URL."""
    assert parse_file_path(path) is None


# -- byte_range -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 1000, None),
        ("", 1000, None),
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=100-", 1000, (100, 999)),
        ("bytes=-10", 1000, (990, 999)),
        ("bytes=-5000", 1000, (0, 999)),
        ("bytes=0-5000", 1000, (0, 999)),
        ("bytes=999-999", 1000, (999, 999)),
        ("Bytes = 5-9", 1000, (5, 9)),
        ("bytes=1000-", 1000, False),
        ("bytes=2000-3000", 1000, False),
        ("bytes=50-10", 1000, False),
        ("bytes=-0", 1000, False),
        ("bytes=0-1,5-9", 1000, None),
        ("items=0-1", 1000, None),
        ("bytes=abc-", 1000, None),
        ("bytes=-", 1000, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: object) -> None:
    """Parses a single byte range, ignores what it cannot serve partially, and flags unsatisfiable ones."""
    assert byte_range(header, size) == expected

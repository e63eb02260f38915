"""Result files through the real server: every URL handed out downloads, decodes to its advertised duration, expires."""

from __future__ import annotations

from typing import Any

import httpx
import miniaudio
import pytest

from contracts.receiver import CallbackReceiver
from mockserver.files import audio

FRAME = audio.FRAME_SECONDS  # 24 ms: a decoder can be off by at most one frame
RETENTION = 14 * 24 * 3600


def decoded_seconds(client: httpx.Client, url: str) -> float:
    """Download `url` as a client would and return what an MP3 decoder reads as its duration."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response.headers["content-type"] == "audio/mpeg"
    assert int(response.headers["content-length"]) == len(response.content)
    return float(miniaudio.decode(response.content).duration)


def upload(client: httpx.Client, url: str = "https://files.example.com/night-drive.mp3") -> str:
    return str(client.post("/api/v1/sonic/upload", json={"url": url}).json()["clip_id"])


def created_clips(client: httpx.Client, mock: Any) -> list[dict[str, Any]]:
    task_id = client.post("/api/v1/sonic/create", json={
        "task_type": "create_music", "custom_mode": True, "mv": "sonic-v5", "title": "Night Drive",
        "tags": "synthwave", "prompt": "[Verse] lights"}).json()["task_id"]
    mock.advance(60)
    return list(client.get(f"/api/v1/sonic/task/{task_id}").json()["data"])


def generated(client: httpx.Client, mock: Any, receiver: CallbackReceiver) -> tuple[str, list[dict[str, Any]]]:
    task_id = client.post("/api/v1/generate", json={
        "customMode": False, "instrumental": True, "model": "V4_5", "prompt": "rain",
        "callBackUrl": receiver.endpoint("gen")}).json()["data"]["taskId"]
    mock.advance(10)
    record = client.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]
    return task_id, list(record["response"]["sunoData"])


def vox_url(client: httpx.Client, start: float, end: float) -> str:
    response = client.post("/api/v1/sonic/vox", json={"clip_id": upload(client), "vocal_start_s": start,
                                                      "vocal_end_s": end})
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["vocal_audio_url"])


# -- durations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("start", "end"), [(12.5, 40), (0, 30), (3.3, 4.1), (0, 0.01)])
def test_vox_file_lasts_end_minus_start(client: httpx.Client, start: float, end: float) -> None:
    """The VOX vocal_audio_url decodes to vocal_end_s - vocal_start_s, within one frame."""
    assert decoded_seconds(client, vox_url(client, start, end)) == pytest.approx(max(end - start, FRAME), abs=FRAME)


def test_created_clips_decode_to_their_duration(client: httpx.Client, mock: Any) -> None:
    """Each clip of a create task decodes to the duration the task reports for it."""
    for clip in created_clips(client, mock):
        assert decoded_seconds(client, clip["audio_url"]) == pytest.approx(float(clip["duration"]), abs=FRAME)


@pytest.mark.parametrize(("kind", "count"), [("basic", 2), ("full", 12)])
def test_stem_files_last_as_long_as_the_source_clip(client: httpx.Client, mock: Any, kind: str, count: int) -> None:
    """Every stem's audio_url decodes to the duration of the clip it was split from."""
    source = created_clips(client, mock)[0]
    task_id = client.post(f"/api/v1/sonic/stems/{kind}", json={"clip_id": source["clip_id"]}).json()["task_id"]
    mock.advance(60)
    stems = client.get(f"/api/v1/sonic/task/{task_id}").json()["data"]
    assert len(stems) == count and len({s["audio_url"] for s in stems}) == count
    for stem in stems:
        assert decoded_seconds(client, stem["audio_url"]) == pytest.approx(float(source["duration"]), abs=FRAME)


def test_generated_tracks_decode_to_their_duration(client: httpx.Client, mock: Any,
                                                   receiver: CallbackReceiver) -> None:
    """Each generated track's audioUrl and streamAudioUrl decode to the duration record-info reports."""
    _task_id, tracks = generated(client, mock, receiver)
    for track in tracks:
        for key in ("audioUrl", "streamAudioUrl"):
            assert decoded_seconds(client, track[key]) == pytest.approx(track["duration"], abs=FRAME)
    complete = next(d.json for d in receiver.accepted() if d.json["data"]["callbackType"] == "complete")
    for track in complete["data"]["data"]:
        assert decoded_seconds(client, track["audio_url"]) == pytest.approx(track["duration"], abs=FRAME)


@pytest.mark.parametrize(("kind", "count"), [("separate_vocal", 2), ("split_stem", 12)])
def test_separation_files_last_as_long_as_the_source_track(client: httpx.Client, mock: Any,
                                                           receiver: CallbackReceiver, kind: str, count: int) -> None:
    """Every URL of a separation (record-info and callback alike) decodes to the source track's duration."""
    task_id, tracks = generated(client, mock, receiver)
    receiver.clear()
    sep_id = client.post("/api/v1/vocal-removal/generate", json={
        "taskId": task_id, "audioId": tracks[1]["id"], "type": kind,
        "callBackUrl": receiver.endpoint("sep")}).json()["data"]["taskId"]
    mock.advance(10)
    response = client.get("/api/v1/vocal-removal/record-info", params={"taskId": sep_id}).json()["data"]["response"]
    urls = {v for k, v in response.items() if v and k != "originUrl"}
    [delivery] = receiver.accepted()
    assert urls == {v for k, v in delivery.json["data"]["vocal_removal_info"].items() if v and k != "origin_url"}
    assert len(urls) == count
    for url in urls:
        assert decoded_seconds(client, url) == pytest.approx(tracks[1]["duration"], abs=FRAME)


# -- HTTP semantics -----------------------------------------------------------------------------------------
def test_head_answers_the_headers_without_a_body(client: httpx.Client) -> None:
    """HEAD gives the same status, type and length as GET, with an empty body."""
    url = vox_url(client, 0, 10)
    full, head = client.get(url), client.head(url)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "accept-ranges"):
        assert head.headers[name] == full.headers[name]
    assert full.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(("header", "span"), [("bytes=0-0", (0, 0)), ("bytes=100-199", (100, 199)),
                                              ("bytes=1000-", (1000, None)), ("bytes=-96", (-96, None)),
                                              ("bytes=0-99999999", (0, None))])
def test_range_answers_206_with_the_requested_bytes(client: httpx.Client, header: str,
                                                    span: tuple[int, int | None]) -> None:
    """A satisfiable single range answers 206 with Content-Range and exactly those bytes."""
    url = vox_url(client, 0, 10)
    full = client.get(url).content
    size = len(full)
    first = span[0] if span[0] >= 0 else size + span[0]
    last = span[1] if span[1] is not None else size - 1
    part = client.get(url, headers={"Range": header})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert int(part.headers["content-length"]) == last - first + 1
    assert part.content == full[first:last + 1]
    assert part.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=-0"])
def test_unsatisfiable_range_answers_416(client: httpx.Client, header: str) -> None:
    """A range starting past the end (or an empty suffix) answers 416 with `Content-Range: bytes */size`."""
    url = vox_url(client, 0, 10)
    size = int(client.head(url).headers["content-length"])
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_a_ranged_download_reassembles_to_the_whole_file(client: httpx.Client) -> None:
    """A client fetching the file in 10 kB ranges gets the same bytes as one GET, and they decode."""
    url = vox_url(client, 0, 25)
    whole = client.get(url).content
    pieces, start = [], 0
    while start < len(whole):
        response = client.get(url, headers={"Range": f"bytes={start}-{start + 9999}"})
        assert response.status_code == 206
        pieces.append(response.content)
        start += len(response.content)
    assert b"".join(pieces) == whole
    assert miniaudio.decode(whole).duration == pytest.approx(25, abs=FRAME)


def test_files_expire_14_days_after_they_are_handed_out(client: httpx.Client, mock: Any) -> None:
    """A file serves for 14 days of the clock and answers 404 one second later (GET and HEAD)."""
    url = vox_url(client, 0, 5)
    mock.advance(RETENTION)
    assert client.get(url).status_code == 200
    mock.advance(1)
    assert client.get(url).status_code == 404
    assert client.head(url).status_code == 404
    assert client.get(url, headers={"Range": "bytes=0-10"}).status_code == 404


def test_an_unknown_file_path_is_404(client: httpx.Client, mock: Any) -> None:
    """A path that does not name a file this mock can make (or one of an absurd length) answers 404."""
    now_ms = int(mock.advance(0)["now"] * 1000)
    assert client.get("/files/not-a-file.mp3").status_code == 404
    assert client.get(f"/files/{now_ms}-99999999999999-abc/huge.mp3").status_code == 404
    assert client.get(f"/files/{now_ms}-{audio.MAX_DURATION_MS}-abc/longest.mp3").status_code == 200


# -- the audio module ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("duration_ms", [1, 24, 1000, 27_500, 240_000])
def test_mp3_decodes_to_the_nearest_frame(duration_ms: int) -> None:
    """mp3_bytes(d) decodes to d rounded to a whole 24 ms frame (at least one), and mp3_size predicts its size."""
    data = audio.mp3_bytes(duration_ms)
    assert len(data) == audio.mp3_size(duration_ms)
    decoded = miniaudio.decode(data).duration
    assert decoded == pytest.approx(max(duration_ms / 1000, FRAME), abs=FRAME / 2 + 1e-3)


def test_mp3_slice_matches_slicing_the_whole_file() -> None:
    """mp3_slice gives the same bytes as slicing the built file, including ranges that cross frames or the end."""
    data = audio.mp3_bytes(5_000)
    for start, end in [(0, 0), (0, 95), (95, 96), (50, 1_000), (len(data) - 1, len(data) + 100), (10, 5)]:
        assert audio.mp3_slice(5_000, start, end) == data[start:end + 1]


def test_file_paths_round_trip() -> None:
    """A path made by file_path parses back to its creation time, duration, id and a safe name."""
    path = audio.file_path("abc-123", "Night Drive — Vocals", 27.5, 1_767_225_600_000)
    ref = audio.parse_file_path(path)
    assert ref == audio.FileRef(1_767_225_600_000, 27_500, "abc-123", "Night_Drive___Vocals.mp3")
    assert audio.parse_file_path("/files/../../etc/passwd") is None

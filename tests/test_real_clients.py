"""The vendors' own clients, unmodified and on their defaults, against a real `stemmock serve` on a free port.

`musicapi-sdk` (MusicAPI's official SDK) and `suno-easy` (the most used api.box/sunoapi.org client) get nothing
but the mock's loopback URL where they would reach a vendor host: the base URL, and for suno-easy its callback
and upload hosts. No model, task type or other option is pinned. The mock runs with the manual clock, and the
clients' own waits (polling intervals, `Retry-After` backoff) move that clock instead of sleeping: the time an
SDK chooses to wait is what the mock sees pass. A guard fails the test on any connection or name lookup that
is not loopback, so these tests cannot reach the network.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import musicapi
import musicapi._http
import musicapi._polling
import pytest
import suno_easy.client
from musicapi import MusicAPI, MusicAPIError, SonicCreateParams, SonicUploadParams, StemsParams, VoxParams
from PIL import Image
from suno_easy import SunoClient
from suno_easy.exceptions import SunoAPIError

from contracts.receiver import CallbackReceiver
from contracts.referee import Referee
from mockserver.spec import PROVIDER_SPECS, load, spec_path

API_KEY = "sdk-key"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A `stemmock serve` subprocess (manual clock) and the control-plane calls the tests make."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = Path(sys.executable).with_name("stemmock")
        command = [str(binary)] if binary.exists() else [sys.executable, "-m", "mockserver"]
        self.process = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--clock", "manual", "--seed", "11"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.control = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        deadline = time.monotonic() + 30
        while True:  # start-up: a bounded wait for the port to answer
            try:
                if self.control.get("/__mock/clock").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"stemmock serve did not start on port {self.port}")
            time.sleep(0.05)
        self.waits: list[float] = []  # every wait an SDK asked for, in seconds of the mock's clock

    def advance(self, seconds: float) -> None:
        self.control.post("/__mock/clock/advance", json={"seconds": seconds}).raise_for_status()

    def sdk_sleep(self, seconds: float) -> None:
        """What an SDK's `time.sleep` does here: the mock's clock moves by the wait the SDK chose."""
        self.waits.append(seconds)
        self.advance(seconds)

    def journal(self, operation: str | None = None) -> list[dict[str, Any]]:
        exchanges = self.control.get("/__mock/journal").json()["exchanges"]
        return [e for e in exchanges if operation is None or e.get("operation") == operation]

    def set_credits(self, credits: float, extra_credits: float = 0, provider: str | None = None) -> None:
        body: dict[str, Any] = {"credits": credits, "extra_credits": extra_credits}
        if provider:
            body["provider"] = provider
        self.control.put(f"/__mock/credits/{API_KEY}", json=body).raise_for_status()

    def fault(self, operation: str, code: int, times: int = 1) -> None:
        response = self.control.post("/__mock/faults", json={"operation": operation, "code": code, "times": times})
        response.raise_for_status()

    def download(self, url: str) -> httpx.Response:
        assert url.startswith(self.url + "/files/"), url
        response = self.control.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    def stop(self) -> None:
        self.control.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def served_server() -> Iterator[Served]:
    server = Served()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def suno_receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


@pytest.fixture()
def served(served_server: Served, suno_receiver: CallbackReceiver) -> Iterator[Served]:
    """The module's mock, reset; after the test, every callback the mock made went to a loopback host."""
    served_server.control.post("/__mock/reset").raise_for_status()
    served_server.waits.clear()
    suno_receiver.clear()
    yield served_server
    for delivery in served_server.control.get("/__mock/callbacks").json()["callbacks"]:
        assert _is_loopback(httpx.URL(delivery["url"]).host), delivery["url"]


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fails the test on any connection or name lookup from this process that is not loopback."""
    attempts: list[str] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address!r}")
            raise OSError(f"test guard: {address!r} is not a loopback address")
        return connect(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            attempts.append(f"getaddrinfo {host!r}")
            raise OSError(f"test guard: {host!r} is not a loopback host")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts
    assert attempts == [], f"a client tried to leave the machine: {attempts}"


def _referee() -> Referee:
    return Referee([load(spec_path(name)) for name in PROVIDER_SPECS])


def _assert_contract_kept(served: Served) -> None:
    """The strict referee finds nothing to flag in what the client sent, and nothing to note."""
    exchanges = served.journal()
    referee = _referee()
    assert referee.review(exchanges) == []
    assert referee.notes(exchanges) == []


# -- musicapi-sdk -----------------------------------------------------------------------------------------------
@pytest.fixture()
def music(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[MusicAPI]:
    """The official SDK with only its base URL changed; its polling and retry waits run on the mock's clock."""
    clock = types.SimpleNamespace(sleep=served.sdk_sleep, monotonic=time.monotonic)
    monkeypatch.setattr(musicapi._polling, "time", clock)
    monkeypatch.setattr(musicapi._http, "time", clock)
    with MusicAPI(api_key=API_KEY, base_url=f"{served.url}/api/v1") as client:
        yield client


def _uploaded_clip(music: MusicAPI) -> str:
    result = music.sonic.upload(SonicUploadParams(url="https://example.com/audio/my-demo.mp3"))
    assert result.code == 200 and result.message == "success"
    return result.clip_id


def test_musicapi_sdk_reads_the_balance(served: Served, music: MusicAPI) -> None:
    """`credits.get()` parses the bare `{credits, extra_credits}` answer into the balance the mock holds."""
    served.set_credits(120, 40, provider="musicapi")
    balance = music.credits.get()
    assert (balance.credits, balance.extra_credits) == (120, 40)
    _assert_contract_kept(served)


def test_musicapi_sdk_uploads_and_extracts_vocals(served: Served, music: MusicAPI) -> None:
    """Upload gives a clip id; VOX in range answers the vocal with a filled waveform; over 30 s is a 400 error."""
    clip_id = _uploaded_clip(music)
    vox = music.sonic.vox(VoxParams(clip_id=clip_id, vocal_start_s=0, vocal_end_s=30))
    assert vox.code == 200
    assert vox.data["source_clip_id"] == clip_id and vox.data["status"] == "complete"
    assert (vox.data["vocal_start_s"], vox.data["vocal_end_s"]) == (0, 30)
    aggregates = vox.data["wave_response"]["waveform_aggregates"]
    assert aggregates and all(aggregates[0]["data"])
    assert served.download(vox.data["vocal_audio_url"]).headers["content-type"] == "audio/mpeg"
    with pytest.raises(MusicAPIError) as too_long:
        music.sonic.vox(VoxParams(clip_id=clip_id, vocal_start_s=0, vocal_end_s=31))
    assert too_long.value.status == 400 and "vocal_end_s" in str(too_long.value)
    flagged = _referee().review(served.journal())  # the one request that broke the documented 30 s limit
    assert [(v.operation, v.pointer) for v in flagged] == [("POST /api/v1/sonic/vox", "/body/vocal_end_s")]


def test_musicapi_sdk_creates_polls_and_waits_on_its_defaults(served: Served, music: MusicAPI) -> None:
    """Create without task_type or model is accepted; the first poll is the SDK's 202 sentinel;
    `generate_and_wait` returns the succeeded clips, polling at the SDK's own interval."""
    params = SonicCreateParams(custom_mode=False, gpt_description_prompt="lofi hip hop for studying")
    submit = music.sonic.create(params)
    assert submit.message == "success" and submit.task_id
    assert "task_type" not in served.journal("createMusic")[-1]["request"]["body"]  # the SDK's default omits it
    first = music.sonic.get_task(submit.task_id)
    assert (first.code, first.data, first.message) == (202, [], "not_ready")
    result = music.sonic.generate_and_wait(params)
    assert result.code == 200 and len(result.data) == 2
    assert all(song.state == "succeeded" and song.audio_url and song.duration for song in result.data)
    assert served.waits and set(served.waits) == {5.0}  # PollOptions' default interval, in mock seconds
    polls = [e["response"]["status"] for e in served.journal("getTask")]
    assert polls[0] == 202 and polls[1] == 202 and polls[-1] == 200  # get_task's poll, then generate_and_wait's
    song = result.data[0]
    assert served.download(song.audio_url).headers["content-type"] == "audio/mpeg"
    cover = served.download(song.image_url)
    assert Image.open(io.BytesIO(cover.content)).size == (64, 64)
    _assert_contract_kept(served)


def test_musicapi_sdk_splits_stems_basic_and_full(served: Served, music: MusicAPI) -> None:
    """The `*_and_wait` helpers return 2 and 12 succeeded stems of an uploaded clip."""
    clip_id = _uploaded_clip(music)
    basic = music.sonic.stems_basic_and_wait(StemsParams(clip_id=clip_id))
    full = music.sonic.stems_full_and_wait(StemsParams(clip_id=clip_id))
    assert (basic.code, len(basic.data)) == (200, 2) and (full.code, len(full.data)) == (200, 12)
    assert all(stem.state == "succeeded" and stem.audio_url for stem in [*basic.data, *full.data])
    assert [stem.title for stem in basic.data] == ["my-demo — Vocals", "my-demo — Instrumental"]
    _assert_contract_kept(served)


def test_musicapi_sdk_gets_404_for_unknown_ids(served: Served, music: MusicAPI) -> None:
    """An unknown task (uuid-shaped or not) and stems of an unknown clip raise `MusicAPIError` with status 404."""
    for task_id in ("3f6c2a9e-8b1d-4e7a-9c5f-1a2b3c4d5e6f", "not-a-task"):
        with pytest.raises(MusicAPIError) as unknown:
            music.sonic.get_task(task_id)
        assert unknown.value.status == 404 and str(unknown.value) == "task not found."
    with pytest.raises(MusicAPIError) as no_clip:
        music.sonic.stems_basic(StemsParams(clip_id="clip-of-another-shape"))
    assert no_clip.value.status == 404 and str(no_clip.value).startswith("clip not found")
    _assert_contract_kept(served)


def test_musicapi_sdk_gets_403_when_credits_run_short(served: Served, music: MusicAPI) -> None:
    """A create the balance cannot cover raises a credit error (HTTP 403) and charges nothing."""
    served.set_credits(10, provider="musicapi")
    with pytest.raises(MusicAPIError) as short:
        music.sonic.create(SonicCreateParams(custom_mode=False, gpt_description_prompt="lofi"))
    assert short.value.status == 403 and short.value.is_credit_error
    assert music.credits.get().credits == 10
    _assert_contract_kept(served)


def test_musicapi_sdk_retries_a_429_after_retry_after(served: Served, music: MusicAPI) -> None:
    """A scripted 429 carries `Retry-After`; the SDK's own retry waits that long on the clock, then succeeds."""
    served.fault("getCredits", 429)
    balance = music.credits.get()
    assert balance.credits == 1000
    first, second = served.journal("getCredits")
    assert first["response"]["status"] == 429 and second["response"]["status"] == 200
    assert served.waits == [float(first["response"]["headers"]["Retry-After"])]
    assert second["time"] - first["time"] == pytest.approx(served.waits[0])
    _assert_contract_kept(served)


# -- suno-easy --------------------------------------------------------------------------------------------------
@pytest.fixture()
def suno(served: Served, suno_receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch) -> SunoClient:
    """suno-easy with its base URL, and its two other hard-coded hosts (callbacks, uploads), set to loopback;
    its polling waits run on the mock's clock."""
    monkeypatch.setattr(suno_easy.client, "time", types.SimpleNamespace(sleep=served.sdk_sleep, time=time.time))
    client = SunoClient(api_key=API_KEY, callback_url=suno_receiver.endpoint("suno"), upload_base_url=served.url)
    client.BASE_URL = served.url
    return client


def _generated(suno: SunoClient) -> tuple[str, list[Any]]:
    task = suno.music.generate("A calm and relaxing piano track about rain", wait=False)
    return task.task_id, task.wait()


def test_suno_easy_reads_the_balance(served: Served, suno: SunoClient) -> None:
    """`get_credits()` reads the number in `data` (a fractional balance is truncated by the client itself)."""
    served.set_credits(5916.25, provider="apibox")
    assert suno.account.get_credits().remaining == 5916
    assert served.journal("getRemainingCredits")[-1]["response"]["body"]["data"] == 5916.25
    _assert_contract_kept(served)


def test_suno_easy_generates_on_its_default_model_and_waits(served: Served, suno: SunoClient,
                                                            suno_receiver: CallbackReceiver) -> None:
    """Generate on the default model (V4_5ALL) is accepted; `wait()` polls at 3 s and returns both songs with
    every URL the real answer has, each served by the mock; the staged callbacks reach the receiver."""
    task_id, songs = _generated(suno)
    assert served.journal("generateMusic")[-1]["request"]["body"]["model"] == "V4_5ALL"
    assert len(songs) == 2 and set(served.waits) == {3}
    for song in songs:
        assert song.id and song.title == "" and song.duration and song.model_name == "chirp-v4-5all"
        for url in (song.audio_url, song.source_audio_url, song.stream_url, song.source_stream_url):
            assert served.download(url).headers["content-type"] == "audio/mpeg"
        for url in (song.image_url, song.source_image_url):
            image = served.download(url)
            assert image.headers["content-type"] == "image/jpeg"
            assert Image.open(io.BytesIO(image.content)).format == "JPEG"
        assert isinstance(song.create_time, int)
    stages = [d.json["data"]["callbackType"] for d in suno_receiver.accepted()]
    assert stages == ["text", "first", "complete"]
    assert all(d.json["data"]["task_id"] == task_id for d in suno_receiver.accepted())
    _assert_contract_kept(served)


@pytest.mark.parametrize(("mode", "stems"), [("separate_vocal", 2), ("split_stem", 12)])
def test_suno_easy_separates_vocals_in_both_modes(served: Served, suno: SunoClient, mode: str, stems: int) -> None:
    """`separate_vocals` (default mode, then split_stem) waits on record-info and parses the stems from it."""
    task_id, songs = _generated(suno)
    result = suno.audio.separate_vocals(task_id, songs[0].id) if mode == "separate_vocal" else \
        suno.audio.separate_vocals(task_id, songs[0].id, mode=mode)
    urls = {name: url for name, url in vars(result).items() if url}
    assert len(urls) == stems
    assert (result.instrumental_url is not None) == (mode == "separate_vocal") and result.vocal_url
    for url in urls.values():
        assert served.download(url).headers["content-type"] == "audio/mpeg"
    body = served.journal("separateVocals")[-1]["request"]["body"]
    assert body.get("type") == mode
    _assert_contract_kept(served)


def test_suno_easy_gets_422_for_bogus_ids(served: Served, suno: SunoClient) -> None:
    """A taskId/audioId pair the mock never made raises `SunoAPIError` with the body code 422."""
    with pytest.raises(SunoAPIError) as bogus:
        suno.audio.separate_vocals("0" * 32, "00000000-0000-4000-8000-000000000000")
    assert bogus.value.status_code == 422 and bogus.value.message == "Record does not exist"
    _assert_contract_kept(served)


def test_suno_easy_gets_429_when_credits_run_short(served: Served, suno: SunoClient) -> None:
    """A generation the balance cannot cover raises `SunoAPIError` 429, the insufficient-credits code."""
    served.set_credits(5, provider="apibox")
    with pytest.raises(SunoAPIError) as short:
        suno.music.generate("rain", wait=False)
    assert short.value.status_code == 429
    assert suno.account.get_credits().remaining == 5
    _assert_contract_kept(served)


def test_suno_easy_gets_430_when_calling_too_often(served: Served, suno: SunoClient) -> None:
    """Past 20 generations in 10 s of the clock, the next raises `SunoAPIError` 430 (call frequency)."""
    for _ in range(20):
        suno.music.generate("rain", wait=False)
    with pytest.raises(SunoAPIError) as frequent:
        suno.music.generate("rain", wait=False)
    assert frequent.value.status_code == 430
    served.advance(10)
    assert suno.music.generate("rain", wait=False).task_id
    _assert_contract_kept(served)


def test_suno_easy_default_callback_placeholder_is_accepted(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's built-in placeholder callBackUrl is accepted at request time (no delivery is due yet)."""
    client = SunoClient(api_key=API_KEY)
    client.BASE_URL = served.url
    task = client.music.generate("rain", wait=False)
    assert served.journal("generateMusic")[-1]["request"]["body"]["callBackUrl"] == client.callback_url
    assert client.music.get_task(task.task_id)["status"] == "PENDING"
    served.control.post("/__mock/reset").raise_for_status()  # drop the task before its stages fall due

"""Many workers on one Redis: one consistent provider, and a mock that survives SIGKILL.

Every test here runs real `stemmock serve` processes against the real redis-server the session starts:
two single-worker processes on two ports (so a test knows which worker answers), or one process with
`--workers 2` sharing a port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis
import yaml
from conftest import free_port

from contracts.receiver import CallbackReceiver
from mockserver.store.redis import RedisStore

KEY = "redis-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
START = 1_767_225_600


class Served:
    """One `stemmock serve` process (its own process group), answering on `url`."""

    def __init__(self, store: str, tmp: Path, *, clock: str = "manual", workers: int = 1,
                 settings: dict[str, Any] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / f"config-{self.port}.yaml"
        config.write_text(yaml.safe_dump({"clock_start": START, **(settings or {})}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockserver", "--port", str(self.port), "--store", store, "--clock", clock,
             "--workers", str(workers), "--config", str(config), "--log-level", "warning"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.http = httpx.Client(base_url=self.url, headers=AUTH, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/__mock/clock").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stemmock serve did not start: {self.errors()}")
            time.sleep(0.05)

    def errors(self) -> str:
        return self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""

    def advance(self, seconds: float) -> dict[str, Any]:
        response = self.http.post("/__mock/clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        return dict(response.json())

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.http.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.http.close()


@pytest.fixture()
def serve(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start `stemmock serve` processes on the test's Redis database; all are stopped after the test."""
    started: list[Served] = []

    def start(**options: Any) -> Served:
        served = Served(redis_url, tmp_path, **options)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def generate(http: httpx.Client, callback_url: str) -> str:
    body = http.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                                "prompt": "night drive", "callBackUrl": callback_url}).json()
    assert body["code"] == 200, body
    return str(body["data"]["taskId"])


def first_track(http: httpx.Client, task_id: str) -> dict[str, Any]:
    data = http.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]
    assert data["status"] == "SUCCESS", data
    return dict(data["response"]["sunoData"][0])


def separate(http: httpx.Client, task_id: str, audio_id: str, callback_url: str) -> str:
    body = http.post("/api/v1/vocal-removal/generate", json={
        "taskId": task_id, "audioId": audio_id, "type": "separate_vocal", "callBackUrl": callback_url}).json()
    assert body["code"] == 200, body
    return str(body["data"]["taskId"])


# -- one provider across workers ---------------------------------------------------------------------------


def test_state_made_on_one_worker_is_seen_by_the_other(serve: Any, receiver: CallbackReceiver) -> None:
    """A task, a clip, a balance and the clock set through one worker read the same through another."""
    a, b = serve(), serve()
    task_id = generate(a.http, receiver.endpoint("gen"))
    pending = b.http.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()["data"]
    assert pending["taskId"] == task_id and pending["status"] != "SUCCESS"
    b.advance(10)  # the clock is shared: the generation finished for both
    assert a.http.get("/__mock/clock").json()["now"] == START + 10
    track = first_track(a.http, task_id)
    assert first_track(b.http, task_id) == track

    clip_id = a.http.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/a.mp3"}).json()["clip_id"]
    vox = b.http.post("/api/v1/sonic/vox", json={"clip_id": clip_id, "vocal_start_s": 0, "vocal_end_s": 10})
    assert vox.status_code == 200, vox.text
    assert vox.json()["data"]["source_clip_id"] == clip_id
    credits_a = a.http.get("/api/v1/get-credits").json()
    assert credits_a == b.http.get("/api/v1/get-credits").json()
    assert b.http.get("/api/v1/generate/credit").json() == a.http.get("/api/v1/generate/credit").json()

    # Ids never collide although both workers run with the same seed.
    ids = {generate(a.http, receiver.endpoint("gen")) for _ in range(5)} | {generate(b.http, receiver.endpoint("gen")) for _ in range(5)}
    assert len(ids) == 10


def test_a_worker_obeys_control_state_another_worker_changed_at_once(serve: Any) -> None:
    """Maintenance, a fault and a balance set through one worker hold for the very next call on the other, and a
    fault's single turn is used once across both."""
    a, b = serve(), serve()
    clip = a.http.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/a.mp3"}).json()["clip_id"]
    a.advance(60)
    body = {"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 5}
    assert a.http.post("/api/v1/sonic/vox", json=body).status_code == 200  # a decides from its copy from now on
    assert b.http.put("/__mock/maintenance", json={"on": True}).status_code == 200
    assert a.http.post("/api/v1/sonic/vox", json=body).status_code == 503
    b.http.put("/__mock/maintenance", json={"on": False})
    assert a.http.post("/api/v1/sonic/vox", json=body).status_code == 200
    assert b.http.post("/__mock/faults", json={"operation": "getVox", "code": 500, "times": 1}).status_code == 201
    assert a.http.post("/api/v1/sonic/vox", json=body).status_code == 500
    assert b.http.post("/api/v1/sonic/vox", json=body).status_code == 200
    assert a.http.post("/api/v1/sonic/vox", json=body).status_code == 200
    assert b.http.get("/__mock/faults").json()["faults"][0]["used"] == 1
    assert b.http.put(f"/__mock/credits/{KEY}", json={"credits": 0}).status_code == 200
    refused = a.http.post("/api/v1/sonic/vox", json=body)
    assert refused.status_code != 200 and "credits" in refused.text, refused.text
    assert a.http.get("/api/v1/get-credits").json()["credits"] == 0


def test_the_rate_window_counts_every_workers_calls(serve: Any, receiver: CallbackReceiver) -> None:
    """api.box's 20 work calls per 10 s hold across workers: 15 + 15 calls admit exactly 20."""
    a, b = serve(), serve()
    codes = [a.http.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                                    "prompt": "x", "callBackUrl": receiver.endpoint("gen")}
                         ).json()["code"] for _ in range(15)]
    codes += [b.http.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                                     "prompt": "x", "callBackUrl": receiver.endpoint("gen")}
                          ).json()["code"] for _ in range(15)]
    assert Counter(codes) == {200: 20, 430: 10}
    assert codes[:20] == [200] * 20
    b.advance(10)  # the window slides for both
    assert generate(a.http, receiver.endpoint("gen"))


def test_two_workers_never_overspend_a_balance(serve: Any) -> None:
    """400 concurrent VOX calls through `--workers 2` against a balance of 100 succeed exactly 100 times."""
    served = serve(workers=2)
    clip_id = served.http.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/a.mp3"}).json()[
        "clip_id"]
    served.http.put(f"/__mock/credits/{KEY}", json={"credits": 100, "provider": "musicapi"}).raise_for_status()

    async def burst() -> list[int]:
        # aiohttp rather than httpx: httpx's async pool would make the client the slow side of the burst.
        body = {"clip_id": clip_id, "vocal_start_s": 0, "vocal_end_s": 5}
        connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=1.0)
        async with aiohttp.ClientSession(connector=connector, headers=AUTH) as http:
            async def vox() -> int:
                async with http.post(f"{served.url}/api/v1/sonic/vox", json=body) as response:
                    await response.read()
                    return response.status

            return list(await asyncio.gather(*(vox() for _ in range(400))))

    started = time.perf_counter()
    statuses = Counter(asyncio.run(burst()))
    print(f"\n400 concurrent VOX calls on 2 workers: {time.perf_counter() - started:.2f} s")
    refused = 403  # MusicAPI's insufficient-credits status
    assert statuses == {200: 100, refused: 300}, statuses
    assert served.http.get("/api/v1/get-credits").json()["credits"] == 0
    journal = served.http.get("/__mock/journal", params={"operation": "getVox"}).json()["exchanges"]
    assert Counter(e["response"]["status"] for e in journal) == {200: 100, refused: 300}


def test_a_thousand_callbacks_from_two_workers_are_each_delivered_once(serve: Any) -> None:
    """Two workers advancing the shared clock at once claim 1,000 due callbacks between them: each is sent once."""
    settings = {"rate_limits": {"apibox": {"work": None}}, "default_credits": 100000}
    a, b = serve(settings=settings), serve(settings=settings)
    with CallbackReceiver() as receiver:
        source = generate(a.http, receiver.endpoint("gen"))
        a.advance(10)
        audio_id = first_track(a.http, source)["id"]
        receiver.clear()
        url = receiver.endpoint("sep")
        ids = [separate(http, source, audio_id, url) for http in (a.http, b.http) for _ in range(500)]
        assert len(set(ids)) == 1000

        async def both() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(timeout=120) as http:
                answers = await asyncio.gather(*(http.post(f"{w.url}/__mock/clock/advance", json={"seconds": 10})
                                                 for w in (a, b)))
            return [r.json() for r in answers]

        ran = [answer["ran"] for answer in asyncio.run(both())]
        assert sum(ran) == 1000, ran
        print(f"\njobs run per worker: {ran}")
        delivered = Counter(d.json["data"]["task_id"] for d in receiver.deliveries if d.path.endswith("sep"))
        assert set(delivered) == set(ids) and set(delivered.values()) == {1}
        records = [r for r in a.http.get("/__mock/callbacks").json()["callbacks"] if r["task_id"] in set(ids)]
        assert len(records) == 1000
        assert {r["state"] for r in records} == {"delivered"} and {len(r["attempts"]) for r in records} == {1}
        assert a.advance(3600)["ran"] == 0 and b.advance(3600)["ran"] == 0
        assert len([d for d in receiver.deliveries if d.path.endswith("sep")]) == 1000


def test_the_real_clock_workers_share_due_deliveries(serve: Any) -> None:
    """With a real clock, `--workers 2` deliver 200 callbacks that fall due together once each."""
    settings = {"rate_limits": {"apibox": {"work": None}}, "default_credits": 100000,
                "durations": {"generate_text": 0.1, "generate_first": 0.1, "generate_complete": 0.1,
                              "vocal_removal": 1.0}}
    served = serve(clock="real", workers=2, settings=settings)
    with CallbackReceiver() as receiver:
        source = generate(served.http, receiver.endpoint("gen"))
        deadline = time.monotonic() + 10
        while served.http.get("/api/v1/generate/record-info", params={"taskId": source}).json()["data"][
                "status"] != "SUCCESS":
            assert time.monotonic() < deadline, "the generation did not finish"
            time.sleep(0.05)
        audio_id = first_track(served.http, source)["id"]
        ids = {separate(served.http, source, audio_id, receiver.endpoint("sep")) for _ in range(200)}
        deadline = time.monotonic() + 30
        while len({d.json["data"]["task_id"] for d in receiver.deliveries if d.path.endswith("sep")}) < 200:
            assert time.monotonic() < deadline, f"{len(receiver.deliveries)} of 200 delivered"
            time.sleep(0.05)
        # Nothing is left to deliver twice: every job is finished, none claimed. A worker records its last attempt
        # just after the receiver has answered it, so the queue is read until it is empty (bounded).
        while served.http.get("/__mock/clock").json()["pending"] != 0:
            assert time.monotonic() < deadline, "deliveries are still pending after all 200 arrived"
            time.sleep(0.05)
        with redis.Redis.from_url(served_store(served)) as client:
            assert client.zcard("stemmock:claimed") == 0
        sent = Counter(d.json["data"]["task_id"] for d in receiver.deliveries if d.path.endswith("sep"))
        assert set(sent) == ids and set(sent.values()) == {1}


def served_store(served: Served) -> str:
    args = served.process.args
    return str(args[args.index("--store") + 1])


# -- restarts ------------------------------------------------------------------------------------------------


def test_sigkill_and_restart_keep_state_and_deliver_what_fell_due(serve: Any) -> None:
    """After SIGKILL, a new process has the clips, tasks and balances, and sends the callback that fell due."""
    settings = {"rate_limits": {"apibox": {"work": None}},
                "durations": {"generate_text": 0.05, "generate_first": 0.05, "generate_complete": 0.05,
                              "vocal_removal": 2.0}}
    first = serve(clock="real", settings=settings)
    with CallbackReceiver() as receiver:
        source = generate(first.http, receiver.endpoint("gen"))
        # The "complete" callback is sent after the task turns SUCCESS: wait for it, so that nothing of the
        # generation is still in flight when the receiver is cleared.
        deadline = time.monotonic() + 10
        while not any(d.json["data"]["callbackType"] == "complete" for d in receiver.deliveries):
            assert time.monotonic() < deadline, "the generation did not finish"
            time.sleep(0.02)
        audio_id = first_track(first.http, source)["id"]
        clip_id = first.http.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/a.mp3"}).json()[
            "clip_id"]
        receiver.clear()
        task_id = separate(first.http, source, audio_id, receiver.endpoint("sep"))
        due = time.monotonic() + 2.0
        balances = (first.http.get("/api/v1/get-credits").json(), first.http.get("/api/v1/generate/credit").json())
        first.kill()
        assert receiver.deliveries == []  # it was killed before the separation finished
        time.sleep(max(0.0, due - time.monotonic()) + 0.2)  # the mock stays down past the callback's due instant

        second = serve(clock="real", settings=settings)
        deadline = time.monotonic() + 20
        while not receiver.deliveries:
            assert time.monotonic() < deadline, "the owed callback was not delivered after the restart"
            time.sleep(0.05)
        assert [d.json["data"]["task_id"] for d in receiver.deliveries] == [task_id]
        info = second.http.get("/api/v1/vocal-removal/record-info", params={"taskId": task_id}).json()["data"]
        assert info["taskId"] == task_id and info["successFlag"] == "SUCCESS"
        assert (second.http.get("/api/v1/get-credits").json(),
                second.http.get("/api/v1/generate/credit").json()) == balances
        vox = second.http.post("/api/v1/sonic/vox", json={"clip_id": clip_id, "vocal_start_s": 0, "vocal_end_s": 5})
        assert vox.status_code == 200


def test_a_manual_clock_and_its_pending_callbacks_survive_a_restart(serve: Any) -> None:
    """A restarted mock keeps the manual instant and the callbacks still due, and sends them on advance."""
    first = serve()
    with CallbackReceiver() as receiver:
        source = generate(first.http, receiver.endpoint("gen"))
        first.advance(10)
        audio_id = first_track(first.http, source)["id"]
        receiver.clear()
        task_id = separate(first.http, source, audio_id, receiver.endpoint("sep"))
        first.kill()
        second = serve()
        clock = second.http.get("/__mock/clock").json()
        assert clock["now"] == START + 10 and clock["pending"] == 1
        assert second.advance(10)["ran"] == 1
        assert [d.json["data"]["task_id"] for d in receiver.deliveries] == [task_id]


# -- claims and leases ------------------------------------------------------------------------------------------


def test_a_claim_whose_worker_died_is_handed_out_again(redis_url: str) -> None:
    """A job claimed but never finished goes back to the queue when its lease lapses, and only then."""
    keeping = RedisStore(redis_url, lease=60)
    keeping.schedule(10.0, {"kind": "attempt", "args": ["dlv_000001"], "label": "a"})
    claimed = keeping.claim_due(10.0, 10)
    assert [job["args"] for _id, _due, job in claimed] == [["dlv_000001"]]
    assert RedisStore(redis_url).claim_due(10.0, 10) == []  # held by a live lease

    dying = RedisStore(redis_url, lease=0)  # a worker whose lease lapses at once
    dying.schedule(20.0, {"kind": "attempt", "args": ["dlv_000002"], "label": "b"})
    assert [job["label"] for _id, _due, job in dying.claim_due(20.0, 10)] == ["b"]
    again = RedisStore(redis_url, lease=60).claim_due(20.0, 10)
    assert [(due, job["label"]) for _id, due, job in again] == [(20.0, "b")]
    keeping.finish(again[0][0])
    assert RedisStore(redis_url, lease=60).claim_due(99.0, 10) == []
    for store in (keeping, dying):
        store.close()


def test_concurrent_charges_never_overspend(redis_url: str) -> None:
    """Eight clients charging one account at once take exactly the balance, never more."""
    stores = [RedisStore(redis_url) for _ in range(8)]
    stores[0].set_balance("musicapi", "k", 50, 10)

    async def spend(store: RedisStore) -> int:
        return sum(await asyncio.gather(*(asyncio.to_thread(lambda: store.charge("musicapi", "k", 1) is not None)
                                          for _ in range(20))))

    async def everyone() -> list[int]:
        return await asyncio.gather(*(spend(store) for store in stores))

    assert sum(asyncio.run(everyone())) == 60
    assert stores[0].balance("musicapi", "k") == {"credits": 0.0, "extra_credits": 0.0}
    for store in stores:
        store.close()


def test_serve_refuses_many_workers_on_memory_and_an_unreachable_store(tmp_path: Path) -> None:
    """Exits 2 with a readable message for --workers 2 on memory, and for a Redis nobody listens on."""
    base = [sys.executable, "-m", "mockserver", "--port", "0"]
    memory = subprocess.run([*base, "--workers", "2"], check=False, capture_output=True, text=True, timeout=60)
    assert memory.returncode == 2 and "needs a store the workers share" in memory.stderr
    url = f"redis://127.0.0.1:{free_port()}/0"
    down = subprocess.run([*base, "--store", url], check=False, capture_output=True, text=True, timeout=60)
    assert down.returncode == 2 and url in down.stderr
    bad = subprocess.run([*base, "--store", "mongodb://x"], check=False, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected 'memory' or a Redis URL" in bad.stderr


CALLS = {  # call -> (provider, credits it costs, status)
    "vox": ("musicapi", 1, 200), "upload": ("musicapi", 2, 200), "generate": ("apibox", 10, 200),
    "vocal-separation": ("apibox", 10, 200), "record-info": ("apibox", 0, 200),
    "vox-refused": ("musicapi", 0, 400), "vocal-separation-refused": ("apibox", 0, 200)}


def _command_name(command: Any) -> str:
    """The command a packed RESP buffer (or list of buffers) sends, and its first argument."""
    raw = command.encode() if isinstance(command, str) else command if isinstance(command, bytes) else \
        b"".join(part if isinstance(part, bytes) else bytes(part) for part in command)
    lines = raw[:200].split(b"\r\n")
    return " ".join(part.decode(errors="replace") for part in lines[2:5:2])


@pytest.mark.parametrize("call", list(CALLS))
def test_a_provider_call_on_redis_makes_one_round_trip(redis_url: str, monkeypatch: pytest.MonkeyPatch,
                                                       call: str) -> None:
    """A provider call makes one round trip: it is decided on the worker's copy of the control plane, balance and
    the resource it names, and one step checks all of it still holds, charges, stores what it made and its callback
    jobs and journals it. Ids come from a block reserved beforehand. Each charges once. A refused call (invalid body,
    or a vocal separation naming a task that does not exist) is journaled in one step too. Trips are counted where
    every command and pipeline leaves for the server: the connection's write."""
    from mockserver import MockConfig, create_app

    provider, cost, expected = CALLS[call]
    trips: list[str] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted_send(self: Any, command: Any, *args: Any, **options: Any) -> Any:
        trips.append(_command_name(command))
        return send(self, command, *args, **options)

    from mockserver.store import lines
    write = lines._Protocol._write

    def counted_write(self: Any) -> None:  # the event loop's connection: one write may carry several steps
        if self._out:
            trips.append(" + ".join(_command_name(packed) for packed in self._out))
        write(self)

    async def work() -> tuple[int, float, int]:
        app = create_app(MockConfig(store=redis_url, clock="manual", rate_limits={"apibox": {"work": None}}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock",
                                     headers=AUTH) as c:
            await c.post("/__mock/reset")
            if provider == "musicapi":
                clip = (await c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"})).json()[
                    "clip_id"]
                calls = {"vox": ("POST", "/api/v1/sonic/vox", {"clip_id": clip, "vocal_start_s": 0,
                                                               "vocal_end_s": 5}),
                         "vox-refused": ("POST", "/api/v1/sonic/vox", {"clip_id": 12, "vocal_start_s": 0}),
                         "upload": ("POST", "/api/v1/sonic/upload", {"url": "https://example.com/b.mp3"})}
                credits = "/api/v1/get-credits"
            else:
                generate = {"customMode": False, "instrumental": True, "model": "V4_5", "prompt": "night drive",
                            "callBackUrl": "http://127.0.0.1:9/gen"}
                gen = (await c.post("/api/v1/generate", json=generate)).json()["data"]["taskId"]
                await c.post("/__mock/clock/advance", json={"seconds": 60})
                info = (await c.get("/api/v1/generate/record-info", params={"taskId": gen})).json()["data"]
                calls = {"vocal-separation": ("POST", "/api/v1/vocal-removal/generate", {
                    "taskId": gen, "audioId": info["response"]["sunoData"][0]["id"], "type": "separate_vocal",
                    "callBackUrl": "http://127.0.0.1:9/sep"}),
                    "vocal-separation-refused": ("POST", "/api/v1/vocal-removal/generate", {
                        "taskId": "0" * 32, "audioId": "0" * 32, "type": "separate_vocal",
                        "callBackUrl": "http://127.0.0.1:9/sep"}),
                    "generate": ("POST", "/api/v1/generate", generate),
                    "record-info": ("GET", f"/api/v1/generate/record-info?taskId={gen}", None)}
                credits = "/api/v1/generate/credit"
            await c.post("/__mock/clock/advance", json={"seconds": 60})
            method, path, body = calls[call]
            await c.request(method, path, json=body)  # the scripts are loaded into Redis on first use

            async def balance() -> float:
                answer = (await c.get(credits)).json()
                return float(answer["credits"] if provider == "musicapi" else answer["data"])

            before, journaled = await balance(), (await c.get("/__mock/journal")).json()["exchanges"][-1]["seq"]
            monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted_send)
            monkeypatch.setattr(lines._Protocol, "_write", counted_write)
            answer = await c.request(method, path, json=body)
            monkeypatch.undo()
            after = await balance()
            entries = (await c.get("/__mock/journal")).json()["exchanges"]
        app.state.mock.store.close()
        return answer.status_code, answer.json(), before - after, entries[-1]["seq"] - journaled

    status, answer, spent, journaled = asyncio.run(work())
    assert (status, spent, journaled) == (expected, cost, 2), answer  # the call and the balance read after it
    if call == "vocal-separation-refused":
        assert answer["code"] != 200, answer
    assert len(trips) == 1, trips
    assert trips[0].startswith("EVALSHA"), trips


class HoldingReceiver:
    """A webhook receiver that holds every request while `hold` is set, and processes each webhook id once."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from contracts.live import LiveServer

        self.hold = True
        self.seen: Counter[str] = Counter()
        self.processed: list[str] = []
        self.held = 0
        self._lock = threading.Lock()

        async def receive(request: Any) -> Any:
            await request.body()
            webhook_id = request.headers["x-webhook-id"]
            with self._lock:
                self.seen[webhook_id] += 1
                self.held += self.hold
            while self.hold:  # an attempt in flight until the test lets go (its sender may be dead by then)
                await asyncio.sleep(0.05)
            with self._lock:
                if webhook_id not in self.processed:  # deduplicated by X-Webhook-Id, as receivers are told to
                    self.processed.append(webhook_id)
            return JSONResponse({"received": True})

        self.server = LiveServer(Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])]))

    def __enter__(self) -> HoldingReceiver:
        self.server.start()
        self.url = self.server.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold = False
        self.server.stop()


def test_sigkill_during_an_advance_with_200_attempts_in_flight_loses_and_repeats_nothing(
        serve: Any, redis_url: str) -> None:
    """SIGKILL while an advance has 200 webhook attempts in flight; after a restart the clock still owes them, and
    one advance delivers every task's webhook under its one delivery record and its one X-Webhook-Id."""
    tasks_made = 220
    settings = {"default_credits": 1_000_000, "callbacks": {"timeout": 60, "concurrency": 200}}
    first = serve(settings=settings)
    with HoldingReceiver() as receiver:
        body = {"task_type": "create_music", "custom_mode": False, "mv": "sonic-v4-5",
                "gpt_description_prompt": "a calm song", "webhook_url": f"{receiver.url}/hook"}
        for _ in range(tasks_made):
            assert first.http.post("/api/v1/sonic/create", json=body).status_code == 200
        advancing = threading.Thread(target=lambda: _quietly(first.advance, 60), daemon=True)
        advancing.start()
        deadline = time.monotonic() + 60
        while receiver.held < 200:
            assert time.monotonic() < deadline, f"only {receiver.held} attempts reached the receiver"
            time.sleep(0.02)
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            dead = set(client.scan_iter("stemmock:alive:*"))
            assert dead  # the advancing worker beats
            first.kill()
            advancing.join(10)

            second = serve(settings=settings)
            owed = second.http.get("/__mock/clock").json()["pending"]
            assert owed >= tasks_made  # claimed by the dead worker, or still queued: owed either way
            deadline = time.monotonic() + 30
            while dead & set(client.scan_iter("stemmock:alive:*")):  # the killed worker's beat expires
                assert time.monotonic() < deadline, "the killed worker still looks alive"
                time.sleep(0.1)
        receiver.hold = False
        assert second.advance(3600)["ran"] >= tasks_made
        assert second.http.get("/__mock/clock").json()["pending"] == 0
        deliveries = second.http.get("/__mock/callbacks").json()["callbacks"]
        per_task = Counter(d["task_id"] for d in deliveries)
        assert len(per_task) == tasks_made and set(per_task.values()) == {1}
        assert {d["state"] for d in deliveries} == {"delivered"}
        ids = {d["webhook_id"] for d in deliveries}
        deadline = time.monotonic() + 10
        while set(receiver.processed) != ids:  # the held requests of the dead worker finish too
            assert time.monotonic() < deadline, "not every webhook was processed"
            time.sleep(0.05)
        assert len(receiver.processed) == tasks_made and max(receiver.seen.values()) <= 2
        assert set(receiver.seen) == ids and sum(receiver.seen.values()) >= tasks_made + 200


def _quietly(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except httpx.HTTPError:
        pass  # the server was killed under it


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_redis_without_the_client_says_what_to_install(workers: str) -> None:
    """Exits 2 naming the extra to install when the Redis client cannot be imported (a plain install)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    hide = ("import sys; sys.modules['redis'] = None; sys.argv = ['stemmock', 'serve', '--port', '0', "
            f"'--store', {url!r}, '--workers', {workers!r}]; from mockserver.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", hide], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "pip install 'stemmock[redis]'" in done.stderr and url in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_reset_by_one_worker_never_lets_another_repeat_an_id(redis_url: str) -> None:
    """A block of ids reserved before another worker's reset is dropped when a call reads the new generation,
    and a commit of ids from it stores nothing; the resetting worker's ids restart from the seed."""
    from mockserver.store import CountedRandom, StaleIds

    a, b = RedisStore(redis_url), RedisStore(redis_url)
    try:
        a.reset()
        first = CountedRandom(a, 7)
        fresh = [first.getrandbits(64) for _ in range(3)]
        a.reset()
        ids_a, ids_b = CountedRandom(a, 7), CountedRandom(b, 7)
        assert [ids_a.getrandbits(64) for _ in range(3)] == fresh  # ids restart from the seed after a reset
        ids_b.getrandbits(64)  # b holds numbers 1001..2000 of this generation
        a.reset()
        with pytest.raises(StaleIds):
            b.commit("musicapi", "k", 0, [("clip", "x", {"id": "x"})], [], {"operation": "o"}, ids_b.generation)
        assert b.get("clip", "x") is None and b.journal() == []
        ids_b.observe(b.call_state("musicapi", "k").generation)  # the next call reads the new generation
        again_a = CountedRandom(a, 7)
        after_a = [again_a.getrandbits(64) for _ in range(2 * CountedRandom.BLOCK)]
        after_b = [ids_b.getrandbits(64) for _ in range(CountedRandom.BLOCK)]
        assert len(set(after_a) | set(after_b)) == 3 * CountedRandom.BLOCK
    finally:
        a.close()
        b.close()


def test_calls_go_on_after_the_store_drops_every_connection(redis_url: str) -> None:
    """redis-server closing every client connection (a restart, a failover, `CLIENT KILL`) costs no call: the worker
    finds its connections closed before it writes a step, connects again and makes it. Each call is charged once."""
    from contracts.live import LiveServer
    from mockserver import MockConfig, create_app

    app = create_app(MockConfig(store=redis_url, clock="manual"))
    admin = redis.Redis.from_url(redis_url)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        c.post("/__mock/reset")
        clip = c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
        c.post("/__mock/clock/advance", json={"seconds": 60})
        before = c.get("/api/v1/get-credits").json()["credits"]
        statuses = []
        for _ in range(3):
            statuses.append(c.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0,
                                                               "vocal_end_s": 5}).status_code)
            killed = admin.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 1
        assert c.delete("/__mock/faults").status_code == 200  # the worker's copy is dropped: the next call reads
        admin.client_kill_filter(_type="normal", skipme=True)  # the state on the blocking connection, now closed
        statuses.append(c.post("/api/v1/sonic/upload", json={"url": "https://example.com/b.mp3"}).status_code)
        after = c.get("/api/v1/get-credits").json()["credits"]
    admin.close()
    app.state.mock.store.close()
    assert statuses == [200, 200, 200, 200]
    assert before - after == 3 * 1 + 2  # three VOX calls and one upload, each charged once


def test_calls_that_overlap_in_a_worker_share_one_write(redis_url: str) -> None:
    """Sixteen VOX calls in flight at once in one worker reach their steps in the same turn of the event loop: the
    steps go out together (far fewer writes than steps), and each is still its own atomic step: sixteen answers,
    sixteen credits, sixteen journal entries, sixteen distinct ids."""
    from mockserver import MockConfig, create_app

    async def work() -> tuple[list[int], set[str], float, int, tuple[int, int]]:
        app = create_app(MockConfig(store=redis_url, clock="manual"))
        pipe = app.state.mock.store._pipe
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock",
                                     headers=AUTH) as c:
            await c.post("/__mock/reset")
            clip = (await c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"})).json()["clip_id"]
            await c.post("/__mock/clock/advance", json={"seconds": 60})
            body = {"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 5}
            await c.post("/api/v1/sonic/vox", json=body)  # the worker's copy of the state is read
            before = (await c.get("/api/v1/get-credits")).json()["credits"]
            seq = (await c.get("/__mock/journal")).json()["exchanges"][-1]["seq"]
            writes, steps = pipe.writes
            answers = await asyncio.gather(*(c.post("/api/v1/sonic/vox", json=body) for _ in range(16)))
            shared = (pipe.writes[0] - writes, pipe.writes[1] - steps)
            after = (await c.get("/api/v1/get-credits")).json()["credits"]
            journal = (await c.get("/__mock/journal")).json()["exchanges"]
        await app.state.mock.store.aclose()
        vox = [e for e in journal if e["seq"] > seq and e["operation"] == "getVox"]
        return [a.status_code for a in answers], {a.json()["data"]["vox_audio_id"] for a in answers}, \
            before - after, len(vox), shared

    statuses, ids, spent, journaled, (writes, steps) = asyncio.run(work())
    assert statuses == [200] * 16 and len(ids) == 16
    assert (spent, journaled) == (16, 16)
    assert steps == 16 and writes <= 4, (writes, steps)


def test_a_record_a_worker_keeps_reads_back_exactly(redis_url: str) -> None:
    """The copy of a record a worker keeps for the calls that name it reads back as stored: an integer beyond 64
    bits stays an integer, a lone surrogate stays itself, and each call gets its own copy."""
    from mockserver.store.redis import RedisStore

    store = RedisStore(redis_url)
    store.reset()
    records = {"c1": {"n": 10**25, "list": [1, 2]}, "c2": {"text": "caf\u00e9 \ud800"}}
    for rid, record in records.items():
        store.put("clip", rid, record)
    for rid, record in records.items():
        first = store.call_state("musicapi", "key", [("clip", rid)]).records[("clip", rid)]
        store.end_call()
        assert first == record and all(type(first[k]) is type(v) for k, v in record.items())
        first["gone"] = True
        again = store.call_state("musicapi", "key", [("clip", rid)]).records[("clip", rid)]
        store.end_call()
        assert again == record
    store.close()

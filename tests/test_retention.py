"""Retention: what calls made expires on the mock's clock and each kind keeps at most `retention.max_tasks`.

Every test runs a real server on each store (memory and the session's redis-server) with a manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contracts.live import LiveServer
from mockserver import MockConfig, create_app
from mockserver.config import Retention

AUTH = {"Authorization": "Bearer retention-key"}
DAY = 24 * 3600


@pytest.fixture()
def client(store_url: str) -> Iterator[httpx.Client]:
    config = MockConfig(clock="manual", clock_start=1_767_225_600, store=store_url,
                        retention=Retention(max_tasks=3), rate_limits={"apibox": {"work": None}})
    app = create_app(config)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        c.post("/__mock/reset")
        yield c
    app.state.mock.store.close()


def upload(c: httpx.Client, name: str) -> str:
    answer = c.post("/api/v1/sonic/upload", json={"url": f"https://example.com/{name}.mp3"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["clip_id"])


def vox(c: httpx.Client, clip: str) -> httpx.Response:
    return c.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 5})


def generate(c: httpx.Client) -> str:
    answer = c.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                              "prompt": "night drive", "callBackUrl": "http://127.0.0.1:9/gen"})
    return str(answer.json()["data"]["taskId"])


def record_info(c: httpx.Client, task: str) -> Any:
    answer = c.get("/api/v1/generate/record-info", params={"taskId": task})
    assert answer.status_code == 200
    return answer.json()


def test_beyond_max_tasks_the_oldest_clip_answers_as_unknown(client: httpx.Client) -> None:
    """A fourth clip with max_tasks 3 evicts the first, which then gets MusicAPI's 404; the newest still work."""
    clips = [upload(client, f"c{i}") for i in range(4)]
    client.post("/__mock/clock/advance", json={"seconds": 60})
    first = vox(client, clips[0])
    assert first.status_code == 404 and "clip_id" in first.text
    assert [vox(client, clip).status_code for clip in clips[1:]] == [200, 200, 200]


def test_beyond_max_tasks_the_oldest_task_reads_as_data_null(client: httpx.Client) -> None:
    """A fourth api.box task with max_tasks 3 evicts the first: record-info answers it with `data: null`."""
    tasks = [generate(client) for _ in range(4)]
    assert record_info(client, tasks[0])["data"] is None
    assert all(record_info(client, task)["data"]["taskId"] == task for task in tasks[1:])


def test_a_task_past_its_retention_reads_as_unknown_and_its_files_404(client: httpx.Client) -> None:
    """After 14 days on the mock's clock a task and a clip answer as unknown ones, and the task's files 404."""
    task, clip = generate(client), upload(client, "old")
    client.post("/__mock/clock/advance", json={"seconds": 60})
    info = record_info(client, task)["data"]
    url = info["response"]["sunoData"][0]["audioUrl"]
    assert client.get(url).status_code == 200 and vox(client, clip).status_code == 200
    client.post("/__mock/clock/advance", json={"seconds": 14 * DAY})
    assert record_info(client, task)["data"] is None
    assert vox(client, clip).status_code == 404
    assert client.get(url).status_code == 404


def test_on_redis_the_index_is_capped_and_records_carry_a_ttl(client: httpx.Client, store_url: str) -> None:
    """On Redis an evicted clip's record is deleted, the index holds max_tasks ids, and each record expires."""
    if store_url == "memory":
        pytest.skip("the Redis keys only")
    import redis

    clips = [upload(client, f"c{i}") for i in range(5)]
    with redis.Redis.from_url(store_url, decode_responses=True) as r:
        assert r.zrange("stemmock:idx:clip", 0, -1) == clips[2:]
        assert [r.exists(f"stemmock:res:clip:{clip}") for clip in clips] == [0, 0, 1, 1, 1]
        assert 0 < r.ttl(f"stemmock:res:clip:{clips[-1]}") <= 14 * DAY


def test_jobs_of_dropped_tasks_go_with_them_so_the_queue_stays_bounded(client: httpx.Client) -> None:
    """With a manual clock that never moves, 60 generations (3 stage jobs each) with max_tasks 3 leave a queue of
    a few jobs per task kept, not 180: a job whose task retention dropped is dropped when later calls queue theirs.
    The tasks still kept deliver all their stages when the clock moves."""
    tasks = [generate(client) for _ in range(60)]
    pending = client.get("/__mock/clock").json()["pending"]
    assert 9 <= pending <= 40, pending  # the 3 kept tasks' 9 jobs, plus dropped tasks' jobs not looked at yet
    assert record_info(client, tasks[0])["data"] is None
    ran = client.post("/__mock/clock/advance", json={"seconds": 600}).json()["ran"]
    assert ran >= 9  # the kept tasks' stages (and their callback attempts) ran
    assert all(record_info(client, task)["data"]["status"] == "SUCCESS" for task in tasks[-3:])
